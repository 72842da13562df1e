//! The session that cannot be lost: refresh survives cancellation, a kill and a keychain
//! that refuses writes; sign-out wins every race and really revokes on the server; only
//! the backend's `session_revoked` signs a user out. Real HTTP over loopback against the
//! fault-injection server (which replays refreshes like the reference Worker).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tether::{file_token_store, AuthState, CancelHandle, HttpMethod, TetherClient, TetherError};

const REFRESH: &str = "/api/v1/auth/refresh";

fn refresh_keys(env: &Env) -> Vec<Option<String>> {
    env.server.idempotency_keys(REFRESH)
}

#[tokio::test]
async fn a_caller_cancelled_mid_refresh_does_not_stop_the_refresh() {
    let env = Env::new().await;
    env.server.set_replay_window(Duration::from_millis(300));
    let c = env.signed_in().await;
    let user = c.auth_state();
    let spent = env.store.refresh_token().unwrap();
    env.server.expire_access_tokens();
    let hold = env.server.hold(REFRESH);
    let cancel = CancelHandle::new();
    let call = {
        let (c, cancel) = (c.clone(), cancel.clone());
        tokio::spawn(async move { c.send(quota_request(), Some(cancel)).await })
    };
    // The server has rotated the tokens; its answer is held back while the caller leaves.
    hold.handled().await;
    cancel.cancel();
    assert_eq!(call.await.unwrap().unwrap_err(), TetherError::Cancelled);
    hold.release();
    eventually("the refreshed session is saved", || {
        env.store.refresh_token().is_some_and(|t| t != spent)
    })
    .await;
    // Past the replay window, nothing is left to replay: the rotated session was kept.
    tokio::time::sleep(Duration::from_millis(400)).await;
    c.send(quota_request(), None).await.unwrap();
    let relaunched = env.client();
    assert_eq!(relaunched.restore_session().await.unwrap(), user);
    relaunched.send(quota_request(), None).await.unwrap();
    assert_eq!(env.server.family_revocations(), 0);
    assert_eq!(refresh_keys(&env).len(), 1);
}

/// Run as a child process by `a_kill_between_sending_a_refresh_and_saving_it_is_recovered`
/// (does nothing when run as an ordinary test): restores the session from a file store and
/// makes a call whose refresh the parent holds, until the parent kills this process.
#[test]
fn child_waits_on_a_held_refresh() {
    let (Ok(url), Ok(dir)) = (
        std::env::var("TETHER_CHILD_URL"),
        std::env::var("TETHER_CHILD_DIR"),
    ) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let mut cfg = tether::ClientConfig::new(url, "test-app", dir.clone());
        cfg.timeouts.total_ms = 60_000;
        let store = file_token_store(format!("{dir}/session.json"));
        let c = TetherClient::new(cfg, store).unwrap();
        c.restore_session().await.unwrap();
        let _ = c.send(quota_request(), None).await;
    });
    panic!("the parent should have killed this process");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_between_sending_a_refresh_and_saving_it_is_recovered() {
    let env = Env::new().await;
    let dir = env.dir.path().to_str().unwrap().to_string();
    let launch = || {
        let store = file_token_store(format!("{dir}/session.json"));
        TetherClient::new(env.config(), store).unwrap()
    };
    let c = launch();
    c.restore_session().await.unwrap();
    let user = c.sign_in_anonymously(None, None).await.unwrap();
    drop(c);
    env.server.expire_access_tokens();
    let hold = env.server.hold(REFRESH);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_waits_on_a_held_refresh", "--nocapture"])
        .env("TETHER_CHILD_URL", env.server.url())
        .env("TETHER_CHILD_DIR", &dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), hold.handled())
        .await
        .expect("the child sent its refresh");
    child.kill().unwrap();
    child.wait().unwrap();
    drop(hold);

    let c = launch();
    assert_eq!(
        c.restore_session().await.unwrap(),
        AuthState::SignedIn {
            user_id: user.id.clone(),
            anonymous: true
        }
    );
    c.send(quota_request(), None).await.unwrap();
    assert_eq!(env.server.family_revocations(), 0);
    let keys = refresh_keys(&env);
    assert_eq!(keys.len(), 2, "the killed refresh, then its replay");
    assert_eq!(keys[0], keys[1]);
}

#[tokio::test]
async fn a_refresh_that_cannot_be_recorded_is_not_sent() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let user = c.auth_state();
    env.server.expire_access_tokens();
    env.store.script_saves(&[SaveStep::Fail]);
    let err = c.send(quota_request(), None).await.unwrap_err();
    assert!(matches!(err, TetherError::Storage { .. }), "{err:?}");
    assert_eq!(
        refresh_keys(&env).len(),
        0,
        "nothing sent that could not be recovered"
    );
    assert_eq!(c.auth_state(), user);
    // The keychain accepts writes again: the same session refreshes.
    c.send(quota_request(), None).await.unwrap();
    assert_eq!(env.server.family_revocations(), 0);
}

#[tokio::test]
async fn a_refreshed_session_whose_save_fails_survives_a_relaunch() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let user = c.auth_state();
    env.server.expire_access_tokens();
    let saves = env.store.saves_begun();
    // The recovery record is saved; the rotated session's save is refused, and so is the
    // retry of that save on the next use.
    env.store
        .script_saves(&[SaveStep::Ok, SaveStep::Fail, SaveStep::Fail]);
    c.send(quota_request(), None).await.unwrap();
    assert_eq!(c.auth_state(), user);
    eventually("the save was retried (and refused)", || {
        env.store.saves_begun() == saves + 3
    })
    .await;
    assert!(env.store.value().unwrap().contains("pending_refresh"));

    let relaunched = env.client();
    assert_eq!(relaunched.restore_session().await.unwrap(), user);
    relaunched.send(quota_request(), None).await.unwrap();
    c.send(quota_request(), None).await.unwrap();
    assert_eq!(env.server.family_revocations(), 0);
    let keys = refresh_keys(&env);
    assert_eq!(
        keys.len(),
        2,
        "the refresh, then its replay by the relaunch"
    );
    assert_eq!(keys[0], keys[1]);
}

#[tokio::test]
async fn a_save_that_failed_is_retried_on_the_next_use() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    env.server.expire_access_tokens();
    let saves = env.store.saves_begun();
    env.store
        .script_saves(&[SaveStep::Ok, SaveStep::Fail, SaveStep::Fail]);
    c.send(quota_request(), None).await.unwrap();
    eventually("the save was retried (and refused)", || {
        env.store.saves_begun() == saves + 3
    })
    .await;
    assert!(env.store.value().unwrap().contains("pending_refresh"));
    c.send(quota_request(), None).await.unwrap();
    eventually("the session is saved on the next use", || {
        env.store
            .value()
            .is_some_and(|v| !v.contains("pending_refresh"))
    })
    .await;
    assert_eq!(refresh_keys(&env).len(), 1);
}

#[tokio::test]
async fn sign_out_during_a_slow_save_stays_signed_out() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let rec = Arc::new(Recorder::default());
    let _sub = c.add_auth_listener(rec.clone());
    env.server.expire_access_tokens();
    let saves = env.store.saves_begun();
    env.store
        .script_saves(&[SaveStep::Ok, SaveStep::Delay(Duration::from_millis(400))]);
    let call = {
        let c = c.clone();
        tokio::spawn(async move { c.send(quota_request(), None).await })
    };
    eventually("the rotated session's save began", || {
        env.store.saves_begun() == saves + 2
    })
    .await;
    c.sign_out().await.unwrap();
    let _ = call.await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(c.auth_state(), AuthState::SignedOut);
    assert_eq!(env.store.value(), None);
    rec.wait_for(|e| e.last() == Some(&Seen::State(AuthState::SignedOut)))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rec.last(), Some(Seen::State(AuthState::SignedOut)));
}

#[tokio::test]
async fn sign_out_during_a_slow_restore_stays_signed_out() {
    let env = Env::new().await;
    env.signed_in().await;
    *env.store.load_delay.lock().unwrap() = Some(Duration::from_millis(300));
    let c = env.client();
    let rec = Arc::new(Recorder::default());
    let _sub = c.add_auth_listener(rec.clone());
    let restore = {
        let c = c.clone();
        tokio::spawn(async move { c.restore_session().await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.sign_out().await.unwrap();
    let _ = restore.await.unwrap();
    assert_eq!(c.auth_state(), AuthState::SignedOut);
    assert_eq!(env.store.value(), None);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rec.last(), Some(Seen::State(AuthState::SignedOut)));
}

#[tokio::test]
async fn sign_out_with_an_expired_access_token_revokes_the_family() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let rt = env.store.refresh_token().unwrap();
    env.server.expire_access_tokens();
    c.sign_out().await.unwrap();
    assert_eq!(env.server.refresh_token_state(&rt), Some("revoked"));
    assert_eq!(env.server.family_revocations(), 1);
}

#[tokio::test]
async fn sign_out_before_restore_revokes_the_stored_session() {
    let env = Env::new().await;
    env.signed_in().await;
    let rt = env.store.refresh_token().unwrap();
    // Next launch: the app signs out before restoring.
    let c = env.client();
    c.sign_out().await.unwrap();
    assert_eq!(c.auth_state(), AuthState::SignedOut);
    assert_eq!(env.store.value(), None);
    assert_eq!(env.server.refresh_token_state(&rt), Some("revoked"));
}

#[tokio::test]
async fn refusals_from_the_refresh_endpoint_other_than_revocation_keep_the_session() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let user = c.auth_state();
    env.server.expire_access_tokens();
    env.server.fault(
        REFRESH,
        Fault::Raw {
            status: 403,
            content_type: "text/html",
            body: "<html><body>Access denied by proxy</body></html>".into(),
        },
    );
    let err = c.send(quota_request(), None).await.unwrap_err();
    assert!(matches!(err, TetherError::Forbidden { .. }), "{err:?}");
    env.server.fault(
        REFRESH,
        Fault::Status {
            status: 400,
            code: "bad_request",
            retry_after: None,
        },
    );
    let err = c.send(quota_request(), None).await.unwrap_err();
    assert!(matches!(err, TetherError::InvalidInput { .. }), "{err:?}");
    assert_eq!(c.auth_state(), user);
    assert_eq!(*env.store.clears.lock().unwrap(), 0);
    // Both failed before the rotation: the next refresh replays the same key and works.
    c.send(quota_request(), None).await.unwrap();
    assert_eq!(env.server.family_revocations(), 0);
}

#[tokio::test]
async fn twenty_callers_during_a_refresh_outage_share_one_refresh() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    env.server.expire_access_tokens();
    for _ in 0..4 {
        env.server.fault(
            REFRESH,
            Fault::Status {
                status: 503,
                code: "unavailable",
                retry_after: Some(1),
            },
        );
    }
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.send(quota_request(), None).await })
        })
        .collect();
    for call in calls {
        let err = call.await.unwrap().unwrap_err();
        assert!(
            matches!(err, TetherError::Server { status: 503, .. }),
            "{err:?}"
        );
    }
    // One shared refresh of four attempts (the retry policy), not one per caller.
    assert_eq!(refresh_keys(&env).len(), 4);
    assert!(matches!(c.auth_state(), AuthState::SignedIn { .. }));
}

#[tokio::test]
async fn sign_in_while_the_saved_session_is_unreadable_does_not_replace_it() {
    let env = Env::new().await;
    env.signed_in().await;
    let saved = env.store.value();
    env.store.lock(true);
    let c = env.client();
    let err = c.sign_in_anonymously(None, None).await.unwrap_err();
    assert!(matches!(err, TetherError::Storage { .. }), "{err:?}");
    assert_eq!(env.server.count("/api/v1/auth/anonymous"), 1);
    env.store.lock(false);
    assert_eq!(env.store.value(), saved);
}

#[tokio::test]
async fn a_stored_session_of_a_newer_format_is_left_in_place() {
    let env = Env::new().await;
    let newer = r#"{"v":99,"something":"else"}"#.to_string();
    tether::TokenStore::save(env.store.as_ref(), newer.clone()).unwrap();
    let c = env.client();
    assert_eq!(c.restore_session().await.unwrap(), AuthState::SignedOut);
    assert_eq!(env.store.value(), Some(newer));
    assert_eq!(*env.store.clears.lock().unwrap(), 0);
}

#[tokio::test]
async fn a_new_session_that_cannot_be_saved_is_not_adopted() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let before = (c.auth_state(), env.store.value());
    env.store.script_saves(&[SaveStep::Fail]);
    let err = c.sign_in_anonymously(None, None).await.unwrap_err();
    assert!(matches!(err, TetherError::Storage { .. }), "{err:?}");
    assert_eq!((c.auth_state(), env.store.value()), before);
    // The orphaned session was revoked on the server rather than left live.
    assert_eq!(env.server.family_revocations(), 1);
    c.send(quota_request(), None).await.unwrap();
}

#[tokio::test]
async fn only_replay_safe_requests_are_retried_after_they_may_have_been_sent() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    env.server.fault("/api/v1/echo", Fault::Drop);
    let mut patch = quota_request();
    (patch.method, patch.path) = (HttpMethod::Patch, "echo".into());
    patch.json_body = Some("{}".into());
    let err = c.send(patch.clone(), None).await.unwrap_err();
    assert!(matches!(err, TetherError::Network { .. }), "{err:?}");
    assert_eq!(env.server.count("/api/v1/echo"), 1);
    // With a key, the same PATCH is safe to send again.
    env.server.fault("/api/v1/echo", Fault::Drop);
    patch.idempotency_key = Some("patch-key-1".into());
    c.send(patch, None).await.unwrap();
    assert_eq!(env.server.count("/api/v1/echo"), 3);
    assert_eq!(
        env.server.idempotency_keys("/api/v1/echo")[1..],
        [Some("patch-key-1".into()), Some("patch-key-1".into())]
    );
    env.server.fault("/api/v1/quota", Fault::Drop);
    c.send(quota_request(), None).await.unwrap();
    assert_eq!(env.server.count("/api/v1/quota"), 2);
}

#[tokio::test]
async fn send_refuses_auth_paths() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let n = env.server.requests().len();
    for path in [
        "auth/refresh",
        "/auth/signout",
        "AUTH/anonymous",
        "%61uth/refresh",
    ] {
        let mut req = quota_request();
        (req.method, req.path) = (HttpMethod::Post, path.into());
        let err = c.send(req, None).await.unwrap_err();
        assert!(
            matches!(err, TetherError::InvalidInput { .. }),
            "{path}: {err:?}"
        );
    }
    assert_eq!(env.server.requests().len(), n);
}
