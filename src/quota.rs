//! Quota state as the server reports it: the [`Quota`] record, parsing of the
//! `RateLimit-*` / `X-Plan` headers, and the observer hook the API floor feeds.
//!
//! Partial by design (foundation stage): the latest snapshot is kept in memory only.
//! Persisting it and notifying listeners belong to the quota feature, which plugs in a
//! richer [`QuotaObserver`] without the API floor knowing who listens.

use std::sync::Mutex;

use reqwest::header::HeaderMap;

/// Where the user stands against their plan.
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

/// Told of the quota headers of every authenticated response.
pub trait QuotaObserver: Send + Sync {
    fn observe(&self, quota: Quota);
}

/// Reads `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (seconds from
/// `server_now`) and `X-Plan`. Without limit and remaining there is nothing to report:
/// the contract says such a response leaves the state unchanged.
pub(crate) fn from_headers(headers: &HeaderMap, server_now_s: i64) -> Option<Quota> {
    let num = |name: &str| -> Option<u64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
    let count = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    let limit = count(num("ratelimit-limit")?);
    let remaining = count(num("ratelimit-remaining")?);
    let reset_at = num("ratelimit-reset")
        .and_then(|s| i64::try_from(s).ok())
        .map(|s| rfc3339(server_now_s.saturating_add(s)));
    let plan = headers
        .get("x-plan")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    Some(Quota {
        plan,
        limit,
        remaining,
        reset_at,
    })
}

/// The in-memory latest snapshot (until the quota feature persists it).
#[derive(Default)]
pub(crate) struct LatestQuota(Mutex<Option<Quota>>);

impl LatestQuota {
    pub fn get(&self) -> Option<Quota> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl QuotaObserver for LatestQuota {
    fn observe(&self, quota: Quota) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(quota);
    }
}

/// Unix seconds as an RFC 3339 UTC timestamp (proleptic Gregorian, days-from-civil).
pub(crate) fn rfc3339(unix_s: i64) -> String {
    let days = unix_s.div_euclid(86_400);
    let secs = unix_s.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_392_000), "2026-11-23T00:00:00Z");
        assert_eq!(rfc3339(951_782_400 + 3661), "2000-02-29T01:01:01Z");
    }

    #[test]
    fn parses_headers_and_ignores_partial_ones() {
        let mut h = HeaderMap::new();
        h.insert("ratelimit-limit", "50".parse().unwrap());
        assert_eq!(from_headers(&h, 0), None);
        h.insert("ratelimit-remaining", "12".parse().unwrap());
        h.insert("ratelimit-reset", "3600".parse().unwrap());
        h.insert("x-plan", "free".parse().unwrap());
        let q = from_headers(&h, 0).unwrap();
        assert_eq!((q.plan.as_str(), q.limit, q.remaining), ("free", 50, 12));
        assert_eq!(q.reset_at.as_deref(), Some("1970-01-01T01:00:00Z"));
        h.insert("ratelimit-remaining", "lots".parse().unwrap());
        assert_eq!(from_headers(&h, 0), None);
    }
}
