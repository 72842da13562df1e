//! Quota and paywall state over real HTTP against the fault-injection server, with real
//! SQLite files: fed by every response, persisted and restored, right offline, raised by
//! a 402 and lifted by a purchase, failing fast without a request, never raised back by a
//! stale response, announced to a slow listener without slowing anyone.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use common::*;
use tether::{QuotaListener, QuotaSource, QuotaState, TetherError};

const JOBS: &str = "/api/v1/jobs";

#[derive(Default)]
struct Heard {
    states: Mutex<Vec<QuotaState>>,
    paywalls: Mutex<Vec<String>>,
    /// While true, every call blocks (a listener stuck on the main thread).
    blocked: Mutex<bool>,
    unblocked: Condvar,
}

impl Heard {
    fn block(&self, on: bool) {
        *self.blocked.lock().unwrap() = on;
        self.unblocked.notify_all();
    }
    fn wait_unblocked(&self) {
        let mut b = self.blocked.lock().unwrap();
        while *b {
            b = self.unblocked.wait(b).unwrap();
        }
    }
    fn last(&self) -> Option<QuotaState> {
        self.states.lock().unwrap().last().cloned()
    }
}

impl QuotaListener for Heard {
    fn on_quota_changed(&self, state: QuotaState) {
        self.wait_unblocked();
        self.states.lock().unwrap().push(state);
    }
    fn on_paywall(&self, plan_required: String, _state: QuotaState) {
        self.wait_unblocked();
        self.paywalls.lock().unwrap().push(plan_required);
    }
}

async fn spend_all(c: &tether::TetherClient) -> TetherError {
    for _ in 0..100 {
        if let Err(e) = c.send(job_request(), None).await {
            return e;
        }
    }
    panic!("the quota never ran out");
}

#[tokio::test]
async fn every_response_updates_the_state_and_a_new_client_starts_from_the_saved_copy() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    assert_eq!(c.quota().source, QuotaSource::Unknown);
    c.send(job_request(), None).await.unwrap();
    let q = c.quota();
    assert_eq!(
        (q.plan.as_deref(), q.limit, q.remaining, q.source),
        (Some("free"), Some(50), Some(49), QuotaSource::Server)
    );
    assert!(q.reset_at.is_some() && q.updated_at.is_some());
    // A response without quota headers leaves the state alone.
    env.server.fault(
        "/api/v1/echo",
        Fault::Raw {
            status: 200,
            content_type: "application/json",
            body: "{}".into(),
        },
    );
    let mut echo = quota_request();
    echo.path = "echo".into();
    c.send(echo, None).await.unwrap();
    assert_eq!(c.quota(), q);

    // The next launch knows where it stands before its first request.
    eventually("the state is saved", || {
        let relaunched = env.client();
        let r = relaunched.quota();
        r.source == QuotaSource::Cached && r.remaining == Some(49)
    })
    .await;
    let relaunched = env.client();
    let r = relaunched.quota();
    assert_eq!((r.plan, r.limit, r.reset_at), (q.plan, q.limit, q.reset_at));
}

#[tokio::test]
async fn a_paying_user_offline_keeps_the_plan_and_never_sees_a_paywall() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    env.server.set_plan("pro", 5000);
    let q = c.refresh_quota(None).await.unwrap();
    assert_eq!((q.plan.as_deref(), q.paywall), (Some("pro"), None));
    assert_eq!(q.features, ["detect", "chat", "vision"]);
    eventually("the pro plan is saved", || {
        env.client().quota().plan.as_deref() == Some("pro")
    })
    .await;

    // Next launch, offline: nothing listens on the configured port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = env.config();
    cfg.base_url = format!("http://{}", port.local_addr().unwrap());
    drop(port);
    cfg.retry.max_attempts = 1;
    let offline = env.client_with(cfg);
    offline.restore_session().await.unwrap();
    let q = offline.quota();
    assert_eq!(
        (q.plan.as_deref(), q.paywall.clone(), q.source),
        (Some("pro"), None, QuotaSource::Cached)
    );
    let err = offline.send(job_request(), None).await.unwrap_err();
    assert!(matches!(err, TetherError::Network { .. }), "{err:?}");
    assert_eq!(offline.quota().paywall, None);
}

#[tokio::test]
async fn the_purchase_flow_raises_and_lifts_the_paywall() {
    let env = Env::new().await;
    env.server.set_quota_limit(2);
    let c = env.signed_in().await;
    let heard = Arc::new(Heard::default());
    let _sub = c.add_quota_listener(heard.clone());
    let err = spend_all(&c).await;
    match err {
        TetherError::PlanRequired {
            plan_required,
            quota,
            ..
        } => {
            assert_eq!(plan_required.as_deref(), Some("pro"));
            assert_eq!(quota.map(|q| q.remaining), Some(0));
        }
        other => panic!("expected PlanRequired, got {other:?}"),
    }
    assert_eq!(c.quota().paywall.as_deref(), Some("pro"));
    eventually("on_paywall", || heard.paywalls.lock().unwrap().len() == 1).await;

    // Fail-fast: the next metered call never reaches the server.
    let seen = env.server.count(JOBS);
    let err = c.send(job_request(), None).await.unwrap_err();
    assert!(matches!(err, TetherError::PlanRequired { .. }), "{err:?}");
    assert_eq!(env.server.count(JOBS), seen, "fail-fast sent nothing");
    // A call that spends nothing still goes out.
    c.send(quota_request(), None).await.unwrap();

    // The purchase completes, the backend raises the plan, the app asks.
    env.server.set_plan("pro", 5000);
    let q = c.refresh_quota(None).await.unwrap();
    assert_eq!(
        (q.plan.as_deref(), q.paywall.clone(), q.source),
        (Some("pro"), None, QuotaSource::Server)
    );
    assert!(q.remaining.unwrap() > 0);
    c.send(job_request(), None).await.unwrap();
    eventually("the listener saw the lifted paywall", || {
        heard
            .last()
            .is_some_and(|s| s.paywall.is_none() && s.plan.as_deref() == Some("pro"))
    })
    .await;
    assert_eq!(heard.paywalls.lock().unwrap().len(), 1, "once per raising");
}

#[tokio::test]
async fn fail_fast_can_be_turned_off() {
    let env = Env::new().await;
    env.server.set_quota_limit(1);
    let mut cfg = env.config();
    cfg.quota_fail_fast = false;
    let c = env.client_with(cfg);
    c.restore_session().await.unwrap();
    c.sign_in_anonymously(None, None).await.unwrap();
    spend_all(&c).await;
    let seen = env.server.count(JOBS);
    let err = c.send(job_request(), None).await.unwrap_err();
    assert!(matches!(err, TetherError::PlanRequired { .. }), "{err:?}");
    assert_eq!(env.server.count(JOBS), seen + 1, "the server was asked");
}

#[tokio::test]
async fn a_stale_response_finishing_late_does_not_raise_remaining() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    // The first call is charged (49 left) but its answer is held back...
    let hold = env.server.hold(JOBS);
    let older = {
        let c = c.clone();
        tokio::spawn(async move { c.send(job_request(), None).await })
    };
    hold.handled().await;
    // ...while a newer call is charged (48 left) and answered.
    c.send(job_request(), None).await.unwrap();
    assert_eq!(c.quota().remaining, Some(48));
    hold.release();
    older.await.unwrap().unwrap();
    assert_eq!(c.quota().remaining, Some(48), "the late 49 is stale");
    // Only an authoritative answer may raise it (here it agrees).
    assert_eq!(c.refresh_quota(None).await.unwrap().remaining, Some(48));
}

#[tokio::test]
async fn a_new_window_raises_remaining_and_lifts_the_paywall() {
    let env = Env::new().await;
    env.server.set_quota_limit(2);
    let c = env.signed_in().await;
    spend_all(&c).await;
    let spent = c.quota();
    assert_eq!(spent.paywall.as_deref(), Some("pro"));
    // An hour later by the server's clock: a new window.
    env.server.set_clock_offset(3_700);
    c.send(quota_request(), None).await.unwrap();
    let q = c.quota();
    assert_eq!(q.remaining, Some(2));
    assert!(q.reset_at > spent.reset_at, "{q:?} vs {spent:?}");
    assert_eq!(q.paywall, None);
    c.send(job_request(), None).await.unwrap();
}

#[tokio::test]
async fn a_corrupt_saved_state_is_ignored() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    c.send(job_request(), None).await.unwrap();
    eventually("the state is saved", || {
        env.client().quota().source == QuotaSource::Cached
    })
    .await;
    drop(c);
    let db = rusqlite::Connection::open(env.dir.path().join("tether.sqlite3")).unwrap();
    db.execute(
        "UPDATE quota_state SET remaining = -7, features = 'garbage'",
        [],
    )
    .unwrap();
    drop(db);
    let c = env.client();
    assert_eq!(c.quota().source, QuotaSource::Unknown);
    assert_eq!(c.quota().remaining, None);
    c.restore_session().await.unwrap();
    c.send(job_request(), None).await.unwrap();
    assert_eq!(c.quota().remaining, Some(48));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stuck_listener_slows_no_request_and_ends_on_the_final_state() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let heard = Arc::new(Heard::default());
    heard.block(true);
    let _sub = c.add_quota_listener(heard.clone());
    let calls: Vec<_> = (0..30)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.send(job_request(), None).await })
        })
        .collect();
    // Were a request waiting on the listener, this would time out.
    tokio::time::timeout(Duration::from_secs(30), async {
        for call in calls {
            call.await.unwrap().unwrap();
        }
    })
    .await
    .expect("requests finished while the listener was stuck");
    let fin = c.quota();
    assert_eq!(fin.remaining, Some(20));
    heard.block(false);
    eventually("the listener reached the final state", || {
        heard.last() == Some(fin.clone())
    })
    .await;
    let delivered = heard.states.lock().unwrap().len();
    assert!(
        delivered < 10,
        "coalesced, not a backlog: {delivered} calls"
    );
}

#[tokio::test]
async fn rate_limits_and_plan_refusals_are_typed_and_raise_no_paywall() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    env.server.fault(
        JOBS,
        Fault::Status {
            status: 429,
            code: "rate_limited",
            retry_after: Some(120),
        },
    );
    let err = c.send(job_request(), None).await.unwrap_err();
    assert!(
        matches!(
            err,
            TetherError::RateLimited {
                retry_after_s: Some(120),
                ..
            }
        ),
        "{err:?}"
    );
    env.server.fault(
        JOBS,
        Fault::Raw {
            status: 403,
            content_type: "application/json",
            body: r#"{"error":{"code":"forbidden","message":"images need the pro plan","plan_required":"pro"}}"#.into(),
        },
    );
    let err = c.send(job_request(), None).await.unwrap_err();
    match err {
        TetherError::Forbidden { plan_required, .. } => {
            assert_eq!(plan_required.as_deref(), Some("pro"))
        }
        other => panic!("expected Forbidden, got {other:?}"),
    }
    assert_eq!(c.quota().paywall, None);
    c.send(job_request(), None).await.unwrap();
}
