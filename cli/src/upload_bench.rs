//! `tether-upload-bench`: the upload and image figures of `scripts/bench upload`, one line
//! each in the form of `shared/BENCHMARKS.md`, everything else on stderr.
//!
//! What is compared:
//! - `upload/file_100mb`: `detect` of a 100 MB file (a PNG header then 100 MB of noise,
//!   sent unchanged: no resize, no strip) through `TetherClient` to the in-process loopback
//!   contract server, whose image limit is raised for it. Baseline: `curl -F image=@file`
//!   with the same headers (token, client id, idempotency key) to the same server, in the
//!   same run; rounds alternate. The server parses and hashes both bodies the same way.
//! - `upload/rss_growth_100mb`: in a child process (this binary, `--rss-child`): the peak
//!   RSS (`VmHWM`, reset through `/proc/self/clear_refs`) during that upload minus the RSS
//!   just before it.
//! - `image/downscale_12mp`: a 4000x3000 photo-like JPEG to at most 1024 px (JPEG q85),
//!   as `detect` prepares it, timed as a whole child process (`--prepare-child`), like
//!   `vipsthumbnail in.jpg -s 1024 -o out.jpg[Q=85]` (`_vips`) and ImageMagick's
//!   `convert in.jpg -resize 1024x1024 -quality 85 out.jpg` (`_magick`) on the same file.
//! - `image/prepare_peak_rss_12mp`: the child's peak RSS growth during preparation.
//! - With the argument `image-shipping` (this binary built in the shipping profile,
//!   `release-small`: LTO, opt-level "z" with the image hot loops at 3), the two image
//!   figures again, named `..._shipping`: what an app's build does, against the same tools.
//!
//! Every value is the median of the counted rounds after one warm-up; min/max on stderr.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use tether::{ClientConfig, DetectOptions, ImageSource, PrepareOptions, TetherClient};
use tether_test_server::{sample, TestServer};

const ROUNDS: usize = 5;
const BIG: usize = 100 << 20;

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn status_kb(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Resets the peak RSS to the current RSS; returns the current RSS in kB.
fn reset_peak() -> u64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_kb("VmRSS:")
}

/// Sent unchanged, so preparation never reads it whole.
fn raw_options() -> Option<DetectOptions> {
    Some(DetectOptions {
        prepare: PrepareOptions {
            max_dimension: None,
            strip_metadata: false,
            max_bytes: u32::MAX,
            ..Default::default()
        },
        ..Default::default()
    })
}

/// A 1000x1000 PNG header followed by `BIG` bytes of noise in one IDAT chunk (the CRC is
/// not checked by anyone on the way).
fn write_big_png(path: &Path) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    f.write_all(b"\x89PNG\r\n\x1a\n").unwrap();
    let mut ihdr = vec![0, 0, 0, 13];
    ihdr.extend_from_slice(b"IHDR");
    ihdr.extend_from_slice(&1000u32.to_be_bytes());
    ihdr.extend_from_slice(&1000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
    f.write_all(&ihdr).unwrap();
    f.write_all(&(BIG as u32).to_be_bytes()).unwrap();
    f.write_all(b"IDAT").unwrap();
    let mut seed = 0x9e37_79b9_u32;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..BIG / chunk.len() {
        for b in chunk.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            *b = seed as u8;
        }
        f.write_all(&chunk).unwrap();
    }
    f.write_all(&[0, 0, 0, 0, 0, 0, 0, 0, b'I', b'E', b'N', b'D', 0, 0, 0, 0])
        .unwrap();
}

async fn signed_in(url: &str, dir: &Path) -> Arc<TetherClient> {
    let cfg = ClientConfig::new(url, "bench-upload", dir.to_string_lossy());
    let store = tether::file_token_store(dir.join("s.json").to_string_lossy().into());
    let c = TetherClient::new(cfg, store).unwrap();
    c.sign_in_anonymously(None, None).await.unwrap();
    c
}

/// `--rss-child URL FILE`: one upload; prints `rss_growth_kb=N`.
async fn rss_child(url: &str, file: &str) {
    let dir = tempfile::tempdir().unwrap();
    let c = signed_in(url, dir.path()).await;
    let image = || ImageSource::File { path: file.into() };
    let before = reset_peak();
    c.detect(image(), raw_options(), None, None).await.unwrap();
    let peak = status_kb("VmHWM:");
    println!("rss_growth_kb={}", peak.saturating_sub(before));
}

/// `--prepare-child FILE`: prepares as `detect` does; prints `prepare_growth_kb=N`.
fn prepare_child(file: &str) {
    let dir = tempfile::tempdir().unwrap();
    let before = reset_peak();
    let info = tether::prepare_for_bench(
        file,
        PrepareOptions::default(),
        dir.path().to_str().unwrap(),
    )
    .unwrap();
    let peak = status_kb("VmHWM:");
    assert!(info.resized && info.width.max(info.height) == 1024);
    println!("prepare_growth_kb={}", peak.saturating_sub(before));
}

fn run_timed(cmd: &mut Command) -> (f64, String) {
    let t = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let ms = t.elapsed().as_secs_f64() * 1e3;
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (ms, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn field(out: &str, name: &str) -> f64 {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

fn report(figure: &str, unit: &str, v: Vec<f64>) -> f64 {
    let (m, lo, hi) = median(v);
    eprintln!("  {figure}: median {m:.2} {unit}, min {lo:.2}, max {hi:.2}");
    m
}

fn ok_line(figure: &str, value: f64, unit: &str, extra: &str, target: &str, ok: bool) {
    println!("bench {figure} value={value:.3} unit={unit}{extra} target={target} ok={ok}");
}

async fn uploads(me: &Path, work: &Path) {
    let server = TestServer::start().await;
    server.set_upload_limit(200 << 20);
    server.set_quota_limit(1_000_000);
    let file = work.join("big.png");
    write_big_png(&file);
    let file_s = file.to_string_lossy().into_owned();
    let cdir = tempfile::tempdir().unwrap();
    let c = signed_in(&server.url(), cdir.path()).await;
    let token = c.access_token(None).await.unwrap();
    let url = format!("{}/api/v1/detect", server.url());
    let curl = |n: usize| {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-f", "-o", "/dev/null", "-H"])
            .arg(format!("Authorization: Bearer {token}"))
            .args(["-H", "X-Client-ID: bench-upload", "-H"])
            .arg(format!(
                "Idempotency-Key: bench-curl-{n}-{}",
                std::process::id()
            ))
            .args(["-F"])
            .arg(format!("image=@{file_s};type=image/png"))
            .arg(&url);
        cmd
    };
    let image = || ImageSource::File {
        path: file_s.clone(),
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..=ROUNDS {
        let t = Instant::now();
        let d = c.detect(image(), raw_options(), None, None).await.unwrap();
        let a = t.elapsed().as_secs_f64() * 1e3;
        assert_eq!(
            u64::from(d.image.byte_size),
            std::fs::metadata(&file).unwrap().len()
        );
        // curl runs on a blocking thread: the server lives on this runtime.
        let mut cmd = curl(round);
        let (b, _) = tokio::task::spawn_blocking(move || run_timed(&mut cmd))
            .await
            .unwrap();
        eprintln!("  round {round}: tether {a:.1} ms, curl {b:.1} ms");
        if round > 0 {
            ours.push(a);
            theirs.push(b);
        }
    }
    let uploads = server.uploads().len();
    assert_eq!(uploads, 2 * (ROUNDS + 1), "every upload reached the server");
    let v = report("tether", "ms", ours);
    let b = report("curl", "ms", theirs);
    let r = v / b;
    ok_line(
        "upload/file_100mb",
        v,
        "ms",
        &format!(" baseline={b:.3} ratio={r:.3}"),
        "<=1.1",
        r <= 1.1,
    );

    let mut growth = Vec::new();
    for _ in 0..3 {
        let url = server.url();
        let me = me.to_path_buf();
        let f = file_s.clone();
        let (_, out) = tokio::task::spawn_blocking(move || {
            run_timed(Command::new(me).args(["--rss-child", &url, &f]))
        })
        .await
        .unwrap();
        growth.push(field(&out, "rss_growth_kb") / 1024.0);
    }
    let g = report("rss growth", "MB", growth);
    ok_line("upload/rss_growth_100mb", g, "MB", "", "<8", g < 8.0);
    let _ = std::fs::remove_file(&file);
}

/// The image figures; `tag` is appended to the names of the figures of our own build.
fn images(me: &Path, work: &Path, tag: &str) {
    let (w, h) = (4000u16, 3000u16);
    let jpeg = sample::jpeg(&sample::photo_like(w.into(), h.into()), w, h, None, None);
    let input = work.join("photo12mp.jpg");
    std::fs::write(&input, &jpeg).unwrap();
    let out = |name: &str| work.join(name).to_string_lossy().into_owned();
    let inp = input.to_string_lossy().into_owned();
    eprintln!("  12 MP photo-like JPEG: {} bytes", jpeg.len());
    let ours = || {
        let mut c = Command::new(me);
        c.args(["--prepare-child", &inp]);
        c
    };
    let vips = || {
        let mut c = Command::new("vipsthumbnail");
        c.args([
            &inp,
            "-s",
            "1024",
            "-o",
            &format!("{}[Q=85]", out("vips.jpg")),
        ]);
        c
    };
    let magick = || {
        let mut c = Command::new("convert");
        c.args([
            &inp,
            "-resize",
            "1024x1024",
            "-quality",
            "85",
            &out("magick.jpg"),
        ]);
        c
    };
    let (mut t_ours, mut t_vips, mut t_magick, mut rss) = (vec![], vec![], vec![], vec![]);
    for round in 0..=ROUNDS {
        let (a, o) = run_timed(&mut ours());
        let (b, _) = run_timed(&mut vips());
        let (c, _) = run_timed(&mut magick());
        eprintln!("  round {round}: tether {a:.1} ms, vips {b:.1} ms, magick {c:.1} ms");
        if round > 0 {
            t_ours.push(a);
            t_vips.push(b);
            t_magick.push(c);
            rss.push(field(&o, "prepare_growth_kb") / 1024.0);
        }
    }
    let a = report("tether", "ms", t_ours);
    let b = report("vipsthumbnail", "ms", t_vips);
    let c = report("imagemagick", "ms", t_magick);
    ok_line(
        &format!("image/downscale_12mp{tag}"),
        a,
        "ms",
        &format!(" baseline={b:.3} ratio={:.3}", a / b),
        "<=1.3",
        a / b <= 1.3,
    );
    println!("bench image/downscale_12mp{tag}_vips value={b:.3} unit=ms");
    ok_line(
        &format!("image/downscale_12mp{tag}_magick"),
        c,
        "ms",
        &format!(" baseline={a:.3} ratio={:.3}", c / a),
        ">=2",
        c / a >= 2.0,
    );
    let m = report("prepare peak RSS growth", "MB", rss);
    ok_line(
        &format!("image/prepare_peak_rss_12mp{tag}"),
        m,
        "MB",
        "",
        "<=48",
        m <= 48.0,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let me = PathBuf::from(&args[0]);
    match args.get(1).map(String::as_str) {
        Some("--rss-child") => {
            let rt = tokio::runtime::Runtime::new().unwrap();
            return rt.block_on(rss_child(&args[2], &args[3]));
        }
        Some("--prepare-child") => return prepare_child(&args[2]),
        _ => {}
    }
    let only = args.get(1).cloned().unwrap_or_default();
    let work = tempfile::tempdir().unwrap();
    if only.is_empty() || only == "upload" {
        eprintln!(
            "upload/file_100mb: {ROUNDS} rounds after a warm-up, alternating tether and curl"
        );
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(uploads(&me, work.path()));
    }
    if only.is_empty() || only == "image" {
        eprintln!("image/downscale_12mp: {ROUNDS} rounds after a warm-up, each a whole process");
        images(&me, work.path(), "");
    }
    if only == "image-shipping" {
        eprintln!(
            "image/downscale_12mp_shipping: {ROUNDS} rounds after a warm-up, each a whole process"
        );
        images(&me, work.path(), "_shipping");
    }
}
