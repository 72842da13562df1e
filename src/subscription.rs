//! Listener plumbing: a [`Broadcaster`] fans events out to subscribers, each served by its
//! own task, in order, on a blocking thread (listeners are foreign code: they may be
//! slow, and they are never called while Tether holds a lock). A [`Subscription`] stops
//! its listener when cancelled or dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tracing::instrument::WithSubscriber;

use crate::runtime::runtime;

type Subscribers<E> = Vec<(u64, mpsc::UnboundedSender<E>)>;

pub(crate) struct Broadcaster<E> {
    subs: Mutex<Subscribers<E>>,
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

impl<E: Clone + Send + 'static> Broadcaster<E> {
    /// Queues `event` for every subscriber. Never blocks, never calls a listener.
    pub fn emit(&self, event: E) {
        let mut subs = self.subs.lock().unwrap_or_else(|p| p.into_inner());
        subs.retain(|(_, tx)| tx.send(event.clone()).is_ok());
    }

    /// Registers `deliver`; it first receives `initial()` (read under the same lock as
    /// `emit`, so no event between the two is missed), then every later event.
    pub fn subscribe(
        self: &Arc<Self>,
        dispatch: tracing::Dispatch,
        initial: impl FnOnce() -> E,
        deliver: impl Fn(E) + Send + Sync + 'static,
    ) -> Arc<Subscription> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut subs = self.subs.lock().unwrap_or_else(|p| p.into_inner());
            let _ = tx.send(initial());
            subs.push((id, tx));
        }
        let deliver = Arc::new(deliver);
        let task = runtime().spawn(
            async move {
                while let Some(event) = rx.recv().await {
                    let d = deliver.clone();
                    if tokio::task::spawn_blocking(move || d(event)).await.is_err() {
                        tracing::warn!(target: "tether::listener", "a listener panicked");
                    }
                }
            }
            .with_subscriber(dispatch),
        );
        let weak = Arc::downgrade(self);
        Arc::new(Subscription {
            stop: Mutex::new(Some(Box::new(move || {
                task.abort();
                if let Some(b) = weak.upgrade() {
                    b.subs
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .retain(|(i, _)| *i != id);
                }
            }))),
        })
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
    /// Stops the listener. Events already being delivered may still arrive once.
    pub fn cancel(&self) {
        let stop = self.stop.lock().unwrap_or_else(|p| p.into_inner()).take();
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
