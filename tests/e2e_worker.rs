//! End to end: the Rust client against the reference Worker (`worker/`, in workerd via
//! `wrangler dev`, stand-ins for the models). `#[ignore]`d in plain `cargo test`; run by
//! `scripts/e2e`, which starts the Worker and sets `TETHER_E2E_URL`.
//!
//! The Worker cannot be scripted like the fault-injection server, so these tests drive
//! the paths that need no injection: sign-in, quota headers, a metered call, the paywall
//! at the configured limit (`QUOTA_LIMIT_FREE=3`), a rejected access token refreshed and
//! retried once, refresh-token reuse signing out, and sign-out (also once the access token
//! has expired: the tenant `dev.tether.e2e.short-ttl` gets 2-second tokens from
//! `scripts/e2e`), an image decoded to a PNG file and a `transcribe` job run to the end
//! through the Worker's queue, and an image upload: a real JPEG (sideways, with GPS) through
//! `detect` and `vision`, the Worker reading the size of what it received, and a chat reply
//! streamed from the Worker into the history.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::sync::Arc;

use common::*;
use tether::{ApiRequest, AuthState, HttpMethod, TetherClient, TetherError, TokenStore};

fn url() -> String {
    std::env::var("TETHER_E2E_URL").expect("TETHER_E2E_URL (run through scripts/e2e)")
}

/// The tenant whose access tokens live 2 s (`TENANT_LIMITS` in `scripts/e2e`).
const SHORT_TTL_TENANT: &str = "dev.tether.e2e.short-ttl";

fn client(store: Arc<SharedStore>, dir: &tempfile::TempDir) -> Arc<TetherClient> {
    client_for("dev.tether.e2e", store, dir)
}

fn client_for(tenant: &str, store: Arc<SharedStore>, dir: &tempfile::TempDir) -> Arc<TetherClient> {
    let mut cfg = config(&url(), dir);
    cfg.client_id = tenant.into();
    TetherClient::new(cfg, store).unwrap()
}

/// A plain reqwest client for calls outside Tether (plain http on loopback). reqwest wants a
/// TLS config even so, and the library builds it without a default crypto provider (it
/// hands reqwest its own config, src/transport/tls.rs): give this one ring's.
fn http() -> reqwest::Client {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap()
}

/// A request straight to the Worker, outside the client: (status, body).
async fn raw(
    method: reqwest::Method,
    path: &str,
    tenant: &str,
    bearer: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = http()
        .request(method, format!("{}/api/v1/{path}", url()))
        .header("X-Client-ID", tenant)
        .header("User-Agent", "tether-e2e/1 (test)");
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req
            .header("Content-Type", "application/json")
            .body(body.to_string());
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// A later launch whose token store holds a copy of `stored` with its access token
/// replaced: the server will reject that token, so the client must refresh.
async fn relaunch_with_token(
    stored: &str,
    access_token: &str,
    dir: &tempfile::TempDir,
) -> (Arc<TetherClient>, Arc<SharedStore>) {
    let mut v: serde_json::Value = serde_json::from_str(stored).unwrap();
    v["access_token"] = access_token.into();
    let store = Arc::new(SharedStore::default());
    store.save(v.to_string()).unwrap();
    let c = client(store.clone(), dir);
    c.restore_session().await.unwrap();
    (c, store)
}

#[tokio::test]
#[ignore = "needs the reference Worker: scripts/e2e"]
async fn sign_in_quota_metered_call_and_paywall() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SharedStore::default());
    let c = client(store.clone(), &dir);
    c.restore_session().await.unwrap();
    let user = c
        .sign_in_anonymously(Some("e2e-device".into()), None)
        .await
        .unwrap();
    assert!(user.anonymous);
    assert!(
        c.server_clock_offset_ms().is_some(),
        "the Worker's Date header was read"
    );

    let q = c.send(quota_request(), None).await.unwrap();
    let body: serde_json::Value = serde_json::from_str(&q.body).unwrap();
    assert_eq!(body["limit"], 3);
    assert!(q.request_id.is_some(), "X-Request-ID");
    let seen = c.quota();
    assert_eq!(
        (seen.plan.as_deref(), seen.limit, seen.remaining),
        (Some("free"), Some(3), Some(3))
    );

    let job = c.send(job_request(), None).await.unwrap();
    assert_eq!(job.status, 202);
    let id = serde_json::from_str::<serde_json::Value>(&job.body).unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let get = ApiRequest {
        method: HttpMethod::Get,
        path: format!("jobs/{id}"),
        json_body: None,
        authenticated: true,
        idempotency_key: None,
    };
    let status = c.send(get, None).await.unwrap();
    assert!(status.body.contains(&id));
    assert_eq!(c.quota().remaining, Some(2));

    c.send(job_request(), None).await.unwrap();
    c.send(job_request(), None).await.unwrap();
    match c.send(job_request(), None).await {
        Err(TetherError::PlanRequired {
            plan_required,
            quota,
            request_id,
        }) => {
            assert_eq!(plan_required.as_deref(), Some("pro"));
            assert_eq!(quota.map(|q| q.remaining), Some(0));
            assert!(request_id.is_some());
        }
        other => panic!("expected PlanRequired, got {other:?}"),
    }
    assert_eq!(c.quota().remaining, Some(0));
    assert_eq!(c.quota().paywall.as_deref(), Some("pro"));
}

#[tokio::test]
#[ignore = "needs the reference Worker: scripts/e2e"]
async fn a_rejected_token_is_refreshed_once_and_reuse_signs_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SharedStore::default());
    let c = client(store.clone(), &dir);
    c.restore_session().await.unwrap();
    c.sign_in_anonymously(None, None).await.unwrap();
    let original = store.value().unwrap();

    // Next launch with a corrupted access token (its signature no longer verifies).
    let v: serde_json::Value = serde_json::from_str(&original).unwrap();
    let at = v["access_token"].as_str().unwrap().to_string();
    let bad = format!(
        "{}{}",
        &at[..at.len() - 2],
        if at.ends_with("AA") { "BB" } else { "AA" }
    );
    let (c2, tampered) = relaunch_with_token(&original, &bad, &dir).await;
    let rec = Arc::new(Recorder::default());
    let _sub = c2.add_auth_listener(rec.clone());
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let c2 = c2.clone();
            tokio::spawn(async move { c2.send(quota_request(), None).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().status, 200);
    }
    let refreshed = rec
        .wait_for(|e| e.iter().any(|s| matches!(s, Seen::Refreshed(_))))
        .await;
    assert_eq!(
        refreshed
            .iter()
            .filter(|s| matches!(s, Seen::Refreshed(_)))
            .count(),
        1,
        "{refreshed:?}"
    );
    let rotated = tampered.value().unwrap();
    assert!(!rotated.contains(&bad));

    // The first client still holds the refresh token c2 just used: presenting it again is
    // reuse, which revokes the family. Force a refresh by rejecting its token the same way.
    let (c3, stale) = relaunch_with_token(&original, &bad, &dir).await;
    assert_eq!(
        c3.send(quota_request(), None).await.unwrap_err(),
        TetherError::SignedOut
    );
    assert_eq!(c3.auth_state(), AuthState::SignedOut);
    assert_eq!(stale.value(), None);
    // The whole family is revoked: c2's rotated session cannot refresh any more either.
    let (c4, _) = relaunch_with_token(&rotated, "not.a.token", &dir).await;
    assert_eq!(
        c4.send(quota_request(), None).await.unwrap_err(),
        TetherError::SignedOut
    );
}

#[tokio::test]
#[ignore = "needs the reference Worker: scripts/e2e"]
async fn sign_out_revokes_the_refresh_token() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SharedStore::default());
    let c = client(store.clone(), &dir);
    c.restore_session().await.unwrap();
    c.sign_in_anonymously(None, None).await.unwrap();
    let blob = store.value().unwrap();
    c.sign_out().await.unwrap();
    assert_eq!(store.value(), None);

    // A copy of the signed-out session cannot be brought back to life.
    let (c2, _) = relaunch_with_token(&blob, "not.a.token", &dir).await;
    assert_eq!(
        c2.send(quota_request(), None).await.unwrap_err(),
        TetherError::SignedOut
    );
}

#[tokio::test]
#[ignore = "needs the reference Worker: scripts/e2e"]
async fn sign_out_after_the_access_token_expired_revokes_the_family() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SharedStore::default());
    let c = client_for(SHORT_TTL_TENANT, store.clone(), &dir);
    c.restore_session().await.unwrap();
    c.sign_in_anonymously(None, None).await.unwrap();
    let stored: serde_json::Value = serde_json::from_str(&store.value().unwrap()).unwrap();
    let access = stored["access_token"].as_str().unwrap().to_string();
    let refresh = stored["refresh_token"].as_str().unwrap().to_string();

    // Wait until the Worker itself rejects the access token (2-second tokens for this
    // tenant), so the sign-out below really carries an expired bearer.
    let mut expired = false;
    for _ in 0..40 {
        let (status, body) = raw(
            reqwest::Method::GET,
            "quota",
            SHORT_TTL_TENANT,
            Some(&access),
            None,
        )
        .await;
        if status == 401 {
            assert_eq!(body["error"]["code"], "invalid_token", "{body}");
            expired = true;
            break;
        }
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(
        expired,
        "the access token never expired: is TENANT_LIMITS set by scripts/e2e?"
    );

    c.sign_out().await.unwrap();
    assert_eq!(store.value(), None);
    assert_eq!(c.auth_state(), AuthState::SignedOut);

    // The server revoked the family: a copy of the old session's refresh token is dead.
    let (status, body) = raw(
        reqwest::Method::POST,
        "auth/refresh",
        SHORT_TTL_TENANT,
        None,
        Some(serde_json::json!({ "refresh_token": refresh })),
    )
    .await;
    // Only the error part of the body in a failure message: a 200 would hold live tokens.
    assert_eq!(
        status, 401,
        "the refresh was not refused: {}",
        body["error"]
    );
    assert_eq!(
        body["error"]["code"], "session_revoked",
        "{}",
        body["error"]
    );
}

#[tokio::test]
#[ignore = "needs the reference Worker: scripts/e2e"]
async fn the_purchase_flow_raises_and_lifts_the_paywall() {
    let dir = tempfile::tempdir().unwrap();
    let c = client(Arc::new(SharedStore::default()), &dir);
    c.restore_session().await.unwrap();
    let user = c.sign_in_anonymously(None, None).await.unwrap();
    let mut refused = None;
    for _ in 0..10 {
        if let Err(e) = c.send(job_request(), None).await {
            refused = Some(e);
            break;
        }
    }
    assert!(
        matches!(refused, Some(TetherError::PlanRequired { .. })),
        "{refused:?}"
    );
    let q = c.quota();
    assert_eq!((q.paywall.as_deref(), q.remaining), (Some("pro"), Some(0)));
    // Fail-fast while the paywall is up.
    assert!(matches!(
        c.send(job_request(), None).await,
        Err(TetherError::PlanRequired { .. })
    ));

    // The purchase backend raises the plan through the Worker's operator path.
    let token = std::env::var("TETHER_E2E_ADMIN_TOKEN").expect("TETHER_E2E_ADMIN_TOKEN");
    let res = http()
        .post(format!("{}/admin/v1/users/{}/plan", url(), user.id))
        .bearer_auth(token)
        .header("X-Client-ID", "dev.tether.e2e")
        .header("Content-Type", "application/json")
        .body(r#"{"plan":"pro"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);

    let q = c.refresh_quota(None).await.unwrap();
    assert_eq!(
        (q.plan.as_deref(), q.paywall.as_deref(), q.source),
        (Some("pro"), None, tether::QuotaSource::Server)
    );
    assert!(q.remaining.unwrap() > 0);
    assert_eq!(c.send(job_request(), None).await.unwrap().status, 202);
    assert_eq!(c.quota().plan.as_deref(), Some("pro"));
}

/// A real PNG from the Worker (its stand-in model's JPEG converted by the Images binding)
/// decoded to a file, its signature and IHDR checked; a `transcribe` job queued on the
/// Worker's queue, waited on to the end through `wait_for_job`.
#[tokio::test]
#[ignore = "needs the Worker: run scripts/e2e"]
async fn an_image_is_decoded_and_a_transcribe_job_runs_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let c = client(Arc::new(SharedStore::default()), &dir);
    c.restore_session().await.unwrap();
    c.sign_in_anonymously(None, None).await.unwrap();

    let img = c
        .generate_image(
            "a lighthouse at dusk".into(),
            Some(tether::ImageOptions {
                width: Some(320),
                height: Some(100),
                path: None,
            }),
            None,
        )
        .await
        .unwrap();
    let bytes = std::fs::read(&img.path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    assert_eq!((be(16), be(20)), (img.width, img.height));
    assert_eq!(
        (img.width, img.height),
        (320, 256),
        "the Worker clamps 100 to 256"
    );
    assert_eq!(bytes.len(), img.byte_size as usize);
    assert!(!img.model.is_empty());

    let job = c
        .submit_job(
            "transcribe".into(),
            r#"{"url":"https://example.com/talk.mp3"}"#.into(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(job.status, tether::JobStatus::Queued);
    let done = c
        .wait_for_job(job.id.clone(), Arc::new(Quiet), None)
        .await
        .unwrap();
    assert_eq!(done.status, tether::JobStatus::Succeeded, "{done:?}");
    let result: serde_json::Value =
        serde_json::from_str(done.result_json.as_deref().unwrap()).unwrap();
    assert!(result["text"].is_string(), "{result}");
    assert_eq!(
        c.pending_jobs(None).await.unwrap(),
        Vec::<tether::JobInfo>::new()
    );
    let err = c.job("j_nope".into(), None).await.unwrap_err();
    assert!(
        matches!(err, TetherError::InvalidInput { ref code, .. } if code == "not_found"),
        "{err:?}"
    );
}

/// A job listener that ignores what it hears.
struct Quiet;

impl tether::JobListener for Quiet {
    fn on_status_changed(&self, _job: tether::JobInfo) {}
}

/// Records the upload progress calls.
#[derive(Default)]
struct Progress(std::sync::Mutex<Vec<(u32, u32, u32)>>);

impl tether::UploadProgress for Progress {
    fn on_progress(&self, attempt: u32, sent: u32, total: u32) {
        self.0.lock().unwrap().push((attempt, sent, total));
    }
}

#[tokio::test]
#[ignore = "needs the reference Worker: scripts/e2e"]
async fn a_real_jpeg_is_uploaded_upright_to_detect_and_vision() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SharedStore::default());
    let c = client(store.clone(), &dir);
    c.restore_session().await.unwrap();
    c.sign_in_anonymously(None, None).await.unwrap();
    // 1600x800 as stored, orientation 6 (upright it is 800x1600), GPS in its EXIF.
    let photo = tether_test_server::sample::sideways_photo(1600, 800);
    let path = dir.path().join("IMG_0001.JPG");
    std::fs::write(&path, &photo).unwrap();
    let image = || tether::ImageSource::File {
        path: path.to_str().unwrap().into(),
    };
    let progress = Arc::new(Progress::default());
    let d = c
        .detect(image(), None, Some(progress.clone()), None)
        .await
        .unwrap();
    assert_eq!(d.model, "standin-detect");
    assert!(!d.objects.is_empty(), "{d:?}");
    for o in &d.objects {
        let b = &o.bounding_box;
        assert!(
            (0.0..=1.0).contains(&o.score) && b.x >= 0.0 && b.y >= 0.0 && b.x + b.width <= 1.0,
            "{o:?}"
        );
    }
    assert_eq!((d.image.width, d.image.height), (512, 1024));
    assert!(d.image.resized && d.image.metadata_stripped);
    let calls = progress.0.lock().unwrap().clone();
    let last = *calls.last().unwrap();
    assert!(last.0 == 1 && last.1 == last.2, "{calls:?}");
    assert_eq!(c.quota().remaining, Some(2), "charged once");

    // The Worker decodes the header of what it received: upright and downscaled.
    let v = c
        .vision(image(), "What is on top?".into(), None, None, None)
        .await
        .unwrap();
    assert!(
        v.response.contains("a 512x1024 JPEG image"),
        "the Worker saw: {}",
        v.response
    );
    assert!(v.response.contains("What is on top?"));

    // Refused on the device: nothing reaches the Worker, nothing is charged.
    let gif = tether::ImageSource::Bytes {
        data: b"GIF89a\x01\x00\x01\x00\x00\x00".to_vec(),
    };
    let e = c.detect(gif, None, None, None).await.unwrap_err();
    assert!(matches!(e, TetherError::UnsupportedMedia { .. }), "{e:?}");
    c.detect(image(), None, None, None).await.unwrap();
    match c.detect(image(), None, None, None).await {
        Err(TetherError::PlanRequired { plan_required, .. }) => {
            assert_eq!(plan_required.as_deref(), Some("pro"))
        }
        other => panic!("expected PlanRequired, got {other:?}"),
    }
}

/// Records what a chat listener hears.
#[derive(Default)]
struct ChatLog {
    deltas: std::sync::Mutex<Vec<String>>,
}

impl tether::ChatListener for ChatLog {
    fn on_delta(&self, _message_id: String, text: String) {
        self.deltas.lock().unwrap().push(text);
    }
    fn on_complete(&self, _message: tether::Message) {}
    fn on_error(&self, _message_id: String, _error: TetherError) {}
}

/// A reply streamed from the Worker (Workers AI SSE shape, stand-in model) lands in the
/// history whole; a stream the model breaks off (`event: error`) is kept as `Failed` with
/// the text that had arrived.
#[tokio::test]
#[ignore = "needs the Worker: run scripts/e2e"]
async fn a_reply_streams_from_the_worker_into_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let c = client(Arc::new(SharedStore::default()), &dir);
    c.restore_session().await.unwrap();
    c.sign_in_anonymously(None, None).await.unwrap();
    let conv = c
        .create_conversation("e2e".into(), Some("Be brief.".into()))
        .await
        .unwrap();
    let log = Arc::new(ChatLog::default());
    let reply = c
        .send_message(
            conv.id.clone(),
            "Tell me about streaming.".into(),
            None,
            log.clone(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(reply.status, tether::MessageStatus::Complete);
    assert!(!reply.content.is_empty());
    assert_eq!(log.deltas.lock().unwrap().concat(), reply.content);
    assert!(
        reply.usage.is_some_and(|u| u.completion_tokens > 0),
        "{:?}",
        reply.usage
    );
    let page = c
        .list_messages(conv.id.clone(), tether::PageAt::Newest, 10)
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 2);
    assert_eq!(page.messages[1], reply);
    assert!(
        c.quota().remaining.is_some(),
        "the chat response's quota headers were read"
    );

    let broken = c
        .send_message(
            conv.id.clone(),
            "standin:break please".into(),
            None,
            log.clone(),
            None,
        )
        .await;
    let page = c
        .list_messages(conv.id.clone(), tether::PageAt::Newest, 1)
        .await
        .unwrap();
    let m = &page.messages[0];
    assert!(broken.is_err(), "{broken:?}");
    assert_eq!(m.status, tether::MessageStatus::Failed, "{m:?}");
    assert!(!m.content.is_empty(), "the words before the break are kept");
    assert!(m.error.is_some());
}
