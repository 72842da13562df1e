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
use crate::error::{Error, HttpFailure, Result};
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
        // An authenticated POST is metered (every one the contract has): with the
        // paywall up and nothing left, it fails here, without the network.
        if req.authenticated && req.method == Method::POST {
            if let Some((plan_required, quota)) = self.quota.refuse_metered() {
                tracing::debug!(target: "tether::api", path = %req.path, "paywall up: refused locally");
                return Err(Error::Http(Box::new(HttpFailure {
                    status: 402,
                    code: "quota_exceeded".into(),
                    message: "the plan's limit is reached (known locally; nothing was sent)".into(),
                    retry_after: None,
                    plan_required,
                    quota,
                    max_bytes: None,
                    request_id: None,
                })));
            }
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
            if let Error::Http(f) = &err {
                if f.status == 402 && req.authenticated {
                    self.quota.paywall(f.plan_required.clone(), f.quota.clone());
                }
            }
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
            .send(req, token.as_ref().map(|t| t.value()), deadline)
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use tether_test_server::{Fault, TestServer};

    use super::*;
    use crate::auth::{in_memory_token_store, AuthTiming};
    use crate::config::ClientConfig;
    use crate::paywall::Paywall;
    use crate::store::Store;
    use crate::transport::{Body, Multipart, Part, Source};

    async fn signed_in(server: &TestServer, dir: &tempfile::TempDir, max_body: u32) -> Api {
        let mut config = ClientConfig::new(server.url(), "test-app", dir.path().to_str().unwrap());
        config.timeouts.idle_ms = 300;
        config.retry.base_delay_ms = 10;
        config.retry.max_delay_ms = 50;
        let transport = Arc::new(Transport::new(&config).unwrap());
        let timing = AuthTiming {
            total: Duration::from_secs(10),
            retry: config.retry.clone(),
            skew_s: 60,
        };
        let auth = Arc::new(Auth::new(
            transport.clone(),
            in_memory_token_store(),
            timing,
        ));
        auth.restore().await.unwrap();
        auth.sign_in_anonymously(None).await.unwrap();
        let store = Store::open(dir.path()).unwrap();
        let quota = Paywall::restore(&store, transport.clock.clone(), true);
        let total = Duration::from_secs(10);
        Api::new(transport, auth, quota, config.retry, total, max_body.into())
    }

    #[tokio::test]
    async fn a_stream_has_no_total_cap_and_keeps_the_pipeline_before_its_head() {
        let server = TestServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let api = signed_in(&server, &dir, 64 * 1024).await;
        let big = 3 << 20;
        server.fault(
            "/api/v1/quota",
            Fault::HugeBody {
                bytes: big,
                chunked: true,
            },
        );
        let err = api
            .send(Request::new(Method::GET, "quota"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ResponseTooLarge { .. }), "{err:?}");

        // A 503 before the head is retried; then the body flows past the cap, chunk by chunk.
        server.fault(
            "/api/v1/quota",
            Fault::Status {
                status: 503,
                code: "unavailable",
                retry_after: None,
            },
        );
        server.fault(
            "/api/v1/quota",
            Fault::HugeBody {
                bytes: big,
                chunked: true,
            },
        );
        let mut stream = api
            .send_stream(Request::new(Method::GET, "quota"))
            .await
            .unwrap();
        assert_eq!(stream.status, 200);
        let (mut total, mut chunks) = (0, 0);
        while let Some(chunk) = stream.next().await.unwrap() {
            total += chunk.len();
            chunks += 1;
        }
        assert_eq!(total, big);
        assert!(chunks > 1);
        assert_eq!(server.count("/api/v1/quota"), 3);
    }

    #[tokio::test]
    async fn a_stream_that_goes_silent_hits_the_idle_deadline() {
        let server = TestServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let api = signed_in(&server, &dir, 1 << 20).await;
        server.fault("/api/v1/quota", Fault::StallBody(Duration::from_secs(3)));
        let mut stream = api
            .send_stream(Request::new(Method::GET, "quota"))
            .await
            .unwrap();
        assert!(stream.next().await.unwrap().is_some());
        let err = stream.next().await.unwrap_err();
        assert!(
            matches!(err, Error::Timeout(crate::error::TimeoutKind::Idle)),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_multipart_file_is_re_streamed_whole_on_a_retry_with_one_key() {
        let server = TestServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let api = signed_in(&server, &dir, 1 << 20).await;
        let path: PathBuf = dir.path().join("photo.bin");
        let content = "0123456789abcdef".repeat(20_000);
        std::fs::write(&path, &content).unwrap();
        let form = Multipart::new(vec![Part {
            name: "image".into(),
            filename: Some("photo.bin".into()),
            content_type: Some("application/octet-stream".into()),
            source: Source::File(path),
        }])
        .unwrap();
        server.fault("/api/v1/echo", Fault::Drop);
        let req = Request::new(Method::POST, "echo").with_body(Body::Multipart(Arc::new(form)));
        api.send(req).await.unwrap();
        let seen = server.requests_to("/api/v1/echo");
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].body, seen[1].body);
        assert!(seen[0].body.contains(&content));
        assert!(seen[0].idempotency_key.is_some());
        assert_eq!(seen[0].idempotency_key, seen[1].idempotency_key);
    }

    #[tokio::test]
    async fn a_callers_key_is_sent_on_every_attempt() {
        let server = TestServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let api = signed_in(&server, &dir, 1 << 20).await;
        server.fault(
            "/api/v1/jobs",
            Fault::Status {
                status: 503,
                code: "unavailable",
                retry_after: None,
            },
        );
        let req = Request::post_json("jobs", r#"{"kind":"transcribe","input":{}}"#)
            .with_key("stored-before-the-first-attempt");
        api.send(req).await.unwrap();
        assert_eq!(
            server.idempotency_keys("/api/v1/jobs"),
            vec![Some("stored-before-the-first-attempt".to_string()); 2]
        );
        assert_eq!(server.charges(), 1);
    }

    #[tokio::test]
    async fn a_late_revocation_of_an_older_session_does_not_sign_out_a_newer_one() {
        let server = TestServer::start().await;
        let dir = tempfile::tempdir().unwrap();
        let api = signed_in(&server, &dir, 1 << 20).await;
        let old = api
            .auth
            .token(Instant::now() + Duration::from_secs(5))
            .await
            .unwrap();
        let newer = api.auth.sign_in_anonymously(None).await.unwrap();
        api.auth.revoked(old.generation).await;
        assert_eq!(
            api.auth.state(),
            crate::auth::AuthState::SignedIn {
                user_id: newer.id,
                anonymous: true
            }
        );
        let current = api
            .auth
            .token(Instant::now() + Duration::from_secs(5))
            .await
            .unwrap();
        api.auth.revoked(current.generation).await;
        assert_eq!(api.auth.state(), crate::auth::AuthState::SignedOut);
    }
}
