//! The crash test: a child process streams a long reply into the history and is killed
//! with SIGKILL at random moments, 24 times. After each kill the database passes
//! `PRAGMA integrity_check`, the completed messages are intact, the partial reply is
//! present (a prefix of what the server sent, non-empty once the kill came well after the
//! first delta), and it becomes `incomplete` when the next client opens the database.
//!
//! The child is this test binary run again with `--exact crash_child --ignored` and the
//! server's address and data dir in the environment.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tether::{ChatListener, Message, MessageStatus, PageAt, TetherClient, TetherError};
use tether_test_server::ChatScript;

const KILLS: usize = 24;

fn reply_pieces() -> Vec<String> {
    (0..4000).map(|i| format!("tok{i} ")).collect()
}

struct Announce;

impl ChatListener for Announce {
    fn on_delta(&self, _message_id: String, _text: String) {
        use std::sync::atomic::{AtomicBool, Ordering};
        static ONCE: AtomicBool = AtomicBool::new(false);
        if !ONCE.swap(true, Ordering::SeqCst) {
            println!("STREAMING");
        }
    }
    fn on_complete(&self, _message: Message) {}
    fn on_error(&self, _message_id: String, _error: TetherError) {}
}

/// The child: sends one message into the conversation and streams the (long) reply until
/// it is killed.
#[tokio::test]
#[ignore = "the crash test's child process"]
async fn crash_child() {
    let url = std::env::var("TETHER_CRASH_URL").unwrap();
    let dir = std::env::var("TETHER_CRASH_DIR").unwrap();
    let conv = std::env::var("TETHER_CRASH_CONVERSATION").unwrap();
    let mut cfg = tether::ClientConfig::new(url, "crash", dir);
    cfg.timeouts.idle_ms = 30_000;
    let c = TetherClient::new(cfg, tether::in_memory_token_store()).unwrap();
    c.restore_session().await.unwrap();
    c.sign_in_anonymously(None, None).await.unwrap();
    println!("READY");
    let _ = c
        .send_message(conv, "go on".into(), None, Arc::new(Announce), None)
        .await;
    println!("FINISHED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_never_loses_what_was_stored() {
    let server = TestServer::start().await;
    server.set_quota_limit(1000);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tether.sqlite3");
    // Completed messages written before any crash; they must survive every kill intact.
    let (conv, before) = {
        let c = TetherClient::new(config(&server.url(), &dir), tether::in_memory_token_store())
            .unwrap();
        c.restore_session().await.unwrap();
        c.sign_in_anonymously(None, None).await.unwrap();
        let conv = c
            .create_conversation("crash".into(), None)
            .await
            .unwrap()
            .id;
        for q in ["first question", "second question"] {
            c.send_message(conv.clone(), q.into(), None, Arc::new(Announce), None)
                .await
                .unwrap();
        }
        let page = c
            .list_messages(conv.clone(), PageAt::Newest, 10)
            .await
            .unwrap();
        (conv, page.messages)
    };
    assert_eq!(before.len(), 4);
    let full = reply_pieces().concat();
    let exe = std::env::current_exe().unwrap();
    let mut nonempty_partials = 0;
    let mut last_seq: i64 = 0;
    for round in 0..KILLS {
        server.script_chat(ChatScript {
            pieces: reply_pieces(),
            delay: Duration::from_millis(1),
            ..ChatScript::default()
        });
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("TETHER_CRASH_URL", server.url())
            .env("TETHER_CRASH_DIR", dir.path())
            .env("TETHER_CRASH_CONVERSATION", &conv)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // A quarter of the kills come at any moment after the child is ready (maybe before
        // the reply's first byte); the rest some time after the first delta.
        let wait_streaming = round % 4 != 0;
        let want = if wait_streaming { "STREAMING" } else { "READY" };
        loop {
            let line = rx.recv_timeout(Duration::from_secs(60)).unwrap();
            // libtest prints `test crash_child ... ` before the test's own output.
            assert!(
                !line.contains("FINISHED"),
                "round {round}: the reply ended before the kill"
            );
            if line.contains(want) {
                break;
            }
        }
        let pause = fastrand_ms(round, if wait_streaming { 400 } else { 150 });
        std::thread::sleep(Duration::from_millis(pause));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        // The file as the killed process left it.
        let db = rusqlite::Connection::open(&file).unwrap();
        let check: String = db
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok", "round {round}");
        let newest: Option<(i64, String, String)> = db
            .query_row(
                "SELECT seq, content, status FROM messages
                 WHERE role = 'assistant' AND seq > ?1 ORDER BY seq DESC LIMIT 1",
                [last_seq],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .ok();
        drop(db);
        let Some((seq, content, status)) = newest else {
            // Killed before the send's first transaction: nothing of this round to keep.
            assert!(
                !wait_streaming,
                "round {round}: the streaming reply is missing"
            );
            continue;
        };
        last_seq = seq;
        assert_eq!(status, "streaming", "round {round}");
        assert!(full.starts_with(&content), "round {round}: not a prefix");
        if wait_streaming && pause >= 150 {
            assert!(
                !content.is_empty(),
                "round {round}: nothing kept {pause} ms after the first delta"
            );
        }
        nonempty_partials += usize::from(!content.is_empty());

        // The next start: the partial reply becomes incomplete, the rest is untouched.
        let c = TetherClient::new(config(&server.url(), &dir), tether::in_memory_token_store())
            .unwrap();
        let page = c
            .list_messages(conv.clone(), PageAt::Newest, 200)
            .await
            .unwrap();
        assert_eq!(
            &page.messages[..4],
            &before[..],
            "round {round}: completed messages changed"
        );
        let last = page.messages.last().unwrap();
        assert_eq!(last.status, MessageStatus::Incomplete, "round {round}");
        assert_eq!(last.content, content, "round {round}");
        assert!(page
            .messages
            .iter()
            .all(|m| m.status != MessageStatus::Streaming));
    }
    assert!(
        nonempty_partials >= KILLS / 2,
        "{nonempty_partials} partial replies kept"
    );
}

/// A pseudo-random pause (0..max ms) that differs per round and per run.
fn fastrand_ms(round: usize, max: u64) -> u64 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    (seed ^ (round as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) % max
}
