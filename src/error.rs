//! Errors: the rich internal [`Error`] every module returns, the public [`TetherError`]
//! callers act on, and the one place that maps the first onto the second.
//!
//! Internal errors keep detail useful for logs and retry decisions (which timeout fired,
//! whether a connection failed before the request was sent). The public enum has one
//! variant per thing an app does differently. No message here ever contains a token:
//! messages come from our own text, from server error bodies, or from transport errors
//! whose `Display` names only the URL (tokens never travel in URLs).

use std::time::Duration;

use crate::quota::Quota;

/// Why a network attempt failed, as far as the retry policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkFailure {
    /// The TCP/TLS connection could not be made: the request never left.
    Connect,
    /// The connection broke after the request was (maybe) sent, before a full response.
    Interrupted,
    /// The response body broke off mid-way.
    Body,
}

/// Which of the configured deadlines ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    Connect,
    FirstByte,
    Idle,
    Total,
}

/// What a non-2xx response said, decoded from the contract's error body.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpFailure {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub retry_after: Option<Duration>,
    pub plan_required: Option<String>,
    pub quota: Option<Quota>,
    pub max_bytes: Option<u64>,
    pub request_id: Option<String>,
}

impl HttpFailure {
    /// Statuses the contract calls transient: retry with backoff and the same key.
    pub fn is_transient(&self) -> bool {
        matches!(self.status, 408 | 429 | 500 | 502 | 503 | 504)
    }
}

/// The internal error. Every module below the facade returns this. `Clone`, so one
/// shared outcome (a refresh) can be handed to every caller that waited for it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("network error ({kind:?}): {message}")]
    Network {
        kind: NetworkFailure,
        message: String,
    },
    #[error("{0:?} timeout")]
    Timeout(TimeoutKind),
    #[error("cancelled")]
    Cancelled,
    #[error("signed out")]
    SignedOut,
    #[error("HTTP {} {}: {}", .0.status, .0.code, .0.message)]
    Http(Box<HttpFailure>),
    #[error("response body larger than {limit} bytes")]
    ResponseTooLarge { limit: u64 },
    #[error("could not decode response: {0}")]
    Decode(String),
    #[error("storage error: {0}")]
    Storage(String),
    /// Refused on the device, before any byte was sent (an image that is not one of the
    /// contract's types, or is corrupt).
    #[error("unsupported media: {0}")]
    UnsupportedMedia(String),
    /// Refused on the device, before any byte was sent: over the limit even prepared.
    #[error("payload over {max_bytes} bytes")]
    PayloadTooLarge { max_bytes: u64 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the contract lets the same logical request be sent again (same key).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Network { .. }
            | Error::Timeout(TimeoutKind::Connect | TimeoutKind::FirstByte) => true,
            Error::Http(f) => f.is_transient(),
            _ => false,
        }
    }

    /// Whether the request may have reached the server: everything but a connection that
    /// could not be made. Only replay-safe requests are retried after such a failure.
    pub fn may_have_reached_server(&self) -> bool {
        !matches!(
            self,
            Error::Network {
                kind: NetworkFailure::Connect,
                ..
            } | Error::Timeout(TimeoutKind::Connect)
        )
    }

    /// The server's `Retry-After` hint, if it gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Http(f) => f.retry_after,
            _ => None,
        }
    }

    pub fn decode(what: impl std::fmt::Display) -> Self {
        Error::Decode(what.to_string())
    }
}

/// The error every exported method returns. One variant per thing a caller acts on.
///
/// Human-readable text is in `detail` (not `message`: UniFFI's Kotlin exceptions cannot
/// carry a field of that name).
///
/// `request_id` is the backend's `X-Request-ID` when the server answered: quote it in
/// bug reports, it finds the request in the backend's logs.
#[derive(Debug, Clone, PartialEq, thiserror::Error, uniffi::Error)]
pub enum TetherError {
    /// The network is unreachable or the connection broke. Retryable later.
    #[error("network error: {detail}")]
    Network {
        /// What failed, for logs and bug reports.
        detail: String,
    },
    /// A configured deadline (connect, first byte, idle, total) ran out. Retryable.
    #[error("timed out: {detail}")]
    Timeout {
        /// Which deadline, by its `ClientConfig` field name.
        detail: String,
    },
    /// The call was cancelled through its `CancelHandle` or by dropping its future.
    #[error("cancelled")]
    Cancelled,
    /// The server refused the credentials even after a refresh. Retry later or sign in again.
    #[error("unauthorized: {detail}")]
    Unauthorized {
        /// The server's message, for logs and bug reports.
        detail: String,
        /// The backend's `X-Request-ID`, when it answered.
        request_id: Option<String>,
    },
    /// There is no session (never signed in, signed out, or the session was revoked).
    /// Route the user to sign-in.
    #[error("signed out")]
    SignedOut,
    /// The plan's limit is reached: show the paywall. `plan_required` names the plan that
    /// lifts it; `quota` is the state the server reported with the refusal.
    #[error("plan required: {}", plan_required.as_deref().unwrap_or("upgrade"))]
    PlanRequired {
        /// The plan that lifts the limit, e.g. `"pro"`.
        plan_required: Option<String>,
        /// The quota the server reported with the refusal.
        quota: Option<Quota>,
        /// The backend's `X-Request-ID`.
        request_id: Option<String>,
    },
    /// Authenticated but not allowed. Do not retry. When the feature needs another plan,
    /// `plan_required` names it: route the user to an upgrade screen (no paywall is
    /// raised: only running out of quota does that).
    #[error("forbidden: {detail}")]
    Forbidden {
        /// The server's message, for logs and bug reports.
        detail: String,
        /// The plan that would allow it, when the backend named one.
        plan_required: Option<String>,
        /// The backend's `X-Request-ID`, when it answered.
        request_id: Option<String>,
    },
    /// Too many requests, and retrying within the call's deadline was not possible.
    /// Wait `retry_after_s` seconds before trying again.
    #[error("rate limited (retry after {retry_after_s:?} s)")]
    RateLimited {
        /// How long to wait, when the server said.
        retry_after_s: Option<u32>,
        /// The backend's `X-Request-ID`.
        request_id: Option<String>,
    },
    /// The request body is over the server's limit. Do not retry as is.
    #[error("payload too large (max {max_bytes:?} bytes)")]
    PayloadTooLarge {
        /// The server's limit, when it said.
        max_bytes: Option<u32>,
        /// The backend's `X-Request-ID`.
        request_id: Option<String>,
    },
    /// The response body was over the client's cap (`ClientConfig::max_response_bytes`);
    /// it was not read into memory.
    #[error("response too large (over {limit_bytes} bytes)")]
    ResponseTooLarge {
        /// The cap that was exceeded.
        limit_bytes: u32,
    },
    /// The media type is not accepted (image format). Do not retry as is.
    #[error("unsupported media type: {detail}")]
    UnsupportedMedia {
        /// The server's message, for logs and bug reports.
        detail: String,
        /// The backend's `X-Request-ID`, when it answered.
        request_id: Option<String>,
    },
    /// The request was rejected as malformed or invalid (400, 404, 422, or checked locally).
    /// A bug or bad user input: do not retry as is.
    #[error("invalid input ({code}): {detail}")]
    InvalidInput {
        /// The contract's error code (`bad_request`, `invalid_input`, ...).
        code: String,
        /// The server's message, for logs and bug reports.
        detail: String,
        /// The backend's `X-Request-ID`, when it answered.
        request_id: Option<String>,
    },
    /// The server failed (5xx, or a status the contract does not name) and retries ran out.
    #[error("server error {status} ({code}): {detail}")]
    Server {
        /// The HTTP status.
        status: u16,
        /// The contract's error code (`internal`, `upstream`, ...).
        code: String,
        /// The server's message, for logs and bug reports.
        detail: String,
        /// The backend's `X-Request-ID`, when it answered.
        request_id: Option<String>,
    },
    /// Local storage (token store, database) failed. The session is kept; retry later.
    #[error("storage error: {detail}")]
    Storage {
        /// What failed, for logs and bug reports.
        detail: String,
    },
    /// A response could not be decoded (malformed JSON, wrong shape, truncated body).
    #[error("decode error: {detail}")]
    Decode {
        /// What could not be decoded, for logs and bug reports.
        detail: String,
    },
    /// The configuration is invalid. Raised at construction.
    #[error("configuration error: {detail}")]
    Config {
        /// Which field is wrong and why.
        detail: String,
    },
}

impl From<Error> for TetherError {
    fn from(e: Error) -> Self {
        match e {
            Error::Config(detail) => TetherError::Config { detail },
            Error::InvalidInput(detail) => TetherError::InvalidInput {
                code: "invalid_input".into(),
                detail,
                request_id: None,
            },
            e @ Error::Network { .. } => TetherError::Network {
                detail: e.to_string(),
            },
            Error::Timeout(kind) => TetherError::Timeout {
                detail: match kind {
                    TimeoutKind::Connect => "could not connect within timeouts.connect_ms",
                    TimeoutKind::FirstByte => "no response within timeouts.first_byte_ms",
                    TimeoutKind::Idle => {
                        "the response went silent for longer than timeouts.idle_ms"
                    }
                    TimeoutKind::Total => "the call's deadline (timeouts.total_ms) ran out",
                }
                .to_string(),
            },
            Error::Cancelled => TetherError::Cancelled,
            Error::SignedOut => TetherError::SignedOut,
            Error::ResponseTooLarge { limit } => TetherError::ResponseTooLarge {
                limit_bytes: saturate(limit),
            },
            Error::Decode(detail) => TetherError::Decode { detail },
            Error::Storage(detail) => TetherError::Storage { detail },
            Error::Http(f) => from_http(*f),
            Error::UnsupportedMedia(detail) => TetherError::UnsupportedMedia {
                detail,
                request_id: None,
            },
            Error::PayloadTooLarge { max_bytes } => TetherError::PayloadTooLarge {
                max_bytes: Some(saturate(max_bytes)),
                request_id: None,
            },
        }
    }
}

fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn from_http(f: HttpFailure) -> TetherError {
    let HttpFailure {
        status,
        code,
        message: detail,
        retry_after,
        plan_required,
        quota,
        max_bytes,
        request_id,
    } = f;
    match status {
        401 => TetherError::Unauthorized { detail, request_id },
        402 => TetherError::PlanRequired {
            plan_required,
            quota,
            request_id,
        },
        403 => TetherError::Forbidden {
            detail,
            plan_required,
            request_id,
        },
        413 => TetherError::PayloadTooLarge {
            max_bytes: max_bytes.map(saturate),
            request_id,
        },
        415 => TetherError::UnsupportedMedia { detail, request_id },
        429 => TetherError::RateLimited {
            retry_after_s: retry_after.map(|d| saturate(d.as_secs())),
            request_id,
        },
        400 | 404 | 409 | 422 => TetherError::InvalidInput {
            code,
            detail,
            request_id,
        },
        _ => TetherError::Server {
            status,
            code,
            detail,
            request_id,
        },
    }
}
