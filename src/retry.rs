//! The retry decision every network call shares (the api pipeline and auth's own calls):
//! whether a failed attempt may be sent again, and after how long.
//!
//! A failure is retried only when the contract calls it transient, when sending the
//! request again is safe (it never left the device, or it is idempotent or carries an
//! `Idempotency-Key`), while attempts remain, within the server's `Retry-After` cap, and
//! before the call's deadline. Waits are exponential backoff with full jitter: uniform in
//! `[0, min(max, base * 2^(n-1))]`, which spreads a crowd of clients that failed together.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::RetryPolicy;
use crate::error::Error;

/// How long to wait before attempt `attempt + 1`, or `None` to give up with `err`.
pub fn next_wait(
    policy: &RetryPolicy,
    attempt: u32,
    err: &Error,
    replay_safe: bool,
    deadline: Instant,
) -> Option<Duration> {
    if !err.is_transient() || attempt >= policy.max_attempts {
        return None;
    }
    if !replay_safe && err.may_have_reached_server() {
        return None;
    }
    let wait = match err.retry_after() {
        Some(hint) if hint > Duration::from_secs(policy.max_retry_after_s.into()) => return None,
        Some(hint) => hint,
        None => full_jitter(policy, attempt),
    };
    (Instant::now() + wait < deadline).then_some(wait)
}

fn full_jitter(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(20);
    let ceiling = policy
        .base_delay_ms
        .saturating_mul(1 << exp)
        .min(policy.max_delay_ms);
    Duration::from_millis(fastrand::u32(0..=ceiling).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_under_the_growing_ceiling() {
        let p = RetryPolicy {
            max_attempts: 9,
            base_delay_ms: 100,
            max_delay_ms: 1000,
            max_retry_after_s: 1,
        };
        for _ in 0..200 {
            assert!(full_jitter(&p, 1) <= Duration::from_millis(100));
            assert!(full_jitter(&p, 3) <= Duration::from_millis(400));
            assert!(full_jitter(&p, 30) <= Duration::from_millis(1000));
        }
        // Jitter really varies (not a fixed delay).
        let waits: std::collections::HashSet<_> = (0..50).map(|_| full_jitter(&p, 5)).collect();
        assert!(waits.len() > 5);
    }
}
