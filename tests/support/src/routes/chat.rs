//! `POST /api/v1/chat`: metered like the Worker (idempotency key required, quota charged,
//! `402` when spent), validated before charging, answered in the Workers AI SSE shape
//! (`"stream": true`) or whole (`"stream": false`).
//!
//! By default the reply echoes the last user message word by word ("You said: ...").
//! Tests script the next replies with [`ChatScript`] (`TestServer::script_chat`, or
//! `POST /__admin/chat-script`): the pieces, how the bytes are cut into chunks, the line
//! end, keep-alive comments, a delay between chunks, and how the stream ends (`[DONE]`,
//! cut off, an `event: error`, or going silent).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::HeaderValue;
use hyper::Response;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::Req;
use crate::faults::ChannelBody;
use crate::http::{error_resp, json_resp, Body};
use crate::Inner;

/// How a scripted stream ends.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEnd {
    /// A usage event, then `data: [DONE]`.
    Done,
    /// The body just ends after the pieces (no terminator): truncated.
    Truncate,
    /// An `event: error` with this code and message.
    Error { code: String, message: String },
    /// Nothing more is sent for this long, then the body ends.
    Stall(Duration),
}

/// The next chat reply, as the test wants it streamed.
#[derive(Debug, Clone)]
pub struct ChatScript {
    /// The reply's text, one event per piece. Empty: the default echo reply.
    pub pieces: Vec<String>,
    /// Sizes in bytes the stream is cut into, cycled; empty: one chunk per event.
    pub chunk_sizes: Vec<usize>,
    /// `"\n"`, `"\r\n"` or `"\r"`.
    pub line_end: &'static str,
    /// A `: keep-alive` comment after every this many events (0: none).
    pub keep_alive_every: usize,
    /// Before each event, this many `: keep-alive` comments, each a chunk of its own
    /// (with `delay` before each, the gap between events is `(n + 1) * delay` while no
    /// silence is longer than `delay`). Only with one chunk per event (no `chunk_sizes`).
    pub keep_alive_chunks: usize,
    /// Pause before each chunk.
    pub delay: Duration,
    pub end: ChatEnd,
}

impl Default for ChatScript {
    fn default() -> Self {
        ChatScript {
            pieces: Vec::new(),
            chunk_sizes: Vec::new(),
            line_end: "\n",
            keep_alive_every: 0,
            keep_alive_chunks: 0,
            delay: Duration::ZERO,
            end: ChatEnd::Done,
        }
    }
}

impl ChatScript {
    /// From the admin command's JSON: `{"pieces": [..], "chunk_sizes": [..],
    /// "line_end": "crlf"|"cr"|"lf", "keep_alive_every": n, "keep_alive_chunks": n, "delay_ms": n,
    /// "end": "done"|"truncate"|"error"|"stall", "stall_ms": n}`; `"repeat": [text, n]`
    /// adds `text` n times to the pieces.
    pub fn from_json(v: &Value) -> ChatScript {
        let mut pieces: Vec<String> = v["pieces"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if let (Some(text), Some(n)) = (v["repeat"][0].as_str(), v["repeat"][1].as_u64()) {
            pieces.extend((0..n).map(|_| text.to_string()));
        }
        ChatScript {
            pieces,
            chunk_sizes: v["chunk_sizes"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|n| n.as_u64().map(|n| n as usize))
                        .collect()
                })
                .unwrap_or_default(),
            line_end: match v["line_end"].as_str() {
                Some("crlf") => "\r\n",
                Some("cr") => "\r",
                _ => "\n",
            },
            keep_alive_every: v["keep_alive_every"].as_u64().unwrap_or(0) as usize,
            keep_alive_chunks: v["keep_alive_chunks"].as_u64().unwrap_or(0) as usize,
            delay: Duration::from_millis(v["delay_ms"].as_u64().unwrap_or(0)),
            end: match v["end"].as_str() {
                Some("truncate") => ChatEnd::Truncate,
                Some("error") => ChatEnd::Error {
                    code: "upstream".into(),
                    message: "The model stream broke off".into(),
                },
                Some("stall") => ChatEnd::Stall(Duration::from_millis(
                    v["stall_ms"].as_u64().unwrap_or(60_000),
                )),
                _ => ChatEnd::Done,
            },
        }
    }
}

#[derive(Default)]
pub(crate) struct Chats {
    pub(crate) scripts: VecDeque<ChatScript>,
}

/// `POST /api/v1/chat`.
pub(crate) fn post(s: &mut Inner, req: &Req, user: &str) -> Response<Body> {
    let Some(body) = req.json_object() else {
        return error_resp(400, "bad_request", "body must be a JSON object");
    };
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return error_resp(400, "bad_request", "messages must be an array");
    };
    if messages.is_empty() {
        return error_resp(422, "invalid_input", "messages must not be empty");
    }
    for (i, m) in messages.iter().enumerate() {
        let ok = m["role"]
            .as_str()
            .is_some_and(|r| matches!(r, "system" | "user" | "assistant"))
            && m["content"].is_string();
        if !ok {
            return error_resp(
                400,
                "bad_request",
                &format!("messages[{i}] needs role and content"),
            );
        }
    }
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string();
    // Streams are not stored for replay (the Worker streams them through as well).
    if req.idempotency_key.is_none() {
        return error_resp(400, "bad_request", "Idempotency-Key required");
    }
    if let Err(r) = s.quota.charge(user, req.now) {
        return *r;
    }
    let mut script = s.chats.scripts.pop_front().unwrap_or_default();
    if script.pieces.is_empty() {
        script.pieces = format!("You said: {last_user}")
            .split_inclusive(' ')
            .map(str::to_string)
            .collect();
    }
    if !stream {
        let text: String = script.pieces.concat();
        return json_resp(
            200,
            &json!({ "response": text,
                     "usage": { "prompt_tokens": messages.len(), "completion_tokens": script.pieces.len() } }),
        );
    }
    let prompt_tokens = messages.len();
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move { play(script, prompt_tokens, tx).await });
    let mut r = Response::new(ChannelBody(rx).boxed());
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    r
}

/// Writes the scripted stream, cut as asked.
async fn play(script: ChatScript, prompt_tokens: usize, tx: mpsc::Sender<Bytes>) {
    let nl = script.line_end;
    let mut bytes = Vec::new();
    for (i, p) in script.pieces.iter().enumerate() {
        bytes.extend_from_slice(format!("data: {}{nl}{nl}", json!({ "response": p })).as_bytes());
        if script.keep_alive_every > 0 && (i + 1) % script.keep_alive_every == 0 {
            bytes.extend_from_slice(format!(": keep-alive{nl}").as_bytes());
        }
    }
    match &script.end {
        ChatEnd::Done => {
            let usage = json!({ "response": "", "usage": { "prompt_tokens": prompt_tokens,
                                                          "completion_tokens": script.pieces.len() } });
            bytes
                .extend_from_slice(format!("data: {usage}{nl}{nl}data: [DONE]{nl}{nl}").as_bytes());
        }
        ChatEnd::Error { code, message } => {
            let e = json!({ "error": { "code": code, "message": message } });
            bytes.extend_from_slice(format!("event: error{nl}data: {e}{nl}{nl}").as_bytes());
        }
        ChatEnd::Truncate | ChatEnd::Stall(_) => {}
    }
    let chunks: Vec<Bytes> = if script.chunk_sizes.is_empty() {
        // One chunk per event (blank-line separated).
        let sep = format!("{nl}{nl}");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let keep_alive = Bytes::from(format!(": keep-alive{nl}"));
        text.split_inclusive(sep.as_str())
            .flat_map(|s| {
                std::iter::repeat_n(keep_alive.clone(), script.keep_alive_chunks)
                    .chain([Bytes::from(s.to_string())])
            })
            .collect()
    } else {
        let mut out = Vec::new();
        let mut at = 0;
        let mut sizes = script.chunk_sizes.iter().cycle();
        while at < bytes.len() {
            let n = (*sizes.next().unwrap_or(&1)).max(1).min(bytes.len() - at);
            out.push(Bytes::copy_from_slice(&bytes[at..at + n]));
            at += n;
        }
        out
    };
    for c in chunks {
        if !script.delay.is_zero() {
            tokio::time::sleep(script.delay).await;
        }
        if tx.send(c).await.is_err() {
            return; // the client went away (cancelled)
        }
    }
    if let ChatEnd::Stall(d) = script.end {
        tokio::time::sleep(d).await;
    }
}
