//! Transport: the one `reqwest` client, one HTTP attempt at a time, with the contract's
//! fixed headers, the first-byte / idle / total deadlines, the chunk reader that capped
//! body reads and streams share, the server clock, and decoding of the contract's error
//! bodies. No auth, no retries: those live on the floors above.
//!
//! [`Request`] is the one request type from the api floor down: the api floor fills in
//! the idempotency key, each attempt adds the bearer token it was given.

mod body;
mod clock;
mod tls;

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE,
    USER_AGENT,
};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tokio::time::Instant;
use url::Url;

#[cfg_attr(not(feature = "upload"), allow(unused_imports))]
pub use body::{Body, Multipart, Part, ProgressHook, Source};
pub use clock::ServerClock;

use crate::config::ClientConfig;
use crate::error::{Error, HttpFailure, NetworkFailure, Result, TimeoutKind};
use crate::quota::Quota;

/// Error bodies are small; a huge one is read only this far.
const ERROR_BODY_CAP: u64 = 64 * 1024;

/// One logical request, as every floor from the api down sees it. Its `Debug` shows the
/// body's size only (a refresh body carries a token).
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// Path under `/api/v1/`, e.g. `auth/refresh`.
    pub path: String,
    pub body: Body,
    /// Whether the session's access token is sent (and refreshed as needed).
    pub authenticated: bool,
    /// The `Idempotency-Key`: supplied by the caller (so it can be stored before the first
    /// attempt) or minted by the api floor for a POST. The same for every retry.
    pub idempotency_key: Option<String>,
}

impl Request {
    /// An authenticated request without a body.
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Request {
            method,
            path: path.into(),
            body: Body::Empty,
            authenticated: true,
            idempotency_key: None,
        }
    }

    /// An authenticated POST with a JSON body.
    pub fn post_json(path: impl Into<String>, json: impl Into<Bytes>) -> Self {
        Request::new(Method::POST, path).with_body(Body::json(json))
    }

    pub fn with_body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    pub fn unauthenticated(mut self) -> Self {
        self.authenticated = false;
        self
    }

    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Whether sending this request twice has the effect of sending it once: an
    /// idempotent method, or a key the server deduplicates on.
    pub fn is_replay_safe(&self) -> bool {
        self.idempotency_key.is_some()
            || matches!(
                self.method,
                Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
            )
    }
}

pub struct Transport {
    client: reqwest::Client,
    api_root: Url,
    user_agent: HeaderValue,
    client_id: HeaderValue,
    first_byte: Duration,
    idle: Duration,
    pub clock: std::sync::Arc<ServerClock>,
    /// Told of each change of the server-clock offset (the facade persists it).
    on_clock_change: std::sync::OnceLock<Box<dyn Fn(i64) + Send + Sync>>,
}

impl Transport {
    pub fn new(config: &ClientConfig) -> Result<Self> {
        Self::with_roots(config, &[])
    }

    /// Like `new`, also trusting `extra_roots` (the loopback TLS tests' own CA; no app
    /// build passes any).
    pub(crate) fn with_roots(
        config: &ClientConfig,
        extra_roots: &[rustls::pki_types::CertificateDer<'static>],
    ) -> Result<Self> {
        let base = config.validate()?;
        let api_root = Url::parse(&format!("{}/api/v1/", base.as_str().trim_end_matches('/')))
            .map_err(|e| Error::Config(format!("base_url: {e}")))?;
        let mut ua = format!(
            "tether/{} ({})",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS
        );
        if let Some(s) = config
            .user_agent_suffix
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        {
            ua.push(' ');
            ua.push_str(s.trim());
        }
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout())
            // Redirects would carry requests (and their bodies) somewhere the config did
            // not name; the contract never redirects.
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .use_preconfigured_tls(tls::client_config(extra_roots)?)
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Transport {
            client,
            api_root,
            user_agent: HeaderValue::from_str(&ua).map_err(|_| {
                Error::Config("user_agent_suffix is not a valid header value".into())
            })?,
            client_id: HeaderValue::from_str(config.client_id.trim())
                .map_err(|_| Error::Config("client_id is not a valid header value".into()))?,
            first_byte: Duration::from_millis(config.timeouts.first_byte_ms.into()),
            idle: Duration::from_millis(config.timeouts.idle_ms.into()),
            clock: std::sync::Arc::new(ServerClock::default()),
            on_clock_change: std::sync::OnceLock::new(),
        })
    }

    pub fn on_clock_change(&self, hook: impl Fn(i64) + Send + Sync + 'static) {
        let _ = self.on_clock_change.set(Box::new(hook));
    }

    /// Resolves a path under `/api/v1/`. Absolute URLs, `..` and empty paths are refused,
    /// so a request can never leave the configured backend.
    pub fn url(&self, path: &str) -> Result<Url> {
        let p = path.trim_start_matches('/');
        if p.is_empty()
            || p.contains("..")
            || p.contains("://")
            || p.starts_with('/')
            || p.chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '\\' || c == '#')
        {
            return Err(Error::InvalidInput(format!("invalid API path {path:?}")));
        }
        let url = self
            .api_root
            .join(p)
            .map_err(|e| Error::InvalidInput(format!("invalid API path {path:?}: {e}")))?;
        if !url.as_str().starts_with(self.api_root.as_str()) {
            return Err(Error::InvalidInput(format!("invalid API path {path:?}")));
        }
        Ok(url)
    }

    /// Sends one attempt (with `bearer` as its access token, if any) and waits for the
    /// response head (any status), within the first-byte timeout and the caller's
    /// deadline. Learns the server clock from it.
    pub async fn send(
        &self,
        req: &Request,
        bearer: Option<&str>,
        deadline: Instant,
    ) -> Result<reqwest::Response> {
        // Built in place (not through `RequestBuilder`, which moves the whole request at
        // every header), with header names made once.
        const X_CLIENT_ID: HeaderName = HeaderName::from_static("x-client-id");
        const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
        let mut request = reqwest::Request::new(req.method.clone(), self.url(&req.path)?);
        let headers = request.headers_mut();
        headers.insert(USER_AGENT, self.user_agent.clone());
        headers.insert(X_CLIENT_ID, self.client_id.clone());
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(key) = &req.idempotency_key {
            let key = HeaderValue::from_str(key).map_err(|_| {
                Error::InvalidInput("the idempotency key is not a valid header value".into())
            })?;
            headers.insert(IDEMPOTENCY_KEY, key);
        }
        if let Some(token) = bearer {
            let mut v = HeaderValue::try_from(["Bearer ", token].concat())
                .map_err(|_| Error::Decode("access token is not a valid header value".into()))?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        if let Some(body) = req.body.open().await? {
            let headers = request.headers_mut();
            if let Some(ct) = req.body.content_type() {
                let ct = HeaderValue::try_from(ct)
                    .map_err(|_| Error::InvalidInput("invalid content type".into()))?;
                headers.insert(CONTENT_TYPE, ct);
            }
            headers.insert(CONTENT_LENGTH, HeaderValue::from(req.body.len()));
            *request.body_mut() = Some(body);
        }
        let (limit, kind) = bounded(self.first_byte, deadline, TimeoutKind::FirstByte);
        crate::runtime::deadline_armed();
        let resp = match tokio::time::timeout(limit, self.client.execute(request)).await {
            Err(_) => return Err(Error::Timeout(kind)),
            Ok(Err(e)) => return Err(classify(&e)),
            Ok(Ok(r)) => r,
        };
        if let Some(date) = resp
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
        {
            if let (Some(offset), Some(hook)) =
                (self.clock.observe_date(date), self.on_clock_change.get())
            {
                hook(offset);
            }
        }
        Ok(resp)
    }

    /// The body of `resp` as a stream of chunks, each due within the idle timeout.
    pub fn chunks(&self, resp: reqwest::Response) -> Chunks {
        Chunks {
            resp,
            idle: self.idle,
        }
    }

    /// Reads a whole body, refusing (without reading on) one larger than `cap` bytes.
    /// Each chunk must arrive within the idle timeout, all of it before the deadline.
    pub async fn read_body(
        &self,
        resp: reqwest::Response,
        cap: u64,
        deadline: Instant,
    ) -> Result<Vec<u8>> {
        if resp.content_length().is_some_and(|n| n > cap) {
            return Err(Error::ResponseTooLarge { limit: cap });
        }
        let mut buf = Vec::with_capacity(resp.content_length().unwrap_or(0).min(cap) as usize);
        let mut chunks = self.chunks(resp);
        while let Some(chunk) = chunks.next(Some(deadline)).await? {
            if buf.len() as u64 + chunk.len() as u64 > cap {
                return Err(Error::ResponseTooLarge { limit: cap });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    }

    /// Turns a non-2xx response into the internal error, decoding the contract's error
    /// body when there is one. A body that is not the contract's shape still gives a
    /// typed error from the status alone.
    pub async fn error_from(&self, resp: reqwest::Response, deadline: Instant) -> Error {
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = self
            .read_body(resp, ERROR_BODY_CAP, deadline)
            .await
            .unwrap_or_default();
        Error::Http(Box::new(decode_failure(status, &headers, &body)))
    }
}

/// A response body read chunk by chunk: the one loop that whole-body reads and streams
/// share. Each chunk must come within the idle timeout; a deadline, when given, caps the
/// whole read (a stream that keeps flowing has none).
pub struct Chunks {
    resp: reqwest::Response,
    idle: Duration,
}

impl Chunks {
    /// The next chunk, or `None` at the end of the body.
    pub async fn next(&mut self, deadline: Option<Instant>) -> Result<Option<Bytes>> {
        let (limit, kind) = match deadline {
            Some(d) => bounded(self.idle, d, TimeoutKind::Idle),
            None => (self.idle, TimeoutKind::Idle),
        };
        crate::runtime::deadline_armed();
        match tokio::time::timeout(limit, self.resp.chunk()).await {
            Err(_) => Err(Error::Timeout(kind)),
            Ok(Err(e)) => Err(classify(&e)),
            Ok(Ok(chunk)) => Ok(chunk),
        }
    }
}

/// The tighter of a per-step timeout and what is left before the deadline, and which one
/// it is (so the error names the deadline that actually ran out).
fn bounded(step: Duration, deadline: Instant, kind: TimeoutKind) -> (Duration, TimeoutKind) {
    let left = deadline.saturating_duration_since(Instant::now());
    if left < step {
        (left, TimeoutKind::Total)
    } else {
        (step, kind)
    }
}

fn classify(e: &reqwest::Error) -> Error {
    // reqwest's Display names the URL only; tokens never travel in URLs.
    let message = e.to_string();
    if e.is_connect() {
        if e.is_timeout() {
            return Error::Timeout(TimeoutKind::Connect);
        }
        return Error::Network {
            kind: NetworkFailure::Connect,
            message: with_root_cause(e, message),
        };
    }
    if e.is_timeout() {
        return Error::Timeout(TimeoutKind::FirstByte);
    }
    if e.is_body() || e.is_decode() {
        return Error::Network {
            kind: NetworkFailure::Body,
            message,
        };
    }
    Error::Network {
        kind: NetworkFailure::Interrupted,
        message,
    }
}

/// reqwest's message for a failed connection names only the URL; the innermost cause
/// says why (refused, DNS, or a TLS failure such as a server without TLS 1.3).
fn with_root_cause(e: &reqwest::Error, mut message: String) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let cause = cause.to_string();
    if !message.contains(&cause) {
        message.push_str(": ");
        message.push_str(&cause);
    }
    message
}

fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

pub fn request_id(headers: &HeaderMap) -> Option<String> {
    const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
    // `to_str` succeeds for visible ASCII only, so a byte cut is a char cut.
    let id = headers.get(X_REQUEST_ID)?.to_str().ok()?;
    Some(id[..id.len().min(128)].to_string())
}

/// `Retry-After` as delta-seconds or an HTTP date. A date is the server's time, so it is
/// read against the response's own `Date` (the device clock may be off by hours), and
/// against the device clock only when the response has no `Date`.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name| headers.get(name)?.to_str().ok().map(str::trim);
    let v = header(reqwest::header::RETRY_AFTER)?;
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    let now = header(reqwest::header::DATE)
        .and_then(|d| httpdate::parse_http_date(d).ok())
        .unwrap_or_else(std::time::SystemTime::now);
    Some(at.duration_since(now).unwrap_or_default())
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: Option<String>,
    message: Option<String>,
    retry_after: Option<u64>,
    plan_required: Option<String>,
    quota: Option<QuotaBody>,
    max_bytes: Option<u64>,
}

#[derive(Deserialize)]
struct QuotaBody {
    plan: Option<String>,
    limit: u64,
    remaining: u64,
    reset_at: Option<String>,
}

pub(crate) fn decode_failure(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> HttpFailure {
    let parsed = serde_json::from_slice::<ErrorEnvelope>(body)
        .ok()
        .map(|e| e.error);
    let default_code = match status.as_u16() {
        400 => "bad_request",
        401 => "invalid_token",
        402 => "quota_exceeded",
        403 => "forbidden",
        404 => "not_found",
        408 => "timeout",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        429 => "rate_limited",
        503 => "unavailable",
        s if s >= 500 => "internal",
        _ => "unknown",
    };
    let (code, message, body_retry, plan_required, quota, max_bytes) = match parsed {
        Some(b) => (
            b.code.filter(|c| !c.is_empty()),
            b.message,
            b.retry_after,
            b.plan_required,
            b.quota.map(|q| Quota {
                plan: q.plan.unwrap_or_default(),
                limit: saturate(q.limit),
                remaining: saturate(q.remaining),
                reset_at: q.reset_at,
            }),
            b.max_bytes,
        ),
        None => (None, None, None, None, None, None),
    };
    HttpFailure {
        status: status.as_u16(),
        code: code.unwrap_or_else(|| default_code.to_string()),
        message: message.unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("unexpected status")
                .to_string()
        }),
        retry_after: retry_after(headers).or(body_retry.map(Duration::from_secs)),
        plan_required,
        quota,
        max_bytes,
        request_id: request_id(headers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_id_is_kept_to_128_characters_and_only_when_it_is_text() {
        let mut h = HeaderMap::new();
        assert_eq!(request_id(&h), None);
        h.insert("x-request-id", "r".repeat(300).parse().unwrap());
        assert_eq!(request_id(&h), Some("r".repeat(128)));
        h.insert(
            "x-request-id",
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        assert_eq!(request_id(&h), None);
    }

    #[test]
    fn decodes_contract_error_bodies() {
        let body = br#"{"error":{"code":"quota_exceeded","message":"Free plan limit reached","plan_required":"pro",
            "quota":{"plan":"free","limit":50,"remaining":0,"reset_at":"2026-11-23T00:00:00Z"}}}"#;
        let mut h = HeaderMap::new();
        h.insert("x-request-id", "req-1".parse().unwrap());
        let f = decode_failure(StatusCode::PAYMENT_REQUIRED, &h, body);
        assert_eq!(f.code, "quota_exceeded");
        assert_eq!(f.plan_required.as_deref(), Some("pro"));
        assert_eq!(f.quota.as_ref().map(|q| q.remaining), Some(0));
        assert_eq!(f.request_id.as_deref(), Some("req-1"));
    }

    #[test]
    fn malformed_error_body_still_types_by_status() {
        for body in [
            &b"<html>502</html>"[..],
            b"{\"error\": 5}",
            b"",
            b"{\"error\":{\"code\":",
        ] {
            let f = decode_failure(StatusCode::BAD_GATEWAY, &HeaderMap::new(), body);
            assert_eq!((f.status, f.code.as_str()), (502, "internal"));
            assert!(f.is_transient());
        }
    }

    #[test]
    fn retry_after_header_wins_over_body() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        let f = decode_failure(
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            br#"{"error":{"code":"rate_limited","message":"slow down","retry_after":99}}"#,
        );
        assert_eq!(f.retry_after, Some(Duration::from_secs(7)));
        let f = decode_failure(
            StatusCode::TOO_MANY_REQUESTS,
            &HeaderMap::new(),
            br#"{"error":{"code":"rate_limited","message":"slow down","retry_after":99}}"#,
        );
        assert_eq!(f.retry_after, Some(Duration::from_secs(99)));
    }

    #[test]
    fn an_http_date_retry_after_is_read_against_the_servers_date() {
        // The server's clock is a day ahead of this device: only its own `Date` tells
        // that the retry is 120 s away.
        let server_now = std::time::SystemTime::now() + Duration::from_secs(86_400);
        let mut h = HeaderMap::new();
        h.insert("date", httpdate::fmt_http_date(server_now).parse().unwrap());
        h.insert(
            "retry-after",
            httpdate::fmt_http_date(server_now + Duration::from_secs(120))
                .parse()
                .unwrap(),
        );
        let f = decode_failure(StatusCode::SERVICE_UNAVAILABLE, &h, b"");
        assert_eq!(f.retry_after, Some(Duration::from_secs(120)));
    }
}
