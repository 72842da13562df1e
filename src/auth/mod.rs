//! Auth owns the session: its state machine (`Unknown` -> `SignedOut` | `SignedIn`), the
//! app's [`TokenStore`], refresh ahead of expiry and after a rejected token, and the
//! listeners told of every state change and every token rotation.
//!
//! Refresh is single-flight: callers that find the token stale queue on one async gate;
//! the first refreshes, saves the rotated session to the store, and only then lets the
//! others through, who find a fresh token and return it. A refresh whose outcome is
//! unknown (connection reset, 5xx) keeps the session and remembers its idempotency key,
//! so the retry presents the same key and the backend replays the rotation instead of
//! seeing a reused refresh token and revoking the family.

mod session;
mod store;

use std::sync::{Arc, Mutex};

use reqwest::Method;
use tokio::time::Instant;

pub use session::Session;
pub use store::{
    file_token_store, in_memory_token_store, FileTokenStore, InMemoryTokenStore, TokenStore,
    TokenStoreError,
};

use crate::error::{Error, Result};
use crate::subscription::{Broadcaster, Coalesce, Subscription};
use crate::transport::{Outgoing, Transport};

/// Who is signed in, as far as this device knows.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum AuthState {
    /// Not known yet: the session has not been loaded from the token store (or loading
    /// failed, e.g. the keychain is locked). Not the same as signed out.
    Unknown,
    /// No session: sign in.
    SignedOut,
    /// A session exists for this user.
    SignedIn { user_id: String, anonymous: bool },
}

/// The user behind a session.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct User {
    pub id: String,
    pub anonymous: bool,
}

/// Told of every auth state change and every token rotation. Calls arrive in order, on
/// a Tether thread, never while Tether holds a lock.
#[uniffi::export(with_foreign)]
pub trait AuthListener: Send + Sync {
    /// The state changed (also called once with the current state on registration).
    fn on_state_changed(&self, state: AuthState);
    /// The tokens were rotated (the user is unchanged). Fetch a new token with
    /// `access_token()` if the app caches one.
    fn on_session_refreshed(&self, user_id: String);
}

#[derive(Debug, Clone)]
enum Event {
    State(AuthState),
    Refreshed(String),
}

/// A slow listener gets the latest state, not each one; a state and a rotation keep
/// their order.
impl Coalesce for Event {
    fn absorb(&mut self, newer: Self) -> Option<Self> {
        match (self, newer) {
            (Event::State(s), Event::State(n)) => *s = n,
            (Event::Refreshed(u), Event::Refreshed(n)) if *u == n => {}
            (_, newer) => return Some(newer),
        }
        None
    }
}

enum Phase {
    Unknown,
    SignedOut,
    SignedIn(Arc<Session>),
}

struct Inner {
    phase: Phase,
    /// Bumped by every sign-in and sign-out, so a refresh that finishes after the user
    /// signed out cannot bring the old session back.
    epoch: u64,
    /// The idempotency key of a refresh whose outcome is unknown, with its refresh token.
    pending_refresh: Option<(String, String)>,
}

pub struct Auth {
    transport: Arc<Transport>,
    store: Arc<dyn TokenStore>,
    inner: Mutex<Inner>,
    gate: tokio::sync::Mutex<()>,
    skew_s: i64,
    events: Arc<Broadcaster<Event>>,
}

impl Auth {
    pub fn new(transport: Arc<Transport>, store: Arc<dyn TokenStore>, skew_s: u64) -> Self {
        Auth {
            transport,
            store,
            inner: Mutex::new(Inner {
                phase: Phase::Unknown,
                epoch: 0,
                pending_refresh: None,
            }),
            gate: tokio::sync::Mutex::new(()),
            skew_s: i64::try_from(skew_s).unwrap_or(i64::MAX / 4),
            events: Arc::new(Broadcaster::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> AuthState {
        state_of(&self.lock().phase)
    }

    pub fn subscribe(
        &self,
        dispatch: tracing::Dispatch,
        listener: Arc<dyn AuthListener>,
    ) -> Arc<Subscription> {
        self.events.subscribe(
            dispatch,
            || Event::State(self.state()),
            move |e| match e {
                Event::State(s) => listener.on_state_changed(s),
                Event::Refreshed(user) => listener.on_session_refreshed(user),
            },
        )
    }

    /// Loads the session from the token store if it is not known yet. A store that fails
    /// leaves the state `Unknown` and returns `Storage`; a value that cannot be decoded
    /// is dropped (it can never become valid) and the state is `SignedOut`.
    pub async fn restore(&self) -> Result<AuthState> {
        if !matches!(self.lock().phase, Phase::Unknown) {
            return Ok(self.state());
        }
        let _gate = self.gate.lock().await;
        if !matches!(self.lock().phase, Phase::Unknown) {
            return Ok(self.state());
        }
        let store = self.store.clone();
        let loaded = blocking(move || store.load()).await?;
        let phase = match loaded {
            Ok(None) => Phase::SignedOut,
            Ok(Some(blob)) => match Session::from_stored(&blob) {
                Ok(s) => Phase::SignedIn(Arc::new(s)),
                Err(e) => {
                    tracing::warn!(target: "tether::auth", error = %e, "discarding an unreadable stored session");
                    let store = self.store.clone();
                    let _ = blocking(move || store.clear()).await;
                    Phase::SignedOut
                }
            },
            Err(e) => {
                tracing::warn!(target: "tether::auth", error = %e, "token store load failed; state stays unknown");
                return Err(Error::Storage(e.to_string()));
            }
        };
        let state = {
            let mut inner = self.lock();
            inner.phase = phase;
            state_of(&inner.phase)
        };
        tracing::info!(target: "tether::auth", state = ?state, "session restored");
        self.events.emit(Event::State(state.clone()));
        Ok(state)
    }

    /// Installs a session from a sign-in response body and saves it.
    pub async fn adopt(&self, body: &[u8]) -> Result<User> {
        let session = Session::from_response(body, self.transport.clock.now_s())?;
        let _gate = self.gate.lock().await;
        self.save(&session).await;
        let user = User {
            id: session.user_id.clone(),
            anonymous: session.anonymous,
        };
        let state = {
            let mut inner = self.lock();
            inner.epoch += 1;
            inner.pending_refresh = None;
            inner.phase = Phase::SignedIn(Arc::new(session));
            state_of(&inner.phase)
        };
        tracing::info!(target: "tether::auth", user_id = %user.id, "signed in");
        self.events.emit(Event::State(state));
        Ok(user)
    }

    /// A token fresh enough to send, refreshing first if it is within the skew margin.
    pub async fn access_token(&self, deadline: Instant) -> Result<String> {
        if matches!(self.lock().phase, Phase::Unknown) {
            self.restore().await?;
        }
        let session = self.current()?;
        if !session.needs_refresh(self.transport.clock.now_s(), self.skew_s) {
            return Ok(session.access_token.clone());
        }
        self.refresh(&session.access_token, deadline).await
    }

    /// The server rejected `stale` (`401 invalid_token`): refresh unless someone already did.
    pub async fn refresh_rejected(&self, stale: &str, deadline: Instant) -> Result<String> {
        self.refresh(stale, deadline).await
    }

    fn current(&self) -> Result<Arc<Session>> {
        match &self.lock().phase {
            Phase::SignedIn(s) => Ok(s.clone()),
            Phase::SignedOut => Err(Error::SignedOut),
            Phase::Unknown => Err(Error::Storage("session not loaded yet".into())),
        }
    }

    async fn refresh(&self, stale: &str, deadline: Instant) -> Result<String> {
        // Waiting for someone else's refresh counts against this caller's deadline too.
        let _gate = tokio::time::timeout_at(deadline, self.gate.lock())
            .await
            .map_err(|_| Error::Timeout(crate::error::TimeoutKind::Total))?;
        let session = self.current()?;
        if session.access_token != stale
            && !session.needs_refresh(self.transport.clock.now_s(), self.skew_s)
        {
            return Ok(session.access_token.clone());
        }
        let (epoch, key) = {
            let mut inner = self.lock();
            let key = match &inner.pending_refresh {
                Some((rt, key)) if *rt == session.refresh_token => key.clone(),
                _ => uuid::Uuid::new_v4().to_string(),
            };
            inner.pending_refresh = Some((session.refresh_token.clone(), key.clone()));
            (inner.epoch, key)
        };
        tracing::debug!(target: "tether::auth", "refreshing the session");
        let body = serde_json::json!({ "refresh_token": session.refresh_token }).to_string();
        let req = Outgoing {
            method: Method::POST,
            path: "auth/refresh".into(),
            json_body: Some(body.into()),
            idempotency_key: Some(key),
            bearer: None,
        };
        let resp = self.transport.send(&req, deadline).await?;
        let status = resp.status();
        if !status.is_success() {
            let err = self.transport.error_from(resp, deadline).await;
            if matches!(status.as_u16(), 400 | 401 | 403) {
                tracing::warn!(target: "tether::auth", status = status.as_u16(), "refresh token rejected; signing out");
                // A store that fails to clear is logged; the user is signed out anyway.
                let _ = self.end_session(epoch).await;
                return Err(Error::SignedOut);
            }
            tracing::warn!(target: "tether::auth", error = %err, "refresh failed; the session is kept");
            return Err(err);
        }
        let body = self.transport.read_body(resp, 64 * 1024, deadline).await?;
        let fresh = Session::from_response(&body, self.transport.clock.now_s())?;
        if self.lock().epoch != epoch {
            return Err(Error::SignedOut);
        }
        // Saved before any waiter proceeds: the gate is still held.
        self.save(&fresh).await;
        let token = fresh.access_token.clone();
        let user = fresh.user_id.clone();
        {
            let mut inner = self.lock();
            inner.pending_refresh = None;
            inner.phase = Phase::SignedIn(Arc::new(fresh));
        }
        tracing::info!(target: "tether::auth", user_id = %user, "session refreshed");
        self.events.emit(Event::Refreshed(user));
        Ok(token)
    }

    /// The backend revoked the session (`401 session_revoked`): sign out locally.
    pub async fn revoked(&self) {
        let epoch = self.lock().epoch;
        let _ = self.end_session(epoch).await;
    }

    /// Signs out: the local session is gone at once, whatever the network does; the
    /// backend is then asked (best effort) to revoke the refresh token.
    pub async fn sign_out(&self, deadline: Instant) -> Result<()> {
        let (session, epoch) = {
            let inner = self.lock();
            let session = match &inner.phase {
                Phase::SignedIn(s) => Some(s.clone()),
                _ => None,
            };
            (session, inner.epoch)
        };
        let cleared = self.end_session(epoch).await;
        if let Some(s) = session {
            let req = Outgoing {
                method: Method::POST,
                path: "auth/signout".into(),
                json_body: Some(
                    serde_json::json!({ "refresh_token": s.refresh_token })
                        .to_string()
                        .into(),
                ),
                idempotency_key: None,
                bearer: Some(s.access_token.clone()),
            };
            match self.transport.send(&req, deadline).await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    tracing::info!(target: "tether::auth", status = r.status().as_u16(), "server-side sign-out refused")
                }
                Err(e) => {
                    tracing::info!(target: "tether::auth", error = %e, "server-side sign-out not reached")
                }
            }
        }
        cleared
    }

    /// Clears the session (memory and store) unless a newer sign-in happened since `epoch`.
    async fn end_session(&self, epoch: u64) -> Result<()> {
        {
            let mut inner = self.lock();
            if inner.epoch != epoch {
                return Ok(());
            }
            inner.epoch += 1;
            inner.pending_refresh = None;
            inner.phase = Phase::SignedOut;
        }
        tracing::info!(target: "tether::auth", "signed out");
        self.events.emit(Event::State(AuthState::SignedOut));
        let store = self.store.clone();
        blocking(move || store.clear()).await?.map_err(|e| {
            tracing::warn!(target: "tether::auth", error = %e, "token store clear failed");
            Error::Storage(e.to_string())
        })
    }

    /// Saves to the store. A failing store does not undo the sign-in or rotation (the
    /// user is signed in now); it is logged, and the next rotation saves again.
    async fn save(&self, session: &Session) {
        let store = self.store.clone();
        let blob = session.to_stored();
        match blocking(move || store.save(blob)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(target: "tether::auth", error = %e, "token store save failed")
            }
            Err(e) => tracing::warn!(target: "tether::auth", error = %e, "token store save failed"),
        }
    }
}

fn state_of(phase: &Phase) -> AuthState {
    match phase {
        Phase::Unknown => AuthState::Unknown,
        Phase::SignedOut => AuthState::SignedOut,
        Phase::SignedIn(s) => AuthState::SignedIn {
            user_id: s.user_id.clone(),
            anonymous: s.anonymous,
        },
    }
}

/// Runs foreign store code on a blocking thread: a keychain call must not stall the
/// async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Storage(format!("token store call failed: {e}")))
}
