//! The `/api/v1` routes: which handler answers a method and path (`404` for an unknown
//! path, `405` for a known one with the wrong method, `HEAD` served as `GET`, like the
//! reference Worker), the access-token check in front of the authenticated ones, the
//! quota headers on every answer they give (errors included), the idempotency store
//! every metered POST goes through, and the diagnostic `/api/v1/echo`.
//!
//! Each area's handlers and state live in its own file: `auth.rs` (sessions),
//! `quota.rs`, `jobs.rs`, `images.rs`, multipart uploads (`detect`, `vision`) in `upload.rs`;
//! the SSE chat goes in `chat.rs`, added to [`find`]'s table.

pub(crate) mod auth;
pub(crate) mod chat;
pub(crate) mod images;
pub(crate) mod jobs;
pub(crate) mod quota;
pub(crate) mod upload;

use std::collections::HashMap;

use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, Response};
use serde_json::{json, Value};

use crate::http::{error_resp, json_resp, set_date, Body};
use crate::Inner;

/// One request as the routes see it.
pub(crate) struct Req {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) bearer: Option<String>,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) body: Bytes,
    /// The server's clock (seconds) when handling began: tokens, quota windows and the
    /// `Date` header all read this one value, so they agree to the second.
    pub(crate) now: i64,
    /// An upload route's parsed body, or why it was refused (status, code, message).
    pub(crate) upload: Option<Result<upload::Upload, (u16, &'static str, String)>>,
}

impl Req {
    /// The body as a JSON object, if it is one.
    pub(crate) fn json_object(&self) -> Option<serde_json::Map<String, Value>> {
        match serde_json::from_slice(&self.body) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        }
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

type Public = fn(&mut Inner, &Req) -> Response<Body>;
type Authed = fn(&mut Inner, &Req, &str) -> Response<Body>;

enum Handler {
    /// Answers without an access token (sign-in, refresh, sign-out).
    Public(Public),
    /// Needs a valid access token; the user id is passed on.
    Authed(Authed),
}

/// The normal answer to a request: routing, auth, the handler, quota headers, `Date`.
pub(crate) fn dispatch(s: &mut Inner, req: &Req) -> Response<Body> {
    let mut r = match find(&req.method, &req.path) {
        Err(r) => *r,
        Ok(Handler::Public(h)) => h(s, req),
        Ok(Handler::Authed(h)) => match s.sessions.authenticate(req.now, req.bearer.as_deref()) {
            Err(r) => *r,
            Ok(user) => {
                let mut r = h(s, req, &user);
                s.quota.add_headers(&user, req.now, &mut r);
                r
            }
        },
    };
    set_date(&mut r, req.now);
    r
}

fn find(method: &Method, path: &str) -> Result<Handler, Box<Response<Body>>> {
    use Handler::{Authed as A, Public as P};
    const ECHO: &[Method] = &[
        Method::GET,
        Method::HEAD,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::POST,
    ];
    let (allowed, handler): (&[Method], Handler) = match path {
        "/api/v1/auth/anonymous" => (&[Method::POST], P(auth::anonymous)),
        "/api/v1/auth/refresh" => (&[Method::POST], P(auth::refresh)),
        "/api/v1/auth/signout" => (&[Method::POST], P(auth::signout)),
        "/api/v1/quota" => (&[Method::GET], A(quota::get)),
        "/api/v1/jobs" => (&[Method::POST], A(jobs::create)),
        "/api/v1/detect" => (&[Method::POST], A(upload::detect)),
        "/api/v1/vision" => (&[Method::POST], A(upload::vision)),
        "/api/v1/images" => (&[Method::POST], A(images::create)),
        "/api/v1/chat" => (&[Method::POST], A(chat::post)),
        "/api/v1/echo" => (ECHO, A(echo)),
        p if jobs::id_of(p).is_some() => (&[Method::GET], A(jobs::get)),
        _ => return Err(Box::new(error_resp(404, "not_found", "unknown path"))),
    };
    let head_as_get = *method == Method::HEAD && allowed.contains(&Method::GET);
    if allowed.contains(method) || head_as_get {
        return Ok(handler);
    }
    let mut r = error_resp(405, "method_not_allowed", "method not allowed here");
    let allow: Vec<&str> = allowed.iter().map(Method::as_str).collect();
    if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
        r.headers_mut().insert("allow", v);
    }
    Err(Box::new(r))
}

/// `/api/v1/echo`, any method: says which method and body arrived. Uncharged; tests use
/// it to see which methods a client retries.
fn echo(_: &mut Inner, req: &Req, _user: &str) -> Response<Body> {
    json_resp(
        200,
        &json!({ "method": req.method.as_str(), "body": req.text() }),
    )
}

/// The first response stored per (user, `Idempotency-Key`), with the body it answered.
#[derive(Default)]
pub(crate) struct Idempotency {
    stored: HashMap<(String, String), Stored>,
}

struct Stored {
    body: Bytes,
    status: u16,
    response: Value,
}

/// Runs a metered POST whose input the handler has already validated: a stored answer
/// for the key is replayed uncharged (`422 idempotency_key_reused` if the body differs);
/// otherwise quota is charged (`402` when spent), `work` runs, and a 2xx answer is stored.
pub(crate) fn metered(
    s: &mut Inner,
    req: &Req,
    user: &str,
    work: impl FnOnce(&mut Inner) -> (u16, Value),
) -> Response<Body> {
    let Some(key) = req.idempotency_key.clone() else {
        return error_resp(400, "bad_request", "Idempotency-Key required");
    };
    let id = (user.to_string(), key);
    if let Some(stored) = s.idempotency.stored.get(&id) {
        if stored.body != req.body {
            return error_resp(422, "idempotency_key_reused", "same key, different body");
        }
        let mut r = json_resp(stored.status, &stored.response);
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        return r;
    }
    if let Err(r) = s.quota.charge(user, req.now) {
        return *r;
    }
    let (status, response) = work(s);
    if (200..300).contains(&status) {
        s.idempotency.stored.insert(
            id,
            Stored {
                body: req.body.clone(),
                status,
                response: response.clone(),
            },
        );
    }
    json_resp(status, &response)
}
