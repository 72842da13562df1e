//! The library's one tokio runtime, the bridge that runs exported async calls on it, the
//! [`CancelHandle`] long calls accept, and the timer anchor ([`deadline_armed`]).
//!
//! Exported async methods hand their work to [`run`]: the work is spawned on our runtime
//! and the foreign side awaits a join handle that aborts the task when dropped. Dropping
//! the foreign future (a cancelled Kotlin coroutine, a JS `AbortSignal`) therefore drops
//! the Rust future at its next await point. Swift's UniFFI futures are not dropped when
//! their `Task` is cancelled, which is why long calls also take a `CancelHandle`.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::instrument::WithSubscriber;

use crate::error::TetherError;

pub(crate) fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(8)
            .thread_name("tether-rt")
            .enable_all()
            .build()
            // Without its runtime the library can do nothing at all; this fails only if
            // the OS refuses threads, long before any call could report it.
            .unwrap_or_else(|e| panic!("the tokio runtime must start: {e}"))
    })
}

/// Told by the transport each time it arms a deadline (an attempt's first byte, a body
/// chunk), so that arming one does not wake a sleeping thread.
///
/// Why: tokio wakes the thread parked on its timer driver whenever a new timer is due
/// before that thread's planned wake-up, and with no timer pending it has none planned.
/// On a quiet runtime every request's first deadline therefore cost a cross-thread
/// wake-up and two context switches; in `scripts/bench core` that was most of the
/// pipeline's time over bare reqwest (which arms no deadline at all). So while deadlines
/// are being armed, one task keeps a short timer pending: the driver always plans to wake
/// within [`ANCHOR_TICK`], before any deadline longer than that, and a new deadline wakes
/// nobody. The task ends after a tick in which nothing was armed. Deadlines shorter than
/// the tick still work; they only wake the driver as before.
pub(crate) fn deadline_armed() {
    static ANCHOR: Anchor = Anchor::new();
    ANCHOR.arm(runtime().handle());
}

/// How often the anchor's timer fires while deadlines are being armed (and so how long
/// it outlives the last one).
const ANCHOR_TICK: Duration = Duration::from_secs(1);

/// The state behind [`deadline_armed`]: how many deadlines were armed, and whether the
/// anchor task is running.
struct Anchor {
    armed: AtomicU64,
    running: AtomicBool,
}

impl Anchor {
    const fn new() -> Self {
        Anchor {
            armed: AtomicU64::new(0),
            running: AtomicBool::new(false),
        }
    }

    fn arm(&'static self, rt: &tokio::runtime::Handle) {
        self.armed.fetch_add(1, Ordering::Relaxed);
        if !self.running.load(Ordering::Relaxed) && !self.running.swap(true, Ordering::SeqCst) {
            rt.spawn(self.keep());
        }
    }

    /// The anchor task: a tick per [`ANCHOR_TICK`] until one passes with nothing armed.
    async fn keep(&'static self) {
        let mut seen = self.armed.load(Ordering::SeqCst);
        loop {
            tokio::time::sleep(ANCHOR_TICK).await;
            let now = self.armed.load(Ordering::SeqCst);
            if now == seen {
                self.running.store(false, Ordering::SeqCst);
                // A deadline armed between the load and the store saw the anchor running
                // and started none: carry on for it, unless another anchor started since.
                if self.armed.load(Ordering::SeqCst) == now
                    || self.running.swap(true, Ordering::SeqCst)
                {
                    return;
                }
            }
            seen = self.armed.load(Ordering::SeqCst);
        }
    }
}

/// Aborts the task when the awaiting future is dropped.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A call's work with its result type erased, so that every exported call spawns the
/// same task type.
type ErasedCall = Pin<Box<dyn Future<Output = Result<Box<dyn Any + Send>, TetherError>> + Send>>;

/// Runs `fut` on the library runtime with the client's log dispatch, honouring `cancel`.
/// A panic inside is resumed here, so UniFFI turns it into the foreign side's internal
/// error instead of letting it unwind across the boundary.
pub(crate) async fn run<T, F>(
    dispatch: &tracing::Dispatch,
    cancel: Option<Arc<CancelHandle>>,
    fut: F,
) -> Result<T, TetherError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, TetherError>> + Send + 'static,
{
    // Spawning `fut` itself would instantiate tokio's task machinery (harness, cell,
    // cancel, join) once per exported call and log mode, ~180 copies and ~400 KB of the
    // stripped library (scripts/size-breakdown). Erased, it is instantiated twice, for
    // the price of one small allocation per call.
    let erased: ErasedCall =
        Box::pin(async move { fut.await.map(|v| Box::new(v) as Box<dyn Any + Send>) });
    let out = run_erased(dispatch, cancel, erased).await?;
    match out.downcast::<T>() {
        Ok(v) => Ok(*v),
        // Unreachable: `erased` boxes exactly a `T` above.
        Err(_) => Err(TetherError::Decode {
            detail: "internal: a call's result had an unexpected type".into(),
        }),
    }
}

/// The one non-generic body of [`run`].
async fn run_erased(
    dispatch: &tracing::Dispatch,
    cancel: Option<Arc<CancelHandle>>,
    fut: ErasedCall,
) -> Result<Box<dyn Any + Send>, TetherError> {
    let work = async move {
        match cancel {
            None => fut.await,
            Some(c) => tokio::select! {
                biased;
                _ = c.cancelled() => Err(TetherError::Cancelled),
                r = fut => r,
            },
        }
    };
    // Without a logger there is nothing to route: skip the per-poll dispatch swap.
    let handle = if dispatch.is::<tracing::subscriber::NoSubscriber>() {
        runtime().spawn(work)
    } else {
        runtime().spawn(work.with_subscriber(dispatch.clone()))
    };
    let mut task = AbortOnDrop(handle);
    match (&mut task.0).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(TetherError::Cancelled),
    }
}

/// Cancels the calls it is passed to. One handle may serve several calls; once cancelled
/// it stays cancelled. Works the same on every platform (use it from Swift, where
/// cancelling a `Task` does not reach Rust).
#[derive(Debug, Default, uniffi::Object)]
pub struct CancelHandle {
    cancelled: AtomicBool,
    notify: Notify,
}

#[uniffi::export]
impl CancelHandle {
    /// A fresh, not yet cancelled handle.
    #[uniffi::constructor]
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Cancels every call using this handle: they end with `TetherError::Cancelled`.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Whether `cancel` was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

impl CancelHandle {
    pub(crate) async fn cancelled(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod anchor_tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_anchor_runs_while_deadlines_are_armed_and_ends_after_an_idle_tick() {
        static ANCHOR: Anchor = Anchor::new();
        let rt = tokio::runtime::Handle::current();
        let is_running = || ANCHOR.running.load(Ordering::SeqCst);
        assert!(!is_running());
        ANCHOR.arm(&rt);
        assert!(is_running());
        // Armed again within each tick: it keeps going.
        for _ in 0..3 {
            tokio::time::sleep(ANCHOR_TICK / 2).await;
            ANCHOR.arm(&rt);
            tokio::time::sleep(ANCHOR_TICK / 2).await;
            assert!(is_running());
        }
        // A whole tick with nothing armed: it ends (no timer left ticking in an idle app).
        tokio::time::sleep(ANCHOR_TICK * 3).await;
        assert!(!is_running());
        // And starts again with the next deadline.
        ANCHOR.arm(&rt);
        assert!(is_running());
        tokio::time::sleep(ANCHOR_TICK * 3).await;
        assert!(!is_running());
    }
}
