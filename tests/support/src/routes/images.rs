//! Image generation: metered `POST /api/v1/images` answering, like the Worker,
//! `{"image": "<base64 PNG>", "model": "@cf/black-forest-labs/flux-1-schnell"}` with a real
//! PNG of the requested size clamped to 256..2048 (default 1024): an RGB gradient in
//! uncompressed deflate blocks, so its size is predictable (about 3 bytes a pixel).
//!
//! A test can script the next answer's defect ([`ImageFault`], also over
//! `/__admin/image-fault`): base64 that is not base64, a valid base64 of something that is
//! not a PNG, or the right reply cut off half-way (its `Content-Length` promised more).

use std::collections::VecDeque;

use base64::Engine;
use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::Response;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::{metered, Req};
use crate::faults::ChannelBody;
use crate::http::{error_resp, Body};
use crate::Inner;

pub(crate) const MODEL: &str = "@cf/black-forest-labs/flux-1-schnell";

/// A defect for the next answer of `POST /api/v1/images`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFault {
    /// `image` holds characters outside the base64 alphabet half-way through.
    CorruptBase64,
    /// `image` is valid base64 of bytes that are not a PNG (a GIF header).
    NotPng,
    /// The reply is right, but the connection closes half-way through its body.
    CutOff,
}

impl ImageFault {
    pub(crate) fn parse(s: &str) -> Option<ImageFault> {
        match s {
            "corrupt-base64" => Some(ImageFault::CorruptBase64),
            "not-png" => Some(ImageFault::NotPng),
            "cut-off" => Some(ImageFault::CutOff),
            _ => None,
        }
    }
}

#[derive(Default)]
pub(crate) struct Images {
    pub(crate) faults: VecDeque<ImageFault>,
}

fn clamp(v: Option<&Value>) -> Result<u32, ()> {
    match v {
        None | Some(Value::Null) => Ok(1024),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) if f.is_finite() => Ok(f.round().clamp(256.0, 2048.0) as u32),
            _ => Err(()),
        },
        Some(_) => Err(()),
    }
}

/// `POST /api/v1/images`.
pub(crate) fn create(s: &mut Inner, req: &Req, user: &str) -> Response<Body> {
    let Some(body) = req.json_object() else {
        return error_resp(400, "bad_request", "body must be a JSON object");
    };
    let prompt = body.get("prompt").and_then(Value::as_str).unwrap_or("");
    if prompt.trim().is_empty() {
        return error_resp(400, "bad_request", "prompt is required");
    }
    let (Ok(width), Ok(height)) = (clamp(body.get("width")), clamp(body.get("height"))) else {
        return error_resp(400, "bad_request", "width and height must be numbers");
    };
    let fault = s.images.faults.pop_front();
    let mut text = None;
    let r = metered(s, req, user, |_| {
        let png = png(width, height);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
        let image = match fault {
            Some(ImageFault::CorruptBase64) => {
                let mut b = b64.into_bytes();
                let mid = b.len() / 2;
                b[mid..mid + 4].copy_from_slice(b"!*?~");
                String::from_utf8_lossy(&b).into_owned()
            }
            Some(ImageFault::NotPng) => base64::engine::general_purpose::STANDARD
                .encode(b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9"),
            _ => b64,
        };
        let v = json!({ "image": image, "model": MODEL });
        text = Some(v.to_string());
        (200, v)
    });
    match (fault, text) {
        (Some(ImageFault::CutOff), Some(text)) => cut_off(text),
        _ => r,
    }
}

/// The reply with `Content-Length` for all of `text`, and only its first half sent.
fn cut_off(text: String) -> Response<Body> {
    let len = text.len();
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        let _ = tx.send(Bytes::from(text).slice(..len / 2)).await;
    });
    let mut r = Response::new(http_body_util::BodyExt::boxed(ChannelBody(rx)));
    r.headers_mut()
        .insert("content-length", HeaderValue::from(len as u64));
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// A real PNG: 8-bit RGB, a gradient, in stored (uncompressed) deflate blocks.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let row = 1 + 3 * width as usize;
    let mut raw = Vec::with_capacity(row * height as usize);
    for y in 0..height {
        raw.push(0); // filter: none
        for x in 0..width {
            raw.extend_from_slice(&[(x % 256) as u8, (y % 256) as u8, ((x + y) / 16 % 256) as u8]);
        }
    }
    let mut z = vec![0x78, 0x01];
    let mut blocks = raw.chunks(65_535).peekable();
    while let Some(b) = blocks.next() {
        z.push(u8::from(blocks.peek().is_none()));
        let n = b.len() as u16;
        z.extend_from_slice(&n.to_le_bytes());
        z.extend_from_slice(&(!n).to_le_bytes());
        z.extend_from_slice(b);
    }
    z.extend_from_slice(&adler32(&raw).to_be_bytes());

    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

fn crc32(bytes: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (n, e) in t.iter_mut().enumerate() {
            let mut c = n as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *e = c;
        }
        t
    });
    !bytes.iter().fold(!0u32, |c, &b| {
        table[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
}

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in bytes.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= 65_521;
        b %= 65_521;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_and_adler_match_known_values() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        let p = png(300, 256);
        assert_eq!(&p[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&p[p.len() - 12..], b"\0\0\0\0IEND\xaeB`\x82");
    }
}
