//! The [`Fault`]s a test can queue for a path, and how one is applied to a request:
//! instead of the normal answer (a status, raw bytes, a huge, stalled or truncated body),
//! around it (a delay, no `Date`), or by closing the connection before or after the
//! request was handled.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::header::HeaderValue;
use hyper::Response;
use tokio::sync::mpsc;

use crate::http::{error_resp, full, status, Body};

/// Something to do instead of (or before) answering the next request to a path.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and the contract's error body.
    Status {
        status: u16,
        code: &'static str,
        retry_after: Option<u64>,
    },
    /// Read the request, then close the connection without a response.
    Drop,
    /// Handle the request (state changes happen), then close the connection without
    /// sending the response: the client cannot know whether it was processed.
    DropAfterHandling,
    /// Wait, then answer normally.
    Delay(Duration),
    /// Answer 200 with a JSON body of `bytes` bytes (with or without Content-Length).
    HugeBody { bytes: usize, chunked: bool },
    /// Answer with exactly these bytes.
    Raw {
        status: u16,
        content_type: &'static str,
        body: String,
    },
    /// Send the head and a first chunk, then go silent for this long.
    StallBody(Duration),
    /// Answer normally but without a `Date` header.
    NoDate,
    /// Promise a body (Content-Length) and break off half-way.
    TruncatedBody,
}

/// What becomes of a request once its fault (if any) was applied.
pub(crate) enum Outcome {
    /// Send this response; `date` says whether it gets a `Date` header.
    Respond {
        response: Response<Body>,
        date: bool,
    },
    /// Close the connection without answering (the reason goes to hyper, nowhere else).
    Close(&'static str),
}

/// Applies `fault` to one request; `answer` is the normal handling (state changes
/// included), run only by the arms that need it.
pub(crate) async fn apply(
    fault: Option<Fault>,
    answer: impl FnOnce() -> Response<Body>,
) -> Outcome {
    let respond = |response| Outcome::Respond {
        response,
        date: true,
    };
    match fault {
        None => respond(answer()),
        Some(Fault::Drop) => Outcome::Close("fault: connection dropped"),
        Some(Fault::DropAfterHandling) => {
            let _ = answer();
            Outcome::Close("fault: dropped after handling")
        }
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            respond(answer())
        }
        Some(Fault::NoDate) => {
            let mut response = answer();
            response.headers_mut().remove("date");
            Outcome::Respond {
                response,
                date: false,
            }
        }
        Some(Fault::Status {
            status,
            code,
            retry_after,
        }) => {
            let mut r = error_resp(status, code, "injected fault");
            if let Some(s) = retry_after {
                r.headers_mut().insert("retry-after", HeaderValue::from(s));
            }
            respond(r)
        }
        Some(Fault::HugeBody { bytes, chunked }) => {
            let body = if chunked {
                let (tx, rx) = mpsc::channel(4);
                tokio::spawn(async move {
                    let chunk = Bytes::from(vec![b' '; 64 * 1024]);
                    let mut sent = 0;
                    while sent < bytes {
                        let n = (bytes - sent).min(chunk.len());
                        if tx.send(chunk.slice(..n)).await.is_err() {
                            break;
                        }
                        sent += n;
                    }
                });
                ChannelBody(rx).boxed()
            } else {
                full(vec![b' '; bytes])
            };
            respond(with_type(Response::new(body), "application/json"))
        }
        Some(Fault::Raw {
            status: code,
            content_type,
            body,
        }) => {
            let mut r = Response::new(full(body));
            *r.status_mut() = status(code);
            respond(with_type(r, content_type))
        }
        Some(Fault::TruncatedBody) => {
            let (tx, rx) = mpsc::channel(1);
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from_static(b"{\"plan\":\"fr")).await;
            });
            let mut r = Response::new(ChannelBody(rx).boxed());
            r.headers_mut()
                .insert("content-length", HeaderValue::from(200u64));
            respond(with_type(r, "application/json"))
        }
        Some(Fault::StallBody(d)) => {
            let (tx, rx) = mpsc::channel(1);
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from_static(b"{\"partial\":")).await;
                tokio::time::sleep(d).await;
                let _ = tx.send(Bytes::from_static(b"true}")).await;
            });
            respond(Response::new(ChannelBody(rx).boxed()))
        }
    }
}

fn with_type(mut r: Response<Body>, content_type: &'static str) -> Response<Body> {
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    r
}

/// A body fed chunk by chunk from a channel (for chunked, stalled and truncated bodies).
pub(crate) struct ChannelBody(pub(crate) mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}
