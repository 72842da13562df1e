//! The conversation history on the device: conversations, their messages (roles,
//! statuses, usage, errors, image attachments by reference), keyset pages in both
//! directions, full-text search (FTS5, literal user text, newest first, snippets), and
//! a lossless JSON export/import. Tables and triggers are migration v5 in `schema.rs`.
//!
//! Every function here is synchronous and takes the connection or transaction the
//! [`Store`](super::Store) hands its closure: readers run on the reader pool and never
//! wait for the writer (WAL), so a page loads while a reply is being streamed in.
//! Statements go through `prepare_cached`; the store sizes the cache for them.

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, uniffi::Enum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The person using the app.
    User,
    /// The model.
    Assistant,
}

impl Role {
    /// The contract's name for the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "system" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            _ => return None,
        })
    }
}

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, uniffi::Enum)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    /// Whole: a user message, or a reply that ended with the stream's terminator.
    Complete,
    /// A reply still arriving. Left over at the next start, it becomes `Incomplete`.
    Streaming,
    /// A reply cut short (the stream broke off, the app was killed): the text kept is
    /// what had arrived. `continue_incomplete` asks the model to go on.
    Incomplete,
    /// A reply the user stopped; the text kept is what had arrived.
    Cancelled,
    /// A reply the backend ended with an error (`error` says which).
    Failed,
}

impl MessageStatus {
    /// The name stored in the database and exports.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Complete => "complete",
            MessageStatus::Streaming => "streaming",
            MessageStatus::Incomplete => "incomplete",
            MessageStatus::Cancelled => "cancelled",
            MessageStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<MessageStatus> {
        Some(match s {
            "complete" => MessageStatus::Complete,
            "streaming" => MessageStatus::Streaming,
            "incomplete" => MessageStatus::Incomplete,
            "cancelled" => MessageStatus::Cancelled,
            "failed" => MessageStatus::Failed,
            _ => return None,
        })
    }
}

/// Tokens a reply used, as the backend reported them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, uniffi::Record)]
pub struct TokenUsage {
    /// Tokens of the request's context.
    pub prompt_tokens: u32,
    /// Tokens of the reply.
    pub completion_tokens: u32,
}

/// An image attached to a message, by reference: the file stays where the app keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, uniffi::Record)]
pub struct Attachment {
    /// The local file path.
    pub path: String,
    /// Its media type, e.g. `image/jpeg`.
    pub media_type: String,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// The detect or vision result for it, as the backend's JSON, if there was one.
    #[serde(default)]
    #[uniffi(default = None)]
    pub result_json: Option<String>,
}

/// A conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, uniffi::Record)]
pub struct Conversation {
    /// Its id (a UUID, or whatever an import brought).
    pub id: String,
    /// Its title.
    pub title: String,
    /// The system prompt sent first with every request of this conversation.
    pub system_prompt: Option<String>,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Its last activity (a message, a rename), in milliseconds since the Unix epoch.
    pub updated_at_ms: i64,
    /// Archived conversations are left out of the default list.
    pub archived: bool,
}

/// A message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, uniffi::Record)]
pub struct Message {
    /// Its id (a UUID).
    pub id: String,
    /// The conversation it belongs to.
    pub conversation_id: String,
    /// Who wrote it.
    pub role: Role,
    /// Its text (for a reply, what had arrived so far).
    pub content: String,
    /// Where it stands.
    pub status: MessageStatus,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// The model that wrote it (replies).
    pub model: Option<String>,
    /// Tokens it used (replies, when reported).
    pub usage: Option<TokenUsage>,
    /// Why it failed, for a `Failed` reply.
    pub error: Option<String>,
    /// Images attached to it.
    pub attachments: Vec<Attachment>,
}

/// One page of conversations, most recently active first.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ConversationPage {
    /// The conversations of this page.
    pub conversations: Vec<Conversation>,
    /// Pass it back as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// One page of a conversation's messages, always oldest first within the page.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct MessagePage {
    /// The messages, oldest first.
    pub messages: Vec<Message>,
    /// Whether more messages lie beyond this page in the direction asked for.
    pub has_more: bool,
}

/// Which messages a page holds.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum PageAt {
    /// The newest messages.
    Newest,
    /// The messages just before this message id (scrolling back).
    Before {
        /// The message id the page ends before.
        message_id: String,
    },
    /// The messages just after this message id (scrolling forward, or catching up).
    After {
        /// The message id the page starts after.
        message_id: String,
    },
}

/// A search hit.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SearchHit {
    /// The matching message.
    pub message: Message,
    /// A short excerpt with the matches between `SearchQuery::highlight_open` and
    /// `highlight_close`.
    pub snippet: String,
}

/// What to search for.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SearchQuery {
    /// The user's text, searched literally: every word must occur (quotes, `AND`, `*`,
    /// `(`, `NEAR` or `-` are words or punctuation, never operators).
    pub text: String,
    /// Only in this conversation.
    #[uniffi(default = None)]
    pub conversation_id: Option<String>,
    /// The next page: hits older than this message id (the last hit of the previous page).
    #[uniffi(default = None)]
    pub before_message_id: Option<String>,
    /// Hits per page (1..=200).
    #[uniffi(default = 20)]
    pub limit: u32,
    /// Put before each match in the snippet.
    #[uniffi(default = "[")]
    pub highlight_open: String,
    /// Put after each match in the snippet.
    #[uniffi(default = "]")]
    pub highlight_close: String,
}

impl SearchQuery {
    /// A query for `text` with the defaults: everywhere, first page, 20 hits, `[`/`]`.
    pub fn new(text: impl Into<String>) -> Self {
        SearchQuery {
            text: text.into(),
            conversation_id: None,
            before_message_id: None,
            limit: 20,
            highlight_open: "[".into(),
            highlight_close: "]".into(),
        }
    }
}

/// What an import brought in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct ImportSummary {
    /// Conversations written (a conversation already present is replaced).
    pub conversations: u32,
    /// Messages written.
    pub messages: u32,
}

/// A new message, before it is stored.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub conversation_id: String,
    pub role: Role,
    pub content: String,
    pub status: MessageStatus,
    pub model: Option<String>,
    pub attachments: Vec<Attachment>,
}

pub const MAX_PAGE: u32 = 200;

/// A new conversation or message id: a UUIDv7, time-ordered, so the unique index on
/// `id` grows at its end as `seq` does instead of taking each insert at a random page
/// (with random v4 ids an append cost about 10% more at 100k messages).
fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn not_found(what: &str, id: &str) -> Error {
    Error::InvalidInput(format!("no {what} with id {id:?}"))
}

fn limit(n: u32) -> Result<i64> {
    if n == 0 || n > MAX_PAGE {
        return Err(Error::InvalidInput(format!(
            "a page holds 1..={MAX_PAGE} items, not {n}"
        )));
    }
    Ok(n.into())
}

// ---- conversations ----

const CONVERSATION_COLUMNS: &str = "id, title, system_prompt, created_at, updated_at, archived";

fn conversation(r: &Row<'_>) -> rusqlite::Result<Conversation> {
    Ok(Conversation {
        id: r.get(0)?,
        title: r.get(1)?,
        system_prompt: r.get(2)?,
        created_at_ms: r.get(3)?,
        updated_at_ms: r.get(4)?,
        archived: r.get(5)?,
    })
}

pub fn create_conversation(
    tx: &Transaction<'_>,
    title: &str,
    system_prompt: Option<&str>,
) -> Result<Conversation> {
    let now = now_ms();
    let c = Conversation {
        id: new_id(),
        title: title.to_string(),
        system_prompt: system_prompt.map(str::to_string),
        created_at_ms: now,
        updated_at_ms: now,
        archived: false,
    };
    insert_conversation(tx, &c)?;
    Ok(c)
}

fn insert_conversation(tx: &Transaction<'_>, c: &Conversation) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO conversations (id, title, system_prompt, created_at, updated_at, archived)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        c.id,
        c.title,
        c.system_prompt,
        c.created_at_ms,
        c.updated_at_ms,
        c.archived
    ])?;
    Ok(())
}

pub fn get_conversation(conn: &Connection, id: &str) -> Result<Option<Conversation>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ?1"
        ))?
        .query_row([id], conversation)
        .optional()?)
}

pub fn require_conversation(conn: &Connection, id: &str) -> Result<Conversation> {
    get_conversation(conn, id)?.ok_or_else(|| not_found("conversation", id))
}

/// Most recently active first. `cursor` is a page's `next_cursor`.
pub fn list_conversations(
    conn: &Connection,
    include_archived: bool,
    cursor: Option<&str>,
    page: u32,
) -> Result<ConversationPage> {
    let n = limit(page)?;
    let (at, id) = match cursor {
        None => (i64::MAX, String::new()),
        Some(c) => {
            let (at, id) = c
                .split_once(':')
                .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id)))
                .ok_or_else(|| Error::InvalidInput(format!("not a page cursor: {c:?}")))?;
            (at, id.to_string())
        }
    };
    let sql = format!(
        "SELECT {CONVERSATION_COLUMNS} FROM conversations
         WHERE archived IN (0, ?1) AND (updated_at < ?2 OR (updated_at = ?2 AND (?3 = '' OR id < ?3)))
         ORDER BY updated_at DESC, id DESC LIMIT ?4"
    );
    let mut st = conn.prepare_cached(&sql)?;
    let mut rows = st
        .query_map(params![include_archived, at, id, n + 1], conversation)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let more = rows.len() as i64 > n;
    rows.truncate(n as usize);
    let next_cursor = match (more, rows.last()) {
        (true, Some(last)) => Some(format!("{}:{}", last.updated_at_ms, last.id)),
        _ => None,
    };
    Ok(ConversationPage {
        conversations: rows,
        next_cursor,
    })
}

pub fn rename_conversation(tx: &Transaction<'_>, id: &str, title: &str) -> Result<()> {
    let n = tx
        .prepare_cached("UPDATE conversations SET title = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![id, title, now_ms()])?;
    match n {
        0 => Err(not_found("conversation", id)),
        _ => Ok(()),
    }
}

pub fn set_archived(tx: &Transaction<'_>, id: &str, archived: bool) -> Result<()> {
    let n = tx
        .prepare_cached("UPDATE conversations SET archived = ?2 WHERE id = ?1")?
        .execute(params![id, archived])?;
    match n {
        0 => Err(not_found("conversation", id)),
        _ => Ok(()),
    }
}

/// Deletes the conversation and its messages (foreign key cascade; the FTS triggers
/// unindex them).
pub fn delete_conversation(tx: &Transaction<'_>, id: &str) -> Result<()> {
    let n = tx
        .prepare_cached("DELETE FROM conversations WHERE id = ?1")?
        .execute([id])?;
    match n {
        0 => Err(not_found("conversation", id)),
        _ => Ok(()),
    }
}

// ---- messages ----

const MESSAGE_COLUMNS: &str =
    "m.id, m.conversation_id, m.role, m.content, m.status, m.created_at, \
     m.model, m.prompt_tokens, m.completion_tokens, m.error, m.attachments, m.seq";

fn message(r: &Row<'_>) -> rusqlite::Result<Message> {
    let bad = |i: usize, what: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown {what}").into(),
        )
    };
    let role: String = r.get(2)?;
    let status: String = r.get(4)?;
    let prompt: Option<u32> = r.get(7)?;
    let completion: Option<u32> = r.get(8)?;
    let attachments: Option<String> = r.get(10)?;
    Ok(Message {
        id: r.get(0)?,
        conversation_id: r.get(1)?,
        role: Role::parse(&role).ok_or_else(|| bad(2, "role"))?,
        content: r.get(3)?,
        status: MessageStatus::parse(&status).ok_or_else(|| bad(4, "status"))?,
        created_at_ms: r.get(5)?,
        model: r.get(6)?,
        usage: match (prompt, completion) {
            (None, None) => None,
            (p, c) => Some(TokenUsage {
                prompt_tokens: p.unwrap_or(0),
                completion_tokens: c.unwrap_or(0),
            }),
        },
        error: r.get(9)?,
        attachments: match attachments {
            None => Vec::new(),
            Some(json) => serde_json::from_str(&json).map_err(|_| bad(10, "attachments"))?,
        },
    })
}

fn attachments_json(a: &[Attachment]) -> Result<Option<String>> {
    if a.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(a)
        .map(Some)
        .map_err(|e| Error::Storage(format!("attachments: {e}")))
}

/// Stores a new message and marks its conversation active.
pub fn insert_message(tx: &Transaction<'_>, m: NewMessage) -> Result<Message> {
    let msg = Message {
        id: new_id(),
        conversation_id: m.conversation_id,
        role: m.role,
        content: m.content,
        status: m.status,
        created_at_ms: now_ms(),
        model: m.model,
        usage: None,
        error: None,
        attachments: m.attachments,
    };
    write_message(tx, &msg)?;
    let n = tx
        .prepare_cached("UPDATE conversations SET updated_at = ?2 WHERE id = ?1")?
        .execute(params![msg.conversation_id, msg.created_at_ms])?;
    if n == 0 {
        return Err(not_found("conversation", &msg.conversation_id));
    }
    Ok(msg)
}

fn write_message(tx: &Transaction<'_>, m: &Message) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO messages (id, conversation_id, role, content, status, created_at, model,
                               prompt_tokens, completion_tokens, error, attachments)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        m.id,
        m.conversation_id,
        m.role.as_str(),
        m.content,
        m.status.as_str(),
        m.created_at_ms,
        m.model,
        m.usage.map(|u| u.prompt_tokens),
        m.usage.map(|u| u.completion_tokens),
        m.error,
        attachments_json(&m.attachments)?,
    ])?;
    Ok(())
}

/// Appends `text` to a message's content (a streamed reply's next batch of deltas).
pub fn append_content(tx: &Transaction<'_>, id: &str, text: &str) -> Result<()> {
    tx.prepare_cached("UPDATE messages SET content = content || ?2 WHERE id = ?1")?
        .execute(params![id, text])?;
    Ok(())
}

/// Settles a message: its status, and (when given) usage, error and model.
pub fn finish_message(
    tx: &Transaction<'_>,
    id: &str,
    status: MessageStatus,
    usage: Option<TokenUsage>,
    error: Option<&str>,
) -> Result<()> {
    tx.prepare_cached(
        "UPDATE messages SET status = ?2,
             prompt_tokens = coalesce(?3, prompt_tokens),
             completion_tokens = coalesce(?4, completion_tokens),
             error = ?5
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        status.as_str(),
        usage.map(|u| u.prompt_tokens),
        usage.map(|u| u.completion_tokens),
        error
    ])?;
    Ok(())
}

/// Replaces a message's content and status (regenerate starts a reply afresh).
pub fn reset_message(tx: &Transaction<'_>, id: &str, status: MessageStatus) -> Result<()> {
    tx.prepare_cached(
        "UPDATE messages SET content = '', status = ?2, error = NULL,
             prompt_tokens = NULL, completion_tokens = NULL WHERE id = ?1",
    )?
    .execute(params![id, status.as_str()])?;
    Ok(())
}

pub fn set_status(tx: &Transaction<'_>, id: &str, status: MessageStatus) -> Result<()> {
    tx.prepare_cached("UPDATE messages SET status = ?2 WHERE id = ?1")?
        .execute(params![id, status.as_str()])?;
    Ok(())
}

/// Replies left `streaming` by a process that died become `incomplete`; run at start.
pub fn recover_streaming(tx: &Transaction<'_>) -> Result<usize> {
    Ok(tx
        .prepare_cached("UPDATE messages SET status = 'incomplete' WHERE status = 'streaming'")?
        .execute([])?)
}

/// Whether any reply is left `streaming` (uses the partial index).
pub fn has_streaming(conn: &Connection) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM messages WHERE status = 'streaming' LIMIT 1")?
        .exists([])?)
}

pub fn get_message(conn: &Connection, id: &str) -> Result<Option<Message>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = ?1"
        ))?
        .query_row([id], message)
        .optional()?)
}

pub fn require_message(conn: &Connection, id: &str) -> Result<Message> {
    get_message(conn, id)?.ok_or_else(|| not_found("message", id))
}

fn seq_of(conn: &Connection, conversation_id: &str, id: &str) -> Result<i64> {
    conn.prepare_cached("SELECT seq FROM messages WHERE id = ?1 AND conversation_id = ?2")?
        .query_row([id, conversation_id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| not_found("message in this conversation", id))
}

/// A keyset page: by insertion order, so a message inserted meanwhile never shifts a
/// page already shown (it lands at the end, reached with `After`).
pub fn list_messages(
    conn: &Connection,
    conversation_id: &str,
    at: &PageAt,
    page: u32,
) -> Result<MessagePage> {
    let n = limit(page)?;
    let (sql_cond, order, key) = match at {
        PageAt::Newest => ("m.seq < ?2", "DESC", i64::MAX),
        PageAt::Before { message_id } => (
            "m.seq < ?2",
            "DESC",
            seq_of(conn, conversation_id, message_id)?,
        ),
        PageAt::After { message_id } => (
            "m.seq > ?2",
            "ASC",
            seq_of(conn, conversation_id, message_id)?,
        ),
    };
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m
         WHERE m.conversation_id = ?1 AND {sql_cond} ORDER BY m.seq {order} LIMIT ?3"
    );
    let mut st = conn.prepare_cached(&sql)?;
    let mut rows = st
        .query_map(params![conversation_id, key, n + 1], message)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let has_more = rows.len() as i64 > n;
    rows.truncate(n as usize);
    if order == "DESC" {
        rows.reverse();
    }
    Ok(MessagePage {
        messages: rows,
        has_more,
    })
}

/// The newest messages of a conversation whose content fits `budget_chars`, oldest
/// first: what a request's context can hold (oldest dropped first). Failed, streaming
/// and empty replies are no context. `before_seq_of` leaves out that message and all
/// after it (regenerating an earlier reply).
pub fn context(
    conn: &Connection,
    conversation_id: &str,
    before_seq_of: Option<&str>,
    budget_chars: usize,
) -> Result<Vec<Message>> {
    let bound = match before_seq_of {
        Some(id) => seq_of(conn, conversation_id, id)?,
        None => i64::MAX,
    };
    let mut st = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m
         WHERE m.conversation_id = ?1 AND m.seq < ?2
           AND NOT (m.role = 'assistant' AND (m.status IN ('failed', 'streaming') OR m.content = ''))
         ORDER BY m.seq DESC"
    ))?;
    let mut rows = st.query_map(params![conversation_id, bound], message)?;
    let mut out = Vec::new();
    let mut used = 0usize;
    while let Some(m) = rows.next().transpose()? {
        let len = m.content.chars().count();
        if used + len > budget_chars {
            break;
        }
        used += len;
        out.push(m);
    }
    out.reverse();
    Ok(out)
}

// ---- search ----

/// The user's text as an FTS5 query that matches it literally: each word becomes a
/// quoted string (quotes doubled), so no character or keyword acts as an operator. Words
/// are what the `unicode61` tokenizer keeps (letters, digits, and marks); `None` when
/// there is none.
pub fn fts_query(text: &str) -> Option<String> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// Newest hits first, a page at a time (`before_message_id` for the next one).
pub fn search(conn: &Connection, q: &SearchQuery) -> Result<Vec<SearchHit>> {
    let n = limit(q.limit)?;
    let Some(fts) = fts_query(&q.text) else {
        return Ok(Vec::new());
    };
    let before = match &q.before_message_id {
        None => i64::MAX,
        Some(id) => conn
            .prepare_cached("SELECT seq FROM messages WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?
            .ok_or_else(|| not_found("message", id))?,
    };
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS}, snippet(messages_fts, 0, ?4, ?5, '…', 12)
         FROM messages_fts JOIN messages m ON m.seq = messages_fts.rowid
         WHERE messages_fts MATCH ?1 AND messages_fts.rowid < ?2
           AND (?3 IS NULL OR m.conversation_id = ?3)
         ORDER BY messages_fts.rowid DESC LIMIT ?6"
    );
    let mut st = conn.prepare_cached(&sql)?;
    let hits = st
        .query_map(
            params![
                fts,
                before,
                q.conversation_id,
                q.highlight_open,
                q.highlight_close,
                n
            ],
            |r| {
                Ok(SearchHit {
                    message: message(r)?,
                    snippet: r.get(12)?,
                })
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(hits)
}

// ---- export / import ----

const EXPORT_FORMAT: &str = "tether.history";

#[derive(Serialize, Deserialize)]
struct Export {
    format: String,
    version: u32,
    conversations: Vec<ExportedConversation>,
}

#[derive(Serialize, Deserialize)]
struct ExportedConversation {
    #[serde(flatten)]
    conversation: Conversation,
    messages: Vec<Message>,
}

/// One conversation (or all of them) as JSON, messages in order.
pub fn export(conn: &Connection, conversation_id: Option<&str>) -> Result<String> {
    let conversations = match conversation_id {
        Some(id) => vec![require_conversation(conn, id)?],
        None => conn
            .prepare_cached(&format!(
                "SELECT {CONVERSATION_COLUMNS} FROM conversations ORDER BY created_at, id"
            ))?
            .query_map([], conversation)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
    };
    let mut st = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.conversation_id = ?1 ORDER BY m.seq"
    ))?;
    let mut out = Vec::with_capacity(conversations.len());
    for c in conversations {
        let messages = st
            .query_map([&c.id], message)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        out.push(ExportedConversation {
            conversation: c,
            messages,
        });
    }
    serde_json::to_string(&Export {
        format: EXPORT_FORMAT.into(),
        version: 1,
        conversations: out,
    })
    .map_err(|e| Error::Storage(format!("export: {e}")))
}

/// Brings an export back: ids, order, statuses, usage, errors and attachments as they
/// were. A conversation already present (same id) is replaced whole. All or nothing.
pub fn import(tx: &Transaction<'_>, json: &str) -> Result<ImportSummary> {
    let e: Export = serde_json::from_str(json)
        .map_err(|e| Error::InvalidInput(format!("not a history export: {e}")))?;
    if e.format != EXPORT_FORMAT || e.version != 1 {
        return Err(Error::InvalidInput(format!(
            "unsupported export {:?} v{}",
            e.format, e.version
        )));
    }
    let mut summary = ImportSummary {
        conversations: 0,
        messages: 0,
    };
    for c in e.conversations {
        tx.prepare_cached("DELETE FROM conversations WHERE id = ?1")?
            .execute([&c.conversation.id])?;
        insert_conversation(tx, &c.conversation)?;
        for m in &c.messages {
            if m.conversation_id != c.conversation.id {
                return Err(Error::InvalidInput(format!(
                    "message {:?} is filed under another conversation",
                    m.id
                )));
            }
            write_message(tx, m)?;
            summary.messages += 1;
        }
        summary.conversations += 1;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        (dir, s)
    }

    fn add(s: &Store, conv: &str, role: Role, text: &str, status: MessageStatus) -> Message {
        let m = NewMessage {
            conversation_id: conv.into(),
            role,
            content: text.into(),
            status,
            model: None,
            attachments: vec![],
        };
        s.write_blocking(|tx| insert_message(tx, m)).unwrap()
    }

    fn conv(s: &Store, title: &str) -> Conversation {
        s.write_blocking(|tx| create_conversation(tx, title, None))
            .unwrap()
    }

    fn texts(p: &MessagePage) -> Vec<&str> {
        p.messages.iter().map(|m| m.content.as_str()).collect()
    }

    #[test]
    fn conversations_crud_and_keyset_pages_most_recent_first() {
        let (_d, s) = store();
        let ids: Vec<String> = (0..5).map(|i| conv(&s, &format!("c{i}")).id).collect();
        // Activity reorders: c1 gets a message last, so it comes first.
        std::thread::sleep(std::time::Duration::from_millis(3));
        add(&s, &ids[1], Role::User, "hi", MessageStatus::Complete);
        s.write_blocking(|tx| set_archived(tx, &ids[3], true))
            .unwrap();
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = s
                .read_blocking(|c| list_conversations(c, false, cursor.as_deref(), 2))
                .unwrap();
            seen.extend(page.conversations.iter().map(|c| c.title.clone()));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen[0], "c1");
        assert_eq!(seen.len(), 4, "archived left out: {seen:?}");
        assert!(!seen.contains(&"c3".to_string()));
        let all = s
            .read_blocking(|c| list_conversations(c, true, None, 10))
            .unwrap();
        assert_eq!(all.conversations.len(), 5);

        s.write_blocking(|tx| rename_conversation(tx, &ids[0], "renamed"))
            .unwrap();
        let got = s
            .read_blocking(|c| require_conversation(c, &ids[0]))
            .unwrap();
        assert_eq!(got.title, "renamed");

        s.write_blocking(|tx| delete_conversation(tx, &ids[1]))
            .unwrap();
        let (gone, orphans) = s
            .read_blocking(|c| {
                Ok((
                    get_conversation(c, &ids[1])?,
                    c.query_row("SELECT count(*) FROM messages", [], |r| r.get::<_, i64>(0))?,
                ))
            })
            .unwrap();
        assert_eq!(gone, None);
        assert_eq!(orphans, 0, "messages go with their conversation");
        assert!(s
            .write_blocking(|tx| delete_conversation(tx, &ids[1]))
            .is_err());
    }

    #[test]
    fn message_pages_both_ways_are_stable_under_inserts() {
        let (_d, s) = store();
        let c = conv(&s, "t").id;
        let other = conv(&s, "other").id;
        let ms: Vec<Message> = (0..10)
            .map(|i| {
                add(&s, &other, Role::User, "noise", MessageStatus::Complete);
                add(
                    &s,
                    &c,
                    Role::User,
                    &format!("m{i}"),
                    MessageStatus::Complete,
                )
            })
            .collect();
        let newest = s
            .read_blocking(|cn| list_messages(cn, &c, &PageAt::Newest, 3))
            .unwrap();
        assert_eq!(texts(&newest), ["m7", "m8", "m9"]);
        assert!(newest.has_more);
        // A message arrives while the user scrolls back: the older pages do not shift.
        add(&s, &c, Role::User, "new", MessageStatus::Complete);
        let first = newest.messages[0].id.clone();
        let c1 = c.clone();
        let back = s
            .read_blocking(move |cn| {
                list_messages(cn, &c1, &PageAt::Before { message_id: first }, 3)
            })
            .unwrap();
        assert_eq!(texts(&back), ["m4", "m5", "m6"]);
        let c2 = c.clone();
        let oldest = s
            .read_blocking(move |cn| {
                list_messages(
                    cn,
                    &c2,
                    &PageAt::Before {
                        message_id: ms[2].id.clone(),
                    },
                    3,
                )
            })
            .unwrap();
        assert_eq!(texts(&oldest), ["m0", "m1"]);
        assert!(!oldest.has_more);
        let last = newest.messages[2].id.clone();
        let after = s
            .read_blocking(move |cn| list_messages(cn, &c, &PageAt::After { message_id: last }, 3))
            .unwrap();
        assert_eq!(texts(&after), ["new"]);
        assert!(!after.has_more);
    }

    #[test]
    fn statuses_usage_errors_and_attachments_round_trip() {
        let (_d, s) = store();
        let c = conv(&s, "t").id;
        let m = NewMessage {
            conversation_id: c.clone(),
            role: Role::Assistant,
            content: String::new(),
            status: MessageStatus::Streaming,
            model: Some("@cf/meta/llama-3.1-8b-instruct".into()),
            attachments: vec![Attachment {
                path: "/tmp/cat.jpg".into(),
                media_type: "image/jpeg".into(),
                size_bytes: 12345,
                result_json: Some(r#"{"objects":[]}"#.into()),
            }],
        };
        let id = s.write_blocking(|tx| insert_message(tx, m)).unwrap().id;
        s.write_blocking(|tx| {
            append_content(tx, &id, "Hel")?;
            append_content(tx, &id, "lo")?;
            finish_message(
                tx,
                &id,
                MessageStatus::Failed,
                Some(TokenUsage {
                    prompt_tokens: 3,
                    completion_tokens: 2,
                }),
                Some("upstream: broke"),
            )
        })
        .unwrap();
        let got = s.read_blocking(|cn| require_message(cn, &id)).unwrap();
        assert_eq!(got.content, "Hello");
        assert_eq!(got.status, MessageStatus::Failed);
        assert_eq!(got.usage.unwrap().completion_tokens, 2);
        assert_eq!(got.error.as_deref(), Some("upstream: broke"));
        assert_eq!(got.attachments[0].size_bytes, 12345);
        assert_eq!(got.model.as_deref(), Some("@cf/meta/llama-3.1-8b-instruct"));
    }

    #[test]
    fn leftover_streaming_becomes_incomplete_and_searchable() {
        let (_d, s) = store();
        let c = conv(&s, "t").id;
        let m = add(
            &s,
            &c,
            Role::Assistant,
            "partial zebra",
            MessageStatus::Streaming,
        );
        let hits = |s: &Store| {
            s.read_blocking(|cn| search(cn, &SearchQuery::new("zebra")))
                .unwrap()
                .len()
        };
        assert_eq!(hits(&s), 0, "a streaming reply is not indexed yet");
        assert_eq!(s.write_blocking(|tx| recover_streaming(tx)).unwrap(), 1);
        let got = s.read_blocking(|cn| require_message(cn, &m.id)).unwrap();
        assert_eq!(got.status, MessageStatus::Incomplete);
        assert_eq!(hits(&s), 1);
    }

    #[test]
    fn search_is_literal_newest_first_paged_with_snippets() {
        let (_d, s) = store();
        let c = conv(&s, "t").id;
        let other = conv(&s, "u").id;
        for i in 0..5 {
            add(
                &s,
                &c,
                Role::User,
                &format!("apple number {i}"),
                MessageStatus::Complete,
            );
        }
        add(
            &s,
            &other,
            Role::User,
            "apple elsewhere",
            MessageStatus::Complete,
        );
        add(
            &s,
            &c,
            Role::User,
            "say \"hello\" AND (NEAR) -x * foo*",
            MessageStatus::Complete,
        );
        let q = |text: &str| SearchQuery::new(text);
        let hits = s.read_blocking(|cn| search(cn, &q("apple"))).unwrap();
        let got: Vec<&str> = hits.iter().map(|h| h.message.content.as_str()).collect();
        assert_eq!(got[0], "apple elsewhere");
        assert_eq!(got[1], "apple number 4");
        assert_eq!(hits.len(), 6);
        assert_eq!(hits[1].snippet, "[apple] number 4");
        // Page 2, one conversation only.
        let mut q2 = q("apple");
        q2.limit = 2;
        q2.conversation_id = Some(c.clone());
        q2.before_message_id = Some(hits[2].message.id.clone());
        let page = s.read_blocking(move |cn| search(cn, &q2)).unwrap();
        let got: Vec<&str> = page.iter().map(|h| h.message.content.as_str()).collect();
        assert_eq!(got, ["apple number 2", "apple number 1"]);
        // Operators and syntax are searched as text, never raise an error.
        for text in [
            "\"hello\"",
            "AND",
            "(NEAR",
            "-x",
            "*",
            "foo*",
            "\"",
            "NEAR(",
            "hello AND",
            "OR",
            "NOT apple",
            "a:b",
            "^",
            "''",
            "\u{1F600}",
            "",
        ] {
            let r = s.read_blocking(move |cn| search(cn, &q(text)));
            assert!(r.is_ok(), "{text:?}: {r:?}");
        }
        let one = |t: &'static str| s.read_blocking(move |cn| search(cn, &q(t))).unwrap().len();
        assert_eq!(one("\"hello\""), 1);
        assert_eq!(one("AND"), 1, "AND is a word here");
        assert_eq!(one("NEAR"), 1);
        assert_eq!(
            one("hello -apple"),
            0,
            "- is not NOT: both words must occur"
        );
        assert_eq!(one("NOT apple"), 0);
        assert_eq!(fts_query("say \"hi\""), Some("\"say\" \"hi\"".into()));
    }

    #[test]
    fn export_import_is_lossless() {
        let (_d, s) = store();
        let c = conv(&s, "trip \"plans\"").id;
        add(&s, &c, Role::System, "be brief", MessageStatus::Complete);
        add(&s, &c, Role::User, "hi ☃", MessageStatus::Complete);
        let m = NewMessage {
            conversation_id: c.clone(),
            role: Role::Assistant,
            content: "partial".into(),
            status: MessageStatus::Cancelled,
            model: Some("m".into()),
            attachments: vec![Attachment {
                path: "/a.png".into(),
                media_type: "image/png".into(),
                size_bytes: 1,
                result_json: None,
            }],
        };
        s.write_blocking(|tx| insert_message(tx, m)).unwrap();
        s.write_blocking(|tx| set_archived(tx, &c, true)).unwrap();
        let json = s.read_blocking(|cn| export(cn, None)).unwrap();

        let (_d2, s2) = store();
        let summary = s2.write_blocking(|tx| import(tx, &json)).unwrap();
        assert_eq!(
            summary,
            ImportSummary {
                conversations: 1,
                messages: 3
            }
        );
        let again = s2.read_blocking(|cn| export(cn, None)).unwrap();
        assert_eq!(json, again, "export -> import -> export is the identity");
        // Importing twice replaces rather than duplicates.
        s2.write_blocking(|tx| import(tx, &json)).unwrap();
        let cid = c.clone();
        let page = s2
            .read_blocking(move |cn| list_messages(cn, &cid, &PageAt::Newest, 10))
            .unwrap();
        assert_eq!(page.messages.len(), 3);
        assert_eq!(page.messages[2].status, MessageStatus::Cancelled);
        let hits = s2
            .read_blocking(|cn| search(cn, &SearchQuery::new("partial")))
            .unwrap();
        assert_eq!(hits.len(), 1, "imported messages are indexed once");
        assert!(s2
            .write_blocking(|tx| import(tx, "{\"format\":\"x\"}"))
            .is_err());
    }

    #[test]
    fn context_keeps_the_newest_that_fit() {
        let (_d, s) = store();
        let c = conv(&s, "t").id;
        for t in ["aaaa", "bbbb", "cccc", "dd"] {
            add(&s, &c, Role::User, t, MessageStatus::Complete);
        }
        let got = s.read_blocking(|cn| context(cn, &c, None, 10)).unwrap();
        let got: Vec<&str> = got.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(got, ["bbbb", "cccc", "dd"]);
    }

    /// The history migration, from a database at the version just before it (whatever
    /// number that is after merges), keeps what was there and brings the new tables.
    #[test]
    fn migrates_from_the_version_before_it() {
        use crate::store::schema::{LATEST, MIGRATIONS};
        let mine = MIGRATIONS
            .iter()
            .position(|m| m.contains("CREATE TABLE conversations"))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join(crate::store::FILE_NAME)).unwrap();
            conn.pragma_update(None, "journal_mode", "WAL").unwrap();
            for m in &MIGRATIONS[..mine] {
                conn.execute_batch(m).unwrap();
            }
            conn.pragma_update(None, "user_version", mine as i64)
                .unwrap();
            conn.execute("INSERT INTO kv (key, value) VALUES ('note', 'kept')", [])
                .unwrap();
            assert!(
                conn.prepare("SELECT 1 FROM conversations").is_err(),
                "the fixture predates the history tables"
            );
        }
        let s = Store::open(dir.path()).unwrap();
        let (v, note): (i64, String) = s
            .read_blocking(|c| {
                Ok((
                    c.pragma_query_value(None, "user_version", |r| r.get(0))?,
                    c.query_row("SELECT value FROM kv WHERE key = 'note'", [], |r| r.get(0))?,
                ))
            })
            .unwrap();
        assert_eq!((v, note.as_str()), (LATEST, "kept"));
        let c = conv(&s, "t").id;
        add(&s, &c, Role::User, "migrated fine", MessageStatus::Complete);
        let hits = s
            .read_blocking(|cn| search(cn, &SearchQuery::new("migrated")))
            .unwrap();
        assert_eq!(hits.len(), 1);
    }
}
