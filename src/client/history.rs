//! The history area of the facade: conversations (create, get, list, rename, archive,
//! delete), message pages, search, export and import. Reads run on the store's reader
//! connections and never wait for a reply being written.

use std::sync::Arc;

use super::TetherClient;
use crate::error::TetherError;
use crate::runtime::CancelHandle;
use crate::store::history::{
    Attachment, Conversation, ConversationPage, ImportSummary, Message, MessagePage, PageAt, Role,
    SearchHit, SearchQuery,
};

#[uniffi::export]
impl TetherClient {
    /// Creates a conversation; `system_prompt` is sent first with each of its requests.
    #[uniffi::method(default(system_prompt = None))]
    pub async fn create_conversation(
        &self,
        title: String,
        system_prompt: Option<String>,
    ) -> Result<Conversation, TetherError> {
        self.call(None, |c| async move {
            c.create_conversation(title, system_prompt).await
        })
        .await
    }

    /// The conversation `id`, if there is one.
    pub async fn get_conversation(&self, id: String) -> Result<Option<Conversation>, TetherError> {
        self.call(None, |c| async move { c.get_conversation(id).await })
            .await
    }

    /// Conversations, most recently active first, `limit` (1..=200) per page; pass a
    /// page's `next_cursor` as `cursor` for the next one. Archived ones only if asked.
    #[uniffi::method(default(cursor = None, limit = 50, include_archived = false))]
    pub async fn list_conversations(
        &self,
        cursor: Option<String>,
        limit: u32,
        include_archived: bool,
    ) -> Result<ConversationPage, TetherError> {
        self.call(None, |c| async move {
            c.list_conversations(cursor, limit, include_archived).await
        })
        .await
    }

    /// Renames a conversation.
    pub async fn rename_conversation(&self, id: String, title: String) -> Result<(), TetherError> {
        self.call(
            None,
            |c| async move { c.rename_conversation(id, title).await },
        )
        .await
    }

    /// Archives (or, with `false`, unarchives) a conversation.
    #[uniffi::method(default(archived = true))]
    pub async fn archive_conversation(
        &self,
        id: String,
        archived: bool,
    ) -> Result<(), TetherError> {
        self.call(None, |c| async move {
            c.archive_conversation(id, archived).await
        })
        .await
    }

    /// Deletes a conversation and all its messages.
    pub async fn delete_conversation(&self, id: String) -> Result<(), TetherError> {
        self.call(None, |c| async move { c.delete_conversation(id).await })
            .await
    }

    /// One page of a conversation's messages (oldest first within the page): the newest,
    /// or those before / after a message id. `limit` is 1..=200.
    #[uniffi::method(default(limit = 50))]
    pub async fn list_messages(
        &self,
        conversation_id: String,
        at: PageAt,
        limit: u32,
    ) -> Result<MessagePage, TetherError> {
        self.call(None, |c| async move {
            c.list_messages(conversation_id, at, limit).await
        })
        .await
    }

    /// Stores a message the app writes itself (a note, a detect or vision result with its
    /// image attached) at the end of a conversation, `Complete`.
    #[uniffi::method(default(attachments = []))]
    pub async fn append_message(
        &self,
        conversation_id: String,
        role: Role,
        content: String,
        attachments: Vec<Attachment>,
    ) -> Result<Message, TetherError> {
        self.call(None, |c| async move {
            c.append_message(conversation_id, role, content, attachments)
                .await
        })
        .await
    }

    /// The message `id`, if there is one.
    pub async fn get_message(&self, id: String) -> Result<Option<Message>, TetherError> {
        self.call(None, |c| async move { c.get_message(id).await })
            .await
    }

    /// Full-text search over finished messages, newest first, with highlighted snippets.
    /// The text is searched literally (every word must occur).
    #[uniffi::method(default(cancel = None))]
    pub async fn search_messages(
        &self,
        query: SearchQuery,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<Vec<SearchHit>, TetherError> {
        self.call(cancel, |c| async move { c.search_messages(query).await })
            .await
    }

    /// One conversation, or all of them (`None`), as JSON for `import_history`.
    #[uniffi::method(default(conversation_id = None))]
    pub async fn export_history(
        &self,
        conversation_id: Option<String>,
    ) -> Result<String, TetherError> {
        self.call(
            None,
            |c| async move { c.export_history(conversation_id).await },
        )
        .await
    }

    /// Brings back an export losslessly (ids, order, statuses, attachments); a
    /// conversation already present is replaced. All or nothing.
    pub async fn import_history(&self, json: String) -> Result<ImportSummary, TetherError> {
        self.call(None, |c| async move { c.import_history(json).await })
            .await
    }
}
