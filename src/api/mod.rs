//! The API floor: every backend request goes through [`Api::send`], which mints the
//! `Idempotency-Key` once per logical request, keeps the total deadline, asks auth for a
//! fresh token on each attempt, refreshes once after `401 invalid_token`, retries what
//! the contract calls transient (with the same key), reports quota headers to the
//! observer, and maps every failure to the internal error once.

mod backoff;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use tokio::time::Instant;

use crate::auth::Auth;
use crate::config::RetryPolicy;
use crate::error::{Error, Result};
use crate::quota::{self, QuotaObserver};
use crate::transport::{request_id, Outgoing, Transport};

/// One logical request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// Path under `/api/v1/`.
    pub path: String,
    pub json_body: Option<Bytes>,
    pub authenticated: bool,
}

impl Request {
    pub fn post_json(path: &str, body: impl Into<Bytes>) -> Self {
        Request {
            method: Method::POST,
            path: path.into(),
            json_body: Some(body.into()),
            authenticated: true,
        }
    }

    pub fn unauthenticated(mut self) -> Self {
        self.authenticated = false;
        self
    }
}

/// A 2xx response, its body read (within the cap).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub request_id: Option<String>,
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

    pub async fn send(&self, req: Request) -> Result<Reply> {
        let deadline = Instant::now() + self.total;
        // POSTs spend quota: one key for the logical request, reused by every retry.
        let key = (req.method == Method::POST).then(|| uuid::Uuid::new_v4().to_string());
        let mut attempt: u32 = 0;
        let mut refreshed = false;
        loop {
            attempt += 1;
            let (mut err, bearer) = match self.attempt(&req, key.as_deref(), deadline).await {
                Ok(reply) => return Ok(reply),
                Err(failure) => failure,
            };
            if let (Error::Http(f), Some(token)) = (&err, &bearer) {
                if f.status == 401 {
                    if f.code == "session_revoked" {
                        self.auth.revoked().await;
                        return Err(Error::SignedOut);
                    }
                    if !refreshed {
                        tracing::debug!(target: "tether::api", path = %req.path, "token rejected; refreshing once");
                        match self.auth.refresh_rejected(token, deadline).await {
                            Ok(_) => {
                                refreshed = true;
                                attempt -= 1;
                                continue;
                            }
                            // A refresh that failed transiently is retried like any attempt.
                            Err(e) => err = e,
                        }
                    }
                }
            }
            if !err.is_transient() || attempt >= self.retry.max_attempts {
                return Err(err);
            }
            let wait = match err.retry_after() {
                Some(hint) if hint > Duration::from_secs(self.retry.max_retry_after_s.into()) => {
                    return Err(err)
                }
                Some(hint) => hint,
                None => backoff::full_jitter(&self.retry, attempt),
            };
            if Instant::now() + wait >= deadline {
                return Err(err);
            }
            tracing::warn!(
                target: "tether::api",
                path = %req.path, attempt, wait_ms = wait.as_millis() as u64, error = %err,
                "transient failure; retrying with the same idempotency key"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt. On failure, also returns the token it used (to refresh after a 401).
    async fn attempt(
        &self,
        req: &Request,
        key: Option<&str>,
        deadline: Instant,
    ) -> Result<Reply, (Error, Option<String>)> {
        let bearer = if req.authenticated {
            Some(
                self.auth
                    .access_token(deadline)
                    .await
                    .map_err(|e| (e, None))?,
            )
        } else {
            None
        };
        let out = Outgoing {
            method: req.method.clone(),
            path: req.path.clone(),
            json_body: req.json_body.clone(),
            idempotency_key: key.map(str::to_string),
            bearer,
        };
        let fail = |e: Error| (e, out.bearer.clone());
        let resp = self.transport.send(&out, deadline).await.map_err(fail)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let rid = request_id(&headers);
        tracing::debug!(
            target: "tether::api",
            method = %req.method, path = %req.path, status = status.as_u16(), request_id = rid.as_deref().unwrap_or("-"),
            "response"
        );
        if req.authenticated {
            if let Some(q) = quota::from_headers(&headers, self.transport.clock.now_s()) {
                self.quota.observe(q);
            }
        }
        if !status.is_success() {
            return Err(fail(self.transport.error_from(resp, deadline).await));
        }
        let body = self
            .transport
            .read_body(resp, self.max_body, deadline)
            .await
            .map_err(fail)?;
        Ok(Reply {
            status: status.as_u16(),
            body,
            request_id: rid,
        })
    }
}
