//! The session: tokens plus when the access token expires, in server time, and the
//! recovery record of a refresh in flight ([`PendingRefresh`]). Their `Debug` shows no
//! token; the JSON they persist goes to the app's `TokenStore` and nowhere else.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub access_token: String,
    pub refresh_token: String,
    pub user_id: String,
    pub anonymous: bool,
    /// When the access token expires, Unix seconds in the server's clock.
    pub expires_at: i64,
    /// How long the token lived when issued, seconds (bounds the refresh margin).
    pub lifetime_s: i64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("access_token", &"<redacted>")
            .field("refresh_token", &"<redacted>")
            .field("user_id", &self.user_id)
            .field("anonymous", &self.anonymous)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// What must be on disk before a refresh is sent: the refresh token it spends and the
/// `Idempotency-Key` it is sent with. Replaying that key with that token gets the rotated
/// session back from the backend, after a lost response, a cancel, a kill or a relaunch.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRefresh {
    pub refresh_token: String,
    pub key: String,
}

impl PendingRefresh {
    /// A fresh key for spending `refresh_token`.
    pub fn new(refresh_token: &str) -> Self {
        PendingRefresh {
            refresh_token: refresh_token.to_string(),
            key: uuid::Uuid::new_v4().to_string(),
        }
    }
}

impl std::fmt::Debug for PendingRefresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingRefresh")
            .field("refresh_token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The format version this library writes. v1 (the foundation's) is read too.
const STORED_VERSION: u32 = 2;

/// What the store holds: versioned so a later layout can migrate it.
#[derive(Serialize, Deserialize)]
struct Stored {
    v: u32,
    #[serde(flatten)]
    session: Session,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending_refresh: Option<PendingRefresh>,
}

#[derive(Deserialize)]
struct Wire {
    access_token: String,
    token_type: Option<String>,
    expires_in: Option<u64>,
    refresh_token: String,
    user: WireUser,
}

#[derive(Deserialize)]
struct WireUser {
    id: String,
    #[serde(default)]
    anonymous: bool,
}

impl Session {
    /// Decodes the contract's session body. `server_now` is the server clock at receipt.
    pub fn from_response(body: &[u8], server_now: i64) -> Result<Session> {
        let w: Wire =
            serde_json::from_slice(body).map_err(|e| Error::decode(format!("session: {e}")))?;
        if w.access_token.is_empty() || w.refresh_token.is_empty() || w.user.id.is_empty() {
            return Err(Error::decode("session: empty token or user id"));
        }
        if let Some(t) = &w.token_type {
            if !t.eq_ignore_ascii_case("bearer") {
                return Err(Error::decode(format!(
                    "session: unsupported token_type {t:?}"
                )));
            }
        }
        // `exp` is read only to schedule a refresh; the server decides validity.
        // Server numbers saturate instead of overflowing: a huge `expires_in` is "far
        // away", never a panic or a time in the past.
        let expires_at = match (jwt_exp(&w.access_token), w.expires_in) {
            (Some(exp), _) => exp,
            (None, Some(secs)) if secs > 0 => {
                server_now.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX))
            }
            _ => {
                return Err(Error::decode(
                    "session: no expiry (neither JWT exp nor expires_in)",
                ))
            }
        };
        Ok(Session {
            access_token: w.access_token,
            refresh_token: w.refresh_token,
            user_id: w.user.id,
            anonymous: w.user.anonymous,
            expires_at,
            lifetime_s: expires_at.saturating_sub(server_now).max(1),
        })
    }

    /// Whether to refresh before using the token. The margin is the configured skew, but
    /// at most half the token's lifetime: a short-lived token must not look "expiring"
    /// from the moment it arrives, which is how refresh storms start.
    pub fn needs_refresh(&self, server_now: i64, skew_s: i64) -> bool {
        let margin = skew_s.min(self.lifetime_s / 2).max(0);
        server_now >= self.expires_at.saturating_sub(margin)
    }

    /// The stored form of this session and, if a refresh of it may be in flight, its
    /// recovery record.
    pub fn to_stored(&self, pending: Option<&PendingRefresh>) -> Result<String> {
        serde_json::to_string(&Stored {
            v: STORED_VERSION,
            session: self.clone(),
            pending_refresh: pending.cloned(),
        })
        .map_err(|e| Error::Storage(format!("encoding the session: {e}")))
    }

    /// Reads what `to_stored` wrote (or the foundation's v1). A newer or unreadable
    /// format is an error: the caller leaves such a value in place.
    pub fn from_stored(s: &str) -> Result<(Session, Option<PendingRefresh>)> {
        #[derive(Deserialize)]
        struct Version {
            v: u32,
        }
        let v = serde_json::from_str::<Version>(s)
            .map_err(|e| Error::decode(format!("stored session: {e}")))?
            .v;
        if !(1..=STORED_VERSION).contains(&v) {
            return Err(Error::decode(format!(
                "stored session: format v{v} is newer than this library's (v{STORED_VERSION})"
            )));
        }
        let stored: Stored =
            serde_json::from_str(s).map_err(|e| Error::decode(format!("stored session: {e}")))?;
        Ok((stored.session, stored.pending_refresh))
    }
}

/// The `exp` claim of a JWT, unverified. `None` when the token is not a JWT.
pub fn jwt_exp(token: &str) -> Option<i64> {
    let mut parts = token.split('.');
    let (_, payload, _, None) = (parts.next()?, parts.next()?, parts.next()?, parts.next()) else {
        return None;
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = v.get("exp")?;
    exp.as_i64().or_else(|| exp.as_f64().map(|f| f as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.sig",
            e.encode(r#"{"alg":"HS256"}"#),
            e.encode(payload)
        )
    }

    #[test]
    fn reads_exp_from_jwt_or_falls_back_to_expires_in() {
        assert_eq!(jwt_exp(&jwt(r#"{"exp":1700000000}"#)), Some(1_700_000_000));
        assert_eq!(jwt_exp("opaque-token"), None);
        assert_eq!(jwt_exp("a.b.c.d"), None);
        assert_eq!(jwt_exp(&jwt(r#"{"sub":"x"}"#)), None);
        let body = format!(
            r#"{{"access_token":"{}","token_type":"Bearer","expires_in":900,"refresh_token":"r","user":{{"id":"u","anonymous":true}}}}"#,
            jwt(r#"{"exp":1000}"#)
        );
        assert_eq!(
            Session::from_response(body.as_bytes(), 100)
                .unwrap()
                .expires_at,
            1000
        );
        let body =
            r#"{"access_token":"opaque","expires_in":900,"refresh_token":"r","user":{"id":"u"}}"#;
        let s = Session::from_response(body.as_bytes(), 100).unwrap();
        assert_eq!((s.expires_at, s.lifetime_s), (1000, 900));
    }

    #[test]
    fn rejects_malformed_sessions() {
        for bad in [
            &b"not json"[..],
            br#"{"access_token":"","expires_in":9,"refresh_token":"r","user":{"id":"u"}}"#,
            br#"{"access_token":"a","refresh_token":"r","user":{"id":"u"}}"#,
            br#"{"access_token":"a","token_type":"MAC","expires_in":9,"refresh_token":"r","user":{"id":"u"}}"#,
        ] {
            assert!(matches!(Session::from_response(bad, 0), Err(Error::Decode(_))));
        }
    }

    #[test]
    fn margin_is_capped_by_lifetime_and_debug_hides_tokens() {
        let s = Session {
            access_token: "AT-secret".into(),
            refresh_token: "RT-secret".into(),
            user_id: "u".into(),
            anonymous: true,
            expires_at: 100,
            lifetime_s: 4,
        };
        assert!(!s.needs_refresh(97, 60));
        assert!(s.needs_refresh(98, 60));
        let d = format!("{s:?}");
        assert!(!d.contains("secret"), "{d}");
        assert_eq!(
            Session::from_stored(&s.to_stored(None).unwrap()).unwrap(),
            (s.clone(), None)
        );
        let p = PendingRefresh::new(&s.refresh_token);
        assert!(!format!("{p:?}").contains("secret"));
        let (back, pending) = Session::from_stored(&s.to_stored(Some(&p)).unwrap()).unwrap();
        assert_eq!((back, pending), (s.clone(), Some(p)));
        // The foundation's v1 is still read; a newer format is refused, not guessed at.
        let v1 = s.to_stored(None).unwrap().replace("\"v\":2", "\"v\":1");
        assert_eq!(Session::from_stored(&v1).unwrap().0, s);
        let v3 = s.to_stored(None).unwrap().replace("\"v\":2", "\"v\":3");
        assert!(matches!(Session::from_stored(&v3), Err(Error::Decode(m)) if m.contains("newer")));
    }

    #[test]
    fn huge_server_numbers_saturate_instead_of_overflowing() {
        let body = format!(
            r#"{{"access_token":"opaque","expires_in":{},"refresh_token":"r","user":{{"id":"u"}}}}"#,
            u64::MAX
        );
        let s = Session::from_response(body.as_bytes(), 1_000).unwrap();
        assert_eq!(s.expires_at, i64::MAX);
        assert!(!s.needs_refresh(1_000, 60));
        assert!(!s.needs_refresh(i64::MAX / 4, i64::MAX));
        let far_past = jwt(&format!(r#"{{"exp":{}}}"#, i64::MIN));
        let body =
            format!(r#"{{"access_token":"{far_past}","refresh_token":"r","user":{{"id":"u"}}}}"#);
        let s = Session::from_response(body.as_bytes(), i64::MAX).unwrap();
        assert!(s.needs_refresh(0, 60));
    }
}
