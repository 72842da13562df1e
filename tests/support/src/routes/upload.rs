//! `POST /api/v1/detect` and `/api/v1/vision`: multipart bodies read as a stream by a
//! real parser (`multer`), like the reference Worker's `readMultipart`: an `image` file
//! part of an accepted type (`415` otherwise) within the limit (`413` with `max_bytes`,
//! 10 MiB unless a test raises it), text parts beside it. The image is hashed as it
//! arrives (SHA-256) and kept (up to 16 MiB) so tests can check exactly what was sent;
//! the idempotency fingerprint covers every part's name, filename, type and hash, not
//! the boundary, so a retry is the same logical request.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use hyper::body::Incoming;
use hyper::Response;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{metered, Req};
use crate::http::{error_resp, json_resp, Body};
use crate::{Fault, Inner};

/// The Worker's image limit.
pub const DEFAULT_LIMIT: u64 = 10 << 20;
/// Images up to this size are kept whole for the test to read back.
const KEEP: u64 = 16 << 20;
const TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/webp", "image/heic"];

/// One upload as the server received it.
#[derive(Debug, Clone)]
pub struct Upload {
    /// `detect` or `vision`.
    pub route: String,
    /// The `image` part's bytes (if at most 16 MiB).
    pub image: Option<Bytes>,
    /// Hex SHA-256 of the `image` part.
    pub sha256: String,
    /// Length of the `image` part.
    pub len: u64,
    /// The `image` part's `Content-Type` and `filename`.
    pub content_type: String,
    pub filename: String,
    /// The text parts (`options`, `prompt`).
    pub fields: BTreeMap<String, String>,
    /// The request's `Content-Length` header, if it had one.
    pub content_length: Option<u64>,
}

/// Whether `path` is an upload route (its body is read here, not collected whole).
pub(crate) fn is_upload(path: &str) -> bool {
    matches!(path, "/api/v1/detect" | "/api/v1/vision")
}

/// Whether a queued fault acts while the body is read.
pub(crate) fn is_read_fault(f: &Fault) -> bool {
    matches!(f, Fault::ResetMidBody | Fault::SlowUpload(_))
}

/// How reading an upload ended, when it did not give an [`Upload`].
pub(crate) enum ReadFail {
    /// Answer with this error (`400`/`413`/`415`) through the usual pipeline.
    Answer(u16, &'static str, String),
    /// Close the connection (a scripted reset).
    Close,
}

/// Reads and parses one multipart body.
pub(crate) async fn read(
    route: &str,
    body: Incoming,
    content_type: Option<&str>,
    content_length: Option<u64>,
    limit: u64,
    fault: Option<Fault>,
) -> Result<Upload, ReadFail> {
    let bad = |code, c, m: String| ReadFail::Answer(code, c, m);
    let boundary = content_type
        .and_then(|ct| multer::parse_boundary(ct).ok())
        .ok_or_else(|| {
            bad(
                415,
                "unsupported_media_type",
                "Content-Type must be multipart/form-data".into(),
            )
        })?;
    let half = content_length.unwrap_or(0) / 2;
    let slow = match &fault {
        Some(Fault::SlowUpload(d)) => Some(*d),
        _ => None,
    };
    let reset = matches!(fault, Some(Fault::ResetMidBody));
    let gated = faulted(body, half, reset, slow);
    let mut form = multer::Multipart::new(gated, boundary);
    let mut up = Upload {
        route: route.to_string(),
        image: None,
        sha256: String::new(),
        len: 0,
        content_type: String::new(),
        filename: String::new(),
        fields: BTreeMap::new(),
        content_length,
    };
    let mut have_image = false;
    let mut too_big = false;
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(multer::Error::StreamReadFailed(_)) => return Err(ReadFail::Close),
            Err(e) => {
                return Err(bad(
                    400,
                    "bad_request",
                    format!("not valid multipart/form-data: {e}"),
                ))
            }
        };
        let name = field.name().unwrap_or("").to_string();
        if name == "image" && field.file_name().is_some() {
            have_image = true;
            up.filename = field.file_name().unwrap_or("").to_string();
            up.content_type = field
                .content_type()
                .map(|m| m.essence_str().to_ascii_lowercase())
                .unwrap_or_default();
            let mut hash = Sha256::new();
            let mut kept = Vec::new();
            let mut field = field;
            loop {
                match field.chunk().await {
                    Ok(Some(c)) => {
                        hash.update(&c);
                        up.len += c.len() as u64;
                        if up.len <= KEEP {
                            kept.extend_from_slice(&c);
                        }
                        if up.len > limit {
                            too_big = true;
                        }
                    }
                    Ok(None) => break,
                    Err(multer::Error::StreamReadFailed(_)) => return Err(ReadFail::Close),
                    Err(e) => {
                        return Err(bad(400, "bad_request", format!("broken image part: {e}")))
                    }
                }
            }
            up.sha256 = hex(&hash.finalize());
            if up.len <= KEEP {
                up.image = Some(kept.into());
            }
        } else {
            let text = field
                .text()
                .await
                .map_err(|e| bad(400, "bad_request", format!("broken part {name}: {e}")))?;
            up.fields.insert(name, text);
        }
    }
    if !have_image {
        return Err(bad(400, "bad_request", "Missing `image` file part".into()));
    }
    if too_big {
        return Err(ReadFail::Answer(
            413,
            "payload_too_large",
            limit.to_string(),
        ));
    }
    if !TYPES.contains(&up.content_type.as_str()) {
        return Err(bad(
            415,
            "unsupported_media_type",
            format!("Image type {} is not accepted", up.content_type),
        ));
    }
    Ok(up)
}

/// The body as a stream for the parser, with the scripted read faults applied: a reset
/// once half the body has arrived, or a pause before each chunk.
fn faulted(
    body: Incoming,
    half: u64,
    reset: bool,
    slow: Option<Duration>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let frames = http_body_util::BodyStream::new(body);
    futures_util::stream::unfold((frames, 0u64), move |(mut frames, seen)| async move {
        loop {
            if let Some(d) = slow {
                tokio::time::sleep(d).await;
            }
            let item = match frames.next().await? {
                Ok(frame) => match frame.into_data() {
                    Ok(b) => b,
                    Err(_) => continue,
                },
                Err(e) => return Some((Err(std::io::Error::other(e)), (frames, seen))),
            };
            let seen = seen + item.len() as u64;
            if reset && seen >= half {
                let e = std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "fault: reset mid-body",
                );
                return Some((Err(e), (frames, seen)));
            }
            return Some((Ok(item), (frames, seen)));
        }
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The idempotency fingerprint of an upload: every part, sorted by name.
pub(crate) fn fingerprint(up: &Upload) -> Bytes {
    let mut parts = vec![format!(
        "image\0{}\0{}\0{}",
        up.filename, up.content_type, up.sha256
    )];
    for (k, v) in &up.fields {
        let mut h = Sha256::new();
        h.update(v.as_bytes());
        parts.push(format!("{k}\0\0text\0{}", hex(&h.finalize())));
    }
    parts.sort();
    Bytes::from(format!("{}\n{}", up.route, parts.join("\n")))
}

fn upload_of(req: &Req) -> Result<&Upload, Box<Response<Body>>> {
    match &req.upload {
        Some(Ok(u)) => Ok(u),
        Some(Err((413, code, limit))) => {
            let max: u64 = limit.parse().unwrap_or(DEFAULT_LIMIT);
            Err(Box::new(json_resp(
                413,
                &json!({ "error": { "code": code, "message": format!("Image over {max} bytes"), "max_bytes": max } }),
            )))
        }
        Some(Err((status, code, message))) => Err(Box::new(error_resp(*status, code, message))),
        None => Err(Box::new(error_resp(
            400,
            "bad_request",
            "multipart body expected",
        ))),
    }
}

/// `POST /api/v1/detect`: one fake object, charged once per idempotency key.
pub(crate) fn detect(s: &mut Inner, req: &Req, user: &str) -> Response<Body> {
    let up = match upload_of(req) {
        Ok(u) => u.clone(),
        Err(r) => return *r,
    };
    if let Some(o) = up.fields.get("options") {
        if serde_json::from_str::<serde_json::Value>(o).map_or(true, |v| !v.is_object()) {
            return error_resp(400, "bad_request", "options must be a JSON object");
        }
    }
    let (w, h) = dims(&up);
    metered(s, req, user, move |s| {
        s.uploads.push(up);
        (
            200,
            json!({ "objects": [ { "label": "cat", "score": 0.93, "box": [0.12, 0.2, 0.4, 0.55] } ],
                    "model": "yolov8n", "image": { "width": w, "height": h } }),
        )
    })
}

/// `POST /api/v1/vision`: a canned answer naming the prompt.
pub(crate) fn vision(s: &mut Inner, req: &Req, user: &str) -> Response<Body> {
    let up = match upload_of(req) {
        Ok(u) => u.clone(),
        Err(r) => return *r,
    };
    let Some(prompt) = up
        .fields
        .get("prompt")
        .cloned()
        .filter(|p| !p.trim().is_empty())
    else {
        return error_resp(400, "bad_request", "Missing `prompt` text part");
    };
    let (w, h) = dims(&up);
    metered(s, req, user, move |s| {
        s.uploads.push(up);
        (
            200,
            json!({ "response": format!("A {w}x{h} image. You asked: {prompt}"),
                    "model": "@cf/llava-hf/llava-1.5-7b-hf" }),
        )
    })
}

fn dims(up: &Upload) -> (usize, usize) {
    up.image
        .as_ref()
        .and_then(|b| imagesize::blob_size(b).ok())
        .map_or((0, 0), |s| (s.width, s.height))
}
