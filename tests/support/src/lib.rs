//! A fault-injection HTTP server that speaks the Tether backend contract
//! (`shared/contract/API.md`) closely enough to test the client for real over loopback:
//! anonymous sign-in, rotating refresh tokens with reuse detection (and idempotent
//! replay of a retried refresh), sign-out, `GET /quota`, and metered `POST /jobs` with
//! idempotency keys and quota headers.
//!
//! Tests script it: push [`Fault`]s for a path (a status, a dropped connection, a delay,
//! an oversized or stalled body, raw bytes), expire access tokens, skew its clock,
//! shorten token lifetimes, and read back every request it saw.
//!
//! It is a test double of the *backend*, not of Tether: tokens are random strings shaped
//! like JWTs (the `exp` claim is real, the signature is not checked by anyone), and all
//! state is in memory.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

type Body = BoxBody<Bytes, Infallible>;

/// Something to do instead of (or before) answering the next request to a path.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and the contract's error body.
    Status {
        status: u16,
        code: &'static str,
        retry_after: Option<u64>,
    },
    /// Read the request, then close the connection without a response.
    Drop,
    /// Handle the request (state changes happen), then close the connection without
    /// sending the response: the client cannot know whether it was processed.
    DropAfterHandling,
    /// Wait, then answer normally.
    Delay(Duration),
    /// Answer 200 with a JSON body of `bytes` bytes (with or without Content-Length).
    HugeBody { bytes: usize, chunked: bool },
    /// Answer with exactly these bytes.
    Raw {
        status: u16,
        content_type: &'static str,
        body: String,
    },
    /// Send the head and a first chunk, then go silent for this long.
    StallBody(Duration),
    /// Answer normally but without a `Date` header.
    NoDate,
    /// Promise a body (Content-Length) and break off half-way.
    TruncatedBody,
}

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

struct AccessRec {
    user: String,
    exp: i64,
}

struct RefreshRec {
    user: String,
    anonymous: bool,
    family: u64,
    used: bool,
}

struct Job {
    id: String,
}

#[derive(Default)]
struct Inner {
    clock_offset_s: i64,
    ttl_s: i64,
    quota_limit: u64,
    next_id: u64,
    access: HashMap<String, AccessRec>,
    revoked_access: HashSet<String>,
    refresh: HashMap<String, RefreshRec>,
    revoked_families: HashSet<u64>,
    refresh_replays: HashMap<(String, String), String>,
    used: HashMap<String, u64>,
    idempotency: HashMap<(String, String), (String, u16, String)>,
    jobs: HashMap<String, Job>,
    faults: VecDeque<(String, Fault)>,
    log: Vec<Recorded>,
    expired_uses: usize,
    charges: usize,
}

/// The running server. Stops when dropped.
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
            ttl_s: 900,
            quota_limit: 50,
            ..Inner::default()
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
        f(&mut self.state.lock().unwrap())
    }

    /// Queues a fault for the next request whose path is `path` (`*` = any path).
    pub fn fault(&self, path: &str, fault: Fault) {
        self.with(|s| s.faults.push_back((path.to_string(), fault)));
    }

    /// Lifetime of access tokens issued from now on.
    pub fn set_token_ttl(&self, secs: i64) {
        self.with(|s| s.ttl_s = secs);
    }

    /// Moves the server's clock (its `Date` header and token times) by `secs`.
    pub fn set_clock_offset(&self, secs: i64) {
        self.with(|s| s.clock_offset_s = secs);
    }

    /// Quota per user from now on.
    pub fn set_quota_limit(&self, limit: u64) {
        self.with(|s| s.quota_limit = limit);
    }

    /// Rejects every access token issued so far with `401 invalid_token`.
    pub fn expire_access_tokens(&self) {
        self.with(|s| {
            let all: Vec<String> = s.access.keys().cloned().collect();
            s.revoked_access.extend(all);
        });
    }

    /// Revokes every session family (their refresh tokens answer `session_revoked`).
    pub fn revoke_all_sessions(&self) {
        self.with(|s| {
            let fams: Vec<u64> = s.refresh.values().map(|r| r.family).collect();
            s.revoked_families.extend(fams);
        });
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
    pub fn expired_token_uses(&self) -> usize {
        self.with(|s| s.expired_uses)
    }

    /// How many metered requests were charged to quota.
    pub fn charges(&self) -> usize {
        self.with(|s| s.charges)
    }
}

fn now_s(offset: i64) -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + offset
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A body fed chunk by chunk from a channel (for chunked, stalled and huge bodies).
struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

fn json_resp(status: u16, v: &Value) -> Response<Body> {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

fn error_resp(status: u16, code: &str, message: &str) -> Response<Body> {
    let mut r = json_resp(
        status,
        &json!({ "error": { "code": code, "message": message } }),
    );
    if status == 401 && code == "invalid_token" {
        r.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
    }
    r
}

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
    let ua = header("user-agent");
    let client_id = header("x-client-id");
    let body = match http_body_util::Limited::new(req.into_body(), 1 << 20)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(error_resp(413, "payload_too_large", "body over 1 MiB")),
    };
    let body_text = String::from_utf8_lossy(&body).to_string();

    // Admin calls script the server; they are never logged nor faulted.
    if let Some(cmd) = path.strip_prefix("/__admin/") {
        return Ok(admin(&state, cmd, &body));
    }
    let (fault, offset, request_no) = {
        let mut s = state.lock().unwrap();
        s.log.push(Recorded {
            method: method.to_string(),
            path: path.clone(),
            idempotency_key: key.clone(),
            bearer: bearer.clone(),
            user_agent: ua,
            client_id: client_id.clone(),
            body: body_text.clone(),
        });
        let pos = s.faults.iter().position(|(p, _)| p == &path || p == "*");
        let fault = pos.and_then(|i| s.faults.remove(i)).map(|(_, f)| f);
        s.next_id += 1;
        (fault, s.clock_offset_s, s.next_id)
    };

    // The normal answer (state changes included), for the arms that give one.
    let answer = || {
        route(
            &state,
            &method,
            &path,
            bearer.as_deref(),
            key.as_deref(),
            &body,
        )
    };
    let mut send_date = true;
    let mut resp = match fault {
        Some(Fault::Drop) => return Err(std::io::Error::other("fault: connection dropped")),
        Some(Fault::Status {
            status,
            code,
            retry_after,
        }) => {
            let mut r = error_resp(status, code, "injected fault");
            if let Some(s) = retry_after {
                r.headers_mut().insert("retry-after", HeaderValue::from(s));
            }
            r
        }
        Some(Fault::HugeBody { bytes, chunked }) => {
            if chunked {
                let (tx, rx) = mpsc::channel(4);
                tokio::spawn(async move {
                    let chunk = Bytes::from(vec![b' '; 64 * 1024]);
                    let mut sent = 0;
                    while sent < bytes {
                        let n = (bytes - sent).min(chunk.len());
                        if tx.send(chunk.slice(..n)).await.is_err() {
                            break;
                        }
                        sent += n;
                    }
                });
                let mut r = Response::new(ChannelBody(rx).boxed());
                r.headers_mut()
                    .insert("content-type", HeaderValue::from_static("application/json"));
                r
            } else {
                let mut r = Response::new(full(vec![b' '; bytes]));
                r.headers_mut()
                    .insert("content-type", HeaderValue::from_static("application/json"));
                r
            }
        }
        Some(Fault::Raw {
            status,
            content_type,
            body,
        }) => {
            let mut r = Response::new(full(body));
            *r.status_mut() = StatusCode::from_u16(status).unwrap();
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static(content_type));
            r
        }
        Some(Fault::TruncatedBody) => {
            let (tx, rx) = mpsc::channel(1);
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from_static(b"{\"plan\":\"fr")).await;
            });
            let mut r = Response::new(ChannelBody(rx).boxed());
            r.headers_mut()
                .insert("content-length", HeaderValue::from(200u64));
            r.headers_mut()
                .insert("content-type", HeaderValue::from_static("application/json"));
            r
        }
        Some(Fault::StallBody(d)) => {
            let (tx, rx) = mpsc::channel(1);
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from_static(b"{\"partial\":")).await;
                tokio::time::sleep(d).await;
                let _ = tx.send(Bytes::from_static(b"true}")).await;
            });
            Response::new(ChannelBody(rx).boxed())
        }
        Some(Fault::DropAfterHandling) => {
            let _ = answer();
            return Err(std::io::Error::other("fault: dropped after handling"));
        }
        other => {
            if let Some(Fault::Delay(d)) = other {
                tokio::time::sleep(d).await;
            }
            if matches!(other, Some(Fault::NoDate)) {
                send_date = false;
            }
            answer()
        }
    };
    let h = resp.headers_mut();
    h.insert(
        "x-request-id",
        HeaderValue::from_str(&format!("req-{request_no}")).unwrap(),
    );
    if send_date {
        let date = SystemTime::now() + Duration::from_secs(offset.max(0) as u64)
            - Duration::from_secs((-offset).max(0) as u64);
        h.insert(
            "date",
            HeaderValue::from_str(&httpdate::fmt_http_date(date)).unwrap(),
        );
    }
    Ok(resp)
}

/// Scripting over HTTP, for the binding tests in other languages (which run this server
/// as the `tether serve` process): `POST /__admin/<command>` with a JSON body.
fn admin(state: &Mutex<Inner>, cmd: &str, body: &[u8]) -> Response<Body> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut s = state.lock().unwrap();
    match cmd {
        "expire-tokens" => {
            let all: Vec<String> = s.access.keys().cloned().collect();
            s.revoked_access.extend(all);
        }
        "quota-limit" => s.quota_limit = v["limit"].as_u64().unwrap_or(50),
        "fault" => {
            let path = v["path"].as_str().unwrap_or("*").to_string();
            let status = v["status"].as_u64().unwrap_or(503) as u16;
            let code: &'static str = match status {
                401 => "invalid_token",
                402 => "quota_exceeded",
                429 => "rate_limited",
                503 => "unavailable",
                s if s >= 500 => "internal",
                _ => "bad_request",
            };
            let fault = match v["kind"].as_str() {
                Some("drop") => Fault::Drop,
                Some("delay") => {
                    Fault::Delay(Duration::from_millis(v["ms"].as_u64().unwrap_or(1000)))
                }
                _ => Fault::Status {
                    status,
                    code,
                    retry_after: v["retry_after"].as_u64(),
                },
            };
            s.faults.push_back((path, fault));
        }
        "count" => {
            let path = v["path"].as_str().unwrap_or("");
            let n = s.log.iter().filter(|r| r.path == path).count();
            return json_resp(200, &json!({ "count": n }));
        }
        _ => return error_resp(404, "not_found", "unknown admin command"),
    }
    json_resp(200, &json!({ "ok": true }))
}

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

fn issue(s: &mut Inner, user: &str, anonymous: bool, family: u64) -> Value {
    let now = now_s(s.clock_offset_s);
    let exp = now + s.ttl_s;
    let jti = uuid::Uuid::new_v4();
    let access = format!(
        "{}.{}.{}",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64(
            json!({ "sub": user, "iat": now, "exp": exp, "jti": jti.to_string() })
                .to_string()
                .as_bytes()
        ),
        b64(uuid::Uuid::new_v4().as_bytes())
    );
    let refresh = format!("rt_{}", uuid::Uuid::new_v4().simple());
    s.access.insert(
        access.clone(),
        AccessRec {
            user: user.to_string(),
            exp,
        },
    );
    s.refresh.insert(
        refresh.clone(),
        RefreshRec {
            user: user.to_string(),
            anonymous,
            family,
            used: false,
        },
    );
    json!({
        "access_token": access, "token_type": "Bearer", "expires_in": s.ttl_s,
        "refresh_token": refresh, "user": { "id": user, "anonymous": anonymous }
    })
}

fn quota_headers(s: &Inner, user: &str, r: &mut Response<Body>) {
    let used = s.used.get(user).copied().unwrap_or(0);
    let h = r.headers_mut();
    h.insert("ratelimit-limit", HeaderValue::from(s.quota_limit));
    h.insert(
        "ratelimit-remaining",
        HeaderValue::from(s.quota_limit.saturating_sub(used)),
    );
    h.insert("ratelimit-reset", HeaderValue::from(3600u64));
    h.insert("x-plan", HeaderValue::from_static("free"));
}

fn quota_json(s: &Inner, user: &str) -> Value {
    let used = s.used.get(user).copied().unwrap_or(0);
    json!({ "plan": "free", "limit": s.quota_limit, "remaining": s.quota_limit.saturating_sub(used),
            "reset_at": "2026-11-25T00:00:00Z" })
}

fn route(
    state: &Mutex<Inner>,
    method: &Method,
    path: &str,
    bearer: Option<&str>,
    key: Option<&str>,
    body: &[u8],
) -> Response<Body> {
    let mut s = state.lock().unwrap();
    let s = &mut *s;
    let json_body: Option<Value> = serde_json::from_slice(body).ok();
    match (method, path) {
        (&Method::POST, "/api/v1/auth/anonymous") => {
            if !json_body.as_ref().is_some_and(Value::is_object) {
                return error_resp(400, "bad_request", "body must be a JSON object");
            }
            s.next_id += 1;
            let user = format!("u_{}", s.next_id);
            let family = s.next_id;
            json_resp(200, &issue(s, &user, true, family))
        }
        (&Method::POST, "/api/v1/auth/refresh") => {
            let Some(token) = json_body
                .as_ref()
                .and_then(|b| b["refresh_token"].as_str())
                .map(str::to_string)
            else {
                return error_resp(400, "bad_request", "refresh_token missing");
            };
            if let Some(k) = key {
                if let Some(replay) = s.refresh_replays.get(&(k.to_string(), token.clone())) {
                    return json_resp(200, &serde_json::from_str(replay).unwrap());
                }
            }
            let Some(rec) = s.refresh.get_mut(&token) else {
                return error_resp(401, "session_revoked", "unknown refresh token");
            };
            if rec.used {
                let family = rec.family;
                s.revoked_families.insert(family);
                return error_resp(401, "session_revoked", "refresh token reused");
            }
            rec.used = true;
            let (user, anonymous, family) = (rec.user.clone(), rec.anonymous, rec.family);
            if s.revoked_families.contains(&family) {
                return error_resp(401, "session_revoked", "session revoked");
            }
            let session = issue(s, &user, anonymous, family);
            if let Some(k) = key {
                s.refresh_replays
                    .insert((k.to_string(), token), session.to_string());
            }
            json_resp(200, &session)
        }
        _ => {
            // Everything else needs a valid access token.
            let now = now_s(s.clock_offset_s);
            let user = match bearer.and_then(|t| s.access.get(t).map(|a| (t, a))) {
                None => return error_resp(401, "invalid_token", "unknown access token"),
                Some((t, a)) => {
                    if a.exp <= now {
                        s.expired_uses += 1;
                        return error_resp(401, "invalid_token", "access token expired");
                    }
                    if s.revoked_access.contains(t) {
                        return error_resp(401, "invalid_token", "access token expired");
                    }
                    a.user.clone()
                }
            };
            let mut r = authed(s, method, path, &user, key, body, json_body.as_ref());
            quota_headers(s, &user, &mut r);
            r
        }
    }
}

fn authed(
    s: &mut Inner,
    method: &Method,
    path: &str,
    user: &str,
    key: Option<&str>,
    body: &[u8],
    json_body: Option<&Value>,
) -> Response<Body> {
    match (method, path) {
        (&Method::POST, "/api/v1/auth/signout") => {
            if let Some(rt) = json_body.and_then(|b| b["refresh_token"].as_str()) {
                if let Some(rec) = s.refresh.get(rt) {
                    let fam = rec.family;
                    s.revoked_families.insert(fam);
                }
            }
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        (&Method::GET, "/api/v1/quota") => {
            let mut q = quota_json(s, user);
            q["features"] = json!(["detect", "chat", "vision"]);
            json_resp(200, &q)
        }
        (&Method::POST, "/api/v1/jobs") => {
            let Some(key) = key else {
                return error_resp(400, "bad_request", "Idempotency-Key required");
            };
            let fingerprint = String::from_utf8_lossy(body).to_string();
            let id_key = (user.to_string(), key.to_string());
            if let Some((fp, status, stored)) = s.idempotency.get(&id_key) {
                if *fp != fingerprint {
                    return error_resp(422, "idempotency_key_reused", "same key, different body");
                }
                let mut r = json_resp(*status, &serde_json::from_str(stored).unwrap());
                r.headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
                return r;
            }
            let Some(kind) = json_body.and_then(|b| b["kind"].as_str()) else {
                return error_resp(400, "bad_request", "kind missing");
            };
            if kind != "transcribe" {
                return error_resp(422, "invalid_input", "unknown kind");
            }
            let used = s.used.get(user).copied().unwrap_or(0);
            if used >= s.quota_limit {
                let mut r = json_resp(
                    402,
                    &json!({ "error": { "code": "quota_exceeded", "message": "Free plan limit reached",
                        "plan_required": "pro", "quota": quota_json(s, user) } }),
                );
                r.headers_mut()
                    .insert("x-plan", HeaderValue::from_static("free"));
                return r;
            }
            *s.used.entry(user.to_string()).or_default() += 1;
            s.charges += 1;
            s.next_id += 1;
            let id = format!("j_{}", s.next_id);
            s.jobs.insert(id.clone(), Job { id: id.clone() });
            let out = json!({ "job_id": id, "status": "queued" });
            s.idempotency
                .insert(id_key, (fingerprint, 202, out.to_string()));
            json_resp(202, &out)
        }
        (&Method::GET, p) if p.starts_with("/api/v1/jobs/") => {
            let id = &p["/api/v1/jobs/".len()..];
            match s.jobs.get(id) {
                Some(j) => json_resp(
                    200,
                    &json!({ "job_id": j.id, "status": "succeeded", "result": { "text": "hello" }, "error": null }),
                ),
                None => error_resp(404, "not_found", "no such job"),
            }
        }
        _ => error_resp(404, "not_found", "unknown path"),
    }
}
