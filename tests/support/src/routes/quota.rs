//! Quota: a per-user count against one limit, the hourly window it resets with, the
//! `RateLimit-*` / `X-Plan` headers, `GET /api/v1/quota`, and the charge a metered
//! request makes (`402 quota_exceeded` once spent).

use std::collections::HashMap;

use hyper::header::HeaderValue;
use hyper::Response;
use serde_json::{json, Value};

use super::Req;
use crate::http::{json_resp, Body};
use crate::Inner;

const WINDOW_S: i64 = 3600;

pub(crate) struct Quota {
    pub(crate) limit: u64,
    /// The plan every user is on (`X-Plan`, `plan` in bodies); raising it is the
    /// "purchase" of the tests.
    pub(crate) plan: String,
    /// Per user: the window (its end) the count belongs to, and the count.
    used: HashMap<String, (i64, u64)>,
    /// Metered requests charged so far, all users.
    pub(crate) charges: usize,
    /// One window end, on the real clock; see [`Quota::window_end`].
    first_end: i64,
}

impl Quota {
    /// `started_s`: the real clock (seconds) when the server started.
    pub(crate) fn new(started_s: i64) -> Quota {
        Quota {
            limit: 50,
            plan: "free".into(),
            used: HashMap::new(),
            charges: 0,
            first_end: started_s + WINDOW_S,
        }
    }

    /// The end of the window `now` falls in (windows are hours counted from the start):
    /// a fixed instant, so every response of one window names the same
    /// `Date + RateLimit-Reset`, as the contract requires. Usage starts from zero in each window (tests move the server clock to cross one).
    fn window_end(&self, now: i64) -> i64 {
        self.first_end + ((now - self.first_end).div_euclid(WINDOW_S) + 1) * WINDOW_S
    }

    /// What is left in the window `now` falls in (a new window starts from zero).
    fn remaining(&self, user: &str, now: i64) -> u64 {
        let used = match self.used.get(user) {
            Some((end, n)) if *end == self.window_end(now) => *n,
            _ => 0,
        };
        self.limit.saturating_sub(used)
    }

    /// The quota record, as `GET /quota` and a `402` body carry it.
    pub(crate) fn json(&self, user: &str, now: i64) -> Value {
        json!({ "plan": self.plan, "limit": self.limit, "remaining": self.remaining(user, now),
                "reset_at": rfc3339(self.window_end(now)) })
    }

    pub(crate) fn add_headers(&self, user: &str, now: i64, r: &mut Response<Body>) {
        let h = r.headers_mut();
        h.insert("ratelimit-limit", HeaderValue::from(self.limit));
        h.insert(
            "ratelimit-remaining",
            HeaderValue::from(self.remaining(user, now)),
        );
        h.insert(
            "ratelimit-reset",
            HeaderValue::from(self.window_end(now) - now),
        );
        if let Ok(plan) = HeaderValue::from_str(&self.plan) {
            h.insert("x-plan", plan);
        }
    }

    /// Charges one unit, or answers `402` when none is left.
    pub(crate) fn charge(&mut self, user: &str, now: i64) -> Result<(), Box<Response<Body>>> {
        if self.remaining(user, now) == 0 {
            return Err(Box::new(json_resp(
                402,
                &json!({ "error": { "code": "quota_exceeded", "message": "Free plan limit reached",
                    "plan_required": "pro", "quota": self.json(user, now) } }),
            )));
        }
        let end = self.window_end(now);
        let entry = self.used.entry(user.to_string()).or_insert((end, 0));
        if entry.0 != end {
            *entry = (end, 0);
        }
        entry.1 += 1;
        self.charges += 1;
        Ok(())
    }
}

/// `GET /api/v1/quota`.
pub(crate) fn get(s: &mut Inner, req: &Req, user: &str) -> Response<Body> {
    let mut q = s.quota.json(user, req.now);
    q["features"] = json!(["detect", "chat", "vision"]);
    json_resp(200, &q)
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (days to civil date after
/// H. Hinnant's published algorithm; the crate has no date library to lean on).
fn rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_478_400 + 3_661), "2026-11-24T01:01:01Z");
    }

    #[test]
    fn every_moment_of_a_window_names_the_same_end() {
        let q = Quota::new(1_000);
        assert_eq!(q.window_end(1_000), 4_600);
        assert_eq!(q.window_end(4_599), 4_600);
        assert_eq!(q.window_end(4_600), 8_200);
        assert_eq!(q.window_end(-5_000), -2_600);
    }
}
