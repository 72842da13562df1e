//! The `/images` reply, `{"image": "<base64 PNG>", "model": "..."}`, decoded as its bytes
//! arrive: a small JSON scanner walks the top-level object, streams the `image` string
//! through a base64 decoder (never holding more than a chunk of it), keeps the other
//! members only as far as it needs them (`model`, capped), and checks the PNG as it comes
//! out: the signature and IHDR (with its CRC) from the first 33 bytes, the IEND chunk at
//! the end, so a reply cut off inside the image is caught even when its JSON closes.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

use crate::error::{Error, Result};

const PNG_SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";
/// Signature, then the IHDR chunk: length, type, 13 bytes of data, CRC.
const HEAD_LEN: usize = 8 + 4 + 4 + 13 + 4;
const IEND: &[u8; 12] = b"\0\0\0\0IEND\xaeB`\x82";
/// A member other than `image` is kept (for `model`) or skipped beyond this size.
const MEMBER_CAP: usize = 4096;

const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What the whole reply said, once it ended well.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub width: u32,
    pub height: u32,
    pub byte_size: u64,
    pub model: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Before the top-level `{`.
    Start,
    /// Inside the object, before a key (or the closing `}`).
    Key { first: bool },
    /// Inside a key string.
    KeyText { escape: bool },
    /// After a key, before its `:`.
    Colon,
    /// After `:`, before the value.
    Value,
    /// Inside the `image` string.
    Image { escape: bool },
    /// Inside another member's value.
    Other,
    /// After a value, before `,` or `}`.
    After,
    /// After the top-level `}`.
    End,
}

/// The incremental decoder of one reply.
pub struct ImageReply {
    state: State,
    key: Vec<u8>,
    saw_image: bool,
    /// The raw JSON of the member being skipped or kept, and how it nests.
    other: Vec<u8>,
    other_depth: u32,
    other_in_string: bool,
    other_escape: bool,
    other_len: usize,
    model: Option<String>,
    b64: Base64Stream,
    png: PngCheck,
}

impl Default for ImageReply {
    fn default() -> Self {
        ImageReply {
            state: State::Start,
            key: Vec::new(),
            saw_image: false,
            other: Vec::new(),
            other_depth: 0,
            other_in_string: false,
            other_escape: false,
            other_len: 0,
            model: None,
            b64: Base64Stream::default(),
            png: PngCheck::default(),
        }
    }
}

fn bad(what: impl std::fmt::Display) -> Error {
    Error::decode(format!("image reply: {what}"))
}

impl ImageReply {
    /// Feeds the next bytes of the body; the PNG bytes they complete are appended to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        while !input.is_empty() {
            if let State::Image { escape: false } = self.state {
                // The fast path: a run of base64 up to the next quote or escape.
                let n = input
                    .iter()
                    .position(|&b| b == b'"' || b == b'\\')
                    .unwrap_or(input.len());
                self.b64.feed(&input[..n], out)?;
                input = &input[n..];
                if input.is_empty() {
                    break;
                }
            }
            let b = input[0];
            input = &input[1..];
            self.step(b, out)?;
        }
        self.png.check(&out[start..])
    }

    fn step(&mut self, b: u8, out: &mut Vec<u8>) -> Result<()> {
        let ws = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        self.state = match self.state {
            State::Start if ws => State::Start,
            State::Start if b == b'{' => State::Key { first: true },
            State::Start => return Err(bad("not a JSON object")),
            State::Key { first } if ws => State::Key { first },
            State::Key { first: true } if b == b'}' => State::End,
            State::Key { .. } if b == b'"' => {
                self.key.clear();
                State::KeyText { escape: false }
            }
            State::Key { .. } => return Err(bad("malformed JSON (expected a key)")),
            State::KeyText { escape: false } if b == b'"' => State::Colon,
            State::KeyText { escape } => {
                if self.key.len() < 64 {
                    self.key.push(b);
                }
                State::KeyText {
                    escape: !escape && b == b'\\',
                }
            }
            State::Colon if ws => State::Colon,
            State::Colon if b == b':' => State::Value,
            State::Colon => return Err(bad("malformed JSON (expected ':')")),
            State::Value if ws => State::Value,
            State::Value if self.key == b"image" => {
                if b != b'"' {
                    return Err(bad("\"image\" is not a string"));
                }
                if self.saw_image {
                    return Err(bad("two \"image\" members"));
                }
                self.saw_image = true;
                State::Image { escape: false }
            }
            State::Value => {
                self.other.clear();
                self.other_len = 0;
                self.other_depth = 0;
                self.other_in_string = false;
                self.other_escape = false;
                return self.other_byte(b);
            }
            State::Image { escape: false } if b == b'"' => State::After,
            State::Image { escape: false } => State::Image { escape: true },
            State::Image { escape: true } => {
                match b {
                    // JSON may escape the solidus; line breaks are tolerated (MIME style).
                    b'/' => self.b64.feed(b"/", out)?,
                    b'n' | b'r' => {}
                    _ => return Err(bad("unexpected escape inside the base64")),
                }
                State::Image { escape: false }
            }
            State::Other => return self.other_byte(b),
            State::After if ws => State::After,
            State::After if b == b',' => State::Key { first: false },
            State::After if b == b'}' => State::End,
            State::After => return Err(bad("malformed JSON (expected ',' or '}')")),
            State::End if ws => State::End,
            State::End => return Err(bad("data after the JSON object")),
        };
        Ok(())
    }

    /// One byte of a member other than `image`. A scalar ends at the first delimiter,
    /// which is then handled as the byte after the value.
    fn other_byte(&mut self, b: u8) -> Result<()> {
        let scalar_end = self.other_depth == 0
            && !self.other_in_string
            && self.other_len > 0
            && matches!(b, b',' | b'}' | b' ' | b'\t' | b'\n' | b'\r');
        if scalar_end {
            self.end_other()?;
            self.state = State::After;
            return self.step(b, &mut Vec::new());
        }
        self.other_len += 1;
        if self.other.len() < MEMBER_CAP {
            self.other.push(b);
        }
        let mut done = false;
        if self.other_in_string {
            if self.other_escape {
                self.other_escape = false;
            } else if b == b'\\' {
                self.other_escape = true;
            } else if b == b'"' {
                self.other_in_string = false;
                done = self.other_depth == 0;
            }
        } else {
            match b {
                b'"' => self.other_in_string = true,
                b'{' | b'[' => self.other_depth += 1,
                b'}' | b']' => {
                    if self.other_depth == 0 {
                        return Err(bad("malformed JSON"));
                    }
                    self.other_depth -= 1;
                    done = self.other_depth == 0;
                }
                _ => {}
            }
        }
        if done {
            self.end_other()?;
            self.state = State::After;
        } else {
            self.state = State::Other;
        }
        Ok(())
    }

    fn end_other(&mut self) -> Result<()> {
        if self.key == b"model" && self.other_len <= MEMBER_CAP {
            match serde_json::from_slice::<serde_json::Value>(&self.other) {
                Ok(serde_json::Value::String(s)) => self.model = Some(s),
                Ok(_) => {}
                Err(_) => return Err(bad("malformed \"model\"")),
            }
        }
        Ok(())
    }

    /// The body ended: the last PNG bytes go to `out`, and the reply must be complete.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<Decoded> {
        if let State::Other = self.state {
            // A scalar at the very end (`{"n": 1` then EOF) is still an unclosed object.
            return Err(bad("the reply ends inside a value"));
        }
        if self.state != State::End {
            return Err(bad("the reply is cut off (the JSON object never closes)"));
        }
        if !self.saw_image {
            return Err(bad("no \"image\" member"));
        }
        let start = out.len();
        self.b64.finish(out)?;
        self.png.check(&out[start..])?;
        let (width, height, byte_size) = self.png.finish()?;
        Ok(Decoded {
            width,
            height,
            byte_size,
            model: self.model,
        })
    }
}

/// Base64 decoded in whole quanta as characters arrive; at most three wait for the next.
#[derive(Default)]
struct Base64Stream {
    pending: Vec<u8>,
    /// A quantum with padding was decoded: nothing may follow it.
    padded: bool,
}

impl Base64Stream {
    fn feed(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if self.padded {
            return Err(bad("base64 continues after its padding"));
        }
        if !self.pending.is_empty() {
            let take = (4 - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() < 4 {
                return Ok(());
            }
            let quantum = std::mem::take(&mut self.pending);
            self.decode(&quantum, out)?;
            if self.padded && !data.is_empty() {
                return Err(bad("base64 continues after its padding"));
            }
        }
        let whole = data.len() / 4 * 4;
        self.decode(&data[..whole], out)?;
        if self.padded && whole < data.len() {
            return Err(bad("base64 continues after its padding"));
        }
        self.pending.extend_from_slice(&data[whole..]);
        Ok(())
    }

    fn decode(&mut self, quanta: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if quanta.is_empty() {
            return Ok(());
        }
        BASE64
            .decode_vec(quanta, out)
            .map_err(|e| bad(format!("invalid base64 ({e})")))?;
        self.padded = quanta.ends_with(b"=");
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let rest = std::mem::take(&mut self.pending);
        self.decode(&rest, out)
    }
}

/// The PNG as it comes out of the decoder: its head checked once complete, its last 12
/// bytes kept for the IEND check.
#[derive(Default)]
struct PngCheck {
    head: Vec<u8>,
    size: (u32, u32),
    tail: Vec<u8>,
    total: u64,
}

impl PngCheck {
    fn check(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.total += bytes.len() as u64;
        if self.head.len() < HEAD_LEN {
            let take = (HEAD_LEN - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
            let sig = self.head.len().min(8);
            if self.head[..sig] != PNG_SIGNATURE[..sig] {
                return Err(bad("the image is not a PNG (wrong signature)"));
            }
            if self.head.len() == HEAD_LEN {
                self.size = ihdr(&self.head)?;
            }
        }
        if bytes.len() >= IEND.len() {
            self.tail.clear();
            self.tail
                .extend_from_slice(&bytes[bytes.len() - IEND.len()..]);
        } else {
            self.tail.extend_from_slice(bytes);
            let extra = self.tail.len().saturating_sub(IEND.len());
            self.tail.drain(..extra);
        }
        Ok(())
    }

    fn finish(&self) -> Result<(u32, u32, u64)> {
        if self.head.len() < HEAD_LEN {
            return Err(bad("the image is too short to be a PNG"));
        }
        if self.tail != IEND || self.total < (HEAD_LEN + IEND.len()) as u64 {
            return Err(bad("the PNG is cut off (no IEND chunk at its end)"));
        }
        Ok((self.size.0, self.size.1, self.total))
    }
}

/// Width and height from the IHDR chunk that must follow the signature.
fn ihdr(head: &[u8]) -> Result<(u32, u32)> {
    let be = |i: usize| u32::from_be_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    if be(8) != 13 || &head[12..16] != b"IHDR" {
        return Err(bad("the PNG does not start with an IHDR chunk"));
    }
    if crc32(&head[12..29]) != be(29) {
        return Err(bad("the PNG's IHDR chunk is corrupt (CRC mismatch)"));
    }
    let (w, h) = (be(16), be(20));
    if w == 0 || h == 0 || w > 1 << 31 || h > 1 << 31 {
        return Err(bad(format!("the PNG's IHDR names an invalid size {w}x{h}")));
    }
    Ok((w, h))
}

/// CRC-32 (IEEE), bit by bit: it only ever covers the 17 bytes of an IHDR.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(body: &[u8], piece: usize) -> Result<(Vec<u8>, Decoded)> {
        let mut r = ImageReply::default();
        let mut out = Vec::new();
        for c in body.chunks(piece.max(1)) {
            r.feed(c, &mut out)?;
        }
        let d = r.finish(&mut out)?;
        Ok((out, d))
    }

    fn reply(png: &[u8], model: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(png);
        format!("{{ \"model\": {model}, \"n\": [1, {{\"a\": \"}}\"}}], \"image\": \"{b64}\", \"z\": 3.5 }}")
    }

    #[test]
    fn crc32_matches_the_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn decodes_a_png_split_anywhere_and_reads_its_size_from_ihdr() {
        let png = tether_test_server::png(300, 257);
        let body = reply(&png, "\"flux \\\"schnell\\\"\"");
        for piece in [1, 2, 3, 5, 7, 64, 4096, body.len()] {
            let (out, d) = decode_in_pieces(body.as_bytes(), piece).unwrap();
            assert_eq!(out, png, "piece {piece}");
            assert_eq!((d.width, d.height), (300, 257));
            assert_eq!(d.byte_size, png.len() as u64);
            assert_eq!(d.model.as_deref(), Some("flux \"schnell\""));
        }
    }

    #[test]
    fn refuses_what_is_not_a_whole_png_in_base64() {
        let png = tether_test_server::png(256, 256);
        let good = reply(&png, "\"m\"");
        let err = |body: &str| {
            let e = decode_in_pieces(body.as_bytes(), 7).unwrap_err();
            assert!(matches!(e, Error::Decode(_)), "{e:?}");
            e.to_string()
        };
        let mut corrupt = good.clone().into_bytes();
        let mid = corrupt.len() / 2;
        corrupt[mid] = b'!';
        assert!(err(std::str::from_utf8(&corrupt).unwrap()).contains("base64"));
        let gif =
            base64::engine::general_purpose::STANDARD.encode(b"GIF89a........................");
        assert!(err(&format!("{{\"image\":\"{gif}\"}}")).contains("not a PNG"));
        // Cut off inside the image, with or without the JSON closing after it.
        assert!(err(&good[..good.len() / 2]).contains("cut off"));
        let b64 = base64::engine::general_purpose::STANDARD.encode(&png[..png.len() - 20]);
        assert!(err(&format!("{{\"image\":\"{b64}\"}}")).contains("IEND"));
        // A corrupt IHDR, base64 after padding, no image, not JSON.
        let mut bad_ihdr = png.clone();
        bad_ihdr[20] ^= 1;
        assert!(err(&reply(&bad_ihdr, "\"m\"")).contains("CRC"));
        assert!(err("{\"image\":\"iVA=iVBO\"}").contains("padding"));
        assert!(err("{\"model\":\"m\"}").contains("no \"image\""));
        assert!(err("<html>").contains("not a JSON object"));
        assert!(err("{\"image\": 5}").contains("not a string"));
    }

    #[test]
    fn memory_stays_within_a_chunk() {
        // The decoder's own buffers stay small whatever the image's size: only the bytes
        // of the chunk just fed come out.
        let png = tether_test_server::png(1024, 1024);
        let body = reply(&png, "\"m\"");
        let mut r = ImageReply::default();
        let mut out = Vec::new();
        let mut max = 0;
        for c in body.as_bytes().chunks(16 * 1024) {
            out.clear();
            r.feed(c, &mut out).unwrap();
            max = max.max(out.len());
            assert!(r.b64.pending.len() < 4 && r.other.len() <= MEMBER_CAP);
            assert!(r.png.head.len() <= HEAD_LEN && r.png.tail.len() <= IEND.len());
        }
        out.clear();
        r.finish(&mut out).unwrap();
        assert!(max <= 12 * 1024, "{max}");
    }
}
