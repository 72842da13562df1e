//! Response building shared by the routes, the faults and the admin commands: the body
//! type, JSON and error answers in the contract's shape, and the `Date` header.

use std::convert::Infallible;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

pub(crate) type Body = BoxBody<Bytes, Infallible>;

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

pub(crate) fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A response with no body (`204` and the like).
pub(crate) fn empty(code: u16) -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = status(code);
    r
}

pub(crate) fn json_resp(code: u16, v: &Value) -> Response<Body> {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = status(code);
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

/// The contract's error body; `401 invalid_token` also gets its `WWW-Authenticate`.
pub(crate) fn error_resp(code: u16, error: &str, message: &str) -> Response<Body> {
    let mut r = json_resp(
        code,
        &json!({ "error": { "code": error, "message": message } }),
    );
    if code == 401 && error == "invalid_token" {
        r.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
    }
    r
}

/// Sets `Date` to `now_s` (seconds since the epoch, on the server's possibly skewed clock).
pub(crate) fn set_date(r: &mut Response<Body>, now_s: i64) {
    let t = UNIX_EPOCH + Duration::from_secs(now_s.max(0) as u64);
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(t)) {
        r.headers_mut().insert("date", v);
    }
}
