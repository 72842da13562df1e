//! Streaming chat into the history over real loopback HTTP: replies cut into arbitrary
//! chunks (CRLF, CR, keep-alives, split UTF-8), coalesced deltas, batched writes, a slow
//! listener, truncation, error events, 402, cancellation (handle and dropped future),
//! regenerate, continue, non-streaming mode, and recovery of a reply left `streaming`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use tether::{
    CancelHandle, ChatListener, ChatOptions, Message, MessageStatus, PageAt, Role, SearchQuery,
    TetherClient, TetherError,
};
use tether_test_server::{ChatEnd, ChatScript};

/// Long enough for any machine; only a broken build waits this long.
const PATIENCE: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Recorder {
    deltas: Mutex<Vec<String>>,
    completed: Mutex<Vec<Message>>,
    errors: Mutex<Vec<(String, TetherError)>>,
    /// Told once, at the first delta.
    first: Mutex<Option<mpsc::Sender<()>>>,
    /// When set, the first `on_delta` waits for this before returning.
    gate: Mutex<Option<mpsc::Receiver<()>>>,
}

impl Recorder {
    fn text(&self) -> String {
        self.deltas.lock().unwrap().concat()
    }
    fn crossings(&self) -> usize {
        self.deltas.lock().unwrap().len()
    }
}

impl ChatListener for Recorder {
    fn on_delta(&self, _message_id: String, text: String) {
        self.deltas.lock().unwrap().push(text);
        if let Some(tx) = self.first.lock().unwrap().take() {
            let _ = tx.send(());
        }
        let gate = self.gate.lock().unwrap().take();
        if let Some(gate) = gate {
            let _ = gate.recv_timeout(PATIENCE);
        }
    }
    fn on_complete(&self, message: Message) {
        self.completed.lock().unwrap().push(message);
    }
    fn on_error(&self, message_id: String, error: TetherError) {
        self.errors.lock().unwrap().push((message_id, error));
    }
}

async fn conversation(c: &TetherClient) -> String {
    c.create_conversation("test".into(), Some("Be brief.".into()))
        .await
        .unwrap()
        .id
}

fn pieces(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("w{i}é☃😀 ")).collect()
}

async fn wait_for_status(c: &TetherClient, id: &str, status: MessageStatus) -> Message {
    let start = Instant::now();
    loop {
        let m = c.get_message(id.into()).await.unwrap().unwrap();
        if m.status == status || start.elapsed() > PATIENCE {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_reply_streams_into_the_history_and_pages_back() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let conv = conversation(&c).await;
    let rec = Arc::new(Recorder::default());
    let reply = c
        .send_message(conv.clone(), "hello world".into(), None, rec.clone(), None)
        .await
        .unwrap();
    assert_eq!(reply.status, MessageStatus::Complete);
    assert_eq!(reply.content, "You said: hello world");
    assert_eq!(rec.text(), reply.content);
    assert_eq!(
        rec.completed.lock().unwrap().as_slice(),
        std::slice::from_ref(&reply)
    );
    assert_eq!(reply.usage.unwrap().completion_tokens, 4);

    let page = c
        .list_messages(conv.clone(), PageAt::Newest, 50)
        .await
        .unwrap();
    let got: Vec<(Role, &str)> = page
        .messages
        .iter()
        .map(|m| (m.role, m.content.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (Role::User, "hello world"),
            (Role::Assistant, "You said: hello world")
        ]
    );
    // The request: system prompt first, then the context, streamed, with a key.
    let sent = env.server.requests_to("/api/v1/chat");
    assert_eq!(sent.len(), 1);
    assert!(sent[0].idempotency_key.is_some());
    let body: serde_json::Value = serde_json::from_str(&sent[0].body).unwrap();
    assert_eq!(body["stream"], true);
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][1]["content"], "hello world");
    assert_eq!(body["messages"].as_array().unwrap().len(), 2);
    // The chat response's quota headers fed the quota state.
    assert_eq!(c.quota().remaining, Some(49));

    let hits = c
        .search_messages(SearchQuery::new("hello"), None)
        .await
        .unwrap();
    assert_eq!(hits.len(), 2, "the user message and the finished reply");
    assert_eq!(hits[0].message.id, reply.id, "newest first");
}

#[tokio::test]
async fn any_chunking_line_end_and_keep_alives_give_the_same_reply() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let conv = conversation(&c).await;
    let text = pieces(40);
    let scripts = [
        (vec![1], "\n", 0),
        (vec![1], "\r\n", 1),
        (vec![1], "\r", 3),
        (vec![2, 3, 5, 7], "\r\n", 2),
        (vec![4096], "\r", 0),
        (vec![], "\r\n", 1),
    ];
    for (chunk_sizes, line_end, keep_alive_every) in scripts {
        env.server.script_chat(ChatScript {
            pieces: text.clone(),
            chunk_sizes: chunk_sizes.clone(),
            line_end,
            keep_alive_every,
            ..ChatScript::default()
        });
        let rec = Arc::new(Recorder::default());
        let reply = c
            .send_message(conv.clone(), "go".into(), None, rec.clone(), None)
            .await
            .unwrap();
        let case = format!("{chunk_sizes:?} {line_end:?} {keep_alive_every}");
        assert_eq!(reply.status, MessageStatus::Complete, "{case}");
        assert_eq!(reply.content, text.concat(), "{case}");
        assert_eq!(rec.text(), text.concat(), "{case}");
    }
}

/// 2000 pieces in one chunk: a handful of listener crossings and commits, not 2000.
#[tokio::test]
async fn deltas_are_coalesced_and_writes_batched() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let conv = conversation(&c).await;
    let text = pieces(2000);
    env.server.script_chat(ChatScript {
        pieces: text.clone(),
        chunk_sizes: vec![1 << 20],
        ..ChatScript::default()
    });
    let rec = Arc::new(Recorder::default());
    let (commits0, _) = c.chat_counters();
    let reply = c
        .send_message(conv, "go".into(), None, rec.clone(), None)
        .await
        .unwrap();
    assert_eq!(reply.content, text.concat());
    assert_eq!(rec.text(), text.concat());
    assert!(rec.crossings() <= 3, "{} on_delta calls", rec.crossings());
    let (commits, deltas) = c.chat_counters();
    assert!(commits - commits0 <= 3, "{} commits", commits - commits0);
    assert_eq!(deltas as usize, rec.crossings());
}

/// The listener is stuck in its first `on_delta`; the stream is read and stored whole
/// meanwhile, and the listener then gets the rest in one piece.
#[tokio::test]
async fn a_slow_listener_never_stalls_the_read() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let conv = conversation(&c).await;
    let text = pieces(200);
    env.server.script_chat(ChatScript {
        pieces: text.clone(),
        chunk_sizes: vec![64],
        delay: Duration::from_millis(1),
        ..ChatScript::default()
    });
    let (release, gate) = mpsc::channel();
    let (first_tx, first) = mpsc::channel();
    let rec = Arc::new(Recorder {
        gate: Mutex::new(Some(gate)),
        first: Mutex::new(Some(first_tx)),
        ..Recorder::default()
    });
    let task = {
        let (c, rec, conv) = (c.clone(), rec.clone(), conv.clone());
        tokio::spawn(async move { c.send_message(conv, "go".into(), None, rec, None).await })
    };
    tokio::task::spawn_blocking(move || first.recv_timeout(PATIENCE).unwrap())
        .await
        .unwrap();
    let page = c.list_messages(conv, PageAt::Newest, 1).await.unwrap();
    let id = page.messages[0].id.clone();
    let stored = wait_for_status(&c, &id, MessageStatus::Complete).await;
    assert_eq!(
        stored.status,
        MessageStatus::Complete,
        "the read was stalled"
    );
    assert_eq!(stored.content, text.concat());
    assert_eq!(rec.crossings(), 1, "still inside the first on_delta");
    release.send(()).unwrap();
    let reply = task.await.unwrap().unwrap();
    assert_eq!(rec.text(), reply.content);
    assert!(rec.crossings() <= 3);
}

#[tokio::test]
async fn a_truncated_stream_is_kept_as_incomplete() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let conv = conversation(&c).await;
    env.server.script_chat(ChatScript {
        pieces: pieces(5),
        chunk_sizes: vec![7],
        end: ChatEnd::Truncate,
        ..ChatScript::default()
    });
    let rec = Arc::new(Recorder::default());
    let reply = c
        .send_message(conv, "go".into(), None, rec.clone(), None)
        .await
        .unwrap();
    assert_eq!(reply.status, MessageStatus::Incomplete);
    assert_eq!(reply.content, pieces(5).concat());
    assert_eq!(
        rec.completed.lock().unwrap()[0].status,
        MessageStatus::Incomplete
    );
}

/// Timeouts that fit a stream: the contract's keep-alive comments reset the idle
/// deadline, and no total deadline cuts off a reply that keeps flowing. The same gaps
/// without keep-alives end the reply at the idle deadline, kept as `Incomplete`.
#[tokio::test]
async fn keep_alives_reset_the_idle_deadline_and_no_total_cap_cuts_a_flowing_reply() {
    let env = Env::new().await;
    let mut cfg = env.config();
    cfg.timeouts.idle_ms = 300;
    cfg.timeouts.total_ms = 500;
    let c = env.client_with(cfg);
    c.restore_session().await.unwrap();
    c.sign_in_anonymously(None, None).await.unwrap();
    let conv = conversation(&c).await;

    // 4 events 600 ms apart (2.4 s in all), a keep-alive every 150 ms in between.
    env.server.script_chat(ChatScript {
        pieces: pieces(4),
        keep_alive_chunks: 3,
        delay: Duration::from_millis(150),
        ..ChatScript::default()
    });
    let started = Instant::now();
    let reply = c
        .send_message(
            conv.clone(),
            "go".into(),
            None,
            Arc::new(Recorder::default()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(reply.status, MessageStatus::Complete, "{:?}", reply.error);
    assert_eq!(reply.content, pieces(4).concat());
    assert!(started.elapsed() > Duration::from_millis(2000));

    // The same 600 ms gaps in silence.
    env.server.script_chat(ChatScript {
        pieces: pieces(4),
        delay: Duration::from_millis(600),
        ..ChatScript::default()
    });
    let reply = c
        .send_message(conv, "go".into(), None, Arc::new(Recorder::default()), None)
        .await
        .unwrap();
    assert_eq!(reply.status, MessageStatus::Incomplete);
    assert!(
        reply.error.as_deref().unwrap_or("").contains("Idle"),
        "{:?}",
        reply.error
    );
    assert!(reply.content.len() < pieces(4).concat().len());
}

#[tokio::test]
async fn an_error_event_fails_the_reply_with_the_error_and_keeps_the_text() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let conv = conversation(&c).await;
    env.server.script_chat(ChatScript {
        pieces: pieces(3),
        end: ChatEnd::Error {
            code: "upstream".into(),
            message: "The model stream broke off".into(),
        },
        ..ChatScript::default()
    });
    let rec = Arc::new(Recorder::default());
    let err = c
        .send_message(conv.clone(), "go".into(), None, rec.clone(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TetherError::Server { code, .. } if code == "upstream"),
        "{err:?}"
    );
    let page = c.list_messages(conv, PageAt::Newest, 1).await.unwrap();
    let m = &page.messages[0];
    assert_eq!(m.status, MessageStatus::Failed);
    assert_eq!(m.content, pieces(3).concat());
    assert!(
        m.error.as_deref().unwrap().contains("broke off"),
        "{:?}",
        m.error
    );
    let errors = rec.errors.lock().unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].0, m.id);
}

#[tokio::test]
async fn a_402_before_any_token_is_plan_required_and_the_user_message_stays() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let conv = conversation(&c).await;
    env.server.set_quota_limit(0);
    let rec = Arc::new(Recorder::default());
    let err = c
        .send_message(conv.clone(), "please".into(), None, rec.clone(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TetherError::PlanRequired { plan_required: Some(p), .. } if p == "pro"),
        "{err:?}"
    );
    let page = c.list_messages(conv, PageAt::Newest, 10).await.unwrap();
    assert_eq!(page.messages[0].role, Role::User);
    assert_eq!(page.messages[0].content, "please");
    assert_eq!(page.messages[1].status, MessageStatus::Failed);
    assert!(rec.deltas.lock().unwrap().is_empty());
    assert!(matches!(
        rec.errors.lock().unwrap()[0].1,
        TetherError::PlanRequired { .. }
    ));
}

fn slow_script() -> ChatScript {
    ChatScript {
        pieces: pieces(2000),
        delay: Duration::from_millis(5),
        ..ChatScript::default()
    }
}

#[tokio::test]
async fn a_cancel_keeps_the_partial_reply_as_cancelled() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let conv = conversation(&c).await;
    env.server.script_chat(slow_script());
    let (first_tx, first) = mpsc::channel();
    let rec = Arc::new(Recorder {
        first: Mutex::new(Some(first_tx)),
        ..Recorder::default()
    });
    let cancel = CancelHandle::new();
    let task = {
        let (c, rec, conv, cancel) = (c.clone(), rec.clone(), conv.clone(), cancel.clone());
        tokio::spawn(async move {
            c.send_message(conv, "go".into(), None, rec, Some(cancel))
                .await
        })
    };
    tokio::task::spawn_blocking(move || first.recv_timeout(PATIENCE).unwrap())
        .await
        .unwrap();
    cancel.cancel();
    let err = task.await.unwrap().unwrap_err();
    assert_eq!(err, TetherError::Cancelled);
    // Stored before the call returned.
    let page = c.list_messages(conv, PageAt::Newest, 1).await.unwrap();
    let m = &page.messages[0];
    assert_eq!(m.status, MessageStatus::Cancelled);
    assert!(!m.content.is_empty());
    assert!(pieces(2000).concat().starts_with(&m.content));
    assert!(m.content.len() < pieces(2000).concat().len());
    assert!(rec.text().len() <= m.content.len());
}

/// A dropped future (a cancelled coroutine, an aborted JS promise) cancels the same way.
#[tokio::test]
async fn a_dropped_call_keeps_the_partial_reply_as_cancelled() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let conv = conversation(&c).await;
    env.server.script_chat(slow_script());
    let (first_tx, first) = mpsc::channel();
    let rec = Arc::new(Recorder {
        first: Mutex::new(Some(first_tx)),
        ..Recorder::default()
    });
    let task = {
        let (c, rec, conv) = (c.clone(), rec.clone(), conv.clone());
        tokio::spawn(async move { c.send_message(conv, "go".into(), None, rec, None).await })
    };
    tokio::task::spawn_blocking(move || first.recv_timeout(PATIENCE).unwrap())
        .await
        .unwrap();
    task.abort();
    let page = c.list_messages(conv, PageAt::Newest, 1).await.unwrap();
    let m = wait_for_status(&c, &page.messages[0].id, MessageStatus::Cancelled).await;
    assert_eq!(m.status, MessageStatus::Cancelled);
    assert!(!m.content.is_empty());
    assert!(pieces(2000).concat().starts_with(&m.content));
}

#[tokio::test]
async fn regenerate_replaces_and_continue_appends() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let conv = conversation(&c).await;
    env.server.script_chat(ChatScript {
        pieces: vec!["first ".into(), "try".into()],
        ..ChatScript::default()
    });
    let rec = Arc::new(Recorder::default());
    let reply = c
        .send_message(conv.clone(), "q".into(), None, rec.clone(), None)
        .await
        .unwrap();
    env.server.script_chat(ChatScript {
        pieces: vec!["second ".into(), "try".into()],
        end: ChatEnd::Truncate,
        ..ChatScript::default()
    });
    let again = c
        .regenerate(reply.id.clone(), None, rec.clone(), None)
        .await
        .unwrap();
    assert_eq!(again.id, reply.id);
    assert_eq!(again.content, "second try");
    assert_eq!(again.status, MessageStatus::Incomplete);
    let body: serde_json::Value =
        serde_json::from_str(&env.server.requests_to("/api/v1/chat")[1].body).unwrap();
    let msgs = body["messages"].as_array().unwrap();
    assert_eq!(
        msgs.last().unwrap()["content"],
        "q",
        "the old reply is not context"
    );

    env.server.script_chat(ChatScript {
        pieces: vec![" and more".into()],
        ..ChatScript::default()
    });
    let done = c
        .continue_incomplete(reply.id.clone(), None, rec.clone(), None)
        .await
        .unwrap();
    assert_eq!(done.content, "second try and more");
    assert_eq!(done.status, MessageStatus::Complete);
    let body: serde_json::Value =
        serde_json::from_str(&env.server.requests_to("/api/v1/chat")[2].body).unwrap();
    let last = body["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["role"], "assistant");
    assert_eq!(last["content"], "second try");
    // A complete reply cannot be continued; a user message cannot be regenerated.
    assert!(c
        .continue_incomplete(reply.id.clone(), None, rec.clone(), None)
        .await
        .is_err());
    let page = c.list_messages(conv, PageAt::Newest, 10).await.unwrap();
    assert_eq!(page.messages.len(), 2);
    assert!(c
        .regenerate(page.messages[0].id.clone(), None, rec, None)
        .await
        .is_err());
}

#[tokio::test]
async fn non_streaming_mode_goes_through_the_same_store() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let conv = conversation(&c).await;
    let rec = Arc::new(Recorder::default());
    let options = ChatOptions {
        stream: false,
        ..ChatOptions::default()
    };
    let reply = c
        .send_message(conv, "whole".into(), Some(options), rec.clone(), None)
        .await
        .unwrap();
    assert_eq!(reply.content, "You said: whole");
    assert_eq!(reply.status, MessageStatus::Complete);
    assert_eq!(rec.text(), reply.content);
    let body: serde_json::Value =
        serde_json::from_str(&env.server.requests_to("/api/v1/chat")[0].body).unwrap();
    assert_eq!(body["stream"], false);
}

#[tokio::test]
async fn the_context_keeps_the_newest_messages_within_the_budget() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let conv = conversation(&c).await;
    let rec = Arc::new(Recorder::default());
    for q in ["one", "two", "three"] {
        c.send_message(conv.clone(), q.into(), None, rec.clone(), None)
            .await
            .unwrap();
    }
    let options = ChatOptions {
        context_budget_chars: 30,
        ..ChatOptions::default()
    };
    c.send_message(conv, "four".into(), Some(options), rec, None)
        .await
        .unwrap();
    let body: serde_json::Value =
        serde_json::from_str(&env.server.requests_to("/api/v1/chat")[3].body).unwrap();
    let contents: Vec<&str> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    // "You said: three" (15) + "four" (4) fit in 30; "three" (5) would too, then no more.
    assert_eq!(contents, ["Be brief.", "three", "You said: three", "four"]);
}

#[tokio::test]
async fn a_reply_left_streaming_becomes_incomplete_at_the_next_start() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let conv = conversation(&c).await;
    drop(c);
    let file = env.dir.path().join("tether.sqlite3");
    {
        let db = rusqlite::Connection::open(&file).unwrap();
        db.execute(
            "INSERT INTO messages (id, conversation_id, role, content, status, created_at)
             VALUES ('left', ?1, 'assistant', 'half a rep', 'streaming', 1)",
            [&conv],
        )
        .unwrap();
    }
    let c = env.client();
    let m = c.get_message("left".into()).await.unwrap().unwrap();
    assert_eq!(m.status, MessageStatus::Incomplete);
    assert_eq!(m.content, "half a rep");
}

#[tokio::test]
async fn conversations_list_archive_export_import_through_the_client() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let a = conversation(&c).await;
    let b = conversation(&c).await;
    // Activity is ordered by millisecond: let the clock move past b's creation.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let rec = Arc::new(Recorder::default());
    c.send_message(a.clone(), "alpha".into(), None, rec, None)
        .await
        .unwrap();
    let page = c.list_conversations(None, 50, false).await.unwrap();
    assert_eq!(page.conversations[0].id, a, "most recently active first");
    c.archive_conversation(a.clone(), true).await.unwrap();
    let page = c.list_conversations(None, 50, false).await.unwrap();
    assert_eq!(page.conversations.len(), 1);
    assert_eq!(page.conversations[0].id, b);
    let json = c.export_history(Some(a.clone())).await.unwrap();
    c.delete_conversation(a.clone()).await.unwrap();
    assert_eq!(c.get_conversation(a.clone()).await.unwrap(), None);
    let summary = c.import_history(json.clone()).await.unwrap();
    assert_eq!((summary.conversations, summary.messages), (1, 2));
    assert_eq!(c.export_history(Some(a)).await.unwrap(), json);
}
