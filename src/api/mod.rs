//! The API floor: every backend request goes through one pipeline, [`Api::send`] for a
//! whole body or [`Api::send_stream`] for a body read as it arrives. The pipeline keeps
//! the idempotency key for the logical request (the caller's, or one minted here for a
//! POST), the total deadline up to the response head, asks auth for a fresh token on each
//! attempt, refreshes once after `401 invalid_token`, retries what the contract calls
//! transient when sending again is safe (`crate::retry`), reports quota headers to the
//! observer, and maps every failure to the internal error once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use tokio::time::Instant;

use crate::auth::{Auth, Token};
use crate::config::RetryPolicy;
use crate::error::{Error, Result};
use crate::quota::{self, QuotaObserver};
use crate::retry;
use crate::transport::{request_id, Chunks, Request, Transport};

/// A 2xx response, its body read (within the cap).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub request_id: Option<String>,
}

#[allow(
    dead_code,
    reason = "the streaming seam: chat reads SSE through it (tested below)"
)]
/// A 2xx response whose body is read chunk by chunk as it arrives: each chunk within the
/// idle timeout, and no total cap on a stream that keeps flowing.
pub struct Stream {
    pub status: u16,
    pub request_id: Option<String>,
    chunks: Chunks,
}

#[allow(dead_code, reason = "the streaming seam (tested below)")]
impl Stream {
    /// The next chunk of the body, or `None` at its end.
    pub async fn next(&mut self) -> Result<Option<Bytes>> {
        self.chunks.next(None).await
    }
}

/// What an attempt reads past the head.
#[allow(dead_code, reason = "Stream is the streaming seam (tested below)")]
#[derive(Clone, Copy)]
enum Want {
    Body,
    Stream,
}

#[allow(dead_code, reason = "Stream is the streaming seam (tested below)")]
enum Got {
    Body(Vec<u8>),
    Stream(Chunks),
}

/// Why an attempt failed: the attempt's own failure (retry policy applies, with the token
/// it used for a 401), or a failure to even get a token (final: auth retried already).
enum Failure {
    Attempt(Error, Option<u64>),
    Final(Error),
}

pub struct Api {
    pub transport: Arc<Transport>,
    pub auth: Arc<Auth>,
    quota: Arc<dyn QuotaObserver>,
    retry: RetryPolicy,
    total: Duration,
    max_body: u64,
}

impl Api {
    pub fn new(
        transport: Arc<Transport>,
        auth: Arc<Auth>,
        quota: Arc<dyn QuotaObserver>,
        retry: RetryPolicy,
        total: Duration,
        max_body: u64,
    ) -> Self {
        Api {
            transport,
            auth,
            quota,
            retry,
            total,
            max_body,
        }
    }

    /// Sends `req` and reads its whole body (at most `max_response_bytes`), all within
    /// the total deadline.
    pub async fn send(&self, req: Request) -> Result<Reply> {
        let (status, request_id, got) = self.run(req, Want::Body).await?;
        match got {
            Got::Body(body) => Ok(Reply {
                status,
                body,
                request_id,
            }),
            Got::Stream(_) => Err(Error::decode("internal: a body was expected")),
        }
    }

    #[allow(
        dead_code,
        reason = "the streaming seam: chat reads SSE through it (tested below)"
    )]
    /// Sends `req` and returns its body as a stream once the head of a 2xx arrived. The
    /// total deadline covers attempts up to that head; retries happen only before it.
    pub async fn send_stream(&self, req: Request) -> Result<Stream> {
        let (status, request_id, got) = self.run(req, Want::Stream).await?;
        match got {
            Got::Stream(chunks) => Ok(Stream {
                status,
                request_id,
                chunks,
            }),
            Got::Body(_) => Err(Error::decode("internal: a stream was expected")),
        }
    }

    async fn run(&self, mut req: Request, want: Want) -> Result<(u16, Option<String>, Got)> {
        let deadline = Instant::now() + self.total;
        // POSTs spend quota: one key for the logical request, reused by every retry.
        if req.idempotency_key.is_none() && req.method == Method::POST {
            req.idempotency_key = Some(uuid::Uuid::new_v4().to_string());
        }
        let mut attempt: u32 = 0;
        let mut refreshed = false;
        loop {
            attempt += 1;
            let (err, generation) = match self.attempt(&req, want, deadline).await {
                Ok(done) => return Ok(done),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Attempt(e, generation)) => (e, generation),
            };
            if let (Error::Http(f), Some(generation)) = (&err, generation) {
                if f.status == 401 {
                    if f.code == "session_revoked" {
                        self.auth.revoked(generation).await;
                        return Err(Error::SignedOut);
                    }
                    if !refreshed {
                        tracing::debug!(target: "tether::api", path = %req.path, "token rejected; refreshing once");
                        // A failed refresh is final here: it retried on its own already.
                        self.auth.refresh_rejected(generation, deadline).await?;
                        refreshed = true;
                        attempt -= 1;
                        continue;
                    }
                }
            }
            let Some(wait) =
                retry::next_wait(&self.retry, attempt, &err, req.is_replay_safe(), deadline)
            else {
                return Err(err);
            };
            tracing::warn!(
                target: "tether::api",
                path = %req.path, attempt, wait_ms = wait.as_millis() as u64, error = %err,
                "transient failure; retrying with the same idempotency key"
            );
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(
        &self,
        req: &Request,
        want: Want,
        deadline: Instant,
    ) -> std::result::Result<(u16, Option<String>, Got), Failure> {
        let token: Option<Token> = if req.authenticated {
            Some(self.auth.token(deadline).await.map_err(Failure::Final)?)
        } else {
            None
        };
        let generation = token.as_ref().map(|t| t.generation);
        let fail = |e: Error| Failure::Attempt(e, generation);
        let resp = self
            .transport
            .send(req, token.as_ref().map(|t| t.value.as_str()), deadline)
            .await
            .map_err(fail)?;
        let status = resp.status();
        let rid = request_id(resp.headers());
        tracing::debug!(
            target: "tether::api",
            method = %req.method, path = %req.path, status = status.as_u16(), request_id = rid.as_deref().unwrap_or("-"),
            "response"
        );
        if req.authenticated {
            if let Some(q) = quota::from_headers(resp.headers(), self.transport.clock.now_s()) {
                self.quota.observe(q);
            }
        }
        if !status.is_success() {
            return Err(fail(self.transport.error_from(resp, deadline).await));
        }
        let got = match want {
            Want::Body => Got::Body(
                self.transport
                    .read_body(resp, self.max_body, deadline)
                    .await
                    .map_err(fail)?,
            ),
            Want::Stream => Got::Stream(self.transport.chunks(resp)),
        };
        Ok((status.as_u16(), rid, got))
    }
}
