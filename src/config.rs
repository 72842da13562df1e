//! Client configuration: the records an app fills in once, and their validation.
//!
//! Everything is checked in [`ClientConfig::validate`] at construction, so a bad URL or a
//! zero timeout is a `Config` error on the first line of the app, never a mystery later.

use std::time::Duration;

use url::Url;

use crate::error::{Error, Result};
use crate::logging::LogLevel;

/// Deadlines, in milliseconds. Zero is invalid for every one of them. (`u32` throughout
/// the public records: plain numbers in TypeScript, and 49 days of milliseconds is room
/// enough.)
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Timeouts {
    /// TCP + TLS connection set-up.
    #[uniffi(default = 10000)]
    pub connect_ms: u32,
    /// From sending a request until the response headers arrive. Longer than the
    /// backend's own deadline for a cold container (the contract's 2-3 s) by design.
    #[uniffi(default = 30000)]
    pub first_byte_ms: u32,
    /// The longest silence allowed between two chunks of a response body or stream.
    /// The contract's keep-alive comes every 15 s, so the default leaves room for one miss.
    #[uniffi(default = 35000)]
    pub idle_ms: u32,
    /// The whole logical request, every retry and backoff included.
    #[uniffi(default = 120000)]
    pub total_ms: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_ms: 10_000,
            first_byte_ms: 30_000,
            idle_ms: 35_000,
            total_ms: 120_000,
        }
    }
}

/// How transient failures (408, 429, 5xx, connection failures) are retried: exponential
/// backoff with full jitter, a server's `Retry-After` honoured up to a cap, never past
/// the total deadline.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct RetryPolicy {
    /// Attempts in all, the first included. 1 disables retries.
    #[uniffi(default = 4)]
    pub max_attempts: u32,
    /// The backoff ceiling of the first retry; doubled for each further one.
    #[uniffi(default = 250)]
    pub base_delay_ms: u32,
    /// The largest backoff ceiling.
    #[uniffi(default = 8000)]
    pub max_delay_ms: u32,
    /// The longest `Retry-After` the client will wait inside one call. A longer hint
    /// ends the call with the error (e.g. `RateLimited { retry_after_s }`) instead.
    #[uniffi(default = 30)]
    pub max_retry_after_s: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay_ms: 250,
            max_delay_ms: 8_000,
            max_retry_after_s: 30,
        }
    }
}

/// Everything a [`crate::TetherClient`] needs, given once for the app's lifetime.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ClientConfig {
    /// The backend's origin, e.g. `https://my-backend.example.workers.dev`. Must be
    /// absolute; `http://` is accepted only for loopback hosts.
    pub base_url: String,
    /// The app's id, sent as `X-Client-ID` (the backend's tenant).
    pub client_id: String,
    /// A directory the library may write to (its SQLite database lives there).
    pub data_dir: String,
    /// Deadlines.
    #[uniffi(default)]
    pub timeouts: Timeouts,
    /// How transient failures are retried.
    #[uniffi(default)]
    pub retry: RetryPolicy,
    /// Appended to the `User-Agent` (`tether/<version> (<platform>) <suffix>`),
    /// e.g. `"MyApp/2.1"`.
    #[uniffi(default = None)]
    pub user_agent_suffix: Option<String>,
    /// Refresh the access token this many seconds before it expires.
    #[uniffi(default = 60)]
    pub refresh_skew_s: u32,
    /// The largest JSON response body the client reads into memory.
    #[uniffi(default = 1048576)]
    pub max_response_bytes: u32,
    /// While the paywall is up (a `402` was seen, nothing is left and the window has not
    /// reset by the server's clock), fail metered calls at once with `PlanRequired`
    /// instead of sending them.
    #[uniffi(default = true)]
    pub quota_fail_fast: bool,
    /// The least severe records passed to the client's `Logger`; `None` means `Info`.
    /// `Debug` adds a line per request (method, path, status, request id; never a token).
    /// (An `Option` because UniFFI can give an enum field no default in every language.)
    #[uniffi(default = None)]
    pub log_level: Option<LogLevel>,
}

impl ClientConfig {
    /// A config with every default, for the given backend, app id and data directory.
    pub fn new(
        base_url: impl Into<String>,
        client_id: impl Into<String>,
        data_dir: impl Into<String>,
    ) -> Self {
        ClientConfig {
            base_url: base_url.into(),
            client_id: client_id.into(),
            data_dir: data_dir.into(),
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
            user_agent_suffix: None,
            refresh_skew_s: 60,
            max_response_bytes: 1 << 20,
            quota_fail_fast: true,
            log_level: None,
        }
    }

    /// The effective minimum log level (`log_level`, `Info` when unset).
    pub(crate) fn min_log_level(&self) -> LogLevel {
        self.log_level.unwrap_or(LogLevel::Info)
    }

    /// Checks every field; returns the parsed base URL (without a trailing slash).
    pub(crate) fn validate(&self) -> Result<Url> {
        let url = Url::parse(self.base_url.trim())
            .map_err(|e| Error::Config(format!("base_url is not an absolute URL: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            "http" => {
                return Err(Error::Config(
                    "base_url: plain http:// is allowed only for loopback hosts".into(),
                ))
            }
            other => {
                return Err(Error::Config(format!(
                    "base_url: unsupported scheme {other:?}"
                )))
            }
        }
        if url.host().is_none() {
            return Err(Error::Config("base_url has no host".into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::Config("base_url must not carry credentials".into()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(Error::Config(
                "base_url must not have a query or fragment".into(),
            ));
        }
        let id = self.client_id.trim();
        if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_graphic()) {
            return Err(Error::Config(
                "client_id must be 1-128 visible ASCII characters".into(),
            ));
        }
        if self.data_dir.trim().is_empty() {
            return Err(Error::Config("data_dir is empty".into()));
        }
        let t = &self.timeouts;
        for (name, v) in [
            ("connect_ms", t.connect_ms),
            ("first_byte_ms", t.first_byte_ms),
            ("idle_ms", t.idle_ms),
            ("total_ms", t.total_ms),
        ] {
            if v == 0 {
                return Err(Error::Config(format!(
                    "timeouts.{name} must be greater than zero"
                )));
            }
        }
        if self.retry.max_attempts == 0 {
            return Err(Error::Config(
                "retry.max_attempts must be at least 1".into(),
            ));
        }
        if self.retry.base_delay_ms > self.retry.max_delay_ms {
            return Err(Error::Config(
                "retry.base_delay_ms exceeds retry.max_delay_ms".into(),
            ));
        }
        if self.max_response_bytes == 0 {
            return Err(Error::Config(
                "max_response_bytes must be greater than zero".into(),
            ));
        }
        if let Some(s) = &self.user_agent_suffix {
            if s.chars().any(|c| c.is_control()) {
                return Err(Error::Config(
                    "user_agent_suffix has control characters".into(),
                ));
            }
        }
        let mut url = url;
        let trimmed = url.path().trim_end_matches('/').to_string();
        url.set_path(&trimmed);
        Ok(url)
    }

    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.timeouts.connect_ms.into())
    }
}

/// `localhost`, `127.0.0.0/8` and `[::1]`: the only hosts allowed over plain HTTP.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str) -> ClientConfig {
        ClientConfig::new(url, "app", "/tmp")
    }

    #[test]
    fn accepts_https_and_loopback_http() {
        for ok in [
            "https://api.example.com",
            "http://127.0.0.1:8787",
            "http://localhost:1",
            "http://[::1]:80/",
            "https://x.dev/base/",
        ] {
            assert!(cfg(ok).validate().is_ok(), "{ok}");
        }
        assert_eq!(
            cfg("https://x.dev/base/").validate().unwrap().as_str(),
            "https://x.dev/base"
        );
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "http://example.com",
            "http://10.0.0.1",
            "ftp://x",
            "/relative",
            "api.example.com",
            "",
            "https://u:p@x.dev",
            "https://x.dev/?q=1",
            "http://127.0.0.1.evil.com",
        ] {
            assert!(
                matches!(cfg(bad).validate(), Err(Error::Config(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn rejects_zero_timeouts_and_empty_fields() {
        let mut c = cfg("https://x.dev");
        c.timeouts.idle_ms = 0;
        assert!(matches!(c.validate(), Err(Error::Config(m)) if m.contains("idle_ms")));
        let mut c = cfg("https://x.dev");
        c.client_id = " ".into();
        assert!(c.validate().is_err());
        let mut c = cfg("https://x.dev");
        c.retry.max_attempts = 0;
        assert!(c.validate().is_err());
        let mut c = cfg("https://x.dev");
        c.data_dir = String::new();
        assert!(c.validate().is_err());
    }
}
