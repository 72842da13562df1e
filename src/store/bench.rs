//! For `tether-bench-chat` only (hidden, not exported to the bindings): the history's
//! store calls on the calling thread, so a benchmark can tell what the store adds to
//! SQLite (statement cache, transaction, row decoding) apart from what the async hop
//! onto the blocking pool adds (measured through `TetherClient`, printed beside it).

use std::path::Path;

use super::history::{self, Message, MessagePage, MessageStatus, NewMessage, PageAt, Role};
use super::Store;
use crate::error::TetherError;

/// The store of a `data_dir`, opened as `TetherClient::new` opens it.
#[doc(hidden)]
#[derive(Debug, Clone)]
pub struct StoreForBench(Store);

impl StoreForBench {
    /// Opens (migrating) `dir/tether.sqlite3`.
    pub fn open(dir: &str) -> Result<Self, TetherError> {
        Ok(Self(Store::open(Path::new(dir))?))
    }

    /// `list_messages` as the client runs it, on this thread.
    pub fn list_messages(
        &self,
        conversation_id: &str,
        at: PageAt,
        limit: u32,
    ) -> Result<MessagePage, TetherError> {
        Ok(self
            .0
            .read_blocking(|c| history::list_messages(c, conversation_id, &at, limit))?)
    }

    /// `append_message` (no attachments) as the client runs it, on this thread.
    pub fn append_message(
        &self,
        conversation_id: &str,
        role: Role,
        content: String,
    ) -> Result<Message, TetherError> {
        let m = NewMessage {
            conversation_id: conversation_id.to_string(),
            role,
            content,
            status: MessageStatus::Complete,
            model: None,
            attachments: Vec::new(),
        };
        Ok(self.0.write_blocking(|tx| history::insert_message(tx, m))?)
    }
}
