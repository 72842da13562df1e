//! The chat area of the facade: send a message and stream its reply into the history,
//! regenerate a reply, continue one that was cut short. The logic is in `crate::chat`.
//!
//! The `CancelHandle` goes to the chat floor rather than to `call`: a cancelled reply
//! is stored as `cancelled` with its partial text before the call returns `Cancelled`.

use std::sync::Arc;

use super::TetherClient;
use crate::chat::{ChatListener, ChatOptions};
use crate::error::TetherError;
use crate::runtime::CancelHandle;
use crate::store::history::Message;

#[uniffi::export]
impl TetherClient {
    /// Stores `text` as the user's message in `conversation_id`, then streams the reply
    /// into the history (an assistant message, `streaming` until it ends) while
    /// `listener` sees it grow. Returns the stored reply: `Complete`, or `Incomplete` if
    /// the stream broke off (the text is what arrived). Fails with `PlanRequired` on a
    /// 402 (the user message stays stored), with the backend's error for an error event
    /// (the reply is stored as `Failed`), and with `Cancelled` when `cancel` fires or the
    /// call is dropped (the reply is stored as `Cancelled` with its partial text).
    #[uniffi::method(default(cancel = None))]
    pub async fn send_message(
        &self,
        conversation_id: String,
        text: String,
        options: Option<ChatOptions>,
        listener: Arc<dyn ChatListener>,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<Message, TetherError> {
        self.call(None, |c| async move {
            c.send_message(conversation_id, text, options, listener, cancel)
                .await
        })
        .await
    }

    /// Replaces the reply `message_id` with a new reply to the messages before it.
    #[uniffi::method(default(cancel = None))]
    pub async fn regenerate(
        &self,
        message_id: String,
        options: Option<ChatOptions>,
        listener: Arc<dyn ChatListener>,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<Message, TetherError> {
        self.call(None, |c| async move {
            c.regenerate(message_id, options, listener, cancel).await
        })
        .await
    }

    /// Goes on with a reply that was cut short (`Incomplete` or `Cancelled`): the partial
    /// text is sent as context and the new text appended to the same message.
    #[uniffi::method(default(cancel = None))]
    pub async fn continue_incomplete(
        &self,
        message_id: String,
        options: Option<ChatOptions>,
        listener: Arc<dyn ChatListener>,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<Message, TetherError> {
        self.call(None, |c| async move {
            c.continue_incomplete(message_id, options, listener, cancel)
                .await
        })
        .await
    }
}

impl TetherClient {
    /// Benchmarks only: (write transactions made by replies, `on_delta` calls) so far.
    #[doc(hidden)]
    pub fn chat_counters(&self) -> (u64, u64) {
        self.core.chat_counters()
    }
}
