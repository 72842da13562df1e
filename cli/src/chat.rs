//! `tether chat`, `tether history`, `tether export` and `tether import`: the chat and the
//! on-device history from the command line. The reply is printed as it streams; Ctrl-C
//! cancels it and keeps the partial reply in the history (as `cancelled`).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Value};
use tether::{
    AuthState, CancelHandle, ChatListener, ChatOptions, Conversation, Message, PageAt, SearchQuery,
    TetherClient, TetherError,
};

use crate::{Failure, Output};

/// Prints each delta as it arrives (text mode only).
struct Printer {
    print: bool,
}

impl ChatListener for Printer {
    fn on_delta(&self, _message_id: String, text: String) {
        if self.print {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
    }
    fn on_complete(&self, _message: Message) {}
    fn on_error(&self, _message_id: String, _error: TetherError) {}
}

pub fn message_json(m: &Message) -> Value {
    json!({
        "id": m.id, "conversation_id": m.conversation_id, "role": format!("{:?}", m.role).to_lowercase(),
        "content": m.content, "status": format!("{:?}", m.status).to_lowercase(),
        "created_at_ms": m.created_at_ms, "model": m.model, "error": m.error,
        "usage": m.usage.map(|u| json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens})),
    })
}

fn conversation_json(c: &Conversation) -> Value {
    json!({ "id": c.id, "title": c.title, "system_prompt": c.system_prompt,
            "created_at_ms": c.created_at_ms, "updated_at_ms": c.updated_at_ms, "archived": c.archived })
}

pub struct ChatArgs {
    pub text: String,
    pub conversation: Option<String>,
    pub system: Option<String>,
    pub no_stream: bool,
    pub embedded: bool,
    pub json: bool,
}

pub async fn chat(c: &Arc<TetherClient>, a: ChatArgs) -> Result<Output, Failure> {
    // The embedded server forgets users between commands: sign in for this one.
    if a.embedded && !matches!(c.auth_state(), AuthState::SignedIn { .. }) {
        c.sign_in_anonymously(None, None).await?;
    }
    let conversation = match a.conversation {
        Some(id) => id,
        None => {
            let title: String = a.text.chars().take(40).collect();
            c.create_conversation(title, a.system).await?.id
        }
    };
    let cancel = CancelHandle::new();
    let on_ctrl_c = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancel.cancel();
            }
        })
    };
    let options = ChatOptions {
        stream: !a.no_stream,
        ..ChatOptions::default()
    };
    let listener = Arc::new(Printer { print: !a.json });
    let r = c
        .send_message(
            conversation.clone(),
            a.text,
            Some(options),
            listener,
            Some(cancel),
        )
        .await;
    on_ctrl_c.abort();
    if !a.json {
        println!();
    }
    let reply = match r {
        Ok(m) => m,
        Err(TetherError::Cancelled) => {
            let kept = c
                .list_messages(conversation.clone(), PageAt::Newest, 1)
                .await?;
            let chars = kept
                .messages
                .first()
                .map_or(0, |m| m.content.chars().count());
            eprintln!("cancelled: the partial reply ({chars} characters) is kept in conversation {conversation}");
            return Err(TetherError::Cancelled.into());
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Output {
        text: format!(
            "[conversation {conversation}, message {}, {:?}]",
            reply.id, reply.status
        ),
        json: message_json(&reply),
    })
}

pub async fn history(
    c: &TetherClient,
    conversation: Option<String>,
    search: Option<String>,
    limit: u32,
    archived: bool,
) -> Result<Output, Failure> {
    if let Some(text) = search {
        let mut q = SearchQuery::new(text);
        q.conversation_id = conversation;
        q.limit = limit;
        let hits = c.search_messages(q, None).await?;
        let text = hits
            .iter()
            .map(|h| {
                format!(
                    "{}  {}  {}",
                    h.message.conversation_id, h.message.id, h.snippet
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        return Ok(Output {
            text: if hits.is_empty() {
                "no match".into()
            } else {
                text
            },
            json: json!(hits
                .iter()
                .map(|h| json!({"snippet": h.snippet, "message": message_json(&h.message)}))
                .collect::<Vec<_>>()),
        });
    }
    match conversation {
        None => {
            let page = c.list_conversations(None, limit, archived).await?;
            let text = page
                .conversations
                .iter()
                .map(|c| {
                    format!(
                        "{}  {}{}",
                        c.id,
                        c.title,
                        if c.archived { "  (archived)" } else { "" }
                    )
                })
                .collect::<Vec<_>>()
                .join("\n");
            Ok(Output {
                text: if text.is_empty() {
                    "no conversations".into()
                } else {
                    text
                },
                json: json!({ "conversations": page.conversations.iter().map(conversation_json).collect::<Vec<_>>(),
                              "next_cursor": page.next_cursor }),
            })
        }
        Some(id) => {
            let page = c.list_messages(id, PageAt::Newest, limit).await?;
            let text = page
                .messages
                .iter()
                .map(|m| format!("{:?} [{:?}]: {}", m.role, m.status, m.content))
                .collect::<Vec<_>>()
                .join("\n");
            Ok(Output {
                text,
                json: json!({ "messages": page.messages.iter().map(message_json).collect::<Vec<_>>(),
                              "has_more": page.has_more }),
            })
        }
    }
}

pub async fn export(
    c: &TetherClient,
    conversation: Option<String>,
    out: Option<PathBuf>,
) -> Result<Output, Failure> {
    let dump = c.export_history(conversation).await?;
    match out {
        None => Ok(Output {
            text: dump.clone(),
            json: serde_json::from_str(&dump).unwrap_or(Value::Null),
        }),
        Some(path) => {
            std::fs::write(&path, &dump)
                .map_err(|e| Failure::new("storage", 11, format!("{}: {e}", path.display())))?;
            Ok(Output {
                text: format!("exported to {}", path.display()),
                json: json!({ "path": path, "bytes": dump.len() }),
            })
        }
    }
}

pub async fn import(c: &TetherClient, file: PathBuf) -> Result<Output, Failure> {
    let dump = std::fs::read_to_string(&file)
        .map_err(|e| Failure::new("usage", 2, format!("{}: {e}", file.display())))?;
    let s = c.import_history(dump).await?;
    Ok(Output {
        text: format!(
            "imported {} conversation(s), {} message(s)",
            s.conversations, s.messages
        ),
        json: json!({ "conversations": s.conversations, "messages": s.messages }),
    })
}
