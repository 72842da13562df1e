//! Auth sessions over real HTTP against the fault-injection server.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tether::{AuthState, TetherClient, TetherError};

#[tokio::test]
async fn anonymous_sign_in_saves_the_session_and_restores_it() {
    let env = Env::new().await;
    let c = env.client();
    assert_eq!(c.auth_state(), AuthState::Unknown);
    assert_eq!(c.restore_session().await.unwrap(), AuthState::SignedOut);
    let user = c
        .sign_in_anonymously(Some("device-1".into()), None)
        .await
        .unwrap();
    assert!(user.anonymous);
    assert_eq!(
        c.auth_state(),
        AuthState::SignedIn {
            user_id: user.id.clone(),
            anonymous: true
        }
    );
    assert!(env.store.value().unwrap().contains(&user.id));
    let sent = env.server.requests();
    assert!(sent[0].body.contains("device-1"));

    // A second client (the next app launch) restores it without any network call.
    let before = env.server.requests().len();
    let c2 = env.client();
    assert_eq!(
        c2.restore_session().await.unwrap(),
        AuthState::SignedIn {
            user_id: user.id.clone(),
            anonymous: true
        }
    );
    assert_eq!(env.server.requests().len(), before);
    c2.send(quota_request(), None).await.unwrap();
}

#[tokio::test]
async fn fifty_concurrent_requests_with_a_rejected_token_cause_one_refresh() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let old = c.access_token(None).await.unwrap();
    env.server.expire_access_tokens();
    for r in concurrently(50, || {
        let c = c.clone();
        async move { c.send(quota_request(), None).await }
    })
    .await
    {
        r.unwrap();
    }
    let with_old = env
        .server
        .requests()
        .iter()
        .filter(|r| r.bearer.as_deref() == Some(old.as_str()))
        .count();
    assert!(
        with_old > 1,
        "the calls really ran concurrently ({with_old} used the old token)"
    );
    assert_eq!(env.server.count("/api/v1/auth/refresh"), 1);
    let new = c.access_token(None).await.unwrap();
    assert_ne!(old, new);
    // The rotated session was saved before anyone used it.
    assert!(env.store.value().unwrap().contains(&new));
}

#[tokio::test]
async fn fifty_concurrent_requests_with_an_expiring_token_cause_one_refresh() {
    let env = Env::new().await;
    env.server.set_token_ttl(2);
    let c = env.signed_in().await;
    // Margin = min(60 s skew, lifetime / 2) = 1 s: after 1.1 s every caller sees it stale.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    env.server.set_token_ttl(900);
    for r in concurrently(50, || {
        let c = c.clone();
        async move { c.send(quota_request(), None).await }
    })
    .await
    {
        r.unwrap();
    }
    assert_eq!(env.server.count("/api/v1/auth/refresh"), 1);
    assert_eq!(env.server.expired_token_uses(), 0);
}

#[tokio::test]
async fn a_reused_refresh_token_signs_out() {
    let env = Env::new().await;
    let rec = Arc::new(Recorder::default());
    let c = env.signed_in().await;
    let _sub = c.add_auth_listener(rec.clone());
    let stale_copy = env.store.value().unwrap();

    // The client rotates the refresh token...
    env.server.expire_access_tokens();
    c.send(quota_request(), None).await.unwrap();
    // ...and a stale copy of the old session (e.g. restored from a backup) presents it again.
    let store2 = Arc::new(SharedStore::default());
    use tether::TokenStore;
    store2.save(stale_copy).unwrap();
    let c2 = TetherClient::new(env.config(), store2.clone()).unwrap();
    c2.restore_session().await.unwrap();
    env.server.expire_access_tokens();
    let err = c2.send(quota_request(), None).await.unwrap_err();
    assert_eq!(err, TetherError::SignedOut);
    assert_eq!(c2.auth_state(), AuthState::SignedOut);
    assert_eq!(store2.value(), None);

    // Reuse revoked the whole family: the first client is signed out at its next refresh.
    let err = c.send(quota_request(), None).await.unwrap_err();
    assert_eq!(err, TetherError::SignedOut);
    assert_eq!(env.store.value(), None);
    let ev = rec
        .wait_for(|e| e.contains(&Seen::State(AuthState::SignedOut)))
        .await;
    assert!(ev.contains(&Seen::State(AuthState::SignedOut)), "{ev:?}");
    // Callers now get SignedOut without a network call.
    let n = env.server.requests().len();
    assert_eq!(
        c.access_token(None).await.unwrap_err(),
        TetherError::SignedOut
    );
    assert_eq!(env.server.requests().len(), n);
}

#[tokio::test]
async fn a_503_during_refresh_keeps_the_session() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let state = c.auth_state();
    env.server.expire_access_tokens();
    for _ in 0..4 {
        env.server.fault(
            "/api/v1/auth/refresh",
            Fault::Status {
                status: 503,
                code: "unavailable",
                retry_after: Some(0),
            },
        );
    }
    let err = c.send(quota_request(), None).await.unwrap_err();
    assert!(
        matches!(err, TetherError::Server { status: 503, .. }),
        "{err:?}"
    );
    assert_eq!(c.auth_state(), state);
    assert!(env.store.value().is_some());
    assert_eq!(*env.store.clears.lock().unwrap(), 0);
    // The backend recovers: the same session refreshes and the call succeeds.
    c.send(quota_request(), None).await.unwrap();
    assert_eq!(c.auth_state(), state);
}

#[tokio::test]
async fn a_refresh_whose_response_is_lost_is_replayed_not_reused() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    env.server.expire_access_tokens();
    // The server rotates the token but the response never arrives.
    env.server
        .fault("/api/v1/auth/refresh", Fault::DropAfterHandling);
    c.send(quota_request(), None).await.unwrap();
    let refreshes: Vec<_> = env.server.requests_to("/api/v1/auth/refresh");
    assert_eq!(refreshes.len(), 2);
    assert!(refreshes[0].idempotency_key.is_some());
    assert_eq!(refreshes[0].idempotency_key, refreshes[1].idempotency_key);
    assert!(matches!(c.auth_state(), AuthState::SignedIn { .. }));
}

#[tokio::test]
async fn a_locked_keychain_leaves_the_state_unknown() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let signed_in = c.auth_state();

    // Next launch, during prewarming: the keychain is locked.
    env.store.lock(true);
    let rec = Arc::new(Recorder::default());
    let c2 = env.client();
    let _sub = c2.add_auth_listener(rec.clone());
    assert!(matches!(
        c2.restore_session().await,
        Err(TetherError::Storage { .. })
    ));
    assert_eq!(c2.auth_state(), AuthState::Unknown);
    assert!(matches!(
        c2.send(quota_request(), None).await,
        Err(TetherError::Storage { .. })
    ));
    assert_eq!(c2.auth_state(), AuthState::Unknown);
    assert_eq!(*env.store.clears.lock().unwrap(), 0);

    // Unlocked: the very same client restores the session; it was never signed out.
    env.store.lock(false);
    c2.send(quota_request(), None).await.unwrap();
    assert_eq!(c2.auth_state(), signed_in);
    let ev = rec.wait_for(|e| e.len() >= 2).await;
    assert_eq!(ev.first(), Some(&Seen::State(AuthState::Unknown)));
    assert!(!ev.contains(&Seen::State(AuthState::SignedOut)), "{ev:?}");
}

#[tokio::test]
async fn device_clock_ten_minutes_ahead_causes_no_refresh_storm() {
    let env = Env::new().await;
    // The server is 10 minutes behind the device; tokens live 4 s.
    env.server.set_clock_offset(-600);
    env.server.set_token_ttl(4);
    let c = env.signed_in().await;
    for _ in 0..20 {
        c.send(quota_request(), None).await.unwrap();
    }
    assert_eq!(env.server.count("/api/v1/auth/refresh"), 0);
    let offset = c.server_clock_offset_ms().unwrap();
    assert!((-602_000..=-598_000).contains(&offset), "{offset}");
}

#[tokio::test]
async fn device_clock_ten_minutes_behind_never_uses_an_expired_token() {
    let env = Env::new().await;
    // The server is 10 minutes ahead: by the device clock the token looks valid for 10 more minutes.
    env.server.set_clock_offset(600);
    env.server.set_token_ttl(3);
    let c = env.signed_in().await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    c.send(quota_request(), None).await.unwrap();
    assert_eq!(env.server.count("/api/v1/auth/refresh"), 1);
    assert_eq!(env.server.expired_token_uses(), 0);
}

#[tokio::test]
async fn session_revoked_on_a_request_signs_out() {
    let env = Env::new().await;
    let rec = Arc::new(Recorder::default());
    let c = env.signed_in().await;
    let _sub = c.add_auth_listener(rec.clone());
    env.server.fault(
        "/api/v1/quota",
        Fault::Status {
            status: 401,
            code: "session_revoked",
            retry_after: None,
        },
    );
    assert_eq!(
        c.send(quota_request(), None).await.unwrap_err(),
        TetherError::SignedOut
    );
    assert_eq!(c.auth_state(), AuthState::SignedOut);
    assert_eq!(env.store.value(), None);
    rec.wait_for(|e| e.contains(&Seen::State(AuthState::SignedOut)))
        .await;
    assert!(rec.events().contains(&Seen::State(AuthState::SignedOut)));
}

#[tokio::test]
async fn sign_out_clears_locally_even_when_the_network_is_down() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    c.sign_out().await.unwrap();
    assert_eq!(c.auth_state(), AuthState::SignedOut);
    assert_eq!(env.store.value(), None);
    let signout: Vec<_> = env.server.requests_to("/api/v1/auth/signout");
    assert_eq!(signout.len(), 1);
    assert!(signout[0].body.contains("refresh_token") && signout[0].bearer.is_none());

    let c = env.signed_in().await;
    env.server.fault("/api/v1/auth/signout", Fault::Drop);
    c.sign_out().await.unwrap();
    assert_eq!(c.auth_state(), AuthState::SignedOut);
    assert_eq!(env.store.value(), None);
    assert_eq!(
        c.send(quota_request(), None).await.unwrap_err(),
        TetherError::SignedOut
    );
}

#[tokio::test]
async fn listeners_hear_every_rotation_and_stop_when_dropped() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let rec = Arc::new(Recorder::default());
    let sub = c.add_auth_listener(rec.clone());
    for _ in 0..3 {
        env.server.expire_access_tokens();
        c.send(quota_request(), None).await.unwrap();
    }
    let ev = rec
        .wait_for(|e| e.iter().filter(|s| matches!(s, Seen::Refreshed(_))).count() == 3)
        .await;
    assert!(
        matches!(ev[0], Seen::State(AuthState::SignedIn { .. })),
        "{ev:?}"
    );
    assert_eq!(
        ev.iter()
            .filter(|s| matches!(s, Seen::Refreshed(_)))
            .count(),
        3
    );
    drop(sub);
    c.sign_out().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!rec.events().contains(&Seen::State(AuthState::SignedOut)));
}

#[tokio::test]
async fn tokens_never_appear_in_debug_display_errors_or_logs() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let mut seen = Vec::new();
    seen.push(format!("{c:?} {:?} {:?}", c.auth_state(), c.quota()));
    env.server.expire_access_tokens();
    let reply = c.send(quota_request(), None).await.unwrap();
    seen.push(format!("{reply:?} {:?} {:?}", env.config(), c.quota()));
    for fault in [
        Fault::Status {
            status: 401,
            code: "invalid_token",
            retry_after: None,
        },
        Fault::Status {
            status: 402,
            code: "quota_exceeded",
            retry_after: None,
        },
        Fault::Status {
            status: 503,
            code: "unavailable",
            retry_after: Some(60),
        },
        Fault::Raw {
            status: 500,
            content_type: "text/html",
            body: "<html>".into(),
        },
        Fault::HugeBody {
            bytes: 2 << 20,
            chunked: true,
        },
    ] {
        env.server.fault("/api/v1/quota", fault);
        if let Err(e) = c.send(quota_request(), None).await {
            seen.push(format!("{e} {e:?}"));
        }
    }
    seen.push(format!("{:?}", c.sign_in_anonymously(None, None).await));
    c.sign_out().await.unwrap();
    let e = c.access_token(None).await.unwrap_err();
    seen.push(format!("{e} {e:?}"));
    seen.push(env.logs.text());
    assert!(
        env.logs.text().contains("refreshed"),
        "logs are forwarded:\n{}",
        env.logs.text()
    );

    let mut tokens: Vec<String> = env
        .server
        .requests()
        .into_iter()
        .filter_map(|r| r.bearer)
        .collect();
    for r in env.server.requests() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&r.body) {
            if let Some(t) = v["refresh_token"].as_str() {
                tokens.push(t.to_string());
            }
        }
    }
    assert!(tokens.len() > 5);
    let all = seen.join("\n");
    for t in &tokens {
        // Any 16-character piece of a token would be a leak.
        let piece = &t[t.len() - 16..];
        assert!(
            !all.contains(piece),
            "token piece {piece} leaked into:\n{all}"
        );
    }
}

/// Starts `n` calls at once (all spawned before any is awaited), then collects them.
async fn concurrently<T, F>(n: usize, make: impl Fn() -> F) -> Vec<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = T> + Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|_| tokio::spawn(make())).collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn the_server_clock_offset_survives_a_relaunch() {
    let env = Env::new().await;
    env.server.set_clock_offset(600);
    env.server.set_token_ttl(3);
    let c = env.signed_in().await;
    assert!(c.server_clock_offset_ms().unwrap() > 598_000);
    // Give the blocking write a moment (it is fire-and-forget by design).
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(c);
    // Next launch, same data_dir: the offset is known before any response arrives, so
    // a token that expired by the server's clock is refreshed, never presented.
    let c2 = env.client();
    let offset = c2.server_clock_offset_ms().expect("offset remembered");
    assert!((598_000..=602_000).contains(&offset), "{offset}");
    c2.restore_session().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    c2.send(quota_request(), None).await.unwrap();
    assert_eq!(env.server.expired_token_uses(), 0);
    assert_eq!(env.server.count("/api/v1/auth/refresh"), 1);
    assert!(env.dir.path().join("tether.sqlite3").exists());
}
