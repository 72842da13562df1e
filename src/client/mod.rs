//! The facade: [`TetherClient`], the one object an app holds for its lifetime, exported
//! through UniFFI. One `#[uniffi::export] impl` block per area, one file each
//! (`session.rs`, `requests.rs`, `quota.rs`, `jobs.rs`); every method is a one-line delegation to
//! [`Core`], run on the library's runtime with the client's log dispatch, its internal
//! error mapped to [`TetherError`] once.

mod chat;
mod history;
mod jobs;
mod quota;
mod requests;
mod session;
#[cfg(feature = "upload")]
mod upload;

use std::future::Future;
use std::sync::Arc;

pub use requests::{ApiRequest, ApiResponse, HttpMethod};

use crate::auth::TokenStore;
use crate::config::ClientConfig;
use crate::core::Core;
use crate::error::{Result, TetherError};
use crate::logging::Logger;
use crate::runtime::{run, CancelHandle};

/// The Tether client: auth session, HTTP pipeline and (later) uploads, quota, chat and
/// history. Create one per app and keep it for the app's lifetime.
#[derive(uniffi::Object)]
pub struct TetherClient {
    core: Arc<Core>,
}

impl TetherClient {
    fn build(
        config: ClientConfig,
        token_store: Arc<dyn TokenStore>,
        logger: Option<Arc<dyn Logger>>,
    ) -> Result<Arc<Self>, TetherError> {
        Ok(Arc::new(TetherClient {
            core: Arc::new(Core::new(config, token_store, logger)?),
        }))
    }

    /// Runs `f(core)` on the library runtime, honouring `cancel`.
    async fn call<T, F, Fut>(
        &self,
        cancel: Option<Arc<CancelHandle>>,
        f: F,
    ) -> Result<T, TetherError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Core>) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        // Boxed once here: the call's future is large, and it is moved through the
        // cancel and spawn layers below as a pointer instead of being copied.
        let fut = Box::pin(f(self.core.clone()));
        run(&self.core.dispatch, cancel, async move { Ok(fut.await?) }).await
    }
}

impl std::fmt::Debug for TetherClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TetherClient")
            .field("auth_state", &self.core.auth_state())
            .finish_non_exhaustive()
    }
}

/// Construction.
#[uniffi::export]
impl TetherClient {
    /// Creates the client. Fails with `Config` if the configuration is invalid (for
    /// example `http://` for a non-loopback host, a relative URL or a zero timeout) and
    /// with `Storage` if `data_dir` cannot be created. Does no network I/O; call
    /// `restore_session()` next to load the saved session.
    #[uniffi::constructor]
    pub fn new(
        config: ClientConfig,
        token_store: Arc<dyn TokenStore>,
    ) -> Result<Arc<Self>, TetherError> {
        Self::build(config, token_store, None)
    }

    /// Like `new`, with Tether's log records sent to `logger` (os_log, Logcat, console).
    #[uniffi::constructor]
    pub fn with_logger(
        config: ClientConfig,
        token_store: Arc<dyn TokenStore>,
        logger: Arc<dyn Logger>,
    ) -> Result<Arc<Self>, TetherError> {
        Self::build(config, token_store, Some(logger))
    }
}
