//! A fault-injection HTTP server that speaks the Tether backend contract
//! (`shared/contract/API.md`) closely enough to test the client for real over loopback,
//! behaving like the reference Worker (`worker/src`) where the contract leaves room.
//!
//! Tests script it: push [`Fault`]s for a path (a status, a dropped connection, a delay,
//! an oversized or stalled body, raw bytes), [`hold`](TestServer::hold) a response back
//! until the test releases it, expire access tokens, skew its clock, shorten token
//! lifetimes and the refresh replay window, and read back every request it saw and what
//! it thinks of a refresh token.
//!
//! It is a test double of the *backend*, not of Tether: tokens are random strings shaped
//! like JWTs (the `exp` claim is real, the signature is not checked by anyone), and all
//! state is in memory.
//!
//! Where things live:
//! - `lib.rs` (this file): [`TestServer`] (start, the scripting API, the request log),
//!   [`Hold`], and the pipeline every request takes: log, fault, routes, hold, headers.
//! - `faults.rs`: the [`Fault`] enum and how a fault is applied.
//! - `admin.rs`: the `/__admin/` HTTP commands for the binding tests.
//! - `http.rs`: response helpers (JSON and error bodies, `Date`).
//! - `routes/mod.rs`: routing, auth in front, quota headers, the idempotency store,
//!   `/api/v1/echo`; `routes/auth.rs` (anonymous, refresh, signout), `routes/quota.rs`,
//!   `routes/jobs.rs`, `routes/images.rs`, `routes/upload.rs` (multipart `detect`, `vision`),
//!   `routes/chat.rs` (the SSE chat, scriptable with [`ChatScript`]).
//! - `sample.rs`: sample photos made on the spot (EXIF GPS, orientation, ICC).

mod admin;
mod faults;
mod http;
mod routes;
pub mod sample;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

pub use faults::Fault;
pub use routes::chat::{ChatEnd, ChatScript};
pub use routes::images::{png, ImageFault};
pub use routes::upload::Upload;

use faults::Outcome;
use http::{error_resp, set_date, Body};
use routes::Req;

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub idempotency_key: Option<String>,
    pub bearer: Option<String>,
    pub user_agent: Option<String>,
    pub client_id: Option<String>,
    pub body: String,
}

/// All server state, behind one lock that no `.await` ever holds.
pub(crate) struct Inner {
    clock_offset_s: i64,
    next_id: u64,
    pub(crate) sessions: routes::auth::Sessions,
    pub(crate) quota: routes::quota::Quota,
    pub(crate) idempotency: routes::Idempotency,
    pub(crate) jobs: routes::jobs::Jobs,
    pub(crate) images: routes::images::Images,
    pub(crate) chats: routes::chat::Chats,
    pub(crate) faults: VecDeque<(String, Fault)>,
    holds: VecDeque<(String, Arc<HoldShared>)>,
    /// Holds made through the admin API (`hold`), kept until its `release`.
    admin_holds: Vec<(String, Arc<HoldShared>)>,
    pub(crate) log: Vec<Recorded>,
    /// Every upload handled (charged), in order.
    pub(crate) uploads: Vec<routes::upload::Upload>,
    /// The largest image an upload may carry.
    pub(crate) upload_limit: u64,
}

impl Inner {
    /// The server's clock in seconds: the real one moved by the scripted offset.
    fn now_s(&self) -> i64 {
        real_now_s() + self.clock_offset_s
    }

    /// A fresh number for ids (users, families, jobs, request ids).
    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

fn real_now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The state lock; a panicked test thread must not take every later request down too.
pub(crate) fn lock(state: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The running server. Stops accepting when dropped.
pub struct TestServer {
    addr: SocketAddr,
    state: Arc<Mutex<Inner>>,
    _stop: oneshot::Sender<()>,
}

impl TestServer {
    /// Starts on `127.0.0.1` with an ephemeral port, on the current tokio runtime.
    pub async fn start() -> TestServer {
        Self::start_on(0).await
    }

    /// Starts on `127.0.0.1:port` (0 = ephemeral).
    pub async fn start_on(port: u16) -> TestServer {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(Inner {
            clock_offset_s: 0,
            next_id: 0,
            sessions: routes::auth::Sessions::default(),
            quota: routes::quota::Quota::new(real_now_s()),
            idempotency: routes::Idempotency::default(),
            jobs: routes::jobs::Jobs::default(),
            images: routes::images::Images::default(),
            chats: routes::chat::Chats::default(),
            faults: VecDeque::new(),
            holds: VecDeque::new(),
            admin_holds: Vec::new(),
            log: Vec::new(),
            uploads: Vec::new(),
            upload_limit: routes::upload::DEFAULT_LIMIT,
        }));
        let (stop, mut stopped) = oneshot::channel();
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let st = st.clone();
                        tokio::spawn(async move {
                            let svc = hyper::service::service_fn(move |req| handle(st.clone(), req));
                            let _ = hyper::server::conn::http1::Builder::new()
                                .keep_alive(true)
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                }
            }
        });
        TestServer {
            addr,
            state,
            _stop: stop,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut lock(&self.state))
    }

    /// Queues a fault for the next request whose path is `path` (`*` = any path).
    pub fn fault(&self, path: &str, fault: Fault) {
        self.with(|s| s.faults.push_back((path.to_string(), fault)));
    }

    /// Holds back the response to the next request to `path` (`*` = any path): the
    /// request is handled as usual (a refresh rotates the tokens, a job is charged), then
    /// its response waits until the [`Hold`] is released or dropped. Holds for one path
    /// catch its requests in the order they were made. A queued fault still applies; the
    /// hold then delays its outcome (a response, or a closed connection).
    pub fn hold(&self, path: &str) -> Hold {
        let shared = HoldShared::new();
        self.with(|s| s.holds.push_back((path.to_string(), shared.clone())));
        Hold { shared }
    }

    /// Lifetime of access tokens issued from now on.
    pub fn set_token_ttl(&self, secs: i64) {
        self.with(|s| s.sessions.ttl_s = secs);
    }

    /// Moves the server's clock (its `Date` header and token times) by `secs`.
    pub fn set_clock_offset(&self, secs: i64) {
        self.with(|s| s.clock_offset_s = secs);
    }

    /// Quota per user from now on.
    pub fn set_quota_limit(&self, limit: u64) {
        self.with(|s| s.quota.limit = limit);
    }

    /// Every user's plan and limit from now on: what a completed purchase does.
    pub fn set_plan(&self, plan: &str, limit: u64) {
        self.with(|s| {
            s.quota.plan = plan.to_string();
            s.quota.limit = limit;
        });
    }

    /// How long after a refresh its retry (same refresh token, same `Idempotency-Key`)
    /// still gets the same session back; 24 h unless set. Measured on the real clock
    /// (`set_clock_offset` does not move it) and applied to refreshes already made too.
    pub fn set_replay_window(&self, window: Duration) {
        self.with(|s| s.sessions.replay_window = window);
    }

    /// Rejects every access token issued so far with `401 invalid_token`.
    pub fn expire_access_tokens(&self) {
        self.with(|s| s.sessions.reject_issued_access_tokens());
    }

    /// Revokes every session family (their refresh tokens answer `session_revoked`).
    /// Not counted in [`family_revocations`](TestServer::family_revocations).
    pub fn revoke_all_sessions(&self) {
        self.with(|s| s.sessions.revoke_all());
    }

    /// How many session families the server revoked, by reuse of a spent refresh token
    /// or by sign-out; a family revoked again is not counted again.
    pub fn family_revocations(&self) -> usize {
        self.with(|s| s.sessions.family_revocations)
    }

    /// What the server thinks of a refresh token: `"fresh"` (it would rotate),
    /// `"used"` (spent; only a replay of its own refresh is still answered), `"revoked"`
    /// (its family is), or `None` if the server never issued it.
    pub fn refresh_token_state(&self, refresh_token: &str) -> Option<&'static str> {
        self.with(|s| s.sessions.refresh_token_state(refresh_token))
    }

    /// Every request seen so far, faulted ones included.
    pub fn requests(&self) -> Vec<Recorded> {
        self.with(|s| s.log.clone())
    }

    /// Every request to `path` (e.g. `/api/v1/auth/refresh`), in order.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.with(|s| s.log.iter().filter(|r| r.path == path).cloned().collect())
    }

    /// The `Idempotency-Key` of every request to `path`, in order.
    pub fn idempotency_keys(&self, path: &str) -> Vec<Option<String>> {
        self.requests_to(path)
            .into_iter()
            .map(|r| r.idempotency_key)
            .collect()
    }

    /// How many requests hit `path`.
    pub fn count(&self, path: &str) -> usize {
        self.with(|s| s.log.iter().filter(|r| r.path == path).count())
    }

    /// How many requests presented an access token past its expiry (server time).
    /// Sign-out is not counted: the contract lets it carry an expired one.
    pub fn expired_token_uses(&self) -> usize {
        self.with(|s| s.sessions.expired_uses)
    }

    /// The largest image `detect`/`vision` accept (10 MiB unless set).
    pub fn set_upload_limit(&self, bytes: u64) {
        self.with(|s| s.upload_limit = bytes);
    }

    /// Every upload the server handled (and charged), in order.
    pub fn uploads(&self) -> Vec<Upload> {
        self.with(|s| s.uploads.clone())
    }

    /// Queues a defect for the next `POST /api/v1/images` answer.
    pub fn image_fault(&self, fault: ImageFault) {
        self.with(|s| s.images.faults.push_back(fault));
    }

    /// How many jobs the server created (ran); a replayed submission creates none.
    pub fn job_runs(&self) -> usize {
        self.with(|s| s.jobs.runs)
    }

    /// Scripts the next chat reply (queued: one script per `POST /api/v1/chat`).
    pub fn script_chat(&self, script: ChatScript) {
        self.with(|s| s.chats.scripts.push_back(script));
    }

    /// How many metered requests were charged to quota.
    pub fn charges(&self) -> usize {
        self.with(|s| s.quota.charges)
    }
}

/// A response held back by [`TestServer::hold`]. Dropping it releases the response.
///
/// Only tokio's runtime-independent sync primitives are inside, so a test may wait on
/// it and release it from any thread or runtime.
pub struct Hold {
    shared: Arc<HoldShared>,
}

struct HoldShared {
    handled: watch::Sender<bool>,
    released: watch::Sender<bool>,
}

impl HoldShared {
    fn new() -> Arc<Self> {
        Arc::new(HoldShared {
            handled: watch::Sender::new(false),
            released: watch::Sender::new(false),
        })
    }

    fn is_released(&self) -> bool {
        *self.released.borrow()
    }

    /// Server side: the request is handled; wait for the release.
    async fn pass(&self) {
        self.handled.send_replace(true);
        let mut released = self.released.subscribe();
        // The sender lives in `self`, so this ends only by a release.
        let _ = released.wait_for(|r| *r).await;
    }
}

impl Hold {
    /// Resolves once the server has handled the held request (its state changes are
    /// done, its response is waiting); at once if that already happened.
    pub async fn handled(&self) {
        let mut handled = self.shared.handled.subscribe();
        let _ = handled.wait_for(|h| *h).await;
    }

    /// Sends the held response (if the client has gone away, nothing happens). Before
    /// the request arrives, it cancels the hold.
    pub fn release(&self) {
        self.shared.released.send_replace(true);
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.release();
    }
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hold")
            .field("handled", &*self.shared.handled.borrow())
            .field("released", &self.shared.is_released())
            .finish()
    }
}

impl Inner {
    /// Admin `hold`: like [`TestServer::hold`], released by [`Inner::admin_release`].
    pub(crate) fn admin_hold(&mut self, path: &str) {
        let shared = HoldShared::new();
        self.holds.push_back((path.to_string(), shared.clone()));
        self.admin_holds.push((path.to_string(), shared));
    }

    /// Admin `hold-state`: whether the newest admin hold on `path` caught its request
    /// (handled, response waiting); `None` without one.
    pub(crate) fn admin_hold_handled(&self, path: &str) -> Option<bool> {
        let (_, h) = self.admin_holds.iter().rev().find(|(p, _)| p == path)?;
        let handled = *h.handled.borrow();
        Some(handled)
    }

    /// Admin `release`: sends every response the admin holds on `path` keep back.
    pub(crate) fn admin_release(&mut self, path: &str) {
        self.admin_holds.retain(|(p, h)| {
            let keep = p != path;
            if !keep {
                h.released.send_replace(true);
            }
            keep
        });
    }
}

/// Takes the first live hold for `path`; released ones are dropped on the way, so a hold
/// released before its request came does not catch a later one.
fn take_hold(
    holds: &mut VecDeque<(String, Arc<HoldShared>)>,
    path: &str,
) -> Option<Arc<HoldShared>> {
    holds.retain(|(_, h)| !h.is_released());
    let i = holds.iter().position(|(p, _)| p == path || p == "*")?;
    holds.remove(i).map(|(_, h)| h)
}

/// Every request: admin commands aside, it is logged, its fault (if any) applied around
/// the routes' answer, held if a test asked, and given `X-Request-ID` and `Date`.
async fn handle(
    state: Arc<Mutex<Inner>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::io::Error> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let bearer =
        header("authorization").and_then(|v| v.strip_prefix("Bearer ").map(str::to_string));
    let key = header("idempotency-key");
    let user_agent = header("user-agent");
    let client_id = header("x-client-id");
    let content_type = header("content-type");
    let content_length = header("content-length").and_then(|v| v.parse::<u64>().ok());
    let mut upload = None;
    let body = if method == hyper::Method::POST && routes::upload::is_upload(&path) {
        // Faults that act while the body arrives are taken now; others wait their turn.
        let (read_fault, limit) = {
            let mut s = lock(&state);
            let pos = s
                .faults
                .iter()
                .position(|(p, f)| (p == &path || p == "*") && routes::upload::is_read_fault(f));
            let f = pos.and_then(|i| s.faults.remove(i)).map(|(_, f)| f);
            (f, s.upload_limit)
        };
        let read = routes::upload::read(
            path.trim_start_matches("/api/v1/"),
            req.into_body(),
            content_type.as_deref(),
            content_length,
            limit,
            read_fault,
        )
        .await;
        match read {
            Ok(u) => {
                let fp = routes::upload::fingerprint(&u);
                upload = Some(Ok(u));
                fp
            }
            Err(routes::upload::ReadFail::Close) => {
                return Err(std::io::Error::other("fault: reset mid-body"))
            }
            Err(routes::upload::ReadFail::Answer(status, code, message)) => {
                upload = Some(Err((status, code, message)));
                bytes::Bytes::new()
            }
        }
    } else {
        match http_body_util::BodyExt::collect(http_body_util::Limited::new(
            req.into_body(),
            1 << 20,
        ))
        .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => return Ok(error_resp(413, "payload_too_large", "body over 1 MiB")),
        }
    };

    if let Some(cmd) = path.strip_prefix("/__admin/") {
        return Ok(admin::handle(&state, cmd, &body));
    }
    let (fault, hold, request_no) = {
        let mut s = lock(&state);
        s.log.push(Recorded {
            method: method.to_string(),
            path: path.clone(),
            idempotency_key: key.clone(),
            bearer: bearer.clone(),
            user_agent,
            client_id,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        let pos = s.faults.iter().position(|(p, _)| p == &path || p == "*");
        let fault = pos.and_then(|i| s.faults.remove(i)).map(|(_, f)| f);
        let hold = take_hold(&mut s.holds, &path);
        (fault, hold, s.next_id())
    };

    let routes_state = state.clone();
    let answer = move || {
        let mut s = lock(&routes_state);
        let req = Req {
            method,
            path,
            bearer,
            idempotency_key: key,
            body,
            now: s.now_s(),
            upload,
        };
        routes::dispatch(&mut s, &req)
    };
    let outcome = faults::apply(fault, answer).await;
    if let Some(hold) = hold {
        hold.pass().await;
    }
    match outcome {
        Outcome::Close(why) => Err(std::io::Error::other(why)),
        Outcome::Respond { mut response, date } => {
            if let Ok(v) = HeaderValue::from_str(&format!("req-{request_no}")) {
                response.headers_mut().insert("x-request-id", v);
            }
            if date && !response.headers().contains_key("date") {
                let now = lock(&state).now_s();
                set_date(&mut response, now);
            }
            Ok(response)
        }
    }
}
