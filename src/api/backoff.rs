//! Exponential backoff with full jitter: the wait before retry `n` is uniform in
//! `[0, min(max, base * 2^(n-1))]`, which spreads a crowd of clients that failed together.

use std::time::Duration;

use crate::config::RetryPolicy;

pub fn full_jitter(policy: &RetryPolicy, attempt: u32) -> Duration {
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
