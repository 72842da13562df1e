//! The server-sent events parser (no I/O: bytes in, events out), by the WHATWG
//! EventSource rules: `data` (lines joined with `\n`), `event`, `id`, `retry`, comments,
//! one leading BOM, `\n` / `\r\n` / `\r` line ends, any chunk boundary (between `\r` and
//! `\n`, inside a UTF-8 sequence).
//!
//! Cost is linear in the input: each byte is scanned once (`memchr` for the line ends).
//! A complete line is handled straight from the chunk; the start of an unfinished one is
//! kept aside, except that a `data` line's value goes straight into the event's data as
//! it arrives (one copy, however many chunks a long line takes) and a comment is only
//! counted. Data is kept as bytes and decoded once, lossily, at dispatch: `\r` and `\n`
//! never occur inside a UTF-8 sequence, so a sequence split by a chunk boundary is whole
//! by then, and an invalid one decodes as the WHATWG decoder would (U+FFFD).
//! Memory is bounded: a line or an event's data over its cap is a typed error
//! ([`SseError`]), and the parser refuses further input after one.

use std::borrow::Cow;

/// Caps on what the parser holds. A stream over them fails rather than growing memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes in one line (field name, colon and value), line end excluded.
    pub max_line: usize,
    /// Bytes of `data` in one event (lines joined).
    pub max_event: usize,
}

impl Default for Limits {
    /// 16 MiB each: far above any model reply, far below a phone's memory.
    fn default() -> Self {
        Limits {
            max_line: 16 << 20,
            max_event: 16 << 20,
        }
    }
}

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event` field, `"message"` when absent or empty (not allocated then).
    pub event: Cow<'static, str>,
    /// The `data` lines joined with `\n`.
    pub data: String,
    /// The last event id seen so far in the stream (ids persist across events).
    pub id: String,
}

/// Why the parser gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A line grew past [`Limits::max_line`] without ending.
    #[error("an event-stream line is longer than {limit} bytes")]
    LineTooLong {
        /// The cap.
        limit: usize,
    },
    /// An event's data grew past [`Limits::max_event`].
    #[error("an event-stream event is larger than {limit} bytes")]
    EventTooLarge {
        /// The cap.
        limit: usize,
    },
}

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// What becomes of the unfinished line's next bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Partial {
    /// Kept in `line` until its end (field not known yet, or a short field).
    Line,
    /// A `data` line whose value is being appended to `data` as it arrives.
    Data,
    /// A comment: counted against the cap, not kept.
    Comment,
}

/// The incremental parser. Feed it chunks as they arrive; it returns the events they
/// complete. At the end of the stream an unfinished event is discarded (WHATWG).
#[derive(Debug)]
pub struct Parser {
    limits: Limits,
    /// The start of a line whose end has not arrived yet (unless `partial` says the line
    /// goes elsewhere).
    line: Vec<u8>,
    /// Where the rest of an unfinished line goes.
    partial: Partial,
    /// Bytes of the unfinished line so far, wherever they went.
    line_len: usize,
    /// The last byte fed was a `\r`: a `\n` opening the next chunk is its pair.
    after_cr: bool,
    /// BOM bytes matched so far at the start of the stream; `None` once decided.
    bom: Option<usize>,
    /// The event's data so far, as bytes: decoded once, at dispatch (a long line is copied
    /// once, straight from the chunks).
    data: Vec<u8>,
    event_type: String,
    last_id: String,
    retry: Option<u64>,
    failed: Option<SseError>,
}

impl Default for Parser {
    fn default() -> Self {
        Parser::new(Limits::default())
    }
}

impl Parser {
    /// A parser at the start of a stream.
    pub fn new(limits: Limits) -> Self {
        Parser {
            limits,
            line: Vec::new(),
            partial: Partial::Line,
            line_len: 0,
            after_cr: false,
            bom: Some(0),
            data: Vec::new(),
            event_type: String::new(),
            last_id: String::new(),
            retry: None,
            failed: None,
        }
    }

    /// The reconnection time the stream asked for (`retry:`), in milliseconds.
    pub fn retry_ms(&self) -> Option<u64> {
        self.retry
    }

    /// Parses `chunk`, returning the events it completes (in order).
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Event>, SseError> {
        let mut out = Vec::new();
        self.feed_into(chunk, &mut out)?;
        Ok(out)
    }

    /// Like [`Parser::feed`], appending to `out`.
    pub fn feed_into(&mut self, chunk: &[u8], out: &mut Vec<Event>) -> Result<(), SseError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.feed_checked(chunk, out);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
            self.line = Vec::new();
            self.data = Vec::new();
        }
        r
    }

    fn feed_checked(&mut self, chunk: &[u8], out: &mut Vec<Event>) -> Result<(), SseError> {
        let Some(seen) = self.bom else {
            return self.lines(chunk, out);
        };
        let mut matched = seen;
        let mut i = 0;
        while matched < BOM.len() && i < chunk.len() && chunk[i] == BOM[matched] {
            matched += 1;
            i += 1;
        }
        if matched == BOM.len() {
            self.bom = None;
            return self.lines(&chunk[i..], out);
        }
        if i == chunk.len() {
            // Still a prefix of the BOM: decide with the next chunk.
            self.bom = Some(matched);
            return Ok(());
        }
        // Not a BOM after all: the bytes held back are ordinary input.
        self.bom = None;
        self.lines(&BOM[..matched], out)?;
        self.lines(&chunk[i..], out)
    }

    fn lines(&mut self, mut rest: &[u8], out: &mut Vec<Event>) -> Result<(), SseError> {
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(i) = memchr::memchr2(b'\r', b'\n', rest) {
            let cr = rest[i] == b'\r';
            self.check_line(self.line_len + i)?;
            match self.partial {
                Partial::Data => {
                    self.check_event(i + 1)?;
                    self.data.extend_from_slice(&rest[..i]);
                    self.data.push(b'\n');
                }
                Partial::Comment => {}
                Partial::Line if self.line.is_empty() => self.line_done(&rest[..i], out)?,
                Partial::Line => {
                    self.line.extend_from_slice(&rest[..i]);
                    let line = std::mem::take(&mut self.line);
                    let r = self.line_done(&line, out);
                    // Keep the allocation for the next long line.
                    self.line = line;
                    self.line.clear();
                    r?;
                }
            }
            self.partial = Partial::Line;
            self.line_len = 0;
            rest = &rest[i + 1..];
            if cr {
                match rest.first() {
                    None => self.after_cr = true,
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                }
            }
        }
        if rest.is_empty() {
            return Ok(());
        }
        self.check_line(self.line_len + rest.len())?;
        self.line_len += rest.len();
        match self.partial {
            Partial::Data => {
                self.check_event(rest.len())?;
                self.data.extend_from_slice(rest);
            }
            Partial::Comment => {}
            Partial::Line => {
                self.line.extend_from_slice(rest);
                if self.line[0] == b':' {
                    self.partial = Partial::Comment;
                    self.line.clear();
                } else if self.line.len() > 5 && self.line.starts_with(b"data:") {
                    // The byte after the colon is here: the value's start is known, so the
                    // rest of the line can go straight to the data.
                    let v = &self.line[5..];
                    let v = v.strip_prefix(b" ").unwrap_or(v);
                    self.check_event(v.len())?;
                    self.data.extend_from_slice(v);
                    self.line.clear();
                    self.partial = Partial::Data;
                }
            }
        }
        Ok(())
    }

    fn check_event(&self, more: usize) -> Result<(), SseError> {
        if self.data.len() + more > self.limits.max_event {
            return Err(SseError::EventTooLarge {
                limit: self.limits.max_event,
            });
        }
        Ok(())
    }

    fn check_line(&self, len: usize) -> Result<(), SseError> {
        if len > self.limits.max_line {
            return Err(SseError::LineTooLong {
                limit: self.limits.max_line,
            });
        }
        Ok(())
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<Event>) -> Result<(), SseError> {
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(()); // a comment: the contract's keep-alive
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &[][..]),
        };
        match name {
            b"data" => {
                self.check_event(value.len() + 1)?;
                // One allocation for the common one-line event (value and its `\n`).
                self.data.reserve(value.len() + 1);
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
            }
            b"event" => self.event_type = String::from_utf8_lossy(value).into_owned(),
            // An id with NUL is ignored (WHATWG).
            b"id" if !value.contains(&0) => {
                self.last_id = String::from_utf8_lossy(value).into_owned();
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                // Too many digits to be a sane delay: ignored like any bogus value.
                if let Ok(ms) = std::str::from_utf8(value).unwrap_or("x").parse() {
                    self.retry = Some(ms);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<Event>) {
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        self.data.pop(); // the `\n` after the last data line
        let data = match String::from_utf8(std::mem::take(&mut self.data)) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        let event = match self.event_type.is_empty() {
            true => Cow::Borrowed("message"),
            false => Cow::Owned(std::mem::take(&mut self.event_type)),
        };
        out.push(Event {
            event,
            data,
            id: self.last_id.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ev(event: &str, data: &str, id: &str) -> Event {
        Event {
            event: Cow::Owned(event.to_string()),
            data: data.into(),
            id: id.into(),
        }
    }

    fn msg(data: &str) -> Event {
        ev("message", data, "")
    }

    /// Whole, byte by byte, and in two pieces at every cut: all must agree.
    fn parse(input: &[u8]) -> Vec<Event> {
        let whole = Parser::default().feed(input).unwrap();
        let mut p = Parser::default();
        let mut bytewise = Vec::new();
        for b in input {
            p.feed_into(std::slice::from_ref(b), &mut bytewise).unwrap();
        }
        assert_eq!(whole, bytewise, "byte-by-byte differs");
        for cut in 0..=input.len() {
            let mut p = Parser::default();
            let mut two = p.feed(&input[..cut]).unwrap();
            two.extend(p.feed(&input[cut..]).unwrap());
            assert_eq!(whole, two, "cut at {cut} differs");
        }
        whole
    }

    // The WPT `eventsource/format-*` cases, as byte vectors.

    #[test]
    fn wpt_format_bom() {
        assert_eq!(
            parse("\u{FEFF}data:1\n\n\u{FEFF}data:2\n\ndata:3\n\n".as_bytes()),
            [msg("1"), msg("3")]
        );
    }

    #[test]
    fn wpt_format_bom_2() {
        assert_eq!(
            parse("\u{FEFF}\u{FEFF}data:1\n\ndata:2\n\ndata:3\n\n".as_bytes()),
            [msg("2"), msg("3")]
        );
    }

    #[test]
    fn wpt_format_comments() {
        let long = "x".repeat(2049);
        let s =
            format!("data:1\r:\0\n:\r\ndata:2\n:{long}\rdata:3\n:data:fail\r:{long}\ndata:4\n\n");
        assert_eq!(parse(s.as_bytes()), [msg("1\n2\n3\n4")]);
    }

    #[test]
    fn wpt_format_data_before_final_empty_line() {
        assert_eq!(
            parse(b"retry:1000\ndata:test1\n\ndata:test2"),
            [msg("test1")]
        );
    }

    #[test]
    fn wpt_format_field_data() {
        assert_eq!(
            parse(b"data:\n\ndata\ndata\n\ndata:test\n\n"),
            [msg(""), msg("\n"), msg("test")]
        );
    }

    #[test]
    fn wpt_format_field_event() {
        assert_eq!(
            parse(b"event:test\ndata:x\n\ndata:x\n\n"),
            [ev("test", "x", ""), msg("x")]
        );
    }

    #[test]
    fn wpt_format_field_event_empty() {
        assert_eq!(parse(b"event: \ndata:data\n\n"), [msg("data")]);
    }

    #[test]
    fn wpt_format_field_id() {
        assert_eq!(
            parse(b"id: 1\ndata: x\n\ndata: y\n\nid\ndata: z\n\n"),
            [ev("message", "x", "1"), ev("message", "y", "1"), msg("z")]
        );
    }

    #[test]
    fn wpt_format_field_id_null() {
        assert_eq!(
            parse(b"id: 1\ndata: x\n\nid: 2\0x\ndata: y\n\n"),
            [ev("message", "x", "1"), ev("message", "y", "1")]
        );
    }

    #[test]
    fn wpt_format_field_parsing() {
        let s = "data:\0\ndata:  2\rData:1\ndata\0:2\ndata:1\r\0data:4\nda-ta:3\rdata_5\ndata:3\rdata:\r\n data:32\ndata:4\n\n";
        assert_eq!(parse(s.as_bytes()), [msg("\0\n 2\n1\n3\n\n4")]);
    }

    #[test]
    fn wpt_format_field_retry_and_bogus_and_empty() {
        let mut p = Parser::default();
        p.feed(b"retry:03000\ndata:x\n\n").unwrap();
        assert_eq!(p.retry_ms(), Some(3000));
        p.feed(b"retry:3000xyz\ndata:x\n\nretry\n\nretry:\n\n")
            .unwrap();
        assert_eq!(
            p.retry_ms(),
            Some(3000),
            "bogus and empty retry are ignored"
        );
    }

    #[test]
    fn wpt_format_field_unknown() {
        assert_eq!(
            parse(b"data:test\n data\ndata\nfoobar:xxx\njustsometext\n:thisisacommentyay\ndata:test\n\n"),
            [msg("test\n\ntest")]
        );
    }

    #[test]
    fn wpt_format_leading_space() {
        assert_eq!(
            parse(b"data:\x20\ttest\rdata: \ndata:test\n\n"),
            [msg("\ttest\n\ntest")]
        );
    }

    #[test]
    fn wpt_format_newlines() {
        assert_eq!(
            parse(b"data:test\r\ndata\ndata:test\r\n\r"),
            [msg("test\n\ntest")]
        );
    }

    #[test]
    fn wpt_format_null_character() {
        assert_eq!(parse(b"data:\0\n\n\n\n"), [msg("\0")]);
    }

    #[test]
    fn wpt_format_utf8() {
        assert_eq!(parse("data:ok\u{2026}\n\n".as_bytes()), [msg("ok\u{2026}")]);
        // An invalid sequence decodes to U+FFFD, however the bytes were cut.
        assert_eq!(parse(b"data:a\xE2\x82\n\n"), [msg("a\u{FFFD}")]);
    }

    #[test]
    fn the_workers_ai_shape_with_keep_alives_and_crlf() {
        let s = ": keep-alive\r\n\r\ndata: {\"response\":\"Hel\"}\r\n\r\n: keep-alive\r\ndata: {\"response\":\"lo\"}\r\n\r\ndata: [DONE]\r\n\r\n";
        assert_eq!(
            parse(s.as_bytes()),
            [
                msg("{\"response\":\"Hel\"}"),
                msg("{\"response\":\"lo\"}"),
                msg("[DONE]")
            ]
        );
        assert_eq!(
            parse(b"event: error\ndata: {\"error\":{\"code\":\"upstream\"}}\n\n"),
            [ev("error", "{\"error\":{\"code\":\"upstream\"}}", "")]
        );
    }

    #[test]
    fn a_cr_at_the_end_of_a_chunk_pairs_with_a_lf_opening_the_next() {
        let mut p = Parser::default();
        assert_eq!(p.feed(b"data:a\r").unwrap(), []);
        // If the `\n` were a line of its own, this would dispatch "a" now.
        assert_eq!(p.feed(b"\n").unwrap(), []);
        assert_eq!(p.feed(b"data:b\r").unwrap(), []);
        assert_eq!(p.feed(b"\r").unwrap(), [msg("a\nb")]);
    }

    #[test]
    fn a_long_line_or_event_is_a_typed_error_and_the_parser_stays_failed() {
        let limits = Limits {
            max_line: 16,
            max_event: 20,
        };
        let mut p = Parser::new(limits);
        p.feed(b"data:0123456789").unwrap();
        assert_eq!(
            p.feed(b"ab").unwrap_err(),
            SseError::LineTooLong { limit: 16 }
        );
        assert!(p.feed(b"\n\n").is_err(), "refuses input after a failure");
        let mut p = Parser::new(limits);
        assert_eq!(
            p.feed(b"data:0123456789\ndata:0123456789\n").unwrap_err(),
            SseError::EventTooLarge { limit: 20 }
        );
        // Lines within the cap, dispatched in between, never add up.
        let mut p = Parser::new(limits);
        for _ in 0..100 {
            assert_eq!(p.feed(b"data:0123456789\n\n").unwrap().len(), 1);
        }
        // A comment counts as a line too: no unbounded growth by keep-alives.
        let mut p = Parser::new(limits);
        assert!(p.feed(&[b':'; 17]).is_err());
    }

    #[test]
    fn an_8_mb_line_in_1024_chunks_is_one_event() {
        let body = vec![b'x'; 8 << 20];
        let mut input = b"data: ".to_vec();
        input.extend_from_slice(&body);
        input.extend_from_slice(b"\n\n");
        let mut p = Parser::default();
        let mut out = Vec::new();
        for c in input.chunks(input.len().div_ceil(1024)) {
            p.feed_into(c, &mut out).unwrap();
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data.len(), 8 << 20);
    }

    /// A random valid stream and the events it must yield.
    fn stream() -> impl Strategy<Value = (Vec<u8>, Vec<Event>)> {
        let text = "[ -~\u{e9}\u{2026}\u{1F600}:]{0,12}";
        let line_end = prop_oneof![Just("\n"), Just("\r\n"), Just("\r")];
        let event = (
            prop::option::of("[a-z]{1,6}"),
            prop::collection::vec(text, 1..4),
            prop::option::of("[0-9a-z]{0,4}"),
            any::<bool>(),
        );
        (
            any::<bool>(),
            prop::collection::vec((event, prop::collection::vec(line_end, 8)), 0..8),
        )
            .prop_map(|(bom, events)| {
                let mut bytes = Vec::new();
                if bom {
                    bytes.extend_from_slice(&BOM);
                }
                let mut expected = Vec::new();
                let mut last_id = String::new();
                let mut prev_cr = false;
                for ((kind, data, id, comment), ends) in events {
                    let mut ends = ends.into_iter();
                    let mut line = |bytes: &mut Vec<u8>, text: &str| {
                        let mut end = ends.next().unwrap_or("\n");
                        // A `\r` then an empty line ended by `\n` would be one line end.
                        if prev_cr && text.is_empty() && end == "\n" {
                            end = "\r\n";
                        }
                        bytes.extend_from_slice(text.as_bytes());
                        bytes.extend_from_slice(end.as_bytes());
                        prev_cr = end == "\r";
                    };
                    if comment {
                        line(&mut bytes, ": keep-alive");
                    }
                    if let Some(k) = &kind {
                        line(&mut bytes, &format!("event: {k}"));
                    }
                    if let Some(id) = &id {
                        line(&mut bytes, &format!("id:{id}"));
                        last_id = id.clone();
                    }
                    for d in &data {
                        line(&mut bytes, &format!("data: {d}"));
                    }
                    line(&mut bytes, "");
                    expected.push(ev(
                        kind.as_deref().unwrap_or("message"),
                        &data.join("\n"),
                        &last_id,
                    ));
                }
                (bytes, expected)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn every_chunking_yields_the_same_events(
            (input, expected) in stream(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            prop_assert_eq!(&Parser::default().feed(&input).unwrap(), &expected);
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
            at.sort_unstable();
            let mut p = Parser::default();
            let mut got = Vec::new();
            let mut from = 0;
            for to in at.into_iter().chain([input.len()]) {
                p.feed_into(&input[from..to], &mut got).unwrap();
                from = to;
            }
            prop_assert_eq!(&got, &expected);
            let mut p = Parser::default();
            let mut bytewise = Vec::new();
            for b in &input {
                p.feed_into(std::slice::from_ref(b), &mut bytewise).unwrap();
            }
            prop_assert_eq!(&bytewise, &expected);
        }
    }
}
