//! `chat/sse_parse`: Tether's SSE parser (`tether::sse`) against the Rust SSE crates
//! apps commonly use (`eventsource-stream`, `sse-stream`), on the same bytes in the same
//! process, in the `shared/BENCHMARKS.md` line format. Run by `scripts/bench chat`.
//!
//! Two inputs, each fed as a list of chunks already in memory (no I/O, no allocation of
//! the input inside the timed part):
//! - a realistic Workers AI stream: 40,000 `data: {"response":"..."}` events with a
//!   keep-alive comment every 50, the usage event and `[DONE]`, cut into 1,448-byte
//!   chunks (one TCP segment each);
//! - one 8 MiB `data:` line cut into 1,024 chunks: a parser that rescans its buffer per
//!   chunk turns quadratic here.
//!
//! Each parser must yield the same number of events and data bytes (checked). Value:
//! MB/s, the median of 7 timed runs after one warm-up; baseline: the fastest competitor's
//! median in the same run; ratio = ours / fastest (higher is better; target >= 1).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a broken bench

use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;

type Chunks = Vec<Bytes>;

fn workers_ai() -> Chunks {
    let mut s = String::new();
    for i in 0..40_000 {
        s.push_str(&format!("data: {{\"response\":\"tok{i} \"}}\n\n"));
        if i % 50 == 49 {
            s.push_str(": keep-alive\n\n");
        }
    }
    s.push_str("data: {\"response\":\"\",\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":40000}}\n\n");
    s.push_str("data: [DONE]\n\n");
    let b = Bytes::from(s);
    (0..b.len())
        .step_by(1448)
        .map(|i| b.slice(i..(i + 1448).min(b.len())))
        .collect()
}

fn long_line() -> Chunks {
    let mut v = b"data: ".to_vec();
    v.resize(v.len() + (8 << 20), b'x');
    v.extend_from_slice(b"\n\n");
    let b = Bytes::from(v);
    let n = b.len().div_ceil(1024);
    (0..b.len())
        .step_by(n)
        .map(|i| b.slice(i..(i + n).min(b.len())))
        .collect()
}

/// (events, data bytes)
fn ours(chunks: &Chunks) -> (usize, usize) {
    let mut p = tether::sse::Parser::default();
    let mut out = Vec::new();
    let (mut n, mut bytes) = (0, 0);
    for c in chunks {
        p.feed_into(c, &mut out).unwrap();
        n += out.len();
        bytes += out.iter().map(|e| e.data.len()).sum::<usize>();
        out.clear();
    }
    (n, bytes)
}

fn eventsource_stream(chunks: &Chunks) -> (usize, usize) {
    use eventsource_stream::Eventsource;
    let s = futures::stream::iter(chunks.iter().cloned().map(Ok::<_, std::io::Error>));
    futures::executor::block_on(s.eventsource().fold((0, 0), |(n, b), e| async move {
        (n + 1, b + e.unwrap().data.len())
    }))
}

fn sse_stream(chunks: &Chunks) -> (usize, usize) {
    let s = futures::stream::iter(chunks.iter().cloned().map(Ok::<_, std::io::Error>));
    futures::executor::block_on(sse_stream::SseStream::from_bytes_stream(s).fold(
        (0, 0),
        |(n, b), e| async move {
            let e = e.unwrap();
            match e.data {
                Some(d) => (n + 1, b + d.len()),
                None => (n, b), // a comment or a field-only event
            }
        },
    ))
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

type Parse = fn(&Chunks) -> (usize, usize);

/// MB/s of each parser over `chunks`: one warm-up, then 7 rounds in which every parser
/// runs once in turn (so a noisy neighbour slows them all alike); the median per parser.
fn measure(input: &str, chunks: &Chunks, parsers: &[(&str, Parse)]) -> Vec<f64> {
    let total: usize = chunks.iter().map(Bytes::len).sum();
    let results: Vec<(usize, usize)> = parsers.iter().map(|(_, f)| f(chunks)).collect();
    let mut rates = vec![Vec::new(); parsers.len()];
    for _ in 0..7 {
        for (i, (_, f)) in parsers.iter().enumerate() {
            let t = Instant::now();
            let r = f(chunks);
            let s = t.elapsed().as_secs_f64();
            assert_eq!(r, results[i]);
            rates[i].push(total as f64 / 1e6 / s);
        }
    }
    let mut medians = Vec::new();
    for (i, (name, _)) in parsers.iter().enumerate() {
        let (m, lo, hi) = median(rates[i].clone());
        let (events, data) = results[i];
        eprintln!("sse_parse {input}: {name:<20} {m:>10.1} MB/s (min {lo:.1}, max {hi:.1}) events={events} data={data}");
        // Every parser read the same data (sse-stream also yields comments as data-less events).
        assert_eq!(data, results[0].1, "{name} read different data");
        medians.push(m);
    }
    medians
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let parsers: [(&str, Parse); 3] = [
        ("tether::sse", ours),
        ("eventsource-stream", eventsource_stream),
        ("sse-stream", sse_stream),
    ];
    for (figure, input) in [
        ("sse_parse_workers_ai", workers_ai()),
        ("sse_parse_8mb_line", long_line()),
    ] {
        let m = measure(figure, &input, &parsers);
        let (v, best) = (m[0], m[1..].iter().copied().fold(0f64, f64::max));
        let ratio = v / best;
        println!(
            "bench chat/{figure} value={v:.1} unit=MB/s baseline={best:.1} ratio={ratio:.3} target=>=1 ok={}",
            ratio >= 1.0
        );
    }
}
