//! The quota area of the facade (the quota and paywall state machine lands here).

use super::TetherClient;
use crate::quota::Quota;

#[uniffi::export]
impl TetherClient {
    /// The latest quota the server reported in response headers, if any (no I/O).
    pub fn last_quota(&self) -> Option<Quota> {
        self.core.last_quota()
    }
}
