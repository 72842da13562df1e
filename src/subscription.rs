//! Listener plumbing: a [`Broadcaster`] fans events out to subscribers (listeners are
//! foreign code: they may be slow, and they are never called while Tether holds a lock).
//! Each subscriber has its own pending queue, in which a new event is folded into the last
//! pending one when the event type says so ([`Coalesce`]): a slow listener sees the latest
//! state rather than a backlog, and stream pieces arrive merged. The queue is drained in
//! batches, one blocking-thread hop per batch, one batch at a time per subscriber, so calls
//! stay in order. A [`Subscription`] stops its listener when cancelled or dropped.
//!
//! Also here: [`call_foreign`], the guard every call or release of a foreign object on a
//! Tether thread goes through, so that a host runtime tearing such a thread down at process
//! exit cannot abort the process.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::runtime::runtime;

/// How an event merges into the event still waiting before it.
pub(crate) trait Coalesce: Sized {
    /// Folds `newer` into `self` (the last pending event) if it supersedes or extends it;
    /// returns it back otherwise.
    fn absorb(&mut self, newer: Self) -> Option<Self>;
}

/// Events a subscriber may have waiting (after coalescing). Beyond this the oldest pending
/// event is dropped, so memory stays bounded whatever the listener does; the next batch
/// logs a warning with the count. With coalescing this takes a listener stalled while
/// over a thousand events of alternating kinds arrive.
const MAX_PENDING: usize = 1024;

type Deliver<E> = Arc<dyn Fn(E) + Send + Sync>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Pending<E> {
    events: VecDeque<E>,
    /// A drain is scheduled or running. Only the drain clears it, and only when it finds
    /// `events` empty under this lock, so at most one drain runs per subscriber.
    draining: bool,
    /// Events dropped at [`MAX_PENDING`] since the last batch.
    dropped: u64,
}

struct Subscriber<E> {
    id: u64,
    pending: Mutex<Pending<E>>,
    /// The listener. Taken (and released) by the thread that cancels the subscription.
    deliver: Mutex<Option<Deliver<E>>>,
    cancelled: AtomicBool,
    dispatch: tracing::Dispatch,
}

impl<E: Coalesce + Send + 'static> Subscriber<E> {
    /// Queues `event`; true if a drain must be scheduled.
    fn push(&self, event: E) -> bool {
        let mut p = lock(&self.pending);
        let rest = match p.events.back_mut() {
            Some(last) => last.absorb(event),
            None => Some(event),
        };
        if let Some(event) = rest {
            if p.events.len() >= MAX_PENDING {
                p.events.pop_front();
                p.dropped += 1;
            }
            p.events.push_back(event);
        }
        !std::mem::replace(&mut p.draining, true)
    }

    fn schedule(self: Arc<Self>) {
        drop(runtime().spawn_blocking(move || self.drain()));
    }

    /// Delivers batches until the queue is empty. Runs on a blocking thread.
    fn drain(&self) {
        tracing::dispatcher::with_default(&self.dispatch, || loop {
            let (batch, dropped) = {
                let mut p = lock(&self.pending);
                if p.events.is_empty() || self.cancelled.load(Ordering::Acquire) {
                    p.draining = false;
                    return;
                }
                (
                    std::mem::take(&mut p.events),
                    std::mem::take(&mut p.dropped),
                )
            };
            if dropped > 0 {
                tracing::warn!(target: "tether::listener", dropped, "a listener fell behind; its oldest pending events were dropped");
            }
            let Some(deliver) = lock(&self.deliver).clone() else {
                return;
            };
            for event in batch {
                if self.cancelled.load(Ordering::Acquire) {
                    break;
                }
                // The guard sits inside `catch_unwind`: a panic (a foreign exception that
                // UniFFI surfaced as one) passes through it and is caught here, while a
                // host's forced unwind stops at the guard (see `call_foreign`).
                let d = &deliver;
                if catch_unwind(AssertUnwindSafe(|| call_foreign(|| d(event)))).is_err() {
                    tracing::warn!(target: "tether::listener", "a listener panicked");
                }
            }
            // Normally not the last reference (the subscription holds one); it is when the
            // subscription was cancelled during this batch.
            call_foreign(move || drop(deliver));
        })
    }
}

pub(crate) struct Broadcaster<E> {
    subs: Mutex<Vec<Arc<Subscriber<E>>>>,
    next_id: AtomicU64,
}

impl<E> Default for Broadcaster<E> {
    fn default() -> Self {
        Broadcaster {
            subs: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
        }
    }
}

impl<E: Coalesce + Clone + Send + 'static> Broadcaster<E> {
    /// Queues `event` for every subscriber. Never blocks on a listener, never calls one.
    pub fn emit(&self, event: E) {
        let mut wake = Vec::new();
        {
            let subs = lock(&self.subs);
            for s in subs.iter() {
                if s.push(event.clone()) {
                    wake.push(s.clone());
                }
            }
        }
        for s in wake {
            s.schedule();
        }
    }

    /// Registers `deliver`; it first receives `initial()` (read under the same lock as
    /// `emit`, so no event between the two is missed), then every later event, coalesced.
    /// `dispatch` receives the subscription's own log records (a panicking listener, events
    /// dropped at the bound).
    pub fn subscribe(
        self: &Arc<Self>,
        dispatch: tracing::Dispatch,
        initial: impl FnOnce() -> E,
        deliver: impl Fn(E) + Send + Sync + 'static,
    ) -> Arc<Subscription> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let deliver: Deliver<E> = Arc::new(deliver);
        let sub = {
            let mut subs = lock(&self.subs);
            let sub = Arc::new(Subscriber {
                id,
                pending: Mutex::new(Pending {
                    events: VecDeque::from([initial()]),
                    draining: true,
                    dropped: 0,
                }),
                deliver: Mutex::new(Some(deliver)),
                cancelled: AtomicBool::new(false),
                dispatch,
            });
            subs.push(sub.clone());
            sub
        };
        sub.clone().schedule();
        let weak = Arc::downgrade(self);
        Arc::new(Subscription {
            stop: Mutex::new(Some(Box::new(move || {
                sub.cancelled.store(true, Ordering::Release);
                if let Some(b) = weak.upgrade() {
                    lock(&b.subs).retain(|s| s.id != id);
                }
                let pending = std::mem::take(&mut lock(&sub.pending).events);
                drop(pending);
                // Released here, on the thread that let go of the subscription (the app's),
                // unless a batch is being delivered right now: then that drain releases it
                // when the call in progress returns.
                let deliver = lock(&sub.deliver).take();
                call_foreign(move || drop(deliver));
            }))),
        })
    }
}

#[cfg(test)]
impl<E> Broadcaster<E> {
    fn subscriber_count(&self) -> usize {
        lock(&self.subs).len()
    }

    /// Waits (bounded) until no drain is scheduled or running.
    fn wait_idle(&self) {
        for _ in 0..6_000 {
            if lock(&self.subs).iter().all(|s| !lock(&s.pending).draining) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("a drain never finished");
    }
}

/// A listener registration. The listener is called until `cancel()` is called or this
/// handle is dropped (released, in Swift; closed or collected, in Kotlin).
#[derive(uniffi::Object)]
pub struct Subscription {
    stop: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

#[uniffi::export]
impl Subscription {
    /// Stops the listener: no call starts after this returns (one already running may
    /// finish).
    pub fn cancel(&self) {
        let stop = lock(&self.stop).take();
        if let Some(stop) = stop {
            stop();
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Threads parked for good by [`call_foreign`] (see there).
static PARKED_FOR_GOOD: AtomicUsize = AtomicUsize::new(0);

/// Runs `f`, which calls or releases a foreign object (listener, logger, token store), on
/// a Tether thread, so that the host tearing the thread down cannot abort the process.
///
/// Why: CPython before 3.14 does not let a thread it did not create take the GIL once
/// interpreter finalization has started: `PyGILState_Ensure` calls `pthread_exit` on it.
/// So a listener or logger called (or a foreign object released, which also enters
/// Python) on a Tether thread while a script exits ends that thread with glibc's forced
/// unwind. The unwind climbs through our frames until the first `catch_unwind` (tokio's
/// task harness, `std::thread`'s start, our own panic guards), which takes it for a
/// foreign exception, deletes it, and glibc aborts: `FATAL: exception not rethrown`,
/// exit 134, from a process that had done nothing wrong. The guard below is the innermost
/// Rust frame around the foreign code: a forced unwind runs its destructor before reaching
/// any `catch_unwind`, and the destructor parks the thread for good instead of letting the
/// unwind go on. The process is exiting anyway and does not wait for it (CPython 3.14
/// itself hangs such threads instead of exiting them). A Rust panic (`panicking()` is
/// true) passes through the guard untouched, to the caller's `catch_unwind`.
///
/// Foreign objects are also released on the thread that drops the owning Tether handle
/// (`Subscription`, `TetherClient`) where possible, which under CPython is a thread that
/// holds the GIL even during finalization; this guard covers the calls and releases that
/// must happen on our threads.
pub(crate) fn call_foreign<R>(f: impl FnOnce() -> R) -> R {
    let guard = ParkOnForcedUnwind;
    let r = f();
    std::mem::forget(guard);
    r
}

struct ParkOnForcedUnwind;

impl Drop for ParkOnForcedUnwind {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        PARKED_FOR_GOOD.fetch_add(1, Ordering::SeqCst);
        loop {
            std::thread::park();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Long enough for any machine; only a broken build waits this long.
    const PATIENCE: Duration = Duration::from_secs(60);

    #[derive(Debug, Clone, PartialEq)]
    enum Ev {
        State(u32),
        Delta(String),
        Marker(u32),
    }

    impl Coalesce for Ev {
        fn absorb(&mut self, newer: Self) -> Option<Self> {
            match (self, newer) {
                (Ev::State(s), Ev::State(n)) => {
                    *s = n;
                    None
                }
                (Ev::Delta(d), Ev::Delta(n)) => {
                    d.push_str(&n);
                    None
                }
                (_, newer) => Some(newer),
            }
        }
    }

    /// A listener that records what it gets, and blocks inside each call given one of the
    /// `block_on` events until the test opens the gate once more.
    struct Blocked {
        seen: Arc<Mutex<Vec<Ev>>>,
        delivered: mpsc::Receiver<Ev>,
        entered: mpsc::Receiver<()>,
        gate: mpsc::Sender<()>,
    }

    fn blocked_listener(block_on: &[Ev]) -> (Blocked, impl Fn(Ev) + Send + Sync + 'static) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (delivered_tx, delivered) = mpsc::channel();
        let (entered_tx, entered) = mpsc::channel();
        let (gate, gate_rx) = mpsc::channel::<()>();
        let (entered_tx, gate_rx, delivered_tx) = (
            Mutex::new(entered_tx),
            Mutex::new(gate_rx),
            Mutex::new(delivered_tx),
        );
        let block_on = block_on.to_vec();
        let s = seen.clone();
        let deliver = move |e: Ev| {
            if block_on.contains(&e) {
                entered_tx.lock().unwrap().send(()).unwrap();
                gate_rx.lock().unwrap().recv_timeout(PATIENCE).unwrap();
            }
            s.lock().unwrap().push(e.clone());
            let _ = delivered_tx.lock().unwrap().send(e);
        };
        (
            Blocked {
                seen,
                delivered,
                entered,
                gate,
            },
            deliver,
        )
    }

    impl Blocked {
        fn wait_for(&self, want: &Ev) {
            loop {
                let e = self
                    .delivered
                    .recv_timeout(PATIENCE)
                    .expect("the listener was never given the expected event");
                if &e == want {
                    return;
                }
            }
        }
        fn seen(&self) -> Vec<Ev> {
            self.seen.lock().unwrap().clone()
        }
    }

    #[test]
    fn emit_never_waits_for_a_blocked_listener_and_a_slow_one_gets_the_final_state() {
        let b = Arc::new(Broadcaster::<Ev>::default());
        let (l, deliver) = blocked_listener(&[Ev::State(0)]);
        let _sub = b.subscribe(tracing::Dispatch::none(), || Ev::State(0), deliver);
        l.entered.recv_timeout(PATIENCE).unwrap();
        // The listener is now inside its first call and stays there until the gate opens,
        // which happens only after all 10,000 emits returned: an emit that waited for the
        // listener would never return, and the timeout below would fail the test.
        let (done_tx, done) = mpsc::channel();
        let emitter = b.clone();
        std::thread::spawn(move || {
            for i in 1..=10_000 {
                emitter.emit(Ev::State(i));
            }
            done_tx.send(()).unwrap();
        });
        done.recv_timeout(PATIENCE)
            .expect("emit waited for the blocked listener");
        l.gate.send(()).unwrap();
        l.wait_for(&Ev::State(10_000));
        assert_eq!(l.seen(), vec![Ev::State(0), Ev::State(10_000)]);
    }

    #[test]
    fn mixed_kinds_stay_in_order_while_states_replace_and_deltas_append() {
        let b = Arc::new(Broadcaster::<Ev>::default());
        let (l, deliver) = blocked_listener(&[Ev::State(0)]);
        let _sub = b.subscribe(tracing::Dispatch::none(), || Ev::State(0), deliver);
        l.entered.recv_timeout(PATIENCE).unwrap();
        for e in [
            Ev::State(1),
            Ev::State(2),
            Ev::Delta("a".into()),
            Ev::Delta("b".into()),
            Ev::Marker(1),
            Ev::Delta("c".into()),
            Ev::State(3),
            Ev::State(4),
            Ev::Marker(2),
            Ev::Marker(3),
        ] {
            b.emit(e);
        }
        l.gate.send(()).unwrap();
        l.wait_for(&Ev::Marker(3));
        assert_eq!(
            l.seen(),
            vec![
                Ev::State(0),
                Ev::State(2),
                Ev::Delta("ab".into()),
                Ev::Marker(1),
                Ev::Delta("c".into()),
                Ev::State(4),
                Ev::Marker(2),
                Ev::Marker(3),
            ]
        );
    }

    #[test]
    fn under_concurrent_delivery_nothing_is_lost_or_reordered() {
        let b = Arc::new(Broadcaster::<Ev>::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let (s, tx) = (seen.clone(), Mutex::new(tx));
        let _sub = b.subscribe(
            tracing::Dispatch::none(),
            || Ev::State(0),
            move |e: Ev| {
                s.lock().unwrap().push(e.clone());
                let _ = tx.lock().unwrap().send(e);
            },
        );
        let mut text = String::new();
        // Under 700 kind changes: however late the listener starts, the bound is not hit.
        for i in 1..=1_000u32 {
            let piece = format!("{i},");
            text.push_str(&piece);
            b.emit(Ev::Delta(piece));
            if i % 7 == 0 {
                b.emit(Ev::Marker(i));
            }
            if i % 5 == 0 {
                b.emit(Ev::State(i));
            }
        }
        b.emit(Ev::Marker(u32::MAX));
        while rx.recv_timeout(PATIENCE).unwrap() != Ev::Marker(u32::MAX) {}
        let seen = seen.lock().unwrap().clone();
        let deltas: String = seen
            .iter()
            .filter_map(|e| match e {
                Ev::Delta(d) => Some(d.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(deltas, text);
        let markers: Vec<u32> = seen
            .iter()
            .filter_map(|e| match e {
                Ev::Marker(m) => Some(*m),
                _ => None,
            })
            .collect();
        let mut expected: Vec<u32> = (7..=1_000).step_by(7).collect();
        expected.push(u32::MAX);
        assert_eq!(markers, expected);
        let states: Vec<u32> = seen
            .iter()
            .filter_map(|e| match e {
                Ev::State(s) => Some(*s),
                _ => None,
            })
            .collect();
        assert!(states.windows(2).all(|w| w[0] < w[1]), "{states:?}");
        assert_eq!(states.last(), Some(&1_000));
    }

    /// Records the thread that drops it (stands in for the foreign listener's release).
    struct ReleaseProbe(Arc<Mutex<Option<std::thread::ThreadId>>>);

    impl Drop for ReleaseProbe {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = Some(std::thread::current().id());
        }
    }

    #[test]
    fn dropping_the_subscription_stops_delivery_and_releases_the_listener_right_there() {
        let b = Arc::new(Broadcaster::<Ev>::default());
        let released = Arc::new(Mutex::new(None));
        let probe = ReleaseProbe(released.clone());
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let sub = b.subscribe(
            tracing::Dispatch::none(),
            || Ev::State(0),
            move |e: Ev| {
                let _keep = &probe;
                let _ = tx.lock().unwrap().send(e);
            },
        );
        assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), Ev::State(0));
        b.wait_idle();
        drop(sub);
        assert_eq!(
            *released.lock().unwrap(),
            Some(std::thread::current().id()),
            "the listener must be released by the thread that dropped the subscription"
        );
        assert_eq!(b.subscriber_count(), 0);
        b.emit(Ev::Marker(1));
        // The listener (and its channel end) is gone: nothing can arrive any more.
        assert!(matches!(
            rx.recv_timeout(PATIENCE),
            Err(mpsc::RecvTimeoutError::Disconnected)
        ));
    }

    #[test]
    fn cancelling_during_a_call_delivers_nothing_more() {
        let b = Arc::new(Broadcaster::<Ev>::default());
        let (l, deliver) = blocked_listener(&[Ev::State(0), Ev::Marker(1)]);
        let released = Arc::new(Mutex::new(None));
        let probe = ReleaseProbe(released.clone());
        let sub = b.subscribe(
            tracing::Dispatch::none(),
            || Ev::State(0),
            move |e| {
                let _keep = &probe;
                deliver(e)
            },
        );
        l.entered.recv_timeout(PATIENCE).unwrap();
        for i in 1..=3 {
            b.emit(Ev::Marker(i));
        }
        l.gate.send(()).unwrap();
        // Now inside the call for Marker(1), the first of a batch of three.
        l.entered.recv_timeout(PATIENCE).unwrap();
        b.emit(Ev::Marker(4));
        sub.cancel();
        assert!(
            released.lock().unwrap().is_none(),
            "still in use by the call"
        );
        l.gate.send(()).unwrap();
        // The drain releases the listener once the call in progress returns; after that
        // no call can happen.
        for _ in 0..6_000 {
            if released.lock().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(released.lock().unwrap().is_some());
        assert_eq!(l.seen(), vec![Ev::State(0), Ev::Marker(1)]);
    }

    #[test]
    fn a_panicking_listener_still_gets_later_events() {
        let b = Arc::new(Broadcaster::<Ev>::default());
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let _sub = b.subscribe(
            tracing::Dispatch::none(),
            || Ev::State(0),
            move |e: Ev| {
                assert_ne!(e, Ev::Marker(1), "listener throws");
                let _ = tx.lock().unwrap().send(e);
            },
        );
        assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), Ev::State(0));
        b.emit(Ev::Marker(1));
        b.emit(Ev::Marker(2));
        assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), Ev::Marker(2));
    }

    #[test]
    fn the_pending_queue_is_bounded_and_keeps_the_newest() {
        let b = Arc::new(Broadcaster::<Ev>::default());
        let (l, deliver) = blocked_listener(&[Ev::State(0)]);
        let _sub = b.subscribe(tracing::Dispatch::none(), || Ev::State(0), deliver);
        l.entered.recv_timeout(PATIENCE).unwrap();
        let n = MAX_PENDING as u32 + 500;
        for i in 1..=n {
            b.emit(Ev::Marker(i));
        }
        l.gate.send(()).unwrap();
        l.wait_for(&Ev::Marker(n));
        let seen = l.seen();
        assert_eq!(seen.len(), 1 + MAX_PENDING);
        assert_eq!(seen[1], Ev::Marker(501));
    }

    /// What CPython < 3.14 does to a foreign thread entering it during finalization.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_listener_thread_ended_by_its_host_is_parked_instead_of_aborting_the_process() {
        extern "C-unwind" {
            fn pthread_exit(value: *mut std::ffi::c_void) -> !;
        }
        let b = Arc::new(Broadcaster::<Ev>::default());
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let _sub = b.subscribe(
            tracing::Dispatch::none(),
            || Ev::State(0),
            move |e: Ev| {
                if e == Ev::Marker(1) {
                    // SAFETY: test only; this is the forced unwind under test.
                    unsafe { pthread_exit(std::ptr::null_mut()) }
                }
                let _ = tx.lock().unwrap().send(e);
            },
        );
        assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), Ev::State(0));
        let before = PARKED_FOR_GOOD.load(Ordering::SeqCst);
        b.emit(Ev::Marker(1));
        // Without the guard the process has aborted by now ("FATAL: exception not
        // rethrown"), failing the whole test binary.
        for _ in 0..6_000 {
            if PARKED_FOR_GOOD.load(Ordering::SeqCst) > before {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(PARKED_FOR_GOOD.load(Ordering::SeqCst) > before);
        // Other subscribers still get events (the parked thread holds no lock).
        let (tx2, rx2) = mpsc::channel();
        let tx2 = Mutex::new(tx2);
        let _other = b.subscribe(
            tracing::Dispatch::none(),
            || Ev::State(7),
            move |e: Ev| {
                let _ = tx2.lock().unwrap().send(e);
            },
        );
        assert_eq!(rx2.recv_timeout(PATIENCE).unwrap(), Ev::State(7));
        b.emit(Ev::Marker(2));
        assert_eq!(rx2.recv_timeout(PATIENCE).unwrap(), Ev::Marker(2));
    }
}
