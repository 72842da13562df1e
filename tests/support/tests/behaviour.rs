//! The server's contract behaviour over real loopback HTTP: refresh replay and its
//! limits, reuse detection, sign-out by refresh token, held responses, the echo route,
//! quota headers on authenticated answers, and the admin commands that expose them.

use std::time::Duration;

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use tether_test_server::{Fault, TestServer};

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn call(
    server: &TestServer,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    key: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut rb = Client::new().request(method, format!("{}{path}", server.url()));
    if let Some(b) = bearer {
        rb = rb.header("authorization", format!("Bearer {b}"));
    }
    if let Some(k) = key {
        rb = rb.header("idempotency-key", k);
    }
    if let Some(b) = body {
        rb = rb
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

async fn sign_in(server: &TestServer) -> Value {
    let a = call(
        server,
        Method::POST,
        "/api/v1/auth/anonymous",
        None,
        None,
        Some(json!({})),
    )
    .await;
    assert_eq!(a.status, 200);
    a.body
}

async fn refresh(server: &TestServer, token: &Value, key: &str) -> Answer {
    call(
        server,
        Method::POST,
        "/api/v1/auth/refresh",
        None,
        Some(key),
        Some(json!({ "refresh_token": token })),
    )
    .await
}

async fn admin(server: &TestServer, cmd: &str, body: Value) -> Value {
    let resp = Client::new()
        .post(format!("{}/__admin/{cmd}", server.url()))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "admin {cmd}");
    serde_json::from_str(&resp.text().await.unwrap()).unwrap()
}

/// Bounds a wait that only a bug would make endless, so a broken hold fails the test
/// instead of hanging it.
async fn guard<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("waited 20 s: the server never got there")
}

fn rt(session: &Value) -> &str {
    session["refresh_token"].as_str().unwrap()
}

#[tokio::test]
async fn a_replayed_refresh_within_the_window_gets_identical_tokens() {
    let server = TestServer::start().await;
    let s0 = sign_in(&server).await;
    let first = refresh(&server, &s0["refresh_token"], "k1").await;
    assert_eq!(first.status, 200);
    assert_ne!(rt(&first.body), rt(&s0));
    let again = refresh(&server, &s0["refresh_token"], "k1").await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, first.body);
    assert_eq!(server.refresh_token_state(rt(&s0)), Some("used"));
    assert_eq!(server.refresh_token_state(rt(&first.body)), Some("fresh"));
    assert_eq!(server.family_revocations(), 0);
    // The replayed session is a live one: its token rotates.
    let next = refresh(&server, &first.body["refresh_token"], "k2").await;
    assert_eq!(next.status, 200);
}

#[tokio::test]
async fn a_replay_after_the_window_revokes_the_family() {
    let server = TestServer::start().await;
    let s0 = sign_in(&server).await;
    let first = refresh(&server, &s0["refresh_token"], "k1").await;
    assert_eq!(first.status, 200);
    // Shortened over the admin API, as the binding tests would.
    admin(&server, "replay-window", json!({ "ms": 0 })).await;
    let late = refresh(&server, &s0["refresh_token"], "k1").await;
    assert_eq!(
        (late.status.as_u16(), late.code()),
        (401, "session_revoked")
    );
    assert_eq!(server.family_revocations(), 1);
    assert_eq!(server.refresh_token_state(rt(&first.body)), Some("revoked"));
    let after = refresh(&server, &first.body["refresh_token"], "k2").await;
    assert_eq!(
        (after.status.as_u16(), after.code()),
        (401, "session_revoked")
    );
    // Revoking a revoked family again does not count.
    let again = refresh(&server, &s0["refresh_token"], "k1").await;
    assert_eq!(again.status, 401);
    assert_eq!(server.family_revocations(), 1);
    assert_eq!(
        admin(&server, "family-revocations", json!({})).await,
        json!({ "count": 1 })
    );
}

#[tokio::test]
async fn the_replay_window_set_from_rust_applies_too() {
    let server = TestServer::start().await;
    let s0 = sign_in(&server).await;
    assert_eq!(
        refresh(&server, &s0["refresh_token"], "k1").await.status,
        200
    );
    server.set_replay_window(Duration::ZERO);
    let late = refresh(&server, &s0["refresh_token"], "k1").await;
    assert_eq!(
        (late.status.as_u16(), late.code()),
        (401, "session_revoked")
    );
    assert_eq!(server.family_revocations(), 1);
}

#[tokio::test]
async fn a_replay_after_the_replayed_session_rotated_revokes_the_family() {
    let server = TestServer::start().await;
    let s0 = sign_in(&server).await;
    let s1 = refresh(&server, &s0["refresh_token"], "k1").await.body;
    let s2 = refresh(&server, &s1["refresh_token"], "k2").await;
    assert_eq!(s2.status, 200);
    let stale = refresh(&server, &s0["refresh_token"], "k1").await;
    assert_eq!(
        (stale.status.as_u16(), stale.code()),
        (401, "session_revoked")
    );
    assert_eq!(server.family_revocations(), 1);
    assert_eq!(server.refresh_token_state(rt(&s2.body)), Some("revoked"));
}

#[tokio::test]
async fn a_spent_token_with_another_key_or_none_revokes_the_family() {
    let server = TestServer::start().await;
    for key in [Some("other"), None] {
        let s0 = sign_in(&server).await;
        assert_eq!(
            refresh(&server, &s0["refresh_token"], "k1").await.status,
            200
        );
        let reuse = call(
            &server,
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            key,
            Some(json!({ "refresh_token": rt(&s0) })),
        )
        .await;
        assert_eq!(
            (reuse.status.as_u16(), reuse.code()),
            (401, "session_revoked")
        );
    }
    assert_eq!(server.family_revocations(), 2);
}

#[tokio::test]
async fn sign_out_needs_only_the_refresh_token() {
    let server = TestServer::start().await;
    let s0 = sign_in(&server).await;
    let signout = |bearer: Option<&'static str>, body: Value| {
        let server = &server;
        async move {
            call(
                server,
                Method::POST,
                "/api/v1/auth/signout",
                bearer,
                None,
                Some(body),
            )
            .await
        }
    };
    let out = signout(None, json!({ "refresh_token": rt(&s0) })).await;
    assert_eq!(out.status, 204);
    assert_eq!(server.family_revocations(), 1);
    assert_eq!(server.refresh_token_state(rt(&s0)), Some("revoked"));
    let r = refresh(&server, &s0["refresh_token"], "k1").await;
    assert_eq!((r.status.as_u16(), r.code()), (401, "session_revoked"));

    // An unknown bearer, an unknown token, a revoked one: still 204, nothing counted.
    let s1 = sign_in(&server).await;
    let again = signout(Some("not-a-token"), json!({ "refresh_token": rt(&s0) })).await;
    assert_eq!(again.status, 204);
    let unknown = signout(None, json!({ "refresh_token": "rt_unknown" })).await;
    assert_eq!(unknown.status, 204);
    assert_eq!(server.family_revocations(), 1);
    assert_eq!(server.refresh_token_state(rt(&s1)), Some("fresh"));
    assert_eq!(server.expired_token_uses(), 0);

    let missing = signout(None, json!({})).await;
    assert_eq!(
        (missing.status.as_u16(), missing.code()),
        (400, "bad_request")
    );
}

#[tokio::test]
async fn sign_out_with_an_expired_access_token_is_not_refused() {
    let server = TestServer::start().await;
    server.set_token_ttl(0);
    let s0 = sign_in(&server).await;
    let out = call(
        &server,
        Method::POST,
        "/api/v1/auth/signout",
        s0["access_token"].as_str(),
        None,
        Some(json!({ "refresh_token": rt(&s0) })),
    )
    .await;
    assert_eq!(out.status, 204);
    assert_eq!(server.refresh_token_state(rt(&s0)), Some("revoked"));
}

#[tokio::test]
async fn a_held_refresh_is_handled_before_its_response_is_released() {
    let server = TestServer::start().await;
    let s0 = sign_in(&server).await;
    let hold = server.hold("/api/v1/auth/refresh");
    let url = server.url();
    let token = rt(&s0).to_string();
    let pending = tokio::spawn(async move {
        Client::new()
            .post(format!("{url}/api/v1/auth/refresh"))
            .header("idempotency-key", "k1")
            .body(json!({ "refresh_token": token }).to_string())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    guard(hold.handled()).await;
    // Rotated on the server, while the client has nothing yet.
    assert_eq!(server.refresh_token_state(rt(&s0)), Some("used"));
    // Another exchange completes meanwhile; the held one still has no answer.
    sign_in(&server).await;
    assert!(!pending.is_finished());
    hold.handled().await; // already handled: returns at once
    hold.release();
    let session: Value = serde_json::from_str(&guard(pending).await.unwrap()).unwrap();
    assert_eq!(server.refresh_token_state(rt(&session)), Some("fresh"));
    // The hold caught one request only.
    assert_eq!(
        refresh(&server, &session["refresh_token"], "k2")
            .await
            .status,
        200
    );
}

#[test]
fn a_hold_works_from_another_thread_and_runtime_and_releases_when_dropped() {
    let server_rt = tokio::runtime::Runtime::new().unwrap();
    let server = server_rt.block_on(TestServer::start());
    let hold = server.hold("/api/v1/quota");
    let url = server.url();
    let client = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let s = Client::new()
                    .post(format!("{url}/api/v1/auth/anonymous"))
                    .body("{}")
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                let s: Value = serde_json::from_str(&s).unwrap();
                let quota = Client::new()
                    .get(format!("{url}/api/v1/quota"))
                    .bearer_auth(s["access_token"].as_str().unwrap())
                    .send();
                guard(quota).await.unwrap().status()
            })
    });
    let waiter = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(guard(hold.handled()));
        drop(hold);
    });
    waiter.join().unwrap();
    assert_eq!(client.join().unwrap(), 200);
    drop(server);
}

#[tokio::test]
async fn a_hold_released_before_its_request_catches_nothing() {
    let server = TestServer::start().await;
    let early = server.hold("/api/v1/auth/anonymous");
    early.release();
    let later = server.hold("/api/v1/auth/anonymous");
    let url = server.url();
    let pending = tokio::spawn(async move {
        Client::new()
            .post(format!("{url}/api/v1/auth/anonymous"))
            .body("{}")
            .send()
            .await
            .unwrap()
            .status()
    });
    // `later` holds the first request (were it given to `early`, this would never end).
    guard(later.handled()).await;
    assert!(!pending.is_finished());
    drop(later);
    assert_eq!(pending.await.unwrap(), 200);
}

#[tokio::test]
async fn echo_answers_every_method_with_quota_headers_and_no_charge() {
    let server = TestServer::start().await;
    let s0 = sign_in(&server).await;
    let bearer = s0["access_token"].as_str();
    for m in ["GET", "PUT", "PATCH", "DELETE", "POST"] {
        let method = Method::from_bytes(m.as_bytes()).unwrap();
        let a = call(
            &server,
            method,
            "/api/v1/echo",
            bearer,
            None,
            Some(json!({"n": 1})),
        )
        .await;
        assert_eq!(a.status, 200, "{m}");
        assert_eq!(a.body, json!({ "method": m, "body": "{\"n\":1}" }));
        assert_eq!(a.header("ratelimit-remaining"), Some("50"));
    }
    let head = call(&server, Method::HEAD, "/api/v1/echo", bearer, None, None).await;
    assert_eq!(head.status, 200);
    assert!(head.header("ratelimit-limit").is_some());
    assert_eq!(server.charges(), 0);

    let anonymous = call(&server, Method::GET, "/api/v1/echo", None, None, None).await;
    assert_eq!(
        (anonymous.status.as_u16(), anonymous.code()),
        (401, "invalid_token")
    );

    server.fault("/api/v1/echo", Fault::Drop);
    let dropped = Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
        .put(format!("{}/api/v1/echo", server.url()))
        .bearer_auth(bearer.unwrap())
        .send()
        .await;
    assert!(dropped.is_err());
    assert_eq!(server.count("/api/v1/echo"), 8);
}

#[tokio::test]
async fn error_answers_to_authenticated_requests_carry_quota_headers() {
    let server = TestServer::start().await;
    server.set_quota_limit(1);
    let s0 = sign_in(&server).await;
    let bearer = s0["access_token"].as_str();
    let job = json!({ "kind": "transcribe", "input": { "media": "m" } });
    let cases = [
        (Method::GET, "/api/v1/jobs/j_missing", None, None, 404),
        (
            Method::POST,
            "/api/v1/jobs",
            Some("k1"),
            Some(json!({ "kind": "x", "input": {} })),
            422,
        ),
        (Method::POST, "/api/v1/jobs", None, Some(job.clone()), 400),
        (
            Method::POST,
            "/api/v1/jobs",
            Some("k1"),
            Some(job.clone()),
            202,
        ),
        (
            Method::POST,
            "/api/v1/jobs",
            Some("k1"),
            Some(json!({ "kind": "transcribe", "input": { "media": "n" } })),
            422,
        ),
        (Method::POST, "/api/v1/jobs", Some("k2"), Some(job), 402),
    ];
    for (method, path, key, body, status) in cases {
        let a = call(&server, method, path, bearer, key, body).await;
        assert_eq!(a.status, status, "{path} {:?}", a.body);
        assert_eq!(a.header("x-plan"), Some("free"), "{status}");
        assert!(a.header("ratelimit-remaining").is_some(), "{status}");
    }
    assert_eq!(server.charges(), 1);
}

#[tokio::test]
async fn every_response_of_a_window_names_the_same_reset_instant() {
    let server = TestServer::start().await;
    let s0 = sign_in(&server).await;
    let instant = |a: &Answer| {
        let date = httpdate::parse_http_date(a.header("date").unwrap()).unwrap();
        let reset: u64 = a.header("ratelimit-reset").unwrap().parse().unwrap();
        date + Duration::from_secs(reset)
    };
    let bearer = s0["access_token"].as_str();
    let a = call(&server, Method::GET, "/api/v1/quota", bearer, None, None).await;
    server.set_clock_offset(500); // within the token lifetime
    let b = call(&server, Method::GET, "/api/v1/quota", bearer, None, None).await;
    assert_eq!(instant(&a), instant(&b));
}

#[tokio::test]
async fn admin_reports_what_the_server_thinks_of_a_refresh_token() {
    let server = TestServer::start().await;
    let s0 = sign_in(&server).await;
    let state = |token: String| {
        let server = &server;
        async move {
            admin(
                server,
                "refresh-token-state",
                json!({ "refresh_token": token }),
            )
            .await["state"]
                .clone()
        }
    };
    assert_eq!(state(rt(&s0).into()).await, json!("fresh"));
    assert_eq!(state("rt_never".into()).await, Value::Null);
}
