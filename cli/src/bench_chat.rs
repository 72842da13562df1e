//! `tether-bench-chat history|chat|ffi-stream`: the history and chat figures, one line each in the
//! form of `shared/BENCHMARKS.md` (everything else on stderr). Run through
//! `scripts/bench history` and `scripts/bench chat`.
//!
//! history (baselines are raw rusqlite on a file with the same schema, indexes, FTS
//! triggers and pragmas: WAL, `synchronous=NORMAL`, foreign keys, busy timeout):
//! - `append_100k_us`: 100,000 messages appended one by one, each in its own write
//!   transaction, through the store's `append_message` on this thread (what the store
//!   adds to SQLite: statement cache, id, transaction). Baseline: the same INSERT +
//!   conversation `updated_at` UPDATE in one `BEGIN IMMEDIATE` transaction each. 10 rounds
//!   of 10,000, alternating; per-append median of the rounds.
//!   `append_100k_client_us`: the same through `TetherClient::append_message`, i.e. plus
//!   the async hop onto the library runtime and its blocking pool (no target; the hop's
//!   own cost is `core/request_us`'s subject).
//! - `page_newest_50_at_1m_us`: the newest 50 messages of one conversation in a
//!   1,000,000-message database (1,000 conversations of 1,000), through the store's
//!   `list_messages` on this thread. Baseline: the same indexed query on a raw reader
//!   connection inside a read transaction (as the store reads), rows decoded into the same
//!   fields. `page_newest_50_at_1m_client_us`: the same page through
//!   `TetherClient::list_messages` (target: median <= 1 ms), ratio to the same baseline.
//! - `fts_common_at_1m_ms` / `fts_rare_at_1m_ms`: `search_messages` (newest first, first
//!   page of 20, snippets) for a word in half the messages and for one in 20 of them.
//!   Baseline: the same FTS query on a raw connection.
//! - `open_1m_ms`: `TetherClient::new` on the 1M database until its first conversation
//!   page and that conversation's newest 50 messages are loaded (target <= 5 ms).
//!
//! The 1M database is built once with raw rusqlite (bulk inserts through the same
//! triggers) and kept in `target/bench-history-1m/` for later runs.
//!
//! chat (one loopback contract server in this process):
//! - `stream_10k_commits_per_s`, `stream_10k_crossings_per_frame`: a 10,000-delta reply
//!   paced at about 1 ms per delta; write transactions per second of stream (target
//!   <= 10) and `on_delta` calls per 16 ms frame (target <= 1).
//! - `stream_10k_deltas_per_s`: the same reply unpaced, end to end into the history with
//!   a listener. Baseline: the same request read with bare reqwest and parsed with
//!   `tether::sse`, nothing stored (median of 5 each, alternating).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use tether::{
    ChatListener, ClientConfig, Message, PageAt, Role, SearchQuery, StoreForBench, TetherClient,
    TetherError,
};
use tether_test_server::{ChatScript, TestServer};

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn line(figure: &str, unit: &str, value: f64, baseline: Option<f64>, target: Option<(&str, f64)>) {
    let mut s = format!("bench {figure} value={value:.3} unit={unit}");
    let ratio = baseline.map(|b| value / b);
    if let (Some(b), Some(r)) = (baseline, ratio) {
        s += &format!(" baseline={b:.3} ratio={r:.3}");
    }
    if let Some((op, t)) = target {
        let x = if op.ends_with("ratio") {
            ratio.unwrap_or(f64::NAN)
        } else {
            value
        };
        let op = op.trim_end_matches("ratio");
        let ok = match op {
            "<=" => x <= t,
            _ => x >= t,
        };
        s += &format!(" target={op}{t} ok={ok}");
    }
    println!("{s}");
}

/// The lines of a store / raw / through-the-client comparison: `history/<name>` for the
/// store on this thread against raw (target: ratio <= 1.1), and `history/<client name>`
/// for the same through `TetherClient` against the same baseline (its own target, if any).
fn three_way(
    name: &str,
    ours: Vec<f64>,
    base: Vec<f64>,
    hop: Vec<f64>,
    client_target: Option<(&str, f64)>,
) {
    let (v, vmin, vmax) = median(ours);
    let (b, bmin, bmax) = median(base);
    let (h, hmin, hmax) = median(hop);
    eprintln!(
        "{name}: store min {vmin:.1} max {vmax:.1}; raw min {bmin:.1} max {bmax:.1}; \
         client min {hmin:.1} max {hmax:.1}"
    );
    let unit = "us";
    line(
        &format!("history/{name}"),
        unit,
        v,
        Some(b),
        Some(("<=ratio", 1.1)),
    );
    let client = name.replace("_us", "_client_us");
    line(
        &format!("history/{client}"),
        unit,
        h,
        Some(b),
        client_target,
    );
}

const WORDS: &[&str] = &[
    "the", "model", "reply", "stream", "phone", "history", "search", "token", "battery", "camera",
    "photo", "cat", "travel", "plan", "budget", "recipe", "weather", "music", "running", "garden",
    "python", "kotlin", "swift", "design", "meeting", "notes", "idea", "summary", "question",
    "answer", "because", "however", "quickly", "slowly", "maybe",
];

/// A message of 12-30 words; "hello" in every other one, "zyzzyva" in 20 of 1M.
fn text(i: u64) -> String {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let n = 12 + (x % 19) as usize;
    let mut out = String::with_capacity(n * 7);
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push_str(WORDS[(x % WORDS.len() as u64) as usize]);
        out.push(' ');
    }
    if i & 1 == 0 {
        out.push_str("hello");
    }
    if i % 50_000 == 7 {
        out.push_str(" zyzzyva");
    }
    out
}

fn config(url: &str, dir: &Path) -> ClientConfig {
    ClientConfig::new(url, "bench", dir.to_string_lossy())
}

/// A raw connection with the store's settings.
fn raw(file: &Path) -> Connection {
    let c = Connection::open(file).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.pragma_update(None, "foreign_keys", "ON").unwrap();
    c.pragma_update(None, "synchronous", "NORMAL").unwrap();
    c.set_prepared_statement_cache_capacity(64);
    c
}

const INSERT: &str =
    "INSERT INTO messages (id, conversation_id, role, content, status, created_at, model,
     prompt_tokens, completion_tokens, error, attachments)
     VALUES (?1, ?2, 'user', ?3, 'complete', ?4, NULL, NULL, NULL, NULL, NULL)";

fn raw_append(c: &mut Connection, conv: &str, i: u64, content: &str) {
    let tx = c
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let id = format!("00000000-0000-4000-8000-{i:012}");
    let now = 1_700_000_000_000i64 + i as i64;
    tx.prepare_cached(INSERT)
        .unwrap()
        .execute(params![id, conv, content, now])
        .unwrap();
    tx.prepare_cached("UPDATE conversations SET updated_at = ?2 WHERE id = ?1")
        .unwrap()
        .execute(params![conv, now])
        .unwrap();
    tx.commit().unwrap();
}

/// A new data dir whose database has the library's schema (created by a client).
async fn fresh(url: &str, dir: &Path) -> (Arc<TetherClient>, String) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let c = TetherClient::new(config(url, dir), tether::in_memory_token_store()).unwrap();
    let conv = c
        .create_conversation("bench".into(), None)
        .await
        .unwrap()
        .id;
    (c, conv)
}

async fn append_100k(url: &str, root: &Path) {
    let (client, conv) = fresh(url, &root.join("client")).await;
    let (c, store_conv) = fresh(url, &root.join("store")).await;
    drop(c);
    let store = StoreForBench::open(&root.join("store").to_string_lossy()).unwrap();
    let (c, raw_conv) = fresh(url, &root.join("raw")).await;
    drop(c);
    let mut rc = raw(&root.join("raw").join("tether.sqlite3"));
    let (mut ours, mut hop, mut base) = (Vec::new(), Vec::new(), Vec::new());
    let per = 10_000u64;
    let per_append = |t: Instant| t.elapsed().as_secs_f64() * 1e6 / per as f64;
    for round in 0..10u64 {
        let range = round * per..(round + 1) * per;
        let t = Instant::now();
        for i in range.clone() {
            store
                .append_message(&store_conv, Role::User, text(i))
                .unwrap();
        }
        ours.push(per_append(t));
        let t = Instant::now();
        for i in range.clone() {
            raw_append(&mut rc, &raw_conv, i, &text(i));
        }
        base.push(per_append(t));
        let t = Instant::now();
        for i in range {
            client
                .append_message(conv.clone(), Role::User, text(i), vec![])
                .await
                .unwrap();
        }
        hop.push(per_append(t));
        eprintln!(
            "append round {round}: store {:.1} us, raw {:.1} us, through the client {:.1} us",
            ours[ours.len() - 1],
            base[base.len() - 1],
            hop[hop.len() - 1]
        );
    }
    three_way("append_100k_us", ours, base, hop, None);
}

/// The 1M database, built once (raw bulk inserts through the same triggers).
async fn million(url: &str, root: &Path) -> (PathBuf, String) {
    let dir = root.join("bench-history-1m");
    let file = dir.join("tether.sqlite3");
    let ready = dir.join("ready");
    if !ready.exists() {
        eprintln!(
            "building the 1M-message database in {} (once)...",
            dir.display()
        );
        let t = Instant::now();
        let (c, _) = fresh(url, &dir).await;
        drop(c);
        let mut conn = raw(&file);
        conn.execute("DELETE FROM conversations", []).unwrap();
        let base = 1_700_000_000_000i64;
        {
            let tx = conn.transaction().unwrap();
            for conv in 0..1000i64 {
                // Conversation n was last active at n: c0999 is the most recent.
                tx.execute(
                    "INSERT INTO conversations (id, title, created_at, updated_at) VALUES (?1, ?1, ?2, ?3)",
                    params![format!("c{conv:04}"), base, base + 10_000_000 + conv],
                )
                .unwrap();
            }
            tx.commit().unwrap();
        }
        // Interleaved like real use: message i of the database goes to conversation i % 1000.
        for batch in 0..10u64 {
            let tx = conn.transaction().unwrap();
            for i in batch * 100_000..(batch + 1) * 100_000 {
                let id = format!("00000000-0000-4000-8000-{i:012}");
                tx.prepare_cached(INSERT)
                    .unwrap()
                    .execute(params![
                        id,
                        format!("c{:04}", i % 1000),
                        text(i),
                        base + i as i64
                    ])
                    .unwrap();
            }
            tx.commit().unwrap();
            eprintln!(
                "  {} messages ({:.0} s)",
                (batch + 1) * 100_000,
                t.elapsed().as_secs_f64()
            );
        }
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); ANALYZE;")
            .unwrap();
        std::fs::write(&ready, b"1").unwrap();
    }
    (dir, "c0999".to_string())
}

fn raw_page(c: &Connection, conv: &str) -> usize {
    let tx = c.unchecked_transaction().unwrap();
    let n = {
        let mut st = tx
            .prepare_cached(
                "SELECT m.id, m.conversation_id, m.role, m.content, m.status, m.created_at, m.model,
                        m.prompt_tokens, m.completion_tokens, m.error, m.attachments, m.seq
                 FROM messages m WHERE m.conversation_id = ?1 AND m.seq < ?2 ORDER BY m.seq DESC LIMIT ?3",
            )
            .unwrap();
        type Row = (
            (String, String, String, String, String, i64),
            (
                Option<String>,
                Option<u32>,
                Option<u32>,
                Option<String>,
                Option<String>,
            ),
        );
        // Every column decoded, as the library does (its roles and statuses as text here).
        let mut rows: Vec<Row> = st
            .query_map(params![conv, i64::MAX, 51], |r| {
                Ok((
                    (
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ),
                    (r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?),
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        rows.truncate(50);
        rows.reverse();
        rows.len()
    };
    tx.commit().unwrap();
    n
}

fn raw_search(c: &Connection, word: &str) -> usize {
    let mut st = c
        .prepare_cached(
            "SELECT m.id, m.content, snippet(messages_fts, 0, '[', ']', '…', 12)
             FROM messages_fts JOIN messages m ON m.seq = messages_fts.rowid
             WHERE messages_fts MATCH ?1 ORDER BY messages_fts.rowid DESC LIMIT 20",
        )
        .unwrap();
    let rows: Vec<(String, String, String)> = st
        .query_map([format!("\"{word}\"")], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    rows.len()
}

async fn at_1m(url: &str, root: &Path) {
    let (dir, conv) = million(url, root).await;
    let file = dir.join("tether.sqlite3");
    let client = TetherClient::new(config(url, &dir), tether::in_memory_token_store()).unwrap();
    let rc = raw(&file);
    rc.pragma_update(None, "query_only", "ON").unwrap();

    // Page of the newest 50: on this thread through the store (the figure), the raw
    // query, and through the client with its hop onto the blocking pool.
    let store = StoreForBench::open(&dir.to_string_lossy()).unwrap();
    let (mut ours, mut hop, mut base) = (Vec::new(), Vec::new(), Vec::new());
    let n = 200;
    let per_page = |t: Instant| t.elapsed().as_secs_f64() * 1e6 / n as f64;
    for round in 0..=7 {
        let t = Instant::now();
        for _ in 0..n {
            let p = store.list_messages(&conv, PageAt::Newest, 50).unwrap();
            assert_eq!(p.messages.len(), 50);
        }
        let a = per_page(t);
        let t = Instant::now();
        for _ in 0..n {
            assert_eq!(raw_page(&rc, &conv), 50);
        }
        let b = per_page(t);
        let t = Instant::now();
        for _ in 0..n {
            let p = client
                .list_messages(conv.clone(), PageAt::Newest, 50)
                .await
                .unwrap();
            assert_eq!(p.messages.len(), 50);
        }
        let c = per_page(t);
        if round > 0 {
            ours.push(a);
            base.push(b);
            hop.push(c);
        }
    }
    three_way(
        "page_newest_50_at_1m_us",
        ours,
        base,
        hop,
        Some(("<=", 1000.0)),
    );

    // Search, newest first.
    for (figure, word, expect) in [
        ("fts_common_at_1m_ms", "hello", 20),
        ("fts_rare_at_1m_ms", "zyzzyva", 20),
    ] {
        let (mut ours, mut base) = (Vec::new(), Vec::new());
        for round in 0..=7 {
            let t = Instant::now();
            let hits = client
                .search_messages(SearchQuery::new(word), None)
                .await
                .unwrap();
            let a = t.elapsed().as_secs_f64() * 1e3;
            assert_eq!(hits.len(), expect, "{word}");
            let t = Instant::now();
            assert_eq!(raw_search(&rc, word), expect);
            let b = t.elapsed().as_secs_f64() * 1e3;
            if round > 0 {
                ours.push(a);
                base.push(b);
            }
        }
        let (v, vmin, vmax) = median(ours);
        let (b, bmin, bmax) = median(base);
        eprintln!("{figure}: tether min {vmin:.3} max {vmax:.3}; raw min {bmin:.3} max {bmax:.3}");
        let target = (figure == "fts_common_at_1m_ms").then_some(("<=", 20.0));
        line(&format!("history/{figure}"), "ms", v, Some(b), target);
    }
    drop(client);

    // A new client until its first page is loaded.
    let mut ours = Vec::new();
    for round in 0..=7 {
        let t = Instant::now();
        let c = TetherClient::new(config(url, &dir), tether::in_memory_token_store()).unwrap();
        let list = c.list_conversations(None, 50, false).await.unwrap();
        let first = list.conversations[0].id.clone();
        let page = c.list_messages(first, PageAt::Newest, 50).await.unwrap();
        let a = t.elapsed().as_secs_f64() * 1e3;
        assert_eq!(page.messages.len(), 50);
        drop(c);
        if round > 0 {
            ours.push(a);
        }
    }
    let (v, vmin, vmax) = median(ours);
    eprintln!("open_1m_ms: min {vmin:.3} max {vmax:.3}");
    line("history/open_1m_ms", "ms", v, None, Some(("<=", 5.0)));
}

struct Counting {
    deltas: AtomicUsize,
}

impl ChatListener for Counting {
    fn on_delta(&self, _message_id: String, _text: String) {
        self.deltas.fetch_add(1, Ordering::Relaxed);
    }
    fn on_complete(&self, _message: Message) {}
    fn on_error(&self, _message_id: String, _error: TetherError) {}
}

fn pieces() -> Vec<String> {
    (0..10_000).map(|i| format!("tok{i} ")).collect()
}

async fn chat(server: &TestServer, root: &Path) {
    server.set_quota_limit(1_000_000);
    let (client, conv) = fresh(&server.url(), &root.join("chat")).await;
    client.restore_session().await.unwrap();
    client.sign_in_anonymously(None, None).await.unwrap();

    // Paced: commits per second of stream, crossings per frame.
    server.script_chat(ChatScript {
        pieces: pieces(),
        delay: Duration::from_millis(1),
        ..ChatScript::default()
    });
    let listener = Arc::new(Counting {
        deltas: AtomicUsize::new(0),
    });
    let (c0, _) = client.chat_counters();
    let t = Instant::now();
    let reply = client
        .send_message(conv.clone(), "go".into(), None, listener.clone(), None)
        .await
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(reply.content, pieces().concat());
    let (c1, _) = client.chat_counters();
    let commits = (c1 - c0) as f64;
    let crossings = listener.deltas.load(Ordering::Relaxed) as f64;
    eprintln!("stream_10k paced: {secs:.2} s, {commits} commits, {crossings} on_delta calls");
    line(
        "chat/stream_10k_commits_per_s",
        "count/s",
        commits / secs,
        None,
        Some(("<=", 10.0)),
    );
    line(
        "chat/stream_10k_crossings_per_frame",
        "count",
        crossings / (secs / 0.016),
        None,
        Some(("<=", 1.0)),
    );

    // Unpaced: end-to-end delta throughput vs bare reqwest + the parser.
    let token = client.access_token(None).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/chat", server.url());
    let body = r#"{"messages":[{"role":"user","content":"go"}],"stream":true}"#;
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for round in 0..=5 {
        server.script_chat(ChatScript {
            pieces: pieces(),
            ..ChatScript::default()
        });
        let t = Instant::now();
        let l = Arc::new(Counting {
            deltas: AtomicUsize::new(0),
        });
        client
            .send_message(conv.clone(), "go".into(), None, l, None)
            .await
            .unwrap();
        let a = 10_000.0 / t.elapsed().as_secs_f64();
        server.script_chat(ChatScript {
            pieces: pieces(),
            ..ChatScript::default()
        });
        let t = Instant::now();
        let mut resp = http
            .post(&url)
            .header("authorization", format!("Bearer {token}"))
            .header("x-client-id", "bench")
            .header("idempotency-key", format!("bench-{round}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let mut p = tether::sse::Parser::default();
        let mut events = 0;
        while let Some(chunk) = resp.chunk().await.unwrap() {
            events += p.feed(&chunk).unwrap().len();
        }
        assert_eq!(events, 10_002);
        let b = 10_000.0 / t.elapsed().as_secs_f64();
        if round > 0 {
            ours.push(a);
            base.push(b);
        }
    }
    let (v, vmin, vmax) = median(ours);
    let (b, bmin, bmax) = median(base);
    eprintln!("stream_10k_deltas_per_s: tether min {vmin:.0} max {vmax:.0}; bare reqwest+parser min {bmin:.0} max {bmax:.0}");
    line("chat/stream_10k_deltas_per_s", "count/s", v, Some(b), None);
}

/// `tether-bench-chat ffi-stream <server url> <data dir>`: the Rust-only side of
/// `scripts/bench ffi` (android/src/jvmBench/.../FfiBench.kt drives it). Signs in once on
/// the given contract server, then for each line read on stdin (a chat script, as the
/// server's `chat-script` admin command takes it) queues that script, streams one reply
/// with a counting listener and prints `<seconds> <on_delta calls> <chars>` on stdout:
/// the same stream through the same server as the Kotlin side, timed from the call to
/// its return, so the two can alternate round by round.
async fn ffi_stream(url: &str, dir: &Path) {
    let (client, conv) = fresh(url, dir).await;
    client.restore_session().await.unwrap();
    client.sign_in_anonymously(None, None).await.unwrap();
    let http = reqwest::Client::new();
    let read_line = || {
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            let n = std::io::stdin().read_line(&mut line).unwrap();
            (n > 0).then_some(line)
        })
    };
    while let Some(script) = read_line().await.unwrap() {
        let r = http
            .post(format!("{url}/__admin/chat-script"))
            .header("content-type", "application/json")
            .body(script)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "chat-script: {}", r.status());
        let listener = Arc::new(Counting {
            deltas: AtomicUsize::new(0),
        });
        let t = Instant::now();
        let reply = client
            .send_message(conv.clone(), "go".into(), None, listener.clone(), None)
            .await
            .unwrap();
        let secs = t.elapsed().as_secs_f64();
        let n = listener.deltas.load(Ordering::Relaxed);
        println!("{secs:.6} {n} {}", reply.content.chars().count());
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let suite = std::env::args().nth(1).unwrap_or_default();
    if suite == "ffi-stream" {
        let arg = |i: usize| {
            std::env::args()
                .nth(i)
                .expect("ffi-stream <server url> <data dir>")
        };
        return ffi_stream(&arg(2), Path::new(&arg(3))).await;
    }
    let server = TestServer::start().await;
    let root = std::env::var_os("TETHER_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("tether-bench-chat"));
    std::fs::create_dir_all(&root).unwrap();
    match suite.as_str() {
        "history" => {
            append_100k(&server.url(), &root).await;
            at_1m(&server.url(), &root).await;
        }
        // The 1M-row figures alone (profiling).
        "history-1m" => at_1m(&server.url(), &root).await,
        "chat" => chat(&server, &root).await,
        other => {
            eprintln!("usage: tether-bench-chat history|chat|ffi-stream (got {other:?})");
            std::process::exit(2);
        }
    }
}
