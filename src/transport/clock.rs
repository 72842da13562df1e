//! The server clock: an offset from the device clock, learned from every response's
//! `Date` header. Token expiry and quota resets are server times, so comparing them with
//! a device clock that is minutes off would refresh in a storm or use expired tokens.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Default)]
pub struct ServerClock {
    offset_ms: AtomicI64,
    known: AtomicBool,
}

/// `Date` has one-second resolution; smaller moves are noise, not a clock change.
const JITTER_MS: i64 = 1_500;

impl ServerClock {
    pub fn device_now_ms() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }

    /// Starts from an offset remembered from an earlier run (replaced by the first `Date`
    /// that disagrees with it).
    pub fn seed(&self, offset_ms: i64) {
        self.offset_ms.store(offset_ms, Ordering::Release);
        self.known.store(true, Ordering::Release);
    }

    /// Learns from a `Date` header value (RFC 7231 IMF-fixdate). Bad values are ignored.
    /// Returns the new offset when it changed.
    pub fn observe_date(&self, value: &str) -> Option<i64> {
        let t = httpdate::parse_http_date(value).ok()?;
        let server = t.duration_since(UNIX_EPOCH).ok()?;
        // The header is truncated to the second: take the middle of that second.
        let server_ms = server.as_millis() as i64 + 500;
        let offset = server_ms - Self::device_now_ms();
        let known = self.known.load(Ordering::Acquire);
        if !known || (offset - self.offset_ms.load(Ordering::Acquire)).abs() > JITTER_MS {
            self.offset_ms.store(offset, Ordering::Release);
            self.known.store(true, Ordering::Release);
            return Some(offset);
        }
        None
    }

    /// The server's time now, in Unix seconds (the device's if no `Date` was seen yet).
    pub fn now_s(&self) -> i64 {
        (Self::device_now_ms() + self.offset_ms.load(Ordering::Acquire)).div_euclid(1000)
    }

    pub fn offset_ms(&self) -> Option<i64> {
        self.known
            .load(Ordering::Acquire)
            .then(|| self.offset_ms.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn learns_offset_and_ignores_garbage() {
        let c = ServerClock::default();
        c.observe_date("not a date");
        assert_eq!(c.offset_ms(), None);
        let ahead = SystemTime::now() + Duration::from_secs(600);
        c.observe_date(&httpdate::fmt_http_date(ahead));
        let off = c.offset_ms().unwrap();
        assert!((598_000..=602_000).contains(&off), "{off}");
        let now = ServerClock::device_now_ms() / 1000;
        assert!((c.now_s() - now - 600).abs() <= 2);
    }
}
