//! Logging: Tether's `tracing` events handed to a foreign [`Logger`], so apps see them in
//! os_log / Logcat / the JS console.
//!
//! Each client has its own dispatch (attached to every task it runs), so two clients
//! with two loggers never mix, and Tether never installs a global subscriber behind the
//! app's back. Only events from Tether's own modules at or above the client's
//! `log_level` are forwarded, TRACE never.
//!
//! The logger is never called where the event happens (an async worker, mid-request):
//! records go into a bounded queue, and ONE delivery thread per client calls the logger,
//! in order. A slow logger therefore never slows a request; if it falls more than
//! [`QUEUE_CAP`] records behind, newer records are dropped and counted, and once the thread
//! has caught up it delivers one record saying how many were lost. Dropping the client
//! stops the thread and releases the logger on the dropping thread (see
//! [`crate::subscription::call_foreign`] for why that matters).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{span, Event, Level, Metadata, Subscriber};

use crate::subscription::call_foreign;

/// Severity of a log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, uniffi::Enum)]
pub enum LogLevel {
    /// Step-by-step detail (each response, each retry decision).
    Debug,
    /// What happened (signed in, session refreshed).
    Info,
    /// Something went wrong and was handled (a retry, a failed save kept in memory).
    Warn,
    /// Something went wrong and was not handled.
    Error,
}

/// Receives Tether's log records. Implement it to route them to os_log, Logcat, etc.
/// Called on one Tether thread per client, in order, never on the thread making a
/// request; a slow logger only delays later records.
#[uniffi::export(with_foreign)]
pub trait Logger: Send + Sync {
    /// One log record: `target` is the Tether module (e.g. `tether::auth`), `message`
    /// the text with its fields (`request_id=…`, `status=…`). Never contains a token.
    fn log(&self, level: LogLevel, target: String, message: String);
}

/// Records waiting for the logger, at most. Past this they are dropped and counted.
const QUEUE_CAP: usize = 1024;

/// How long dropping a client waits for its queued records to be delivered.
const DRAIN_ON_STOP: std::time::Duration = std::time::Duration::from_millis(250);

/// Delivery threads alive, all clients together.
static DELIVERY_THREADS: AtomicUsize = AtomicUsize::new(0);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn level_of(level: &Level) -> Option<LogLevel> {
    match *level {
        Level::ERROR => Some(LogLevel::Error),
        Level::WARN => Some(LogLevel::Warn),
        Level::INFO => Some(LogLevel::Info),
        Level::DEBUG => Some(LogLevel::Debug),
        Level::TRACE => None,
    }
}

struct Record {
    level: LogLevel,
    target: &'static str,
    message: String,
}

#[derive(Default)]
struct QueueState {
    records: VecDeque<Record>,
    /// Records refused since the thread last took a batch.
    dropped: u64,
    /// The thread holds a batch (and a reference to the logger).
    busy: bool,
}

struct Queue {
    state: Mutex<QueueState>,
    wake: Condvar,
    /// Notified when the thread has delivered everything queued.
    idle: Condvar,
    stopped: AtomicBool,
    /// Taken, and released on the dropping thread, when the client is dropped.
    logger: Mutex<Option<Arc<dyn Logger>>>,
}

impl Queue {
    /// Never blocks beyond this short lock, never calls the logger.
    fn push(&self, record: Record) {
        let mut s = lock(&self.state);
        if self.stopped.load(Ordering::Acquire) {
            return;
        }
        if s.records.len() < QUEUE_CAP {
            s.records.push_back(record);
        } else {
            s.dropped += 1;
        }
        drop(s);
        self.wake.notify_one();
    }

    fn stop(&self) {
        {
            let mut s = lock(&self.state);
            // What was logged just before the client went away (a command-line tool's
            // last lines) is still delivered, for a short while at most.
            let until = std::time::Instant::now() + DRAIN_ON_STOP;
            while !s.records.is_empty() || s.busy {
                let left = until.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                s = self
                    .idle
                    .wait_timeout(s, left)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            self.stopped.store(true, Ordering::Release);
            s.records.clear();
        }
        self.wake.notify_all();
        let logger = lock(&self.logger).take();
        call_foreign(move || drop(logger));
    }

    /// The delivery thread's loop: a batch at a time, until stopped.
    fn run(&self) {
        loop {
            let (batch, dropped) = {
                let mut s = lock(&self.state);
                s.busy = false;
                if s.records.is_empty() {
                    self.idle.notify_all();
                }
                while s.records.is_empty()
                    && s.dropped == 0
                    && !self.stopped.load(Ordering::Acquire)
                {
                    s = self.wake.wait(s).unwrap_or_else(|p| p.into_inner());
                }
                if self.stopped.load(Ordering::Acquire) {
                    return;
                }
                s.busy = true;
                (
                    std::mem::take(&mut s.records),
                    std::mem::take(&mut s.dropped),
                )
            };
            let Some(logger) = lock(&self.logger).clone() else {
                return;
            };
            // The dropped records came after this batch and before anything queued since.
            let notice = (dropped > 0).then(|| Record {
                level: LogLevel::Warn,
                target: "tether::logging",
                message: format!("{dropped} log records dropped: the logger fell behind"),
            });
            for r in batch.into_iter().chain(notice) {
                if self.stopped.load(Ordering::Acquire) {
                    break;
                }
                // A logger that throws (an exception surfacing as a panic here) loses its
                // record, nothing more. The guard sits inside `catch_unwind` on purpose.
                let l = &logger;
                let _ = catch_unwind(AssertUnwindSafe(|| {
                    call_foreign(|| l.log(r.level, r.target.to_string(), r.message))
                }));
            }
            call_foreign(move || drop(logger));
        }
    }
}

struct Bridge {
    queue: Arc<Queue>,
    min_level: LogLevel,
}

impl Bridge {
    fn wants(&self, meta: &Metadata<'_>) -> bool {
        meta.target().starts_with("tether")
            && level_of(meta.level()).is_some_and(|l| l >= self.min_level)
    }
}

/// The whole subscriber, not a layer on `tracing-subscriber`'s registry: records carry
/// the event's own fields only, so span bookkeeping bought nothing (and cost bytes: the
/// figure is in Cargo.toml). Tether opens no spans; any that are enabled get one shared
/// id and are otherwise ignored.
impl Subscriber for Bridge {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        // `sometimes`, not `always`/`never` by level: the interest is cached per call site
        // across every client's dispatch, and clients may have different levels.
        if meta.target().starts_with("tether") {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        self.wants(meta)
    }

    fn new_span(&self, _span: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _span: &span::Id, _values: &span::Record<'_>) {}

    fn record_follows_from(&self, _span: &span::Id, _follows: &span::Id) {}

    fn enter(&self, _span: &span::Id) {}

    fn exit(&self, _span: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        if !self.wants(meta) {
            return;
        }
        let Some(level) = level_of(meta.level()) else {
            return;
        };
        let mut v = Fields::default();
        event.record(&mut v);
        self.queue.push(Record {
            level,
            target: meta.target(),
            message: v.0,
        });
    }
}

#[derive(Default)]
struct Fields(String);

impl Fields {
    fn push(&mut self, name: &str, value: std::fmt::Arguments<'_>) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        if name != "message" {
            let _ = write!(self.0, "{name}=");
        }
        let _ = self.0.write_fmt(value);
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.push(field.name(), format_args!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field.name(), format_args!("{value}"));
    }
}

/// A client's log dispatch: use it as a `tracing::Dispatch` (it derefs to one). Dropping
/// it (with the client) stops the delivery thread and releases the logger right here.
pub(crate) struct LogDispatch {
    dispatch: tracing::Dispatch,
    queue: Option<Arc<Queue>>,
}

impl std::ops::Deref for LogDispatch {
    type Target = tracing::Dispatch;

    fn deref(&self) -> &tracing::Dispatch {
        &self.dispatch
    }
}

impl Drop for LogDispatch {
    fn drop(&mut self) {
        if let Some(q) = self.queue.take() {
            q.stop();
        }
    }
}

/// The dispatch a client attaches to its work: the foreign logger, fed records of
/// `min_level` and above by its own delivery thread, or nothing.
pub(crate) fn dispatch(logger: Option<Arc<dyn Logger>>, min_level: LogLevel) -> LogDispatch {
    let none = || LogDispatch {
        dispatch: tracing::Dispatch::none(),
        queue: None,
    };
    let Some(logger) = logger else {
        return none();
    };
    let queue = Arc::new(Queue {
        state: Mutex::new(QueueState::default()),
        wake: Condvar::new(),
        idle: Condvar::new(),
        stopped: AtomicBool::new(false),
        logger: Mutex::new(Some(logger)),
    });
    let q = queue.clone();
    DELIVERY_THREADS.fetch_add(1, Ordering::SeqCst);
    let spawned = std::thread::Builder::new()
        .name("tether-log".into())
        .spawn(move || {
            q.run();
            DELIVERY_THREADS.fetch_sub(1, Ordering::SeqCst);
        });
    if spawned.is_err() {
        // No thread, no logging; the client still works. The logger is released here.
        DELIVERY_THREADS.fetch_sub(1, Ordering::SeqCst);
        queue.stop();
        return none();
    }
    LogDispatch {
        dispatch: tracing::Dispatch::new(Bridge {
            queue: queue.clone(),
            min_level,
        }),
        queue: Some(queue),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    const PATIENCE: Duration = Duration::from_secs(60);

    /// The thread count is process-wide: tests that create loggers run one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn serial() -> MutexGuard<'static, ()> {
        lock(&SERIAL)
    }

    type Line = (LogLevel, String, String);

    /// Sends every record to the test; the first call blocks until the gate opens, if
    /// there is a gate.
    struct Probe {
        tx: Mutex<mpsc::Sender<Line>>,
        first: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>,
        released_on: Mutex<Option<std::thread::ThreadId>>,
    }

    impl Logger for Probe {
        fn log(&self, level: LogLevel, target: String, message: String) {
            let first = lock(&self.first).take();
            if let Some((entered, gate)) = first {
                entered.send(()).unwrap();
                gate.recv_timeout(PATIENCE).unwrap();
            }
            let _ = lock(&self.tx).send((level, target, message));
        }
    }

    /// Stands in for the foreign logger's release: records which thread released it.
    struct Foreign(Arc<Probe>);

    impl Logger for Foreign {
        fn log(&self, level: LogLevel, target: String, message: String) {
            self.0.log(level, target, message)
        }
    }

    impl Drop for Foreign {
        fn drop(&mut self) {
            *lock(&self.0.released_on) = Some(std::thread::current().id());
        }
    }

    struct Setup {
        probe: Arc<Probe>,
        lines: mpsc::Receiver<Line>,
        entered: mpsc::Receiver<()>,
        gate: mpsc::Sender<()>,
    }

    fn setup(blocking: bool) -> (Setup, Arc<dyn Logger>) {
        let (tx, lines) = mpsc::channel();
        let (entered_tx, entered) = mpsc::channel();
        let (gate, gate_rx) = mpsc::channel();
        let probe = Arc::new(Probe {
            tx: Mutex::new(tx),
            first: Mutex::new(blocking.then_some((entered_tx, gate_rx))),
            released_on: Mutex::new(None),
        });
        let logger: Arc<dyn Logger> = Arc::new(Foreign(probe.clone()));
        (
            Setup {
                probe,
                lines,
                entered,
                gate,
            },
            logger,
        )
    }

    fn log_with(d: &tracing::Dispatch, f: impl FnOnce()) {
        tracing::dispatcher::with_default(d, f)
    }

    fn wait_idle(d: &LogDispatch) {
        let q = d.queue.as_ref().unwrap();
        for _ in 0..6_000 {
            {
                let s = lock(&q.state);
                if !s.busy && s.records.is_empty() && s.dropped == 0 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the delivery thread never went idle");
    }

    /// Waits (bounded) until at most `at_most` delivery threads are alive; earlier tests'
    /// threads end on their own shortly after those tests drop their dispatches.
    fn wait_threads(at_most: usize) -> usize {
        for _ in 0..6_000 {
            let n = DELIVERY_THREADS.load(Ordering::SeqCst);
            if n <= at_most {
                return n;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        DELIVERY_THREADS.load(Ordering::SeqCst)
    }

    #[test]
    fn a_stalled_logger_never_holds_up_the_caller_and_the_overflow_is_counted() {
        let _s = serial();
        let (t, logger) = setup(true);
        let d = Arc::new(dispatch(Some(logger), LogLevel::Debug));
        log_with(
            &d,
            || tracing::info!(target: "tether::test", n = 0, "first"),
        );
        t.entered.recv_timeout(PATIENCE).unwrap();
        // The logger now sits in its first call until the gate opens, which happens only
        // after these 5,000 records were logged: a caller that waited for the logger would
        // never finish, and the timeout would fail the test.
        let (done_tx, done) = mpsc::channel();
        let d2 = d.clone();
        std::thread::spawn(move || {
            log_with(&d2, || {
                for n in 1..=5_000 {
                    tracing::debug!(target: "tether::test", n, "more");
                }
            });
            done_tx.send(()).unwrap();
        });
        done.recv_timeout(PATIENCE)
            .expect("logging waited for the stalled logger");
        t.gate.send(()).unwrap();
        let mut got = Vec::new();
        while got.len() < QUEUE_CAP + 2 {
            got.push(t.lines.recv_timeout(PATIENCE).unwrap());
        }
        assert_eq!(got[0].2, "first n=0");
        assert_eq!(got[1].2, "more n=1");
        assert_eq!(got[QUEUE_CAP].2, format!("more n={QUEUE_CAP}"));
        let dropped = 5_000 - QUEUE_CAP;
        assert_eq!(
            got[QUEUE_CAP + 1],
            (
                LogLevel::Warn,
                "tether::logging".to_string(),
                format!("{dropped} log records dropped: the logger fell behind")
            )
        );
        // Once there is room again, records flow as before, after the notice.
        log_with(&d, || tracing::info!(target: "tether::test", "after"));
        assert_eq!(t.lines.recv_timeout(PATIENCE).unwrap().2, "after");
    }

    #[test]
    fn only_tether_records_at_or_above_the_level_are_delivered() {
        let _s = serial();
        let (t, logger) = setup(false);
        let d = dispatch(Some(logger), LogLevel::Warn);
        log_with(&d, || {
            tracing::debug!(target: "tether::test", "debug");
            tracing::info!(target: "tether::test", "info");
            tracing::warn!(target: "tether::test", code = 7, "warn");
            tracing::error!(target: "hyper::proto", "not ours");
            tracing::error!(target: "tether::test", "error");
        });
        let d2 = dispatch(setup(false).1.into(), LogLevel::Debug);
        log_with(
            &d2,
            || tracing::debug!(target: "tether::test", "other client"),
        );
        assert_eq!(
            t.lines.recv_timeout(PATIENCE).unwrap(),
            (
                LogLevel::Warn,
                "tether::test".to_string(),
                "warn code=7".to_string()
            )
        );
        assert_eq!(t.lines.recv_timeout(PATIENCE).unwrap().2, "error");
        // Everything was queued before "error", in order: nothing else is coming.
        wait_idle(&d);
        wait_idle(&d2);
        assert!(t.lines.try_recv().is_err());
    }

    #[test]
    fn dropping_the_dispatch_ends_its_thread_and_releases_the_logger_on_the_spot() {
        let _s = serial();
        let before = wait_threads(0);
        let mut all = Vec::new();
        for i in 0..20 {
            let (t, logger) = setup(false);
            let d = dispatch(Some(logger), LogLevel::Info);
            log_with(&d, || tracing::info!(target: "tether::test", i, "hello"));
            assert_eq!(
                t.lines.recv_timeout(PATIENCE).unwrap().2,
                format!("hello i={i}")
            );
            all.push((t, d));
        }
        assert_eq!(DELIVERY_THREADS.load(Ordering::SeqCst), before + 20);
        for (t, d) in all {
            wait_idle(&d);
            drop(d);
            assert_eq!(
                *lock(&t.probe.released_on),
                Some(std::thread::current().id()),
                "the logger must be released by the thread that dropped the client"
            );
        }
        assert_eq!(wait_threads(before), before, "delivery threads leaked");
    }

    #[test]
    fn a_client_s_delivery_thread_ends_when_the_client_is_dropped() {
        let _s = serial();
        let before = wait_threads(0);
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let (t, logger) = setup(false);
            let config =
                crate::ClientConfig::new("http://127.0.0.1:9", "app", dir.path().to_str().unwrap());
            let client =
                crate::TetherClient::with_logger(config, crate::in_memory_token_store(), logger)
                    .unwrap();
            assert_eq!(DELIVERY_THREADS.load(Ordering::SeqCst), before + 1);
            crate::runtime::runtime()
                .block_on(client.restore_session())
                .unwrap();
            let (_, target, message) = t.lines.recv_timeout(PATIENCE).unwrap();
            assert_eq!(target, "tether::auth");
            assert!(message.starts_with("session restored"), "{message}");
            drop(client);
            assert_eq!(wait_threads(before), before, "the client's thread leaked");
        }
    }
}
