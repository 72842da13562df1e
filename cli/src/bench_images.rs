//! `tether-bench-images`: the memory a 2048x2048 image reply costs, one line in the form
//! of `shared/BENCHMARKS.md`, everything else on stderr. Run through `scripts/bench images`.
//!
//! - `images/rss_growth_2048`: peak RSS growth (the OS's `VmHWM`, reset through
//!   `/proc/self/clear_refs` just before) of a child process while
//!   `TetherClient::generate_image` receives a 2048x2048 reply from the loopback contract
//!   server (an uncompressed RGB PNG of about 12 MB, about 16 MB of base64 in JSON) and
//!   writes it to a file. The child warms up first (one small image: runtime, HTTP
//!   connection, database), so only the reply's own cost is counted.
//!   Baseline: the same reply received the obvious way in the same kind of child (the
//!   whole body read by reqwest, parsed with serde_json, the base64 decoded whole, the
//!   file written). Target: under 2x the PNG's size. Runs alternate; values are medians.

use std::process::Command;
use std::time::Duration;

use base64::Engine;
use tether::{ClientConfig, ImageOptions, TetherClient};
use tether_test_server::TestServer;

const RUNS: usize = 5;
const SIDE: u32 = 2048;

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Resets the peak to the current RSS; returns the RSS to measure growth from.
fn reset_peak() -> u64 {
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    if !reset {
        eprintln!("  (could not reset VmHWM: growth is measured from the earlier peak)");
        return status_kb("VmHWM:");
    }
    status_kb("VmRSS:")
}

/// The child: one warm-up image, then the 2048x2048 one; prints the peak growth in bytes.
async fn child(url: String, dir: String, naive: bool) {
    let config = ClientConfig::new(url.clone(), "bench", dir.clone());
    let client = TetherClient::new(config, tether::in_memory_token_store()).unwrap();
    client.restore_session().await.unwrap();
    client.sign_in_anonymously(None, None).await.unwrap();
    let opts = |side: u32, name: &str| {
        Some(ImageOptions {
            width: Some(side),
            height: Some(side),
            path: Some(format!("{dir}/{name}")),
        })
    };
    let http = reqwest::Client::new();
    let token = client.access_token(None).await.unwrap();
    let naive_get = |side: u32, name: &'static str| {
        let (http, url, token, dir) = (http.clone(), url.clone(), token.clone(), dir.clone());
        async move {
            let body = http
                .post(format!("{url}/api/v1/images"))
                .bearer_auth(token)
                .header("x-client-id", "bench")
                .header("idempotency-key", uuid_like())
                .header("content-type", "application/json")
                .body(
                    serde_json::json!({ "prompt": "bench", "width": side, "height": side })
                        .to_string(),
                )
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let png = base64::engine::general_purpose::STANDARD
                .decode(v["image"].as_str().unwrap())
                .unwrap();
            std::fs::write(format!("{dir}/{name}"), &png).unwrap();
            png.len()
        }
    };
    if naive {
        naive_get(256, "warm.png").await;
    } else {
        client
            .generate_image("warm".into(), opts(256, "warm.png"), None)
            .await
            .unwrap();
    }
    let before = reset_peak();
    let size = if naive {
        naive_get(SIDE, "big.png").await
    } else {
        let img = client
            .generate_image("bench".into(), opts(SIDE, "big.png"), None)
            .await
            .unwrap();
        assert_eq!((img.width, img.height), (SIDE, SIDE));
        img.byte_size as usize
    };
    let growth = status_kb("VmHWM:").saturating_sub(before) * 1024;
    println!("{growth} {size}");
}

fn uuid_like() -> String {
    format!(
        "{:08x}-0000-4000-8000-{:012x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64 & 0xffff_ffff_ffff)
            .unwrap_or(0)
    )
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn run_child(url: &str, naive: bool) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--child", url, dir.path().to_str().unwrap()]);
    if naive {
        cmd.arg("--naive");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace().map(|n| n.parse::<f64>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if args.get(1).map(String::as_str) == Some("--child") {
        let naive = args.get(4).map(String::as_str) == Some("--naive");
        rt.block_on(child(args[2].clone(), args[3].clone(), naive));
        return;
    }
    let server = rt.block_on(TestServer::start());
    server.set_quota_limit(10_000);
    let url = server.url();
    let (mut ours, mut naive, mut png) = (Vec::new(), Vec::new(), 0.0);
    // The first pair is a warm-up (page cache, the binary itself).
    for i in 0..=RUNS {
        let (g, size) = run_child(&url, false);
        let (n, _) = run_child(&url, true);
        eprintln!(
            "  run {i}: tether {:.1} MB, naive {:.1} MB (PNG {:.1} MB)",
            g / 1e6,
            n / 1e6,
            size / 1e6
        );
        png = size;
        if i > 0 {
            ours.push(g / 1e6);
            naive.push(n / 1e6);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (v, vmin, vmax) = median(ours);
    let (b, bmin, bmax) = median(naive);
    eprintln!("  tether min {vmin:.2} max {vmax:.2} MB; naive min {bmin:.2} max {bmax:.2} MB");
    let target = 2.0 * png / 1e6;
    println!(
        "bench images/rss_growth_2048 value={v:.2} unit=MB baseline={b:.2} ratio={:.3} target=<{target:.2} ok={}",
        v / b,
        v < target
    );
    drop(server);
}
