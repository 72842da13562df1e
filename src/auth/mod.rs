//! Auth owns the session: its state machine (`Unknown` -> `SignedOut` | `SignedIn`), the
//! app's [`TokenStore`], sign-in, refresh ahead of expiry and after a rejected token,
//! sign-out, and the listeners told of every state change and every token rotation.
//!
//! The promise it keeps: the user is signed out by the backend's word (`401
//! session_revoked`) or their own `sign_out()`, and by nothing else: not a cancelled call,
//! not a kill, not a locked keychain, not a race. How:
//!
//! - **A refresh is a task owned by this floor**, not by the caller that noticed the stale
//!   token. Callers wait for its shared outcome with their own deadlines; one that is
//!   cancelled stops waiting, the refresh goes on and saves its result.
//! - **Recoverable before it is sent**: the refresh token it spends and its
//!   `Idempotency-Key` ([`PendingRefresh`]) are saved with the session first. If that save
//!   fails, nothing is sent (`Storage`). After a lost response, a kill or a relaunch, the
//!   next refresh replays that key with that token and the backend hands back the rotated
//!   session; a spent token is never presented with a new key.
//! - **Saved before it is used**: a rotated session is in the store before any waiter gets
//!   it. If that save fails, the session is kept in memory, the store still holds the
//!   recovery record (so a relaunch replays), and the save is retried on the next use.
//! - **Superseded results are discarded**: every path that changes the state re-checks
//!   after each await that no later change (`epoch`: who is signed in; `generation`:
//!   which session) happened meanwhile. Token-store calls are serialised by one gate, in
//!   the order the state changed, so a slow save can never land after a sign-out's clear.
//!
//! Network calls of this floor (sign-in, refresh, sign-out) share one deadline policy:
//! each call has `timeouts.total_ms` in all, each attempt `timeouts.first_byte_ms` to the
//! response head, and transient failures are retried under the client's `RetryPolicy`
//! (sign-in only when the request never left the device: it carries no idempotency key).

mod session;
mod token_store;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::instrument::WithSubscriber;

pub use session::{PendingRefresh, Session};
pub use token_store::{
    file_token_store, in_memory_token_store, FileTokenStore, InMemoryTokenStore, TokenStore,
    TokenStoreError,
};

use crate::config::RetryPolicy;
use crate::error::{Error, Result, TimeoutKind};
use crate::retry;
use crate::runtime::runtime;
use crate::subscription::{call_foreign, Broadcaster, Coalesce, Subscription};
use crate::transport::{Request, Transport};

/// Auth responses are small; more than this is not a session.
const AUTH_BODY_CAP: u64 = 64 * 1024;

/// Who is signed in, as far as this device knows.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum AuthState {
    /// Not known yet: the session has not been loaded from the token store (or loading
    /// failed, e.g. the keychain is locked). Not the same as signed out.
    Unknown,
    /// No session: sign in.
    SignedOut,
    /// A session exists for this user.
    SignedIn {
        /// The backend's id of the user.
        user_id: String,
        /// Whether the user was created by anonymous sign-in.
        anonymous: bool,
    },
}

/// The user behind a session.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct User {
    /// The backend's id of the user.
    pub id: String,
    /// Whether the user was created by anonymous sign-in.
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

/// An access token and the session generation it belongs to (so a late `401` about it
/// is never taken for one about a newer session). Its `Debug` hides the token.
#[derive(Clone)]
pub struct Token {
    /// The session the token is from (shared, so handing a token out copies nothing).
    session: Arc<Session>,
    pub generation: u64,
}

impl Token {
    /// The access token itself.
    pub fn value(&self) -> &str {
        &self.session.access_token
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("value", &"<redacted>")
            .field("generation", &self.generation)
            .finish()
    }
}

/// The deadline policy of this floor's network calls (see the module doc).
#[derive(Debug, Clone)]
pub struct AuthTiming {
    pub total: Duration,
    pub retry: RetryPolicy,
    pub skew_s: u64,
}

enum Phase {
    Unknown,
    SignedOut,
    SignedIn(Arc<Session>),
}

type Outcome = Result<(Arc<Session>, u64)>;

struct Inner {
    phase: Phase,
    /// Bumped when who is signed in changes (restore, sign-in, sign-out, revocation).
    epoch: u64,
    /// Bumped when the session changes at all (the above, and every rotation).
    generation: u64,
    /// The recovery record the token store holds, if any.
    pending: Option<PendingRefresh>,
    /// The in-memory session is newer than the stored one (its save failed).
    unsaved: bool,
    /// A retry of that save is under way (one at a time).
    resaving: bool,
    /// The refresh in flight, if any: every caller waits on this one outcome.
    inflight: Option<watch::Receiver<Option<Outcome>>>,
}

impl Inner {
    /// Whether the current session's refresh token was (maybe) spent by a refresh whose
    /// answer never arrived: then only replaying that refresh recovers the session.
    fn spent(&self, s: &Session) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|p| p.refresh_token == s.refresh_token)
    }

    /// Moves to `phase` as a new signed-in user or a sign-out: both counters move.
    fn replace(&mut self, phase: Phase) {
        self.phase = phase;
        self.epoch += 1;
        self.generation += 1;
        self.pending = None;
        self.unsaved = false;
    }
}

/// The auth floor. Shared as `Arc<Auth>`: refreshes run as tasks holding a clone.
pub struct Auth {
    transport: Arc<Transport>,
    store: Arc<dyn TokenStore>,
    inner: Mutex<Inner>,
    /// Serialises every token-store call (see the module doc).
    store_gate: tokio::sync::Mutex<()>,
    timing: AuthTiming,
    events: Arc<Broadcaster<Event>>,
}

impl Auth {
    pub fn new(transport: Arc<Transport>, store: Arc<dyn TokenStore>, timing: AuthTiming) -> Self {
        Auth {
            transport,
            store,
            inner: Mutex::new(Inner {
                phase: Phase::Unknown,
                epoch: 0,
                generation: 0,
                pending: None,
                unsaved: false,
                resaving: false,
                inflight: None,
            }),
            store_gate: tokio::sync::Mutex::new(()),
            timing,
            events: Arc::new(Broadcaster::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn skew_s(&self) -> i64 {
        i64::try_from(self.timing.skew_s).unwrap_or(i64::MAX)
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
    /// leaves the state `Unknown` and returns `Storage`. A stored value this library
    /// cannot read (a newer format after a downgrade) is left in place, and the state is
    /// `SignedOut`.
    pub async fn restore(&self) -> Result<AuthState> {
        let epoch = {
            let inner = self.lock();
            if !matches!(inner.phase, Phase::Unknown) {
                return Ok(state_of(&inner.phase));
            }
            inner.epoch
        };
        let _gate = self.store_gate.lock().await;
        if self.lock().epoch != epoch {
            return Ok(self.state());
        }
        let store = self.store.clone();
        let loaded = blocking(move || store.load()).await?.map_err(|e| {
            tracing::warn!(target: "tether::auth", error = %e, "token store load failed; state stays unknown");
            Error::Storage(e.to_string())
        })?;
        let (phase, pending) = match loaded.as_deref().map(Session::from_stored) {
            None => (Phase::SignedOut, None),
            Some(Ok((s, pending))) => (Phase::SignedIn(Arc::new(s)), pending),
            Some(Err(e)) => {
                tracing::warn!(target: "tether::auth", error = %e, "the stored session is unreadable; left in place, signed out");
                (Phase::SignedOut, None)
            }
        };
        let state = {
            let mut inner = self.lock();
            // A sign-in or sign-out that happened while the store was read wins.
            if inner.epoch != epoch {
                return Ok(state_of(&inner.phase));
            }
            inner.replace(phase);
            inner.pending = pending;
            state_of(&inner.phase)
        };
        tracing::info!(target: "tether::auth", state = ?state, "session restored");
        self.events.emit(Event::State(state.clone()));
        Ok(state)
    }

    /// Creates an anonymous user on the backend and signs in as it, replacing the current
    /// session. Runs as a task of this floor: a caller that stops waiting does not leave
    /// a half-adopted session. While the saved session is not readable yet (`Unknown`),
    /// fails with `Storage` instead of replacing the saved user.
    pub async fn sign_in_anonymously(self: &Arc<Self>, device_id: Option<String>) -> Result<User> {
        let this = self.clone();
        owned_task(async move { this.sign_in_task(device_id).await }).await
    }

    async fn sign_in_task(&self, device_id: Option<String>) -> Result<User> {
        if matches!(self.lock().phase, Phase::Unknown) {
            self.restore().await?;
        }
        let epoch = self.lock().epoch;
        let body = match device_id {
            Some(id) => serde_json::json!({ "device_id": id }),
            None => serde_json::json!({}),
        };
        let req = Request::post_json("auth/anonymous", body.to_string()).unauthenticated();
        let reply = self.call(&req, false).await?;
        let session = Session::from_response(&reply, self.transport.clock.now_s())?;
        let user = User {
            id: session.user_id.clone(),
            anonymous: session.anonymous,
        };
        let blob = session.to_stored(None)?;
        let gate = self.store_gate.lock().await;
        let superseded = self.lock().epoch != epoch;
        let saved = if superseded {
            Ok(())
        } else {
            self.store_save(blob).await
        };
        if superseded || saved.is_err() {
            drop(gate);
            // Nobody will ever use this session: revoke it rather than leave it live.
            self.revoke_on_server(session.refresh_token.clone()).await;
            return match saved {
                Err(e) => {
                    tracing::warn!(target: "tether::auth", error = %e, "the new session could not be saved; sign-in undone");
                    Err(e)
                }
                Ok(()) => {
                    tracing::info!(target: "tether::auth", "sign-in superseded by a later sign-in or sign-out");
                    Err(Error::Cancelled)
                }
            };
        }
        let state = {
            let mut inner = self.lock();
            inner.replace(Phase::SignedIn(Arc::new(session)));
            state_of(&inner.phase)
        };
        drop(gate);
        tracing::info!(target: "tether::auth", user_id = %user.id, "signed in");
        self.events.emit(Event::State(state));
        Ok(user)
    }

    /// A token fresh enough to send, refreshing first if it is within the skew margin (or
    /// if a refresh of it never got its answer).
    pub async fn token(self: &Arc<Self>, deadline: Instant) -> Result<Token> {
        if matches!(self.lock().phase, Phase::Unknown) {
            self.restore().await?;
        }
        let (session, generation, stale, unsaved) = {
            let inner = self.lock();
            let s = current(&inner)?;
            let stale =
                inner.spent(&s) || s.needs_refresh(self.transport.clock.now_s(), self.skew_s());
            (s, inner.generation, stale, inner.unsaved)
        };
        if !stale {
            if unsaved {
                self.retry_save();
            }
            return Ok(Token {
                session,
                generation,
            });
        }
        self.refresh(generation, deadline).await
    }

    /// The server rejected the token of `generation` (`401 invalid_token`): refresh
    /// unless that session was already replaced.
    pub async fn refresh_rejected(
        self: &Arc<Self>,
        generation: u64,
        deadline: Instant,
    ) -> Result<Token> {
        self.refresh(generation, deadline).await
    }

    /// Waits (within `deadline`) for the refresh in flight, starting one if there is none.
    async fn refresh(self: &Arc<Self>, stale: u64, deadline: Instant) -> Result<Token> {
        let mut rx = {
            let mut inner = self.lock();
            let session = current(&inner)?;
            if inner.generation != stale
                && !inner.spent(&session)
                && !session.needs_refresh(self.transport.clock.now_s(), self.skew_s())
            {
                return Ok(Token {
                    session,
                    generation: inner.generation,
                });
            }
            // A refresh task that died without an outcome (a panic) does not block the
            // next one.
            match inner.inflight.clone().filter(|rx| rx.has_changed().is_ok()) {
                Some(rx) => rx,
                None => {
                    let (tx, rx) = watch::channel(None);
                    inner.inflight = Some(rx.clone());
                    let (epoch, generation) = (inner.epoch, inner.generation);
                    let this = self.clone();
                    let task = async move {
                        let outcome = this.refresh_task(epoch, generation, session).await;
                        this.lock().inflight = None;
                        tx.send_replace(Some(outcome));
                    };
                    runtime().spawn(task.with_current_subscriber());
                    rx
                }
            }
        };
        let waited = tokio::time::timeout_at(deadline, rx.wait_for(Option::is_some)).await;
        let outcome = match waited {
            Err(_) => return Err(Error::Timeout(TimeoutKind::Total)),
            Ok(Err(_)) => return Err(Error::Storage("the session refresh stopped".into())),
            Ok(Ok(v)) => v.clone(),
        };
        match outcome {
            Some(Ok((session, generation))) => Ok(Token {
                session,
                generation,
            }),
            Some(Err(e)) => Err(e),
            None => Err(Error::Storage("the session refresh stopped".into())),
        }
    }

    /// One refresh, start to end: record, send (with retries), save, adopt.
    async fn refresh_task(&self, epoch: u64, generation: u64, session: Arc<Session>) -> Outcome {
        let superseded = |inner: &Inner| inner.epoch != epoch || inner.generation != generation;
        // 1. Make it recoverable before anything is sent.
        let pending = {
            let _gate = self.store_gate.lock().await;
            let (existing, unsaved) = {
                let inner = self.lock();
                if superseded(&inner) {
                    return Err(Error::SignedOut);
                }
                (inner.pending.clone(), inner.unsaved)
            };
            match existing {
                Some(p) if p.refresh_token == session.refresh_token && !unsaved => p,
                _ => {
                    let p = PendingRefresh::new(&session.refresh_token);
                    if let Err(e) = self.store_save(session.to_stored(Some(&p))?).await {
                        tracing::warn!(target: "tether::auth", error = %e, "cannot record the refresh; not refreshing, the session is kept");
                        return Err(e);
                    }
                    let mut inner = self.lock();
                    if !superseded(&inner) {
                        inner.pending = Some(p.clone());
                        inner.unsaved = false;
                    }
                    p
                }
            }
        };
        // 2. Send it, replaying the recorded key on every attempt.
        tracing::debug!(target: "tether::auth", "refreshing the session");
        let body = serde_json::json!({ "refresh_token": pending.refresh_token }).to_string();
        let req = Request::post_json("auth/refresh", body)
            .unauthenticated()
            .with_key(pending.key.clone());
        let fresh = match self.call(&req, true).await {
            Ok(reply) => Session::from_response(&reply, self.transport.clock.now_s())?,
            Err(Error::Http(f)) if f.status == 401 && f.code == "session_revoked" => {
                tracing::warn!(target: "tether::auth", "the backend revoked the session; signing out");
                let _ = self.end_session(Some(generation)).await;
                return Err(Error::SignedOut);
            }
            Err(e) => {
                tracing::warn!(target: "tether::auth", error = %e, "refresh failed; the session is kept");
                return Err(e);
            }
        };
        // 3. Save before anyone uses it; 4. adopt, unless something newer happened.
        let blob = fresh.to_stored(None)?;
        let gate = self.store_gate.lock().await;
        if superseded(&self.lock()) {
            return Err(Error::SignedOut);
        }
        let saved = self.store_save(blob).await;
        let fresh = Arc::new(fresh);
        let new_generation = {
            let mut inner = self.lock();
            if superseded(&inner) {
                // A sign-out arrived during the save; it clears the store after us.
                return Err(Error::SignedOut);
            }
            inner.phase = Phase::SignedIn(fresh.clone());
            inner.generation += 1;
            match &saved {
                Ok(()) => {
                    inner.pending = None;
                    inner.unsaved = false;
                }
                // The store keeps the old session and its recovery record: a relaunch
                // replays the refresh and gets this same session back.
                Err(_) => inner.unsaved = true,
            }
            inner.generation
        };
        drop(gate);
        if let Err(e) = saved {
            tracing::warn!(target: "tether::auth", error = %e, "the refreshed session could not be saved yet; kept in memory, saved again on next use");
        }
        tracing::info!(target: "tether::auth", user_id = %fresh.user_id, "session refreshed");
        self.events.emit(Event::Refreshed(fresh.user_id.clone()));
        Ok((fresh, new_generation))
    }

    /// Saves an in-memory session whose save failed, in the background (one retry at a
    /// time).
    fn retry_save(self: &Arc<Self>) {
        if std::mem::replace(&mut self.lock().resaving, true) {
            return;
        }
        let this = self.clone();
        let task = async move {
            this.resave().await;
            this.lock().resaving = false;
        };
        runtime().spawn(task.with_current_subscriber());
    }

    async fn resave(&self) {
        {
            let _gate = self.store_gate.lock().await;
            let (session, generation) = {
                let inner = self.lock();
                match (&inner.phase, inner.unsaved) {
                    (Phase::SignedIn(s), true) => (s.clone(), inner.generation),
                    _ => return,
                }
            };
            let Ok(blob) = session.to_stored(None) else {
                return;
            };
            match self.store_save(blob).await {
                Ok(()) => {
                    let mut inner = self.lock();
                    if inner.generation == generation {
                        inner.unsaved = false;
                        inner.pending = None;
                    }
                    tracing::info!(target: "tether::auth", "the refreshed session is saved now");
                }
                Err(e) => {
                    tracing::warn!(target: "tether::auth", error = %e, "saving the refreshed session failed again; retried on next use")
                }
            }
        }
    }

    /// The backend revoked the session of `generation` (`401 session_revoked`): sign out
    /// locally, unless that session was replaced since.
    pub async fn revoked(&self, generation: u64) {
        let _ = self.end_session(Some(generation)).await;
    }

    /// Signs out: the local session is gone at once (memory, listeners, then the store),
    /// then the backend is asked to revoke the refresh token's whole family, with the
    /// refresh token as the proof (an expired access token does not matter). Works before
    /// `restore()` too: the stored refresh token is read to revoke it. If the backend
    /// cannot be reached, the device is signed out all the same and the family stays
    /// valid on the server until it expires, with no copy of its tokens left here.
    /// Fails only with `Storage` if the token store could not be cleared.
    pub async fn sign_out(self: &Arc<Self>) -> Result<()> {
        let this = self.clone();
        owned_task(async move { this.sign_out_task().await }).await
    }

    async fn sign_out_task(&self) -> Result<()> {
        let (known, cleared) = self.end_session(None).await?;
        let token = match known {
            Some(t) => Some(t),
            None => cleared,
        };
        if let Some(rt) = token {
            self.revoke_on_server(rt).await;
        }
        Ok(())
    }

    /// Ends the session (of `generation` only, if given). Returns the refresh token the
    /// memory held and, when the memory held none (not restored yet), the one read from
    /// the store before clearing it.
    async fn end_session(
        &self,
        generation: Option<u64>,
    ) -> Result<(Option<String>, Option<String>)> {
        let (known, epoch, changed) = {
            let mut inner = self.lock();
            if generation.is_some_and(|g| g != inner.generation) {
                return Ok((None, None));
            }
            let known = match &inner.phase {
                Phase::SignedIn(s) => Some(s.refresh_token.clone()),
                _ => inner.pending.as_ref().map(|p| p.refresh_token.clone()),
            };
            let changed = !matches!(inner.phase, Phase::SignedOut);
            inner.replace(Phase::SignedOut);
            (known, inner.epoch, changed)
        };
        if changed {
            tracing::info!(target: "tether::auth", "signed out");
            self.events.emit(Event::State(AuthState::SignedOut));
        }
        let _gate = self.store_gate.lock().await;
        if self.lock().epoch != epoch {
            // A sign-in after this sign-out owns the store now.
            return Ok((known, None));
        }
        let mut stored = None;
        if known.is_none() {
            let store = self.store.clone();
            if let Ok(Ok(Some(blob))) = blocking(move || store.load()).await {
                stored = Session::from_stored(&blob)
                    .ok()
                    .map(|(s, _)| s.refresh_token);
            }
        }
        let store = self.store.clone();
        blocking(move || store.clear()).await?.map_err(|e| {
            tracing::warn!(target: "tether::auth", error = %e, "token store clear failed");
            Error::Storage(e.to_string())
        })?;
        Ok((known, stored))
    }

    /// Asks the backend to revoke `refresh_token`'s family (best effort, logged).
    async fn revoke_on_server(&self, refresh_token: String) {
        let body = serde_json::json!({ "refresh_token": refresh_token }).to_string();
        let req = Request::post_json("auth/signout", body).unauthenticated();
        match self.call(&req, true).await {
            Ok(_) => tracing::debug!(target: "tether::auth", "the backend revoked the session"),
            Err(e) => {
                tracing::info!(target: "tether::auth", error = %e, "server-side sign-out not reached; the session family stays valid on the server until it expires")
            }
        }
    }

    /// One network call of this floor, under its deadline policy: returns the body of a
    /// 2xx, or the decoded failure. `replay_safe` says whether a request that may have
    /// reached the server can be sent again.
    async fn call(&self, req: &Request, replay_safe: bool) -> Result<Vec<u8>> {
        let deadline = Instant::now() + self.timing.total;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let err = match self.transport.send(req, None, deadline).await {
                Ok(resp) if resp.status().is_success() => {
                    match self
                        .transport
                        .read_body(resp, AUTH_BODY_CAP, deadline)
                        .await
                    {
                        Ok(body) => return Ok(body),
                        Err(e) => e,
                    }
                }
                Ok(resp) => self.transport.error_from(resp, deadline).await,
                Err(e) => e,
            };
            match retry::next_wait(&self.timing.retry, attempt, &err, replay_safe, deadline) {
                None => return Err(err),
                Some(wait) => {
                    tracing::debug!(target: "tether::auth", path = %req.path, attempt, error = %err, "transient failure; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn store_save(&self, blob: String) -> Result<()> {
        let store = self.store.clone();
        blocking(move || store.save(blob))
            .await?
            .map_err(|e| Error::Storage(e.to_string()))
    }
}

fn current(inner: &Inner) -> Result<Arc<Session>> {
    match &inner.phase {
        Phase::SignedIn(s) => Ok(s.clone()),
        Phase::SignedOut => Err(Error::SignedOut),
        Phase::Unknown => Err(Error::Storage("session not loaded yet".into())),
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

/// Runs `fut` as a task of the library runtime and waits for it: a caller that stops
/// waiting (cancelled, dropped) leaves it to finish, so a state change is never cut in
/// half.
async fn owned_task<T: Send + 'static>(
    fut: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    runtime()
        .spawn(fut.with_current_subscriber())
        .await
        .map_err(|e| Error::Storage(format!("auth task failed: {e}")))?
}

/// Runs foreign store code on a blocking thread: a keychain call must not stall the
/// async workers (and, guarded, a host ending that thread at exit cannot abort).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(move || call_foreign(f))
        .await
        .map_err(|e| Error::Storage(format!("token store call failed: {e}")))
}
