//! The paywall: one quota state machine fed by every response, persisted, observable,
//! and right offline. It is the api floor's [`QuotaObserver`]: the quota headers of every
//! authenticated response, every `402`, and every `GET /quota` land here.
//!
//! The rules, in one place:
//! - A response's headers update the state; a response without them leaves it alone.
//! - Within one window (the same reset instant: the response's `Date` plus
//!   `RateLimit-Reset`), `remaining` only goes down: a stale response that finishes late
//!   cannot raise it. A later reset instant (a new window), a plan or limit change, or a
//!   `GET /quota` (authoritative) can. A response naming an earlier window is ignored.
//! - A `402` raises the paywall (`on_paywall`, once per raising). It is lifted by any
//!   state showing `remaining > 0`, or when the window's reset instant passes.
//! - While the paywall is raised, nothing is left and the window has not reset by the
//!   server's clock, a metered call fails at once with `PlanRequired` (fail-fast, on by
//!   default), without touching the network.
//! - The state is saved (in the background, latest value) after every change and restored
//!   when a client starts (`source: Cached`), so an app opened offline knows its plan:
//!   a paying user never sees a paywall because the network is down.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, UNIX_EPOCH};

use serde::Deserialize;
use tokio::sync::Notify;
use tracing::instrument::WithSubscriber;

use crate::error::{Error, Result};
use crate::quota::{Quota, QuotaObserver, QuotaReport};
use crate::runtime::runtime;
use crate::store::quota::{self as stored, StoredQuota};
use crate::store::Store;
use crate::subscription::{Broadcaster, Coalesce, Subscription};
use crate::transport::ServerClock;

/// How far to trust a [`QuotaState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum QuotaSource {
    /// From a server response in this process.
    Server,
    /// Restored from the device at start-up, not yet confirmed by the server.
    Cached,
    /// Never seen (or the saved state could not be read).
    Unknown,
}

/// Where the user stands against their plan, and whether the paywall is up.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct QuotaState {
    /// The plan's name, e.g. `"free"` or `"pro"`, once known.
    pub plan: Option<String>,
    /// Metered calls allowed per window, once known.
    pub limit: Option<u32>,
    /// Metered calls left in this window, once known.
    pub remaining: Option<u32>,
    /// When the window resets (RFC 3339 UTC, the server's clock), once known.
    pub reset_at: Option<String>,
    /// The features the plan includes (from `refresh_quota()`).
    pub features: Vec<String>,
    /// The raised paywall: the plan the backend said lifts it (`plan_required`, empty if
    /// it named none). `None` when no paywall is up.
    pub paywall: Option<String>,
    /// When this state was last confirmed by the server (RFC 3339 UTC), once known.
    pub updated_at: Option<String>,
    /// How far to trust it.
    pub source: QuotaSource,
}

/// Told of every quota state change, on a Tether thread, never while Tether holds a lock
/// and never on the thread making a request.
#[uniffi::export(with_foreign)]
pub trait QuotaListener: Send + Sync {
    /// The state changed (also called once with the current state on registration).
    fn on_quota_changed(&self, state: QuotaState);
    /// The backend refused a call for the plan's limit: route the user to the paywall.
    /// Called once each time the paywall goes up (then `state.paywall` is set).
    fn on_paywall(&self, plan_required: String, state: QuotaState);
}

#[derive(Debug, Clone)]
enum Event {
    Changed(QuotaState),
    Paywall(String, QuotaState),
}

/// A slow listener sees the latest state, and every raised paywall.
impl Coalesce for Event {
    fn absorb(&mut self, newer: Self) -> Option<Self> {
        match (self, newer) {
            (Event::Changed(s), Event::Changed(n)) => *s = n,
            (_, newer) => return Some(newer),
        }
        None
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Inner {
    q: StoredQuota,
    source: QuotaSource,
}

impl Inner {
    fn public(&self) -> QuotaState {
        QuotaState {
            plan: self.q.plan.clone(),
            limit: self.q.limit,
            remaining: self.q.remaining,
            reset_at: self.q.reset_at.map(rfc3339),
            features: self.q.features.clone(),
            paywall: self.q.paywall.clone(),
            updated_at: self.q.updated_at.map(rfc3339),
            source: self.source,
        }
    }

    /// What a `402` or a fail-fast refusal carries.
    fn quota(&self) -> Option<Quota> {
        Some(Quota {
            plan: self.q.plan.clone().unwrap_or_default(),
            limit: self.q.limit?,
            remaining: self.q.remaining?,
            reset_at: self.q.reset_at.map(rfc3339),
        })
    }

    /// The window the paywall was raised in has ended: lift it.
    fn lift_if_reset(&mut self, now: i64) {
        if self.q.paywall.is_some() && self.q.reset_at.is_some_and(|r| r <= now) {
            self.q.paywall = None;
        }
    }

    fn lift_if_left(&mut self) {
        if self.q.remaining.is_some_and(|r| r > 0) {
            self.q.paywall = None;
        }
    }
}

/// The paywall feature. Shared as `Arc<Paywall>`; the api floor sees it as its
/// `QuotaObserver`.
pub struct Paywall {
    inner: Mutex<Inner>,
    clock: Arc<ServerClock>,
    events: Arc<Broadcaster<Event>>,
    fail_fast: bool,
    /// Wakes the background saver; it saves the latest state once per wake.
    dirty: Arc<Notify>,
}

impl Paywall {
    /// Restores the saved state (`Cached`), or starts `Unknown` when there is none or it
    /// cannot be read (a corrupt row is ignored, not an error), and starts the saver.
    pub fn restore(store: &Store, clock: Arc<ServerClock>, fail_fast: bool) -> Arc<Paywall> {
        let (q, source) = match store.read_blocking(stored::load) {
            Ok(Some(q)) => (q, QuotaSource::Cached),
            Ok(None) => (StoredQuota::default(), QuotaSource::Unknown),
            Err(e) => {
                tracing::warn!(target: "tether::paywall", error = %e, "the saved quota state is unreadable; starting from unknown");
                (StoredQuota::default(), QuotaSource::Unknown)
            }
        };
        let paywall = Arc::new(Paywall {
            inner: Mutex::new(Inner { q, source }),
            clock,
            events: Arc::new(Broadcaster::default()),
            fail_fast,
            dirty: Arc::new(Notify::new()),
        });
        spawn_saver(
            Arc::downgrade(&paywall),
            paywall.dirty.clone(),
            store.clone(),
        );
        paywall
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current state (no I/O).
    pub fn state(&self) -> QuotaState {
        self.update(true, |_| {})
            .unwrap_or_else(|| self.lock().public())
    }

    pub fn subscribe(
        &self,
        dispatch: tracing::Dispatch,
        listener: Arc<dyn QuotaListener>,
    ) -> Arc<Subscription> {
        self.events.subscribe(
            dispatch,
            || Event::Changed(self.state()),
            move |e| match e {
                Event::Changed(s) => listener.on_quota_changed(s),
                Event::Paywall(plan, s) => listener.on_paywall(plan, s),
            },
        )
    }

    /// Applies a `GET /api/v1/quota` body: authoritative, so `remaining` may go up.
    pub fn apply_quota_body(&self, body: &[u8]) -> Result<QuotaState> {
        #[derive(Deserialize)]
        struct Body {
            plan: String,
            limit: u64,
            remaining: u64,
            reset_at: Option<String>,
            #[serde(default)]
            features: Vec<String>,
        }
        let b: Body =
            serde_json::from_slice(body).map_err(|e| Error::decode(format!("quota: {e}")))?;
        let reset_at = match b.reset_at.as_deref().map(parse_rfc3339) {
            Some(None) => return Err(Error::decode("quota: reset_at is not an RFC 3339 time")),
            Some(Some(t)) => Some(t),
            None => None,
        };
        let now = self.clock.now_s();
        let state = self.update(true, |st| {
            st.q.plan = Some(b.plan);
            st.q.limit = Some(saturate(b.limit));
            st.q.remaining = Some(saturate(b.remaining));
            st.q.reset_at = reset_at.or(st.q.reset_at);
            st.q.features = b.features;
            st.q.updated_at = Some(now);
            st.source = QuotaSource::Server;
            st.lift_if_left();
        });
        Ok(state.unwrap_or_else(|| self.lock().public()))
    }

    /// Runs `change` on the state under the lock (after lifting a paywall whose window
    /// ended), then, off the lock, announces and saves what changed (a new confirmation
    /// time alone is not news). Returns the new state when it changed (or `always`).
    fn update(&self, always: bool, change: impl FnOnce(&mut Inner)) -> Option<QuotaState> {
        let now = self.clock.now_s();
        let (state, raised) = {
            let mut inner = self.lock();
            let before = inner.clone();
            inner.lift_if_reset(now);
            change(&mut inner);
            let seen_at = inner.q.updated_at;
            inner.q.updated_at = before.q.updated_at;
            let changed = *inner != before;
            inner.q.updated_at = seen_at;
            if !changed && !always {
                // The common case (a response confirming what is known) builds nothing.
                return None;
            }
            let raised = before.q.paywall.is_none() && inner.q.paywall.is_some();
            (inner.public(), changed.then_some(raised))
        };
        if let Some(raised) = raised {
            self.dirty.notify_one();
            if raised {
                let plan = state.paywall.clone().unwrap_or_default();
                tracing::info!(target: "tether::paywall", plan_required = %plan, "paywall raised");
                self.events.emit(Event::Paywall(plan, state.clone()));
            }
            self.events.emit(Event::Changed(state.clone()));
        }
        Some(state)
    }
}

impl QuotaObserver for Paywall {
    fn observe(&self, report: QuotaReport) {
        let now = self.clock.now_s();
        self.update(false, |st| {
            let q = &mut st.q;
            let same_terms = report
                .plan
                .as_ref()
                .map_or(true, |p| q.plan.as_ref() == Some(p))
                && q.limit == Some(report.limit);
            match (report.reset_at_s, q.reset_at) {
                // A response about an earlier window arrived late: it says nothing now.
                (Some(r), Some(s)) if r < s => return,
                // The same window on the same terms: `remaining` only goes down.
                (r, s) if same_terms && (r == s || r.is_none()) && q.remaining.is_some() => {
                    q.remaining = q.remaining.map(|n| n.min(report.remaining));
                }
                // A new window, a new plan or limit, or nothing known yet.
                _ => {
                    q.remaining = Some(report.remaining);
                    q.reset_at = report.reset_at_s.or(q.reset_at);
                }
            }
            if let Some(p) = report.plan {
                q.plan = Some(p);
            }
            q.limit = Some(report.limit);
            q.updated_at = Some(now);
            st.source = QuotaSource::Server;
            st.lift_if_left();
        });
    }

    fn paywall(&self, plan_required: Option<String>, quota: Option<Quota>) {
        let now = self.clock.now_s();
        self.update(false, |st| {
            if let Some(q) = quota {
                if !q.plan.is_empty() {
                    st.q.plan = Some(q.plan);
                }
                st.q.limit = Some(q.limit);
                if let Some(r) = q.reset_at.as_deref().and_then(parse_rfc3339) {
                    st.q.reset_at = Some(r);
                }
            }
            st.q.remaining = Some(0);
            st.q.paywall = Some(plan_required.unwrap_or_default());
            st.q.updated_at = Some(now);
            st.source = QuotaSource::Server;
        });
    }

    fn refuse_metered(&self) -> Option<(Option<String>, Option<Quota>)> {
        if !self.fail_fast {
            return None;
        }
        let now = self.clock.now_s();
        // Lifts a paywall whose window has ended first (announced like any change).
        self.update(false, |_| {});
        let inner = self.lock();
        let up = inner.q.paywall.is_some()
            && inner.q.remaining == Some(0)
            && inner.q.reset_at.is_some_and(|r| r > now);
        up.then(|| {
            let plan = inner.q.paywall.clone().filter(|p| !p.is_empty());
            (plan, inner.quota())
        })
    }
}

impl Drop for Paywall {
    fn drop(&mut self) {
        // Lets the saver see that its paywall is gone, and end.
        self.dirty.notify_one();
    }
}

/// The background saver: after each change, the latest state goes to the store (several
/// changes in a row make one write).
fn spawn_saver(paywall: Weak<Paywall>, dirty: Arc<Notify>, store: Store) {
    let task = async move {
        loop {
            dirty.notified().await;
            let Some(q) = paywall.upgrade().map(|p| p.lock().q.clone()) else {
                return;
            };
            if let Err(e) = store.write(move |tx| stored::save(tx, &q)).await {
                tracing::warn!(target: "tether::paywall", error = %e, "saving the quota state failed");
            }
        }
    };
    runtime().spawn(task.with_current_subscriber());
}

fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Unix seconds as RFC 3339 UTC (`2026-11-23T00:00:00Z`).
pub(crate) fn rfc3339(unix_s: i64) -> String {
    let t = match u64::try_from(unix_s) {
        Ok(s) => UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => UNIX_EPOCH,
    };
    humantime::format_rfc3339_seconds(t).to_string()
}

/// An RFC 3339 time as Unix seconds.
pub(crate) fn parse_rfc3339(text: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(text.trim()).ok()?;
    i64::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_secs()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(plan: &str, limit: u32, remaining: u32, reset: i64) -> QuotaReport {
        QuotaReport {
            plan: Some(plan.into()),
            limit,
            remaining,
            reset_at_s: Some(reset),
        }
    }

    fn paywall() -> (tempfile::TempDir, Arc<Paywall>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let p = Paywall::restore(&store, Arc::new(ServerClock::default()), true);
        (dir, p)
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(rfc3339(1_795_392_000), "2026-11-23T00:00:00Z");
        assert_eq!(parse_rfc3339("2026-11-23T00:00:00Z"), Some(1_795_392_000));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[tokio::test]
    async fn within_a_window_remaining_only_goes_down() {
        let (_d, p) = paywall();
        let far = ServerClock::device_now_ms() / 1000 + 3600;
        p.observe(report("free", 50, 10, far));
        p.observe(report("free", 50, 12, far)); // a stale response finishing late
        assert_eq!(p.state().remaining, Some(10));
        p.observe(report("free", 50, 49, far - 3600)); // an older window: ignored
        assert_eq!(p.state().remaining, Some(10));
        p.observe(report("free", 50, 50, far + 3600)); // a new window
        assert_eq!(p.state().remaining, Some(50));
        p.observe(report("pro", 5000, 4990, far + 3600)); // a plan change
        assert_eq!(
            (p.state().plan.as_deref(), p.state().remaining),
            (Some("pro"), Some(4990))
        );
        assert_eq!(p.state().source, QuotaSource::Server);
    }

    #[tokio::test]
    async fn a_402_raises_the_paywall_until_something_is_left_or_the_window_ends() {
        let (_d, p) = paywall();
        let now = ServerClock::device_now_ms() / 1000;
        p.observe(report("free", 50, 0, now + 3600));
        assert_eq!(p.refuse_metered(), None, "no 402 yet: the server decides");
        p.paywall(Some("pro".into()), None);
        assert_eq!(p.state().paywall.as_deref(), Some("pro"));
        let (plan, quota) = p.refuse_metered().unwrap();
        assert_eq!(plan.as_deref(), Some("pro"));
        assert_eq!(quota.unwrap().remaining, 0);
        p.observe(report("pro", 5000, 4999, now + 3600));
        assert_eq!(p.state().paywall, None);
        assert_eq!(p.refuse_metered(), None);
        // The window ends: the paywall raised in it lifts, and the next call may go out.
        let (_d, p) = paywall();
        p.observe(report("free", 50, 0, now - 1));
        p.paywall(Some("pro".into()), None);
        assert_eq!(p.state().paywall, None);
        assert_eq!(p.refuse_metered(), None);
    }
}
