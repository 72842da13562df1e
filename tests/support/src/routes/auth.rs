//! Sessions: anonymous sign-in, rotating refresh tokens with reuse detection and the
//! replay of a retried refresh, sign-out by refresh token, and the access-token check in
//! front of every authenticated route. Modelled on the reference Worker's
//! `worker/src/sessions.ts` and `auth.ts`.
//!
//! Tokens are random strings: access tokens are shaped like JWTs with a real `exp`
//! claim and a signature nobody checks; refresh tokens are opaque `rt_…` strings.
//! Each sign-in starts a family; every rotation adds one token to it, and only the
//! newest (unused) one refreshes.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hyper::header::HeaderValue;
use hyper::Response;
use serde_json::{json, Value};

use super::Req;
use crate::http::{empty, error_resp, json_resp, Body};
use crate::Inner;

/// How long a retried refresh gets its session back unless a test shortens it.
pub(crate) const DEFAULT_REPLAY_WINDOW: Duration = Duration::from_secs(24 * 3600);

pub(crate) struct Sessions {
    /// Lifetime (seconds) of access tokens issued from now on.
    pub(crate) ttl_s: i64,
    /// How long after a rotation the same token and `Idempotency-Key` replay it.
    pub(crate) replay_window: Duration,
    access: HashMap<String, AccessRec>,
    /// Access tokens a test declared expired (`expire_access_tokens`).
    rejected_access: HashSet<String>,
    refresh: HashMap<String, RefreshRec>,
    revoked_families: HashSet<u64>,
    /// Requests that presented an access token past its `exp` (server clock).
    pub(crate) expired_uses: usize,
    /// Families revoked by reuse detection or sign-out (each counted once).
    pub(crate) family_revocations: usize,
}

struct AccessRec {
    user: String,
    exp: i64,
}

struct RefreshRec {
    user: String,
    anonymous: bool,
    family: u64,
    /// Set once the token has been rotated.
    spent: Option<Spent>,
}

/// What a rotation left behind for its retry.
struct Spent {
    at: Instant,
    /// The refresh token the rotation issued: the replay stands only while it is unused.
    next: String,
    idempotency_key: Option<String>,
    session: Value,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            ttl_s: 900,
            replay_window: DEFAULT_REPLAY_WINDOW,
            access: HashMap::new(),
            rejected_access: HashSet::new(),
            refresh: HashMap::new(),
            revoked_families: HashSet::new(),
            expired_uses: 0,
            family_revocations: 0,
        }
    }
}

impl Sessions {
    /// Issues a new session in `family` (tokens recorded, the refresh token unused).
    fn issue(&mut self, now: i64, user: &str, anonymous: bool, family: u64) -> Value {
        let exp = now + self.ttl_s;
        let claims =
            json!({ "sub": user, "iat": now, "exp": exp, "jti": uuid::Uuid::new_v4().to_string() });
        let access = format!(
            "{}.{}.{}",
            b64(br#"{"alg":"HS256","typ":"JWT"}"#),
            b64(claims.to_string().as_bytes()),
            b64(uuid::Uuid::new_v4().as_bytes())
        );
        let refresh = format!("rt_{}", uuid::Uuid::new_v4().simple());
        self.access.insert(
            access.clone(),
            AccessRec {
                user: user.to_string(),
                exp,
            },
        );
        self.refresh.insert(
            refresh.clone(),
            RefreshRec {
                user: user.to_string(),
                anonymous,
                family,
                spent: None,
            },
        );
        json!({
            "access_token": access, "token_type": "Bearer", "expires_in": self.ttl_s,
            "refresh_token": refresh, "user": { "id": user, "anonymous": anonymous }
        })
    }

    /// Revokes a family; counts it unless it already was.
    fn revoke_family(&mut self, family: u64) {
        if self.revoked_families.insert(family) {
            self.family_revocations += 1;
        }
    }

    /// Scripted revocation of every family (not counted in `family_revocations`, which
    /// tallies what the server did on its own).
    pub(crate) fn revoke_all(&mut self) {
        let families: Vec<u64> = self.refresh.values().map(|r| r.family).collect();
        self.revoked_families.extend(families);
    }

    /// Makes every access token issued so far answer `401 invalid_token`.
    pub(crate) fn reject_issued_access_tokens(&mut self) {
        self.rejected_access.extend(self.access.keys().cloned());
    }

    /// `"fresh"`, `"used"` or `"revoked"` (its family is), `None` if never issued.
    pub(crate) fn refresh_token_state(&self, token: &str) -> Option<&'static str> {
        let rec = self.refresh.get(token)?;
        Some(if self.revoked_families.contains(&rec.family) {
            "revoked"
        } else if rec.spent.is_some() {
            "used"
        } else {
            "fresh"
        })
    }

    /// The user of a valid access token, or the `401 invalid_token` answer.
    pub(crate) fn authenticate(
        &mut self,
        now: i64,
        bearer: Option<&str>,
    ) -> Result<String, Box<Response<Body>>> {
        let Some(token) = bearer else {
            return Err(Box::new(error_resp(
                401,
                "invalid_token",
                "missing or malformed Authorization header",
            )));
        };
        let Some(rec) = self.access.get(token) else {
            return Err(Box::new(error_resp(
                401,
                "invalid_token",
                "unknown access token",
            )));
        };
        if rec.exp <= now {
            self.expired_uses += 1;
            return Err(Box::new(error_resp(
                401,
                "invalid_token",
                "access token expired",
            )));
        }
        if self.rejected_access.contains(token) {
            return Err(Box::new(error_resp(
                401,
                "invalid_token",
                "access token expired",
            )));
        }
        Ok(rec.user.clone())
    }

    /// Like [`Sessions::authenticate`] but only asks: no count, no error.
    fn user_of(&self, now: i64, bearer: Option<&str>) -> Option<String> {
        let token = bearer?;
        let rec = self.access.get(token)?;
        (rec.exp > now && !self.rejected_access.contains(token)).then(|| rec.user.clone())
    }
}

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

fn session_resp(session: &Value) -> Response<Body> {
    let mut r = json_resp(200, session);
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

fn revoked(message: &str) -> Response<Body> {
    error_resp(401, "session_revoked", message)
}

/// `POST /api/v1/auth/anonymous`: a new user and a new family.
pub(crate) fn anonymous(s: &mut Inner, req: &Req) -> Response<Body> {
    let body = if req.body.is_empty() {
        Some(serde_json::Map::new())
    } else {
        req.json_object()
    };
    let Some(body) = body else {
        return error_resp(400, "bad_request", "body must be a JSON object");
    };
    if body
        .get("device_id")
        .is_some_and(|d| !matches!(d.as_str(), Some(d) if d.len() <= 256))
    {
        return error_resp(
            400,
            "bad_request",
            "device_id must be a string of at most 256 characters",
        );
    }
    let id = s.next_id();
    let session = s.sessions.issue(req.now, &format!("u_{id}"), true, id);
    session_resp(&session)
}

/// `POST /api/v1/auth/refresh`: rotates the family's newest token; a retry of that
/// rotation (same token, same `Idempotency-Key`, within the replay window, and the
/// token it issued still unused) gets the same session back; any other use of a spent
/// token revokes the family.
pub(crate) fn refresh(s: &mut Inner, req: &Req) -> Response<Body> {
    let Some(token) = req
        .json_object()
        .and_then(|b| b.get("refresh_token")?.as_str().map(str::to_string))
    else {
        return error_resp(400, "bad_request", "refresh_token is required");
    };
    let sessions = &mut s.sessions;
    let Some(rec) = sessions.refresh.get(&token) else {
        return revoked("refresh token is invalid");
    };
    let family = rec.family;
    if sessions.revoked_families.contains(&family) {
        return revoked("session revoked");
    }
    if let Some(spent) = &rec.spent {
        let replay = req.idempotency_key.is_some()
            && spent.idempotency_key == req.idempotency_key
            && spent.at.elapsed() < sessions.replay_window
            && sessions
                .refresh
                .get(&spent.next)
                .is_some_and(|next| next.spent.is_none());
        if replay {
            return session_resp(&spent.session);
        }
        sessions.revoke_family(family);
        return revoked("refresh token was already used; the session has been revoked");
    }
    let (user, anonymous) = (rec.user.clone(), rec.anonymous);
    let session = sessions.issue(req.now, &user, anonymous, family);
    let next = session["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if let Some(rec) = sessions.refresh.get_mut(&token) {
        rec.spent = Some(Spent {
            at: Instant::now(),
            next,
            idempotency_key: req.idempotency_key.clone(),
            session: session.clone(),
        });
    }
    session_resp(&session)
}

/// `POST /api/v1/auth/signout`: the refresh token in the body is the proof (RFC 7009),
/// so any `Authorization` header is ignored for the decision, expired or not. Revokes
/// the token's family; `204` also for an unknown or already revoked token. A valid
/// access token still gets the quota headers, as on any authenticated answer.
pub(crate) fn signout(s: &mut Inner, req: &Req) -> Response<Body> {
    let Some(token) = req
        .json_object()
        .and_then(|b| b.get("refresh_token")?.as_str().map(str::to_string))
    else {
        return error_resp(400, "bad_request", "refresh_token is required");
    };
    if let Some(family) = s.sessions.refresh.get(&token).map(|r| r.family) {
        s.sessions.revoke_family(family);
    }
    let mut r = empty(204);
    if let Some(user) = s.sessions.user_of(req.now, req.bearer.as_deref()) {
        s.quota.add_headers(&user, req.now, &mut r);
    }
    r
}
