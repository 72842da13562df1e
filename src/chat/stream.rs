//! One reply in flight: the HTTP stream read through the SSE parser, and two helpers
//! beside the reader so that neither a slow listener nor a database commit ever stalls
//! it:
//!
//! - the delivery task coalesces deltas and calls the foreign `ChatListener` at most
//!   once per frame (`delta_interval_ms`), on a blocking thread, then the final
//!   `on_complete` / `on_error` after the last delta;
//! - the persistence task appends the text to the message in batches (at most one
//!   commit per `flush_interval_ms`, or after `flush_max_deltas` deltas when set), so a
//!   kill keeps the reply up to the last flush, and settles the message at the end in the
//!   same transaction as the last text.
//!
//! The reply runs as a task of its own: when the caller's future is dropped (a cancelled
//! Kotlin coroutine, a JS `AbortSignal`) or its `CancelHandle` fires, the task stops the
//! HTTP stream and still stores the partial reply as `cancelled`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::instrument::WithSubscriber;

use super::ChatListener;
use crate::api::Api;
use crate::error::{Error, HttpFailure, Result, TetherError};
use crate::runtime::CancelHandle;
use crate::sse::{Limits, Parser};
use crate::store::history::{self, Message, MessageStatus, TokenUsage};
use crate::store::Store;
use crate::subscription::call_foreign;
use crate::transport::Request;

/// What the chat floor counts, for the benchmarks and tests.
#[derive(Debug, Default)]
pub struct Counters {
    /// Write transactions that carried reply text or settled a reply.
    pub commits: AtomicU64,
    /// `on_delta` calls made.
    pub deltas_delivered: AtomicU64,
}

/// Everything one reply needs.
pub(crate) struct Reply {
    pub api: Arc<Api>,
    pub store: Arc<Store>,
    pub counters: Arc<Counters>,
    pub message_id: String,
    pub request: Request,
    pub stream: bool,
    pub listener: Arc<dyn ChatListener>,
    pub delta_interval: Duration,
    pub flush_interval: Duration,
    pub flush_max_deltas: u32,
}

/// Runs the reply to its end and returns the settled message (`Complete` or
/// `Incomplete`), or the error that failed or cancelled it (the message is stored
/// either way).
pub(crate) async fn run(reply: Reply, cancel: Option<Arc<CancelHandle>>) -> Result<Message> {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(reply_task(reply, stopped, cancel).with_current_subscriber());
    let r = task.await;
    // Dropping `stop` before the task ends (this future dropped) is what stops it.
    drop(stop);
    match r {
        Ok(r) => r,
        Err(_) => Err(Error::Storage("the reply task panicked".into())),
    }
}

enum Outcome {
    Done,
    /// The stream ended without `[DONE]`, or broke off (the error says how).
    Truncated(Option<Error>),
    Failed(Error),
    Cancelled,
}

async fn reply_task(
    r: Reply,
    mut stopped: oneshot::Receiver<()>,
    cancel: Option<Arc<CancelHandle>>,
) -> Result<Message> {
    let delivery = Delivery::start(&r);
    let persist = Persist::start(&r);
    let mut usage = None;
    let stop = async {
        match &cancel {
            Some(c) => tokio::select! {
                _ = &mut stopped => {},
                _ = c.cancelled() => {},
            },
            None => {
                let _ = (&mut stopped).await;
            }
        }
    };
    let outcome = tokio::select! {
        biased;
        _ = stop => Outcome::Cancelled,
        o = read(&r, &delivery, &persist, &mut usage) => o,
    };
    let (status, error) = match &outcome {
        Outcome::Done => (MessageStatus::Complete, None),
        Outcome::Truncated(e) => (MessageStatus::Incomplete, e.clone()),
        Outcome::Failed(e) => (MessageStatus::Failed, Some(e.clone())),
        Outcome::Cancelled => (MessageStatus::Cancelled, None),
    };
    tracing::debug!(target: "tether::chat", status = status.as_str(), "reply ended");
    let settled = persist
        .finish(status, usage, error.as_ref().map(|e| e.to_string()))
        .await;
    let message = match settled {
        Ok(m) => m,
        Err(e) => {
            delivery
                .end(End::Error(r.message_id.clone(), e.clone().into()))
                .await;
            return Err(e);
        }
    };
    match outcome {
        Outcome::Done | Outcome::Truncated(_) | Outcome::Cancelled => {
            delivery.end(End::Complete(message.clone())).await;
        }
        Outcome::Failed(ref e) => {
            delivery
                .end(End::Error(r.message_id.clone(), e.clone().into()))
                .await;
        }
    }
    match outcome {
        Outcome::Done | Outcome::Truncated(_) => Ok(message),
        Outcome::Failed(e) => Err(e),
        Outcome::Cancelled => Err(Error::Cancelled),
    }
}

/// One event of the Workers AI stream (or the whole non-streaming answer).
#[derive(Deserialize)]
struct Piece {
    #[serde(default)]
    response: String,
    usage: Option<TokenUsage>,
}

async fn read(
    r: &Reply,
    delivery: &Delivery,
    persist: &Persist,
    usage: &mut Option<TokenUsage>,
) -> Outcome {
    let mut take = |p: Piece| {
        if let Some(u) = p.usage {
            *usage = Some(u);
        }
        if !p.response.is_empty() {
            delivery.push(&p.response);
            persist.push(p.response);
        }
    };
    if !r.stream {
        return match r.api.send(r.request.clone()).await {
            Err(e) => Outcome::Failed(e),
            Ok(reply) => match serde_json::from_slice::<Piece>(&reply.body) {
                Ok(p) => {
                    take(p);
                    Outcome::Done
                }
                Err(e) => Outcome::Failed(Error::decode(format!("chat reply: {e}"))),
            },
        };
    }
    let mut stream = match r.api.send_stream(r.request.clone()).await {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(e),
    };
    let mut parser = Parser::new(Limits::default());
    let mut events = Vec::new();
    loop {
        let chunk = match stream.next().await {
            Ok(Some(c)) => c,
            Ok(None) => return Outcome::Truncated(None),
            Err(e) => return Outcome::Truncated(Some(e)),
        };
        if let Err(e) = parser.feed_into(&chunk, &mut events) {
            return Outcome::Failed(Error::decode(e));
        }
        for ev in events.drain(..) {
            match &*ev.event {
                "error" => return Outcome::Failed(error_event(&ev.data, &stream.request_id)),
                "message" if ev.data == "[DONE]" => return Outcome::Done,
                "message" => match serde_json::from_str::<Piece>(&ev.data) {
                    Ok(p) => take(p),
                    Err(e) => {
                        tracing::warn!(target: "tether::chat", error = %e, "an SSE event that is not a chat piece was skipped")
                    }
                },
                _ => {}
            }
        }
    }
}

/// An `event: error` carries the contract's error body; its code names the status.
fn error_event(data: &str, request_id: &Option<String>) -> Error {
    #[derive(Deserialize)]
    struct Body {
        error: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
        plan_required: Option<String>,
    }
    let (code, message, plan_required) = match serde_json::from_str::<Body>(data) {
        Ok(b) => (b.error.code, b.error.message, b.error.plan_required),
        Err(_) => ("upstream".into(), data.chars().take(200).collect(), None),
    };
    let status = match code.as_str() {
        "quota_exceeded" => 402,
        "forbidden" => 403,
        "timeout" => 408,
        "rate_limited" => 429,
        "unavailable" => 503,
        "internal" => 500,
        "invalid_input" => 422,
        "bad_request" => 400,
        _ => 502,
    };
    Error::Http(Box::new(HttpFailure {
        status,
        code,
        message,
        retry_after: None,
        plan_required,
        quota: None,
        max_bytes: None,
        request_id: request_id.clone(),
    }))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Calls the listener on a blocking thread; a panic (a foreign exception) is logged.
async fn foreign(f: impl FnOnce() + Send + 'static) {
    let r = tokio::task::spawn_blocking(move || {
        catch_unwind(AssertUnwindSafe(|| call_foreign(f))).is_ok()
    })
    .await;
    if !matches!(r, Ok(true)) {
        tracing::warn!(target: "tether::chat", "a chat listener panicked");
    }
}

pub(crate) enum End {
    Complete(Message),
    Error(String, TetherError),
}

#[derive(Default)]
struct Pending {
    text: String,
    end: Option<End>,
}

struct Delivery {
    shared: Arc<(Mutex<Pending>, Notify)>,
    task: JoinHandle<()>,
}

impl Delivery {
    fn start(r: &Reply) -> Delivery {
        let shared = Arc::new((Mutex::new(Pending::default()), Notify::new()));
        let (s, listener, id, frame, counters) = (
            shared.clone(),
            r.listener.clone(),
            r.message_id.clone(),
            r.delta_interval,
            r.counters.clone(),
        );
        let task = tokio::spawn(
            async move {
                loop {
                    s.1.notified().await;
                    let (text, end) = {
                        let mut p = lock(&s.0);
                        (std::mem::take(&mut p.text), p.end.take())
                    };
                    let delivered = !text.is_empty();
                    if delivered {
                        let (l, id) = (listener.clone(), id.clone());
                        counters.deltas_delivered.fetch_add(1, Ordering::Relaxed);
                        foreign(move || l.on_delta(id, text)).await;
                    }
                    if let Some(end) = end {
                        let l = listener.clone();
                        foreign(move || match end {
                            End::Complete(m) => l.on_complete(m),
                            End::Error(id, e) => l.on_error(id, e),
                        })
                        .await;
                        return;
                    }
                    if delivered {
                        // One crossing per frame at most; deltas pile up meanwhile.
                        tokio::time::sleep(frame).await;
                    }
                }
            }
            .with_current_subscriber(),
        );
        Delivery { shared, task }
    }

    fn push(&self, text: &str) {
        lock(&self.shared.0).text.push_str(text);
        self.shared.1.notify_one();
    }

    /// Delivers what is pending, then `end`; returns when the listener has seen it.
    async fn end(self, end: End) {
        lock(&self.shared.0).end = Some(end);
        self.shared.1.notify_one();
        let _ = self.task.await;
    }
}

enum Write {
    Append(String),
    Finish {
        status: MessageStatus,
        usage: Option<TokenUsage>,
        error: Option<String>,
        done: oneshot::Sender<Result<Message>>,
    },
}

struct Persist {
    tx: mpsc::UnboundedSender<Write>,
}

impl Persist {
    fn start(r: &Reply) -> Persist {
        let (tx, mut rx) = mpsc::unbounded_channel::<Write>();
        let (store, id, interval, max, counters) = (
            r.store.clone(),
            r.message_id.clone(),
            r.flush_interval,
            r.flush_max_deltas,
            r.counters.clone(),
        );
        tokio::spawn(
            async move {
                let mut pending = String::new();
                let mut deltas = 0u32;
                let mut last = Instant::now() - interval;
                loop {
                    let next = if pending.is_empty() {
                        rx.recv().await
                    } else {
                        tokio::select! {
                            w = rx.recv() => w,
                            _ = tokio::time::sleep_until(last + interval) => {
                                flush(&store, &id, &mut pending, &counters).await;
                                deltas = 0;
                                last = Instant::now();
                                continue;
                            }
                        }
                    };
                    match next {
                        Some(Write::Append(t)) => {
                            pending.push_str(&t);
                            deltas += 1;
                            let due = Instant::now() >= last + interval;
                            if due || (max > 0 && deltas >= max) {
                                flush(&store, &id, &mut pending, &counters).await;
                                deltas = 0;
                                last = Instant::now();
                            }
                        }
                        Some(Write::Finish {
                            status,
                            usage,
                            error,
                            done,
                        }) => {
                            let text = std::mem::take(&mut pending);
                            let id = id.clone();
                            counters.commits.fetch_add(1, Ordering::Relaxed);
                            let r = store
                                .write(move |tx| {
                                    if !text.is_empty() {
                                        history::append_content(tx, &id, &text)?;
                                    }
                                    history::finish_message(
                                        tx,
                                        &id,
                                        status,
                                        usage,
                                        error.as_deref(),
                                    )?;
                                    history::require_message(tx, &id)
                                })
                                .await;
                            let _ = done.send(r);
                            return;
                        }
                        // The reply task went away without settling (it panicked): keep
                        // the text; the message is recovered as incomplete at next start.
                        None => {
                            flush(&store, &id, &mut pending, &counters).await;
                            return;
                        }
                    }
                }
            }
            .with_current_subscriber(),
        );
        Persist { tx }
    }

    fn push(&self, text: String) {
        let _ = self.tx.send(Write::Append(text));
    }

    async fn finish(
        self,
        status: MessageStatus,
        usage: Option<TokenUsage>,
        error: Option<String>,
    ) -> Result<Message> {
        let (done, result) = oneshot::channel();
        let _ = self.tx.send(Write::Finish {
            status,
            usage,
            error,
            done,
        });
        result
            .await
            .unwrap_or_else(|_| Err(Error::Storage("the reply writer stopped".into())))
    }
}

/// One batch of text appended in one transaction. A failed write is logged and the text
/// kept for the next one (the database may be busy for a moment).
async fn flush(store: &Store, id: &str, pending: &mut String, counters: &Counters) {
    let text = std::mem::take(pending);
    let (id, t) = (id.to_string(), text.clone());
    counters.commits.fetch_add(1, Ordering::Relaxed);
    if let Err(e) = store
        .write(move |tx| history::append_content(tx, &id, &t))
        .await
    {
        tracing::warn!(target: "tether::chat", error = %e, "could not save the reply so far; will retry");
        *pending = text + pending.as_str();
    }
}
