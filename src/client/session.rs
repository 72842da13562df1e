//! The session area of the facade: restore, sign-in, sign-out, tokens, auth listeners.

use std::sync::Arc;

use super::TetherClient;
use crate::auth::{AuthListener, AuthState, User};
use crate::error::TetherError;
use crate::runtime::CancelHandle;
use crate::subscription::Subscription;

#[uniffi::export]
impl TetherClient {
    /// The current auth state, from memory (no I/O). `Unknown` until `restore_session()`.
    pub fn auth_state(&self) -> AuthState {
        self.core.auth_state()
    }

    /// Loads the saved session from the token store. If the store fails (e.g. the iOS
    /// keychain is locked), the state stays `Unknown` and this returns `Storage`: call it
    /// again later; the user is never signed out because of it. A saved session this
    /// version cannot read (written by a newer version) is left in the store untouched
    /// and the state is `SignedOut`.
    pub async fn restore_session(&self) -> Result<AuthState, TetherError> {
        self.call(None, |c| async move { c.restore_session().await })
            .await
    }

    /// Creates an anonymous user on the backend and signs in as it (replacing any
    /// current session). `device_id`, if given, is passed to the backend. While the saved
    /// session cannot be read yet (`Unknown`, e.g. a locked keychain) this fails with
    /// `Storage` rather than replace the saved user; if the new session cannot be saved,
    /// it fails with `Storage` and nothing changes. Cancelling stops the wait, not the
    /// sign-in: if it completes, listeners are told.
    #[uniffi::method(default(device_id = None, cancel = None))]
    pub async fn sign_in_anonymously(
        &self,
        device_id: Option<String>,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<User, TetherError> {
        self.call(
            cancel,
            |c| async move { c.sign_in_anonymously(device_id).await },
        )
        .await
    }

    /// Signs out. The local session (memory, listeners, token store) is cleared at once,
    /// even before `restore_session()`; then the backend is asked to revoke the session
    /// family, with the refresh token as the proof, so an expired access token does not
    /// matter. If the backend cannot be reached within the client's deadline the device
    /// is still signed out, and the family stays valid on the server until it expires
    /// (no copy of its tokens is left on the device). Fails only with `Storage` if the
    /// token store could not be cleared.
    pub async fn sign_out(&self) -> Result<(), TetherError> {
        self.call(None, |c| async move { c.sign_out().await }).await
    }

    /// A fresh access token for the app's own calls to its backend (refreshed first if it
    /// is about to expire). `SignedOut` if there is no session.
    #[uniffi::method(default(cancel = None))]
    pub async fn access_token(
        &self,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<String, TetherError> {
        self.call(cancel, |c| async move { c.access_token().await })
            .await
    }

    /// Registers a listener told of every auth state change (and of the current state,
    /// at once) and every token rotation. Keep the returned handle: dropping it stops
    /// the listener.
    pub fn add_auth_listener(&self, listener: Arc<dyn AuthListener>) -> Arc<Subscription> {
        self.core.add_auth_listener(listener)
    }
}
