//! The HTTP pipeline over real loopback HTTP: headers, idempotency keys across retries,
//! which failures are retried and how, error mapping, body caps, deadlines, cancellation.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::time::{Duration, Instant};

use common::*;
use tether::{ApiRequest, CancelHandle, ClientConfig, HttpMethod, TetherClient, TetherError};

#[tokio::test]
async fn every_request_carries_the_contract_headers() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    c.send(quota_request(), None).await.unwrap();
    c.send(job_request(), None).await.unwrap();
    let reqs = env.server.requests();
    for r in &reqs {
        let ua = r.user_agent.as_deref().unwrap();
        assert!(
            ua.starts_with(&format!("tether/{} (", tether::tether_version())),
            "{ua}"
        );
        assert_eq!(r.client_id.as_deref(), Some("test-app"));
    }
    let quota = reqs.iter().find(|r| r.path == "/api/v1/quota").unwrap();
    assert!(quota.bearer.is_some());
    assert_eq!(
        quota.idempotency_key, None,
        "GETs spend no quota and carry no key"
    );
    let job = reqs.iter().find(|r| r.path == "/api/v1/jobs").unwrap();
    let key = uuid_v4(job.idempotency_key.as_deref().unwrap());
    assert!(key, "{:?}", job.idempotency_key);
    let anon = reqs
        .iter()
        .find(|r| r.path == "/api/v1/auth/anonymous")
        .unwrap();
    assert_eq!(anon.bearer, None);
}

fn uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 36
        && b[14] == b'4'
        && matches!(b[19], b'8' | b'9' | b'a' | b'b')
        && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
}

#[tokio::test]
async fn retries_reuse_the_idempotency_key_after_a_503_and_a_reset() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    env.server.fault(
        "/api/v1/jobs",
        Fault::Status {
            status: 503,
            code: "unavailable",
            retry_after: Some(0),
        },
    );
    env.server.fault("/api/v1/jobs", Fault::Drop);
    env.server.fault("/api/v1/jobs", Fault::DropAfterHandling);
    let r = c.send(job_request(), None).await.unwrap();
    assert_eq!(r.status, 202);
    let keys = env.server.idempotency_keys("/api/v1/jobs");
    assert_eq!(keys.len(), 4);
    assert!(
        keys.iter().all(|k| k.is_some() && *k == keys[0]),
        "{keys:?}"
    );
    // The attempt whose response was lost was charged; the retry was a replay.
    assert_eq!(env.server.charges(), 1);
    // A new logical request gets a new key.
    c.send(job_request(), None).await.unwrap();
    let last = env
        .server
        .requests()
        .last()
        .unwrap()
        .idempotency_key
        .clone();
    assert_ne!(last, keys[0]);
}

#[tokio::test]
async fn retry_after_is_honoured_and_a_long_one_is_returned() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    env.server.fault(
        "/api/v1/jobs",
        Fault::Status {
            status: 429,
            code: "rate_limited",
            retry_after: Some(1),
        },
    );
    let t = Instant::now();
    c.send(job_request(), None).await.unwrap();
    // A lower bound only: the client must not retry before the server's hint.
    assert!(t.elapsed() >= Duration::from_secs(1));
    assert_eq!(env.server.count("/api/v1/jobs"), 2);

    // A hint beyond max_retry_after_s (5 s here) ends the call with a typed error at once.
    env.server.fault(
        "/api/v1/jobs",
        Fault::Status {
            status: 429,
            code: "rate_limited",
            retry_after: Some(3600),
        },
    );
    let err = c.send(job_request(), None).await.unwrap_err();
    assert!(
        matches!(
            err,
            TetherError::RateLimited {
                retry_after_s: Some(3600),
                request_id: Some(_)
            }
        ),
        "{err:?}"
    );
    assert_eq!(env.server.count("/api/v1/jobs"), 3);
}

#[tokio::test]
async fn other_4xx_are_never_retried() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let cases = [
        (400, "bad_request"),
        (403, "forbidden"),
        (404, "not_found"),
        (413, "payload_too_large"),
        (415, "unsupported_media_type"),
        (422, "idempotency_key_reused"),
    ];
    for (i, (status, code)) in cases.into_iter().enumerate() {
        env.server.fault(
            "/api/v1/jobs",
            Fault::Status {
                status,
                code,
                retry_after: None,
            },
        );
        let err = c.send(job_request(), None).await.unwrap_err();
        assert_eq!(
            env.server.count("/api/v1/jobs"),
            i + 1,
            "{status} was retried"
        );
        let ok = match status {
            400 | 404 | 422 => {
                matches!(&err, TetherError::InvalidInput { code: c, .. } if c == code)
            }
            403 => matches!(err, TetherError::Forbidden { .. }),
            413 => matches!(err, TetherError::PayloadTooLarge { .. }),
            415 => matches!(err, TetherError::UnsupportedMedia { .. }),
            _ => false,
        };
        assert!(ok, "{status} -> {err:?}");
    }
}

#[tokio::test]
async fn quota_exhaustion_is_plan_required_and_headers_update_quota() {
    let env = Env::new().await;
    env.server.set_quota_limit(2);
    let c = env.signed_in().await;
    assert_eq!(c.quota().source, tether::QuotaSource::Unknown);
    c.send(quota_request(), None).await.unwrap();
    let q = c.quota();
    assert_eq!(
        (q.plan.as_deref(), q.limit, q.remaining),
        (Some("free"), Some(2), Some(2))
    );
    assert!(q.reset_at.is_some());
    c.send(job_request(), None).await.unwrap();
    c.send(job_request(), None).await.unwrap();
    assert_eq!(c.quota().remaining, Some(0));
    let err = c.send(job_request(), None).await.unwrap_err();
    match err {
        TetherError::PlanRequired {
            plan_required,
            quota,
            request_id,
        } => {
            assert_eq!(plan_required.as_deref(), Some("pro"));
            assert_eq!(quota.unwrap().remaining, 0);
            assert!(request_id.unwrap().starts_with("req-"));
        }
        other => panic!("expected PlanRequired, got {other:?}"),
    }
    // Not retried: a 402 is an answer, not a failure.
    assert_eq!(env.server.count("/api/v1/jobs"), 3);
}

#[tokio::test]
async fn oversized_bodies_are_refused_without_reading_them() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    for chunked in [false, true] {
        env.server.fault(
            "/api/v1/quota",
            Fault::HugeBody {
                bytes: 3 << 20,
                chunked,
            },
        );
        let err = c.send(quota_request(), None).await.unwrap_err();
        assert_eq!(
            err,
            TetherError::ResponseTooLarge {
                limit_bytes: 1 << 20
            },
            "chunked={chunked}"
        );
    }
    // A smaller cap from the config applies to ordinary responses too.
    let mut cfg = env.config();
    cfg.max_response_bytes = 16;
    let small = env.client_with(cfg);
    small.restore_session().await.unwrap();
    assert_eq!(
        small.send(quota_request(), None).await.unwrap_err(),
        TetherError::ResponseTooLarge { limit_bytes: 16 }
    );
    // Under the cap, fine.
    env.server.fault(
        "/api/v1/quota",
        Fault::HugeBody {
            bytes: 1000,
            chunked: true,
        },
    );
    assert_eq!(
        c.send(quota_request(), None).await.unwrap().body.len(),
        1000
    );
}

#[tokio::test]
async fn malformed_responses_are_typed_errors_and_lose_nothing() {
    let env = Env::new().await;
    let c = env.client();
    c.restore_session().await.unwrap();
    env.server.fault(
        "/api/v1/auth/anonymous",
        Fault::Raw {
            status: 200,
            content_type: "application/json",
            body: "{\"access_token\": tru".into(),
        },
    );
    assert!(matches!(
        c.sign_in_anonymously(None, None).await,
        Err(TetherError::Decode { .. })
    ));
    assert_eq!(c.auth_state(), tether::AuthState::SignedOut);
    assert_eq!(env.store.value(), None);

    let c = env.signed_in().await;
    for _ in 0..4 {
        env.server.fault(
            "/api/v1/quota",
            Fault::Raw {
                status: 500,
                content_type: "text/html",
                body: "<h1>oops</h1>".into(),
            },
        );
    }
    let err = c.send(quota_request(), None).await.unwrap_err();
    assert!(
        matches!(&err, TetherError::Server { status: 500, code, .. } if code == "internal"),
        "{err:?}"
    );
    assert_eq!(
        env.server.count("/api/v1/quota"),
        4,
        "5xx retried up to max_attempts"
    );
    assert!(matches!(c.auth_state(), tether::AuthState::SignedIn { .. }));
}

#[tokio::test]
async fn a_stalled_body_hits_the_idle_timeout_and_a_slow_head_the_first_byte_timeout() {
    let env = Env::new().await;
    let mut cfg = env.config();
    cfg.timeouts.idle_ms = 200;
    cfg.timeouts.first_byte_ms = 300;
    cfg.retry.max_attempts = 1;
    let c = env.client_with(cfg);
    c.restore_session().await.unwrap();
    c.sign_in_anonymously(None, None).await.unwrap();
    env.server
        .fault("/api/v1/quota", Fault::StallBody(Duration::from_secs(3)));
    let err = c.send(quota_request(), None).await.unwrap_err();
    assert!(
        matches!(&err, TetherError::Timeout { detail } if detail.contains("idle_ms")),
        "{err:?}"
    );
    env.server
        .fault("/api/v1/quota", Fault::Delay(Duration::from_secs(3)));
    let err = c.send(quota_request(), None).await.unwrap_err();
    assert!(
        matches!(&err, TetherError::Timeout { detail } if detail.contains("first_byte_ms")),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_total_deadline_bounds_every_retry() {
    let env = Env::new().await;
    let mut cfg = env.config();
    cfg.timeouts.total_ms = 700;
    cfg.retry = tether::RetryPolicy {
        max_attempts: 50,
        base_delay_ms: 200,
        max_delay_ms: 200,
        max_retry_after_s: 5,
    };
    let c = env.client_with(cfg);
    c.restore_session().await.unwrap();
    c.sign_in_anonymously(None, None).await.unwrap();
    for _ in 0..50 {
        env.server.fault(
            "/api/v1/jobs",
            Fault::Status {
                status: 503,
                code: "unavailable",
                retry_after: Some(1),
            },
        );
    }
    let err = c.send(job_request(), None).await.unwrap_err();
    assert!(
        matches!(err, TetherError::Server { status: 503, .. }),
        "{err:?}"
    );
    // Retry-After 1 s does not fit in what is left of a 700 ms deadline: no retry at all.
    assert_eq!(env.server.count("/api/v1/jobs"), 1);
}

#[tokio::test]
async fn a_dead_network_is_a_network_error() {
    let dir = tempfile::tempdir().unwrap();
    // Bind then drop a listener: nothing listens on that port now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = TetherClient::new(
        config(&format!("http://127.0.0.1:{port}"), &dir),
        tether::in_memory_token_store(),
    )
    .unwrap();
    c.restore_session().await.unwrap();
    let err = c.sign_in_anonymously(None, None).await.unwrap_err();
    assert!(matches!(err, TetherError::Network { .. }), "{err:?}");
}

#[tokio::test]
async fn cancel_handles_and_dropped_futures_end_calls() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    env.server
        .fault("/api/v1/quota", Fault::Delay(Duration::from_secs(10)));
    let cancel = CancelHandle::new();
    let (c2, h) = (c.clone(), cancel.clone());
    let call = tokio::spawn(async move { c2.send(quota_request(), Some(h)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    cancel.cancel();
    assert_eq!(call.await.unwrap().unwrap_err(), TetherError::Cancelled);
    // A cancelled handle cancels later calls at once.
    assert_eq!(
        c.send(quota_request(), Some(cancel)).await.unwrap_err(),
        TetherError::Cancelled
    );

    // Dropping the future (what a cancelled coroutine or an aborted JS promise does).
    env.server
        .fault("/api/v1/quota", Fault::Delay(Duration::from_secs(10)));
    let dropped =
        tokio::time::timeout(Duration::from_millis(100), c.send(quota_request(), None)).await;
    assert!(dropped.is_err());
    // The client is still healthy.
    c.send(quota_request(), None).await.unwrap();
}

#[tokio::test]
async fn invalid_config_and_input_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "http://api.example.com",
        "example.com/api",
        "ftp://127.0.0.1",
    ] {
        let err =
            TetherClient::new(config(url, &dir), tether::in_memory_token_store()).unwrap_err();
        assert!(matches!(err, TetherError::Config { .. }), "{url}: {err:?}");
    }
    let mut cfg: ClientConfig = config("https://api.example.com", &dir);
    cfg.timeouts.total_ms = 0;
    assert!(matches!(
        TetherClient::new(cfg, tether::in_memory_token_store()),
        Err(TetherError::Config { .. })
    ));

    let env = Env::new().await;
    let c = env.signed_in().await;
    for path in [
        "../admin",
        "https://evil.example/x",
        "//evil.example/x",
        "",
        "a b",
    ] {
        let req = ApiRequest {
            method: HttpMethod::Get,
            path: path.into(),
            json_body: None,
            authenticated: true,
            idempotency_key: None,
        };
        assert!(
            matches!(
                c.send(req, None).await,
                Err(TetherError::InvalidInput { .. })
            ),
            "{path:?}"
        );
    }
    // A caller's idempotency key that cannot be a header value is refused before sending.
    let req = ApiRequest {
        idempotency_key: Some("key\nX-Injected: 1".into()),
        ..job_request()
    };
    assert!(matches!(
        c.send(req, None).await,
        Err(TetherError::InvalidInput { .. })
    ));
    assert_eq!(env.server.count("/api/v1/jobs"), 0);
}

#[tokio::test]
async fn a_truncated_body_is_retried_and_then_reported() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    env.server.fault("/api/v1/jobs", Fault::TruncatedBody);
    let r = c.send(job_request(), None).await.unwrap();
    assert_eq!(r.status, 202);
    let keys = env.server.idempotency_keys("/api/v1/jobs");
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1]);
    for _ in 0..4 {
        env.server.fault("/api/v1/quota", Fault::TruncatedBody);
    }
    let err = c.send(quota_request(), None).await.unwrap_err();
    assert!(matches!(err, TetherError::Network { .. }), "{err:?}");
}

struct PanickingLogger;

impl tether::Logger for PanickingLogger {
    fn log(&self, _: tether::LogLevel, _: String, _: String) {
        panic!("a logger that throws");
    }
}

#[tokio::test]
async fn a_throwing_logger_does_not_break_calls() {
    let env = Env::new().await;
    let c = TetherClient::with_logger(
        env.config(),
        env.store.clone(),
        std::sync::Arc::new(PanickingLogger),
    )
    .unwrap();
    c.restore_session().await.unwrap();
    c.sign_in_anonymously(None, None).await.unwrap();
    env.server.fault(
        "/api/v1/quota",
        Fault::Status {
            status: 503,
            code: "unavailable",
            retry_after: Some(0),
        },
    );
    assert_eq!(c.send(quota_request(), None).await.unwrap().status, 200);
}
