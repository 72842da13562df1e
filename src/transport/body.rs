//! Request bodies: [`Body`] is empty, JSON bytes, or a multipart form built from parts
//! whose sources are opened again for every attempt (a file path, or shared bytes), so a
//! retry re-streams the file instead of replaying a copy held in memory.
//!
//! Every body has a known length, so the request carries `Content-Length` (some servers
//! refuse chunked uploads). A file is read in 64 KiB chunks while the request is sent;
//! its length is taken when the body is built and checked again when it is re-opened, so
//! a file that changed between attempts is an error, not a silently different upload.
//!
//! A form may carry a [`ProgressHook`]: the opened stream tells it how far the attempt
//! got (0 when an attempt opens the body, then after each chunk). The hook must be cheap
//! and must not call foreign code: it runs inside the HTTP connection's task, which may
//! still be polling after the caller gave up; the feature that set it decides what to
//! report and when.

// Only uploads build forms; without the `upload` feature the form half is unused (it
// stays compiled: the transport matches on every body kind).
#![cfg_attr(not(feature = "upload"), allow(dead_code))]

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, ReadBuf};

use crate::error::{Error, Result};

/// How much of a file is read per chunk while streaming it.
const FILE_CHUNK: usize = 64 * 1024;

/// A request body. Cheap to clone: bytes are shared and files are re-opened per attempt.
#[derive(Clone, Default)]
pub enum Body {
    /// No body.
    #[default]
    Empty,
    /// JSON text, sent as `application/json`.
    Json(Bytes),
    /// A `multipart/form-data` form.
    Multipart(Arc<Multipart>),
}

impl std::fmt::Debug for Body {
    // Bodies can hold tokens (a refresh request) or user content: only their size shows.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Empty => f.write_str("Empty"),
            Body::Json(b) => write!(f, "Json(<{} bytes>)", b.len()),
            Body::Multipart(m) => write!(f, "Multipart(<{} bytes>)", m.len),
        }
    }
}

impl Body {
    /// A JSON body from serialized text.
    pub fn json(text: impl Into<Bytes>) -> Body {
        Body::Json(text.into())
    }

    /// The `Content-Type` this body is sent with, if any.
    pub fn content_type(&self) -> Option<String> {
        match self {
            Body::Empty => None,
            Body::Json(_) => Some("application/json".into()),
            Body::Multipart(m) => Some(format!("multipart/form-data; boundary={}", m.boundary)),
        }
    }

    /// The exact length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Json(b) => b.len() as u64,
            Body::Multipart(m) => m.len,
        }
    }

    /// Opens the body for one attempt: files are opened (and their lengths checked) here,
    /// before anything is sent.
    pub(crate) async fn open(&self) -> Result<Option<reqwest::Body>> {
        Ok(match self {
            Body::Empty => None,
            Body::Json(b) => Some(reqwest::Body::from(b.clone())),
            Body::Multipart(m) => Some(reqwest::Body::wrap(m.open().await?)),
        })
    }
}

/// Where a part's bytes come from.
#[derive(Clone)]
pub enum Source {
    /// Bytes in memory (shared, not copied per attempt).
    Bytes(Bytes),
    /// A file, opened and streamed for each attempt.
    File(PathBuf),
}

/// One field of a multipart form.
#[derive(Clone)]
pub struct Part {
    /// The form field name.
    pub name: String,
    /// The `filename` of a file part.
    pub filename: Option<String>,
    /// The part's `Content-Type`.
    pub content_type: Option<String>,
    /// The part's content.
    pub source: Source,
}

/// Told `(sent, total)` bytes of one attempt: `sent == 0` when an attempt opens the body,
/// then after every chunk handed to the connection.
pub type ProgressHook = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// A multipart form whose layout (and so length) is fixed when it is built.
pub struct Multipart {
    boundary: String,
    segments: Vec<Segment>,
    len: u64,
    progress: Option<ProgressHook>,
}

enum Segment {
    Bytes(Bytes),
    File { path: PathBuf, len: u64 },
}

/// Header values go into the form as they are: refuse what would break its framing.
fn check_header_text(what: &str, v: &str) -> Result<()> {
    if v.chars().any(|c| c.is_control() || c == '"') {
        return Err(Error::InvalidInput(format!(
            "multipart {what} {v:?} has quotes or control characters"
        )));
    }
    Ok(())
}

fn file_len(path: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::InvalidInput(format!("cannot read {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(Error::InvalidInput(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    Ok(meta.len())
}

impl Multipart {
    /// Lays out the form. File parts must exist now (their length goes into
    /// `Content-Length`); a missing file is `InvalidInput` naming it.
    pub fn new(parts: Vec<Part>) -> Result<Multipart> {
        let boundary = format!("tether-{}", uuid::Uuid::new_v4().simple());
        let mut segments = Vec::with_capacity(parts.len() * 3 + 1);
        for p in parts {
            check_header_text("field name", &p.name)?;
            let mut head = format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"",
                p.name
            );
            if let Some(f) = &p.filename {
                check_header_text("filename", f)?;
                head.push_str(&format!("; filename=\"{f}\""));
            }
            head.push_str("\r\n");
            if let Some(ct) = &p.content_type {
                check_header_text("content type", ct)?;
                head.push_str(&format!("Content-Type: {ct}\r\n"));
            }
            head.push_str("\r\n");
            segments.push(Segment::Bytes(head.into()));
            segments.push(match p.source {
                Source::Bytes(b) => Segment::Bytes(b),
                Source::File(path) => Segment::File {
                    len: file_len(&path)?,
                    path,
                },
            });
            segments.push(Segment::Bytes(Bytes::from_static(b"\r\n")));
        }
        segments.push(Segment::Bytes(format!("--{boundary}--\r\n").into()));
        let len = segments
            .iter()
            .map(|s| match s {
                Segment::Bytes(b) => b.len() as u64,
                Segment::File { len, .. } => *len,
            })
            .sum();
        Ok(Multipart {
            boundary,
            segments,
            len,
            progress: None,
        })
    }

    /// Sets the hook every opened stream of this form reports its progress to.
    pub fn with_progress(mut self, hook: ProgressHook) -> Multipart {
        self.progress = Some(hook);
        self
    }

    async fn open(&self) -> Result<OpenForm> {
        let mut open = Vec::with_capacity(self.segments.len());
        for s in &self.segments {
            open.push(match s {
                Segment::Bytes(b) => Open::Bytes(b.clone()),
                Segment::File { path, len } => {
                    let file = tokio::fs::File::open(path).await.map_err(|e| {
                        Error::InvalidInput(format!("cannot open {}: {e}", path.display()))
                    })?;
                    let now = file
                        .metadata()
                        .await
                        .map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display())))?
                        .len();
                    if now != *len {
                        return Err(Error::InvalidInput(format!(
                            "{} changed size while being uploaded",
                            path.display()
                        )));
                    }
                    Open::File {
                        file,
                        left: *len,
                        buf: BytesMut::new(),
                    }
                }
            });
        }
        open.reverse();
        if let Some(hook) = &self.progress {
            hook(0, self.len);
        }
        Ok(OpenForm {
            segments: open,
            left: self.len,
            total: self.len,
            progress: self.progress.clone(),
        })
    }
}

enum Open {
    Bytes(Bytes),
    File {
        file: tokio::fs::File,
        left: u64,
        buf: BytesMut,
    },
}

/// One attempt's stream of the form (segments in reverse, popped from the end).
struct OpenForm {
    segments: Vec<Open>,
    left: u64,
    total: u64,
    progress: Option<ProgressHook>,
}

impl OpenForm {
    /// Counts a chunk handed on and tells the hook.
    fn sent(&mut self, n: usize) {
        self.left = self.left.saturating_sub(n as u64);
        if let Some(hook) = &self.progress {
            hook(self.total - self.left, self.total);
        }
    }
}

impl http_body::Body for OpenForm {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        loop {
            let Some(seg) = this.segments.last_mut() else {
                return Poll::Ready(None);
            };
            match seg {
                Open::Bytes(b) => {
                    let b = std::mem::take(b);
                    this.segments.pop();
                    if b.is_empty() {
                        continue;
                    }
                    this.sent(b.len());
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                Open::File { left: 0, .. } => {
                    this.segments.pop();
                }
                Open::File { file, left, buf } => {
                    let want = (*left).min(FILE_CHUNK as u64) as usize;
                    buf.resize(want, 0);
                    let mut rb = ReadBuf::new(&mut buf[..]);
                    match Pin::new(file).poll_read(cx, &mut rb) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e))),
                        Poll::Ready(Ok(())) => {
                            let n = rb.filled().len();
                            if n == 0 {
                                return Poll::Ready(Some(Err(std::io::Error::new(
                                    std::io::ErrorKind::UnexpectedEof,
                                    "file shrank while being uploaded",
                                ))));
                            }
                            *left -= n as u64;
                            buf.truncate(n);
                            let chunk = buf.split().freeze();
                            this.sent(n);
                            return Poll::Ready(Some(Ok(Frame::data(chunk))));
                        }
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0 && self.segments.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn streams_a_file_form_with_its_exact_length_each_time_it_is_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("photo.jpg");
        let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let form = Multipart::new(vec![
            Part {
                name: "options".into(),
                filename: None,
                content_type: Some("application/json".into()),
                source: Source::Bytes(Bytes::from_static(b"{\"min_score\":0.5}")),
            },
            Part {
                name: "image".into(),
                filename: Some("photo.jpg".into()),
                content_type: Some("image/jpeg".into()),
                source: Source::File(path.clone()),
            },
        ])
        .unwrap();
        for _ in 0..2 {
            let bytes = form
                .open()
                .await
                .unwrap()
                .collect()
                .await
                .unwrap()
                .to_bytes();
            assert_eq!(bytes.len() as u64, form.len);
            let needle = &content[..];
            assert!(bytes.windows(needle.len()).any(|w| w == needle));
            let text = String::from_utf8_lossy(&bytes);
            assert!(text.starts_with(&format!("--{}\r\n", form.boundary)));
            assert!(text.ends_with(&format!("--{}--\r\n", form.boundary)));
            assert!(text.contains(
                "name=\"image\"; filename=\"photo.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
            ));
        }
        std::fs::write(&path, b"shorter").unwrap();
        assert!(
            matches!(form.open().await, Err(Error::InvalidInput(m)) if m.contains("changed size"))
        );
        std::fs::remove_file(&path).unwrap();
        assert!(
            matches!(form.open().await, Err(Error::InvalidInput(m)) if m.contains("photo.jpg"))
        );
    }

    #[tokio::test]
    async fn the_progress_hook_sees_each_attempt_from_zero_to_the_total() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.bin");
        std::fs::write(&path, vec![7u8; 300_000]).unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        let form = Multipart::new(vec![Part {
            name: "image".into(),
            filename: Some("big.bin".into()),
            content_type: None,
            source: Source::File(path),
        }])
        .unwrap()
        .with_progress(Arc::new(move |sent, total| {
            s.lock().unwrap().push((sent, total))
        }));
        for attempt in 0..2 {
            seen.lock().unwrap().clear();
            form.open().await.unwrap().collect().await.unwrap();
            let calls = seen.lock().unwrap().clone();
            assert_eq!(calls.first(), Some(&(0, form.len)), "attempt {attempt}");
            assert_eq!(calls.last(), Some(&(form.len, form.len)));
            assert!(calls.windows(2).all(|w| w[0].0 <= w[1].0));
            // Bounded chunks: a 300 kB file takes several.
            assert!(calls.len() >= 6, "{calls:?}");
        }
    }

    #[test]
    fn refuses_missing_files_and_header_injection() {
        let part = |name: &str, source| Part {
            name: name.into(),
            filename: None,
            content_type: None,
            source,
        };
        assert!(matches!(
            Multipart::new(vec![part("f", Source::File("/no/such/file".into()))]),
            Err(Error::InvalidInput(m)) if m.contains("/no/such/file")
        ));
        assert!(Multipart::new(vec![part("a\"\r\nX: y", Source::Bytes(Bytes::new()))]).is_err());
        let b = Body::json("{\"refresh_token\":\"secret\"}");
        assert_eq!(format!("{b:?}"), "Json(<26 bytes>)");
    }
}
