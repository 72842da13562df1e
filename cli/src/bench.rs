//! `tether-bench`: the core's figures, one line each in the form of
//! `../shared/BENCHMARKS.md`, everything else on stderr. Run through `scripts/bench core`.
//!
//! What is compared, in one process against one loopback contract server:
//! - `core/request_us`: one authenticated `GET /api/v1/quota` through `TetherClient::send`
//!   (token check, headers, retry loop, quota-header parsing, capped body read, error
//!   mapping), sequential. Baseline: the same request with the same headers (User-Agent,
//!   X-Client-ID, Authorization) sent by a bare `reqwest::Client` and its body read whole.
//!   Rounds alternate between the two; each value is the median of the rounds.
//! - `core/concurrent50_ms`: 50 concurrent authenticated calls through the client.
//!   Baseline: the same 50 requests concurrently with bare reqwest.
//! - `core/client_new_us`: `TetherClient::new` on an existing data_dir (URL checks, HTTP
//!   client, SQLite open + migrations check). Baseline: raw rusqlite opening the same kind
//!   of file with the same pragmas (WAL, synchronous=NORMAL, busy_timeout).

use std::time::{Duration, Instant};

use tether::{ApiRequest, ClientConfig, HttpMethod, TetherClient};
use tether_test_server::TestServer;

const ROUNDS: usize = 9;

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

fn quota() -> ApiRequest {
    ApiRequest {
        method: HttpMethod::Get,
        path: "quota".into(),
        json_body: None,
        authenticated: true,
        idempotency_key: None,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = TestServer::start().await;
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

    // Sequential requests.
    let n = 300;
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for round in 0..=ROUNDS {
        let t = Instant::now();
        for _ in 0..n {
            assert_eq!(client.send(quota(), None).await.unwrap().status, 200);
        }
        let a = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        let t = Instant::now();
        for _ in 0..n {
            let r = bare_get().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap();
        }
        let b = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        if round > 0 {
            ours.push(a);
            base.push(b);
        }
    }
    let (v, vmin, vmax) = median(ours);
    let (b, bmin, bmax) = median(base);
    eprintln!(
        "request_us: tether min {vmin:.1} max {vmax:.1}; bare reqwest min {bmin:.1} max {bmax:.1}"
    );
    line("request_us", "us", v, b);

    // Diagnostic (stderr only): the same bare request, but run as a task of a second
    // runtime and awaited from this one, which is what calling into the library's own
    // runtime costs.
    let other = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let hop_client = reqwest::Client::new();
    let mut hops = Vec::new();
    for round in 0..=ROUNDS {
        let t = Instant::now();
        for _ in 0..n {
            let req = hop_client
                .get(&url)
                .header("user-agent", "tether/0.1.0 (linux)")
                .header("x-client-id", "bench")
                .header("authorization", format!("Bearer {token}"));
            let status = other
                .spawn(async move {
                    let r = req.send().await.unwrap();
                    let s = r.status();
                    r.bytes().await.unwrap();
                    s
                })
                .await
                .unwrap();
            assert_eq!(status, 200);
        }
        if round > 0 {
            hops.push(t.elapsed().as_secs_f64() * 1e6 / n as f64);
        }
    }
    let (h, hmin, hmax) = median(hops);
    eprintln!("request_us diagnostic: bare reqwest on a second runtime {h:.1} (min {hmin:.1} max {hmax:.1})");
    other.shutdown_background();

    // 50 concurrent calls.
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for round in 0..=ROUNDS {
        let t = Instant::now();
        let calls: Vec<_> = (0..50)
            .map(|_| {
                let c = client.clone();
                tokio::spawn(async move { c.send(quota(), None).await.map(|r| r.status) })
            })
            .collect();
        for c in calls {
            assert_eq!(c.await.unwrap().unwrap(), 200);
        }
        let a = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let calls: Vec<_> = (0..50)
            .map(|_| {
                let f = bare_get();
                tokio::spawn(async move { f.await.unwrap().bytes().await.unwrap().len() })
            })
            .collect();
        for c in calls {
            assert!(c.await.unwrap() > 0);
        }
        let b = t.elapsed().as_secs_f64() * 1e3;
        if round > 0 {
            ours.push(a);
            base.push(b);
        }
    }
    let (v, vmin, vmax) = median(ours);
    let (b, bmin, bmax) = median(base);
    eprintln!("concurrent50_ms: tether min {vmin:.2} max {vmax:.2}; bare reqwest min {bmin:.2} max {bmax:.2}");
    line("concurrent50_ms", "ms", v, b);

    // Client construction on an existing data_dir vs raw rusqlite open with the same pragmas.
    let raw_dir = dir.join("raw");
    std::fs::create_dir_all(&raw_dir).unwrap();
    // The benchmark's long-lived client keeps its database open, so every measured
    // TetherClient::new opens a file another connection holds: give the baseline the same.
    let keeper = rusqlite::Connection::open(raw_dir.join("raw.sqlite3")).unwrap();
    keeper.pragma_update(None, "journal_mode", "WAL").unwrap();
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for round in 0..=ROUNDS * 4 {
        let t = Instant::now();
        let c = TetherClient::new(config.clone(), tether::in_memory_token_store()).unwrap();
        let a = t.elapsed().as_secs_f64() * 1e6;
        drop(c);
        let t = Instant::now();
        let conn = rusqlite::Connection::open(raw_dir.join("raw.sqlite3")).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
        let _: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        let b = t.elapsed().as_secs_f64() * 1e6;
        drop(conn);
        if round > 0 {
            ours.push(a);
            base.push(b);
        }
    }
    let (v, vmin, vmax) = median(ours);
    let (b, bmin, bmax) = median(base);
    eprintln!("client_new_us: tether min {vmin:.1} max {vmax:.1}; raw rusqlite open min {bmin:.1} max {bmax:.1}");
    line("client_new_us", "us", v, b);
    drop(keeper);
    let _ = std::fs::remove_dir_all(&dir);
}
