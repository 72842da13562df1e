//! The session: tokens plus when the access token expires, in server time. Its `Debug`
//! shows no token; the JSON it persists goes to the app's `TokenStore` and nowhere else.

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

/// What the store holds: versioned so a later layout can migrate it.
#[derive(Serialize, Deserialize)]
struct Stored {
    v: u32,
    #[serde(flatten)]
    session: Session,
}

#[derive(Deserialize)]
struct Wire {
    access_token: String,
    token_type: Option<String>,
    expires_in: Option<i64>,
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
        let expires_at = match (jwt_exp(&w.access_token), w.expires_in) {
            (Some(exp), _) => exp,
            (None, Some(secs)) if secs > 0 => server_now + secs,
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
            lifetime_s: (expires_at - server_now).max(1),
        })
    }

    /// Whether to refresh before using the token. The margin is the configured skew, but
    /// at most half the token's lifetime: a short-lived token must not look "expiring"
    /// from the moment it arrives, which is how refresh storms start.
    pub fn needs_refresh(&self, server_now: i64, skew_s: i64) -> bool {
        let margin = skew_s.min(self.lifetime_s / 2);
        server_now >= self.expires_at - margin
    }

    pub fn to_stored(&self) -> String {
        serde_json::to_string(&Stored {
            v: 1,
            session: self.clone(),
        })
        .unwrap_or_default()
    }

    pub fn from_stored(s: &str) -> Result<Session> {
        let stored: Stored =
            serde_json::from_str(s).map_err(|e| Error::decode(format!("stored session: {e}")))?;
        if stored.v != 1 {
            return Err(Error::decode(format!(
                "stored session: unknown version {}",
                stored.v
            )));
        }
        Ok(stored.session)
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
        assert_eq!(Session::from_stored(&s.to_stored()).unwrap(), s);
    }
}
