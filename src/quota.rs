//! Quota as the server reports it: the [`Quota`] record (what a `402` carries), the
//! [`QuotaReport`] read from the `RateLimit-*` / `X-Plan` headers of a response, and the
//! [`QuotaObserver`] hook the api floor feeds. No state here: the state machine that
//! remembers, persists and announces it is the paywall feature's (`crate::paywall`), and
//! the api floor does not know who listens.

use reqwest::header::{HeaderMap, HeaderName, DATE};

/// Where the user stands against their plan, as a server response reported it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Quota {
    /// The plan's name (`X-Plan`), e.g. `"free"`; empty when the server did not say.
    pub plan: String,
    /// Metered calls allowed per window.
    pub limit: u32,
    /// Metered calls left in this window.
    pub remaining: u32,
    /// When the window resets, RFC 3339 UTC, when known.
    pub reset_at: Option<String>,
}

/// The quota headers of one response. `reset_at_s` is the window's reset instant in the
/// server's clock: the response's own `Date` plus `RateLimit-Reset`, so every response
/// of one window names the same instant however late it arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaReport {
    pub plan: Option<String>,
    pub limit: u32,
    pub remaining: u32,
    pub reset_at_s: Option<i64>,
}

/// Told of quota facts as the api floor meets them. Implemented by the paywall feature.
pub trait QuotaObserver: Send + Sync {
    /// The quota headers of an authenticated response.
    fn observe(&self, report: QuotaReport);
    /// A `402 quota_exceeded`: the plan's limit is reached.
    fn paywall(&self, plan_required: Option<String>, quota: Option<Quota>);
    /// Asked before a metered request is sent: `Some((plan_required, quota))` fails it at
    /// once with `PlanRequired`, without touching the network.
    fn refuse_metered(&self) -> Option<(Option<String>, Option<Quota>)>;
}

/// Reads `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` and `X-Plan`.
/// Without limit and remaining there is nothing to report: the contract says such a
/// response leaves the state unchanged. `server_now_s` stands in for a missing `Date`.
pub(crate) fn from_headers(headers: &HeaderMap, server_now_s: i64) -> Option<QuotaReport> {
    // Names built once: looking a header up by `&str` parses the name every time, which
    // was most of this function's cost on every response.
    const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
    const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
    const RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
    const PLAN: HeaderName = HeaderName::from_static("x-plan");
    let text = |name: HeaderName| headers.get(name)?.to_str().ok().map(str::trim);
    let num = |name: HeaderName| -> Option<u64> { text(name)?.parse().ok() };
    let count = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    let limit = count(num(LIMIT)?);
    let remaining = count(num(REMAINING)?);
    let date = text(DATE)
        .and_then(|d| httpdate::parse_http_date(d).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .unwrap_or(server_now_s);
    let reset_at_s = num(RESET)
        .and_then(|s| i64::try_from(s).ok())
        .map(|s| date.saturating_add(s));
    let plan = text(PLAN).filter(|p| !p.is_empty()).map(str::to_string);
    Some(QuotaReport {
        plan,
        limit,
        remaining,
        reset_at_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_headers_and_ignores_partial_ones() {
        let mut h = HeaderMap::new();
        h.insert("ratelimit-limit", "50".parse().unwrap());
        assert_eq!(from_headers(&h, 0), None);
        h.insert("ratelimit-remaining", "12".parse().unwrap());
        h.insert("ratelimit-reset", "3600".parse().unwrap());
        h.insert("x-plan", "free".parse().unwrap());
        let q = from_headers(&h, 0).unwrap();
        assert_eq!(
            (q.plan.as_deref(), q.limit, q.remaining),
            (Some("free"), 50, 12)
        );
        assert_eq!(q.reset_at_s, Some(3600));
        // The reset instant is anchored to the response's own Date, not to "now".
        h.insert("date", "Sun, 29 Nov 2026 00:00:00 GMT".parse().unwrap());
        let q = from_headers(&h, 0).unwrap();
        assert_eq!(q.reset_at_s, Some(1_795_914_000)); // 2026-11-29T01:00:00Z
        h.insert("ratelimit-remaining", "lots".parse().unwrap());
        assert_eq!(from_headers(&h, 0), None);
    }
}
