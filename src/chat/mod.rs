//! Chat: a message sent in a conversation, its reply streamed from `POST /api/v1/chat`
//! into the history as it arrives (`stream.rs`), `regenerate` and `continue_incomplete`,
//! and the foreign [`ChatListener`] that watches a reply grow.
//!
//! Each send stores the user message, builds the request's context (the system prompt,
//! then the newest messages that fit `context_budget_chars`, oldest dropped first), and
//! creates the assistant message as `streaming` in the same transaction, so the history
//! shows both at once. A reply left `streaming` by a killed process is marked
//! `incomplete` when the next client starts ([`Chat::new`]).

mod stream;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

pub use stream::Counters;

use crate::api::Api;
use crate::error::{Error, Result, TetherError};
use crate::runtime::CancelHandle;
use crate::store::history::{self, Attachment, Message, MessageStatus, NewMessage, Role};
use crate::store::Store;
use crate::transport::{Body, Request};

/// Watches one reply. Called on a Tether thread, never while Tether holds a lock; a slow
/// listener gets bigger deltas, it never slows the stream down.
#[uniffi::export(with_foreign)]
pub trait ChatListener: Send + Sync {
    /// More text of the reply `message_id` (appended to what came before), at most once
    /// per `ChatOptions::delta_interval_ms`.
    fn on_delta(&self, message_id: String, text: String);
    /// The reply ended and is stored: `status` is `Complete`, `Incomplete` (the stream
    /// broke off; the text is what arrived) or `Cancelled`.
    fn on_complete(&self, message: Message);
    /// The reply failed (a refusal before any token, or an error event); it is stored as
    /// `Failed` with the text that had arrived.
    fn on_error(&self, message_id: String, error: TetherError);
}

/// How a reply is requested, streamed and stored. Every field has a default.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ChatOptions {
    /// The model; `None` lets the backend choose.
    #[uniffi(default = None)]
    pub model: Option<String>,
    /// Stream the reply (`true`) or receive it whole (`false`); stored the same way.
    #[uniffi(default = true)]
    pub stream: bool,
    /// The reply's token limit; `None` lets the backend choose.
    #[uniffi(default = None)]
    pub max_tokens: Option<u32>,
    /// Characters of history sent as context (system prompt aside); the oldest messages
    /// that do not fit are left out.
    #[uniffi(default = 24000)]
    pub context_budget_chars: u32,
    /// At most one `on_delta` per this many milliseconds (16: one per frame at 60 Hz).
    #[uniffi(default = 16)]
    pub delta_interval_ms: u32,
    /// The growing reply is saved at most this often (milliseconds).
    #[uniffi(default = 100)]
    pub flush_interval_ms: u32,
    /// Also save after this many deltas (0: by time only). Raises the commit rate.
    #[uniffi(default = 0)]
    pub flush_max_deltas: u32,
    /// Images attached to the user's message (kept by reference in the history).
    #[uniffi(default = [])]
    pub attachments: Vec<Attachment>,
}

impl Default for ChatOptions {
    fn default() -> Self {
        ChatOptions {
            model: None,
            stream: true,
            max_tokens: None,
            context_budget_chars: 24000,
            delta_interval_ms: 16,
            flush_interval_ms: 100,
            flush_max_deltas: 0,
            attachments: Vec::new(),
        }
    }
}

pub struct Chat {
    api: Arc<Api>,
    store: Arc<Store>,
    pub counters: Arc<Counters>,
}

/// What a reply needs from the transaction that prepared it.
struct Prepared {
    message_id: String,
    system_prompt: Option<String>,
    context: Vec<Message>,
}

impl Chat {
    /// Marks replies a previous process left `streaming` as `incomplete` (construction
    /// time, blocking).
    pub fn new(api: Arc<Api>, store: Arc<Store>) -> Result<Chat> {
        // A read first (the partial index makes it cheap): the common start writes nothing.
        let left = store.read_blocking(history::has_streaming)?;
        let n = match left {
            true => store.write_blocking(|tx| history::recover_streaming(tx))?,
            false => 0,
        };
        if n > 0 {
            tracing::info!(target: "tether::chat", replies = n, "replies cut off by the last exit are marked incomplete");
        }
        Ok(Chat {
            api,
            store,
            counters: Arc::new(Counters::default()),
        })
    }

    pub async fn send_message(
        &self,
        conversation_id: String,
        text: String,
        options: ChatOptions,
        listener: Arc<dyn ChatListener>,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<Message> {
        if text.trim().is_empty() && options.attachments.is_empty() {
            return Err(Error::InvalidInput("the message is empty".into()));
        }
        let budget = options.context_budget_chars as usize;
        let (attachments, model) = (options.attachments.clone(), options.model.clone());
        let prepared = self
            .store
            .write(move |tx| {
                let conv = history::require_conversation(tx, &conversation_id)?;
                let user = history::insert_message(
                    tx,
                    NewMessage {
                        conversation_id: conversation_id.clone(),
                        role: Role::User,
                        content: text,
                        status: MessageStatus::Complete,
                        model: None,
                        attachments,
                    },
                )?;
                let mut context = history::context(tx, &conversation_id, None, budget)?;
                if context.is_empty() {
                    context.push(user);
                }
                let reply = history::insert_message(
                    tx,
                    NewMessage {
                        conversation_id,
                        role: Role::Assistant,
                        content: String::new(),
                        status: MessageStatus::Streaming,
                        model,
                        attachments: Vec::new(),
                    },
                )?;
                Ok(Prepared {
                    message_id: reply.id,
                    system_prompt: conv.system_prompt,
                    context,
                })
            })
            .await?;
        self.reply(prepared, &options, listener, cancel).await
    }

    /// Asks again for the reply `message_id` (an assistant message): its text is
    /// replaced by a new reply to the same context.
    pub async fn regenerate(
        &self,
        message_id: String,
        options: ChatOptions,
        listener: Arc<dyn ChatListener>,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<Message> {
        let budget = options.context_budget_chars as usize;
        let prepared = self
            .store
            .write(move |tx| {
                let m = history::require_message(tx, &message_id)?;
                check_reply(&m, false)?;
                let conv = history::require_conversation(tx, &m.conversation_id)?;
                let context = history::context(tx, &m.conversation_id, Some(&m.id), budget)?;
                if context.is_empty() {
                    return Err(Error::InvalidInput(
                        "nothing before this reply to answer".into(),
                    ));
                }
                history::reset_message(tx, &m.id, MessageStatus::Streaming)?;
                Ok(Prepared {
                    message_id: m.id,
                    system_prompt: conv.system_prompt,
                    context,
                })
            })
            .await?;
        self.reply(prepared, &options, listener, cancel).await
    }

    /// Asks the model to go on with a reply that was cut short (`Incomplete` or
    /// `Cancelled`): the partial text is sent as context and the new text appended to it.
    pub async fn continue_incomplete(
        &self,
        message_id: String,
        options: ChatOptions,
        listener: Arc<dyn ChatListener>,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<Message> {
        let budget = options.context_budget_chars as usize;
        let prepared = self
            .store
            .write(move |tx| {
                let m = history::require_message(tx, &message_id)?;
                check_reply(&m, true)?;
                let conv = history::require_conversation(tx, &m.conversation_id)?;
                let room = budget.saturating_sub(m.content.chars().count());
                let mut context = history::context(tx, &m.conversation_id, Some(&m.id), room)?;
                context.push(m.clone());
                history::set_status(tx, &m.id, MessageStatus::Streaming)?;
                Ok(Prepared {
                    message_id: m.id,
                    system_prompt: conv.system_prompt,
                    context,
                })
            })
            .await?;
        self.reply(prepared, &options, listener, cancel).await
    }

    async fn reply(
        &self,
        p: Prepared,
        options: &ChatOptions,
        listener: Arc<dyn ChatListener>,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<Message> {
        let mut messages = Vec::with_capacity(p.context.len() + 1);
        if let Some(system) = p.system_prompt.filter(|s| !s.is_empty()) {
            messages.push(json!({ "role": "system", "content": system }));
        }
        for m in &p.context {
            messages.push(json!({ "role": m.role.as_str(), "content": m.content }));
        }
        let mut body = json!({ "messages": messages, "stream": options.stream });
        if let Some(model) = &options.model {
            body["model"] = json!(model);
        }
        if let Some(n) = options.max_tokens {
            body["max_tokens"] = json!(n);
        }
        let request =
            Request::new(reqwest::Method::POST, "chat").with_body(Body::json(body.to_string()));
        stream::run(
            stream::Reply {
                api: self.api.clone(),
                store: self.store.clone(),
                counters: self.counters.clone(),
                message_id: p.message_id,
                request,
                stream: options.stream,
                listener,
                delta_interval: Duration::from_millis(options.delta_interval_ms.into()),
                flush_interval: Duration::from_millis(options.flush_interval_ms.into()),
                flush_max_deltas: options.flush_max_deltas,
            },
            cancel,
        )
        .await
    }
}

fn check_reply(m: &Message, cut_short: bool) -> Result<()> {
    if m.role != Role::Assistant {
        return Err(Error::InvalidInput(format!(
            "message {:?} is not a reply",
            m.id
        )));
    }
    let ok = match (m.status, cut_short) {
        (MessageStatus::Streaming, _) => false,
        (MessageStatus::Incomplete | MessageStatus::Cancelled, true) => true,
        (_, true) => false,
        (_, false) => true,
    };
    if !ok {
        return Err(Error::InvalidInput(format!(
            "reply {:?} is {}",
            m.id,
            m.status.as_str()
        )));
    }
    Ok(())
}
