//! `tether-bench`: the core's figures, one line each in the form of
//! `shared/BENCHMARKS.md`, everything else on stderr. Run through `scripts/bench core`.
//!
//! What is compared, in one process against one loopback contract server (on a runtime
//! and thread of its own, as the network would be; see `main`):
//! - `core/request_us`: one authenticated `GET /api/v1/quota` through `TetherClient::send`
//!   (token check, headers, retry loop, quota-header parsing, capped body read, error
//!   mapping), sequential. Baseline: the same request with the same headers (User-Agent,
//!   X-Client-ID, Authorization) sent by a bare `reqwest::Client` and its body read whole,
//!   run the way any Rust library with its own runtime is called from an app: spawned on
//!   a runtime like the library's (2 workers) and awaited from the caller's. Rounds
//!   alternate between the sides, in an order rotated each round (see [`rounds`]); each
//!   value is the median of the rounds.
//! - `core/request_inline_us`: the same Tether figure against bare reqwest run on the
//!   caller's own runtime, with no runtime boundary (the baseline of the earlier runs;
//!   no target).
//!
//!   Where the time went (found with `TETHER_BENCH_ONLY` below under `perf record`,
//!   `perf stat -e context-switches` and `valgrind --tool=callgrind`), and what was done:
//!   - Mostly not in Tether's code but in its deadlines. Every attempt arms a first-byte
//!     timer and every body chunk an idle one; on a quiet runtime tokio wakes the thread
//!     parked on its timer driver for each: ~1.5 more context switches per request than
//!     bare reqwest, which arms none. `runtime::deadline_armed` keeps a timer pending
//!     while requests flow, so arming one wakes nobody (request_us ~1.13-1.27 became
//!     ~0.97-1.09, with the baseline's context switches per request).
//!   - Then Tether's own instructions (callgrind, per request, client and server
//!     together ~134,000 for the baseline): `RequestBuilder` moving the whole request at
//!     each header (~3,300), header names parsed from strings at every lookup (~1,300),
//!     the access token copied and formatted (~150). All three gone; what is left over
//!     the baseline is ~1,900 instructions (the quota headers and `Date` read, the
//!     call's task, the deadlines), ~1.4%.
//! - `core/concurrent50_ms`: 50 concurrent authenticated calls through the client, each
//!   launched as a task of the caller's runtime (as an app launches coroutines).
//!   Baseline: the same 50 requests with bare reqwest, each also launched as a caller's
//!   task that spawns it on the library-like runtime and awaits it (earlier runs spawned
//!   the baseline's straight onto that runtime, one task fewer per call than the app's
//!   side); `core/concurrent50_inline_ms` against bare reqwest in the caller's tasks.
//!   A round takes ~2 ms, so the median is over [`CONCURRENT_ROUNDS`] rounds.
//! - `core/client_new_us`: `TetherClient::new` on an existing data_dir that another
//!   client holds open (URL checks, HTTP client, the store's one connection at start-up:
//!   settings, journal mode and schema checks, then the remembered clock offset read).
//!   Baseline: raw rusqlite doing the same opening (same pragmas, same queries) on a file
//!   with the same schema and rows, also held open by another connection.
//!   Earlier runs compared against one connection setting WAL on an EMPTY database file
//!   (no schema), which SQLite takes several times longer to open than a real one; that
//!   ratio is still printed on stderr, for comparison with those runs.

use std::time::{Duration, Instant};

use tether::{ApiRequest, ClientConfig, HttpMethod, TetherClient};
use tether_cli::api_request;
use tether_test_server::TestServer;

const ROUNDS: usize = 9;
/// The request figures differ from their baselines by a few percent on a shared machine
/// whose speed drifts by more than that within seconds: many short rounds (a multiple of
/// three, for the rotation in [`rounds`]) give medians that hold between runs. A round of
/// 50 concurrent calls takes ~2 ms, where one scheduling hiccup shows, hence more of them.
const REQUEST_ROUNDS: usize = 30;
const CONCURRENT_ROUNDS: usize = 90;

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn line(figure: &str, unit: &str, value: f64, baseline: f64) {
    println!(
        "bench core/{figure} value={value:.3} unit={unit} baseline={baseline:.3} ratio={:.3}",
        value / baseline
    );
}

/// A figure with the target (`ratio <= max`).
fn line_target(figure: &str, unit: &str, value: f64, baseline: f64, max: f64) {
    let ratio = value / baseline;
    println!(
        "bench core/{figure} value={value:.3} unit={unit} baseline={baseline:.3} ratio={ratio:.3} target=<={max} ok={}",
        ratio <= max
    );
}

/// Who sends a benchmark's request: the client, or bare reqwest across a runtime like
/// the library's, or bare reqwest on the caller's runtime.
#[derive(Clone, Copy)]
enum Side {
    Tether,
    Across,
    Bare,
}

/// Runs a warm-up round and then `count` rounds of the three sides, each round in an
/// order rotated by one, so that no side always runs first or right after the same
/// other side. Returns each side's values: Tether's, across a runtime, bare.
async fn rounds<F, Fut>(count: usize, mut time: F) -> [Vec<f64>; 3]
where
    F: FnMut(Side) -> Fut,
    Fut: std::future::Future<Output = f64>,
{
    const SIDES: [Side; 3] = [Side::Tether, Side::Across, Side::Bare];
    let mut values = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..=count {
        for i in 0..SIDES.len() {
            let k = (round + i) % SIDES.len();
            let v = time(SIDES[k]).await;
            if round > 0 {
                values[k].push(v);
            }
        }
    }
    values
}

fn quota() -> ApiRequest {
    api_request(HttpMethod::Get, "quota", None, true)
}

/// What the store does when a client starts, in raw rusqlite: one connection with the
/// same settings, the journal mode and schema version checked, then (as the first
/// reader) one kv row read in a transaction.
fn raw_open(file: &std::path::Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(file).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.pragma_update(None, "foreign_keys", "ON").unwrap();
    let mode: String = c
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let _: i64 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    c.pragma_update(None, "query_only", "ON").unwrap();
    let offset: String = {
        let tx = c.unchecked_transaction().unwrap();
        let v = tx
            .prepare_cached("SELECT value FROM kv WHERE key = ?1")
            .unwrap()
            .query_row(["server_clock_offset_ms"], |row| row.get(0))
            .unwrap();
        tx.commit().unwrap();
        v
    };
    assert_eq!(offset, "12");
    c
}

/// `getrusage(2)`, declared here so the bench needs no libc crate.
mod libc_rusage {
    #[repr(C)]
    pub struct Rusage {
        pub utime_s: i64,
        pub utime_us: i64,
        pub stime_s: i64,
        pub stime_us: i64,
        pub rest: [i64; 14],
    }
    extern "C" {
        pub fn getrusage(who: i32, usage: *mut Rusage) -> i32;
    }
}

/// The loopback server runs on a runtime of its own (one thread), as the network would:
/// if it shared the benchmark's runtime, bare reqwest (on that runtime too) would hand
/// requests to the server and back within one thread, while Tether, on its own runtime,
/// always crosses threads, and the figure would measure that co-scheduling, not the
/// pipeline.
fn main() {
    let net = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-server")
        .enable_all()
        .build()
        .unwrap();
    let server = net.block_on(TestServer::start());
    // The boundary baseline's runtime, built like the library's (src/runtime.rs).
    let lib_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bare-lib-rt")
        .enable_all()
        .build()
        .unwrap();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench(server, &lib_rt));
    drop((lib_rt, net));
}

async fn bench(server: TestServer, lib_rt: &tokio::runtime::Runtime) {
    let dir = std::env::temp_dir().join(format!("tether-bench-{}", std::process::id()));
    let config = ClientConfig::new(server.url(), "bench", dir.to_string_lossy());
    let client = TetherClient::new(config.clone(), tether::in_memory_token_store()).unwrap();
    client.restore_session().await.unwrap();
    client.sign_in_anonymously(None, None).await.unwrap();
    let token = client.access_token(None).await.unwrap();
    let bare = reqwest::Client::new();
    let url = format!("{}/api/v1/quota", server.url());
    let bare_get = || {
        bare.get(&url)
            .header("user-agent", "tether/0.1.0 (linux)")
            .header("x-client-id", "bench")
            .header("authorization", format!("Bearer {token}"))
            .send()
    };
    // The boundary baseline: bare reqwest on `lib_rt` (see `main`), with a client (and so a
    // connection pool) of its own that only that runtime drives.
    let bare_lib = reqwest::Client::new();
    let bare_across = |rt: &tokio::runtime::Runtime| {
        let req = bare_lib
            .get(&url)
            .header("user-agent", "tether/0.1.0 (linux)")
            .header("x-client-id", "bench")
            .header("authorization", format!("Bearer {token}"));
        rt.spawn(async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap().len()
        })
    };

    // One call of each side, awaited by the caller; and 50 at once, each launched as a task
    // of the caller's runtime (as an app launches coroutines), all awaited.
    let (client, bare_across, bare_get) = (&client, &bare_across, &bare_get);
    let one = move |side: Side| async move {
        match side {
            Side::Tether => client.send(quota(), None).await.unwrap().body.len(),
            Side::Across => bare_across(lib_rt).await.unwrap(),
            Side::Bare => bare_get().await.unwrap().bytes().await.unwrap().len(),
        }
    };
    let fifty = move |side: Side| async move {
        let calls: Vec<_> = (0..50)
            .map(|_| match side {
                Side::Tether => {
                    let c = client.clone();
                    tokio::spawn(async move { c.send(quota(), None).await.unwrap().body.len() })
                }
                Side::Across => {
                    let call = bare_across(lib_rt);
                    tokio::spawn(async move { call.await.unwrap() })
                }
                Side::Bare => {
                    let f = bare_get();
                    tokio::spawn(async move { f.await.unwrap().bytes().await.unwrap().len() })
                }
            })
            .collect();
        for c in calls {
            assert!(c.await.unwrap() > 0);
        }
    };

    // Profiling aid (not a figure): `TETHER_BENCH_ONLY=tether|across|bare` runs one side's
    // sequential calls alone, long enough for `perf record` or callgrind, and prints the
    // process's CPU time per request (server included, the same for both sides) to
    // stderr; with a `50` suffix (`tether50`...), rounds of 50 concurrent calls instead.
    if let Ok(only) = std::env::var("TETHER_BENCH_ONLY") {
        let (name, width) = match only.strip_suffix("50") {
            Some(name) => (name, 50),
            None => (only.as_str(), 1),
        };
        let side = match name {
            "tether" => Side::Tether,
            "across" => Side::Across,
            "bare" => Side::Bare,
            _ => panic!("TETHER_BENCH_ONLY: tether, across or bare, optionally with 50"),
        };
        let n = 20_000;
        let cpu = || {
            let mut ru = std::mem::MaybeUninit::<libc_rusage::Rusage>::zeroed();
            // SAFETY: getrusage fills the struct it is given.
            unsafe { libc_rusage::getrusage(0, ru.as_mut_ptr()) };
            let ru = unsafe { ru.assume_init() };
            (ru.utime_s * 1_000_000 + ru.utime_us + ru.stime_s * 1_000_000 + ru.stime_us) as f64
        };
        let (c0, t) = (cpu(), Instant::now());
        for _ in 0..n / width {
            if width == 1 {
                assert!(one(side).await > 0);
            } else {
                fifty(side).await;
            }
        }
        eprintln!(
            "{only}: {:.1} us CPU and {:.1} us wall per request",
            (cpu() - c0) / n as f64,
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        );
        return;
    }

    let n = 200;
    let [ours, base, inline] = rounds(REQUEST_ROUNDS, |side| async move {
        let t = Instant::now();
        for _ in 0..n {
            assert!(one(side).await > 0);
        }
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    })
    .await;
    let (v, vmin, vmax) = median(ours);
    let (b, bmin, bmax) = median(base);
    let (c, cmin, cmax) = median(inline);
    eprintln!(
        "request_us: tether min {vmin:.1} max {vmax:.1}; bare reqwest across a runtime min {bmin:.1} max {bmax:.1}; on the caller's runtime min {cmin:.1} max {cmax:.1}"
    );
    line_target("request_us", "us", v, b, 1.1);
    line("request_inline_us", "us", v, c);

    // 50 concurrent calls.
    let [ours, base, inline] = rounds(CONCURRENT_ROUNDS, |side| async move {
        let t = Instant::now();
        fifty(side).await;
        t.elapsed().as_secs_f64() * 1e3
    })
    .await;
    let (v, vmin, vmax) = median(ours);
    let (b, bmin, bmax) = median(base);
    let (c, cmin, cmax) = median(inline);
    eprintln!("concurrent50_ms: tether min {vmin:.2} max {vmax:.2}; bare reqwest across a runtime min {bmin:.2} max {bmax:.2}; on the caller's runtime min {cmin:.2} max {cmax:.2}");
    line_target("concurrent50_ms", "ms", v, b, 1.1);
    line("concurrent50_inline_ms", "ms", v, c);

    // Client construction on an existing data_dir vs raw rusqlite doing the same opening.
    // The benchmark's long-lived client keeps its database open, so every measured
    // TetherClient::new opens a file another connection holds: give the baselines the same.
    let raw_dir = dir.join("raw");
    std::fs::create_dir_all(&raw_dir).unwrap();
    let raw_file = raw_dir.join("tether.sqlite3");
    // A consistent copy of the client's database (its recent commits are still in the WAL).
    rusqlite::Connection::open(dir.join("tether.sqlite3"))
        .unwrap()
        .execute("VACUUM INTO ?1", [raw_file.to_str().unwrap()])
        .unwrap();
    let keeper = rusqlite::Connection::open(&raw_file).unwrap();
    keeper.pragma_update(None, "journal_mode", "WAL").unwrap();
    keeper
        .execute(
            "INSERT OR REPLACE INTO kv (key, value) VALUES ('server_clock_offset_ms', '12')",
            [],
        )
        .unwrap();
    let empty_file = raw_dir.join("empty.sqlite3");
    let empty_keeper = rusqlite::Connection::open(&empty_file).unwrap();
    empty_keeper
        .pragma_update(None, "journal_mode", "WAL")
        .unwrap();
    let (mut ours, mut base, mut empty) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..=ROUNDS * 4 {
        let t = Instant::now();
        let c = TetherClient::new(config.clone(), tether::in_memory_token_store()).unwrap();
        let a = t.elapsed().as_secs_f64() * 1e6;
        drop(c);
        let t = Instant::now();
        let conn = raw_open(&raw_file);
        let b = t.elapsed().as_secs_f64() * 1e6;
        drop(conn);
        // The earlier baseline: one connection on an empty file.
        let t = Instant::now();
        let conn = rusqlite::Connection::open(&empty_file).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
        let _: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        let e = t.elapsed().as_secs_f64() * 1e6;
        drop(conn);
        if round > 0 {
            ours.push(a);
            base.push(b);
            empty.push(e);
        }
    }
    let (v, vmin, vmax) = median(ours);
    let (b, bmin, bmax) = median(base);
    let (e, emin, emax) = median(empty);
    eprintln!("client_new_us: tether min {vmin:.1} max {vmax:.1}; raw rusqlite open min {bmin:.1} max {bmax:.1}");
    eprintln!(
        "client_new_us vs the earlier baseline (one connection on an empty file): {e:.1} us (min {emin:.1} max {emax:.1}), ratio {:.3}",
        v / e
    );
    line("client_new_us", "us", v, b);
    drop((keeper, empty_keeper));
    let _ = std::fs::remove_dir_all(&dir);
}
