//! The quota area of the facade: the quota and paywall state, its refresh from the
//! backend, and its listeners.

use std::sync::Arc;

use super::TetherClient;
use crate::error::TetherError;
use crate::paywall::{QuotaListener, QuotaState};
use crate::runtime::CancelHandle;
use crate::subscription::Subscription;

#[uniffi::export]
impl TetherClient {
    /// Where the user stands against their plan, and whether the paywall is up, from
    /// memory (no I/O). Kept up to date by every response; restored from the device at
    /// start-up (`source: Cached`) so an app opened offline knows its plan.
    pub fn quota(&self) -> QuotaState {
        self.core.quota()
    }

    /// Asks the backend (`GET /api/v1/quota`) and returns the fresh state: call it after a
    /// purchase completes to lift the paywall.
    #[uniffi::method(default(cancel = None))]
    pub async fn refresh_quota(
        &self,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<QuotaState, TetherError> {
        self.call(cancel, |c| async move { c.refresh_quota().await })
            .await
    }

    /// Registers a listener told of every quota change (and of the current state, at
    /// once) and of every raised paywall. Keep the returned handle: dropping it stops
    /// the listener.
    pub fn add_quota_listener(&self, listener: Arc<dyn QuotaListener>) -> Arc<Subscription> {
        self.core.add_quota_listener(listener)
    }
}
