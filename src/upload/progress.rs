//! Upload progress: the body stream counts bytes into a [`Counter`] (cheap, no foreign
//! code: it runs in the connection's task, which may outlive the call); [`report`] reads
//! it at most every 50 ms from the caller's own task and calls the `UploadProgress`
//! there. So a dropped or cancelled call makes no further calls: the task that would
//! make them is gone.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::UploadProgress;
use crate::error::Result;
use crate::subscription::call_foreign;
use crate::transport::ProgressHook;

/// At most 20 progress calls a second (plus the final one).
const INTERVAL: Duration = Duration::from_millis(50);

const SENT_BITS: u32 = 48;
const SENT_MASK: u64 = (1 << SENT_BITS) - 1;

/// The attempt number and its bytes sent, in one atomic so a reader never pairs one
/// attempt's number with another's count; and the body's total length.
#[derive(Clone, Default)]
pub(crate) struct Counter {
    packed: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
}

impl Counter {
    /// The hook the form's streams report to: `sent == 0` opens a new attempt.
    pub fn hook(&self) -> ProgressHook {
        let c = self.clone();
        Arc::new(move |sent, total| {
            c.total.store(total, Ordering::Relaxed);
            if sent == 0 {
                let attempt = (c.packed.load(Ordering::Relaxed) >> SENT_BITS) + 1;
                c.packed.store(attempt << SENT_BITS, Ordering::Release);
            } else {
                let attempt = c.packed.load(Ordering::Relaxed) >> SENT_BITS;
                c.packed.store(
                    (attempt << SENT_BITS) | (sent & SENT_MASK),
                    Ordering::Release,
                );
            }
        })
    }

    /// `(attempt, sent, total)`; attempt 0 means no attempt opened the body yet.
    fn read(&self) -> (u32, u64, u64) {
        let p = self.packed.load(Ordering::Acquire);
        let attempt = u32::try_from(p >> SENT_BITS).unwrap_or(u32::MAX);
        (attempt, p & SENT_MASK, self.total.load(Ordering::Relaxed))
    }
}

fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Drives `work` to its end, telling `listener` of the counter's changes at most every
/// [`INTERVAL`] and once more at the end of a successful call.
pub(crate) async fn report<T>(
    work: impl Future<Output = Result<T>>,
    counter: &Counter,
    listener: Option<Arc<dyn UploadProgress>>,
) -> Result<T> {
    let Some(listener) = listener else {
        return work.await;
    };
    let mut last: Option<(u32, u64)> = None;
    let mut tell = |final_call: bool| {
        let (attempt, sent, total) = counter.read();
        if attempt == 0 || last == Some((attempt, sent)) {
            return;
        }
        // A new attempt reports from its own start; within one, only growth is news.
        if let Some((a, s)) = last {
            if a == attempt && sent < s && !final_call {
                return;
            }
        }
        last = Some((attempt, sent));
        let l = &listener;
        call_foreign(|| l.on_progress(attempt, saturate(sent), saturate(total)));
    };
    tokio::pin!(work);
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            out = &mut work => {
                if out.is_ok() {
                    tell(true);
                }
                return out;
            }
            _ = tick.tick() => tell(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Calls(Mutex<Vec<(u32, u32, u32)>>);

    impl UploadProgress for Calls {
        fn on_progress(&self, attempt: u32, sent: u32, total: u32) {
            self.0.lock().unwrap().push((attempt, sent, total));
        }
    }

    /// The body's last bytes go out and the answer arrives within one poll of the work, so
    /// no tick can see `sent == total`: only the final call reports it.
    #[tokio::test]
    async fn the_last_call_of_a_successful_attempt_is_sent_equals_total() {
        let counter = Counter::default();
        let hook = counter.hook();
        let calls = Arc::new(Calls::default());
        let work = async {
            hook(0, 1000);
            hook(400, 1000);
            // Long enough for the ticker to report 400 of attempt 1.
            tokio::time::sleep(INTERVAL * 3).await;
            hook(0, 1000); // a retry
            hook(300, 1000);
            tokio::time::sleep(INTERVAL * 3).await;
            hook(1000, 1000);
            Ok(())
        };
        report(work, &counter, Some(calls.clone())).await.unwrap();
        let seen = calls.0.lock().unwrap().clone();
        assert_eq!(seen.last(), Some(&(2, 1000, 1000)), "{seen:?}");
        assert!(seen.contains(&(1, 400, 1000)), "{seen:?}");
        assert!(seen.iter().all(|c| c.1 < 1000 || c.0 == 2), "{seen:?}");

        // A body sent and answered in one poll: the final call is the only one.
        let counter = Counter::default();
        let hook = counter.hook();
        let calls = Arc::new(Calls::default());
        let work = async {
            hook(0, 10);
            hook(10, 10);
            Ok(())
        };
        report(work, &counter, Some(calls.clone())).await.unwrap();
        assert_eq!(*calls.0.lock().unwrap(), vec![(1, 10, 10)]);
    }

    #[tokio::test]
    async fn a_failed_call_makes_no_final_call() {
        let counter = Counter::default();
        let hook = counter.hook();
        let calls = Arc::new(Calls::default());
        let work = async {
            hook(0, 10);
            hook(10, 10);
            Err::<(), _>(crate::error::Error::Cancelled)
        };
        assert!(report(work, &counter, Some(calls.clone())).await.is_err());
        assert!(calls.0.lock().unwrap().is_empty());
    }
}
