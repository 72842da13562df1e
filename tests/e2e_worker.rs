//! End to end: the Rust client against the reference Worker (`worker/`, in workerd via
//! `wrangler dev`, stand-ins for the models). `#[ignore]`d in plain `cargo test`; run by
//! `scripts/e2e`, which starts the Worker and sets `TETHER_E2E_URL`.
//!
//! The Worker cannot be scripted like the fault-injection server, so these tests drive
//! the paths that need no injection: sign-in, quota headers, a metered call, the paywall
//! at the configured limit (`QUOTA_LIMIT_FREE=3`), a rejected access token refreshed and
//! retried once, refresh-token reuse signing out, and sign-out (also once the access token
//! has expired: the tenant `dev.tether.e2e.short-ttl` gets 2-second tokens from
//! `scripts/e2e`).
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

/// A request straight to the Worker, outside the client: (status, body).
async fn raw(
    method: reqwest::Method,
    path: &str,
    tenant: &str,
    bearer: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new()
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
    let seen = c.last_quota().unwrap();
    assert_eq!(
        (seen.plan.as_str(), seen.limit, seen.remaining),
        ("free", 3, 3)
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
    assert_eq!(c.last_quota().unwrap().remaining, 2);

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
    assert_eq!(c.last_quota().unwrap().remaining, 0);
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
        c.last_quota().is_some(),
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
