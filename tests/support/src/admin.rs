//! Scripting over HTTP, for the binding tests in other languages (which run this server
//! as the `tether serve` process): `POST /__admin/<command>` with a JSON body. Admin
//! calls are never logged nor faulted.
//!
//! | command | body | answer |
//! |---|---|---|
//! | `expire-tokens` | | access tokens issued so far answer `401 invalid_token` |
//! | `quota-limit` | `{"limit": N}` | quota per user from now on |
//! | `fault` | `{"path", "status", "retry_after"}` or `{"path", "kind": "drop" \| "drop-after-handling" \| "delay", "ms"}` | queues a [`Fault`] |
//! | `count` | `{"path"}` | `{"count": N}` requests seen on `path` |
//! | `replay-window` | `{"ms": N}` | how long a retried refresh is replayed |
//! | `family-revocations` | | `{"count": N}` families revoked by reuse or sign-out |
//! | `chat-script` | see [`ChatScript::from_json`](crate::ChatScript::from_json) | queues the next chat reply's script |
//! | `refresh-token-state` | `{"refresh_token"}` | `{"state": "fresh" \| "used" \| "revoked" \| null}` |
//!
//! Any other command: `404`. Successful commands without an answer of their own give
//! `{"ok": true}`.

use std::sync::Mutex;
use std::time::Duration;

use hyper::Response;
use serde_json::{json, Value};

use crate::http::{error_resp, json_resp, Body};
use crate::{lock, Fault, Inner};

pub(crate) fn handle(state: &Mutex<Inner>, cmd: &str, body: &[u8]) -> Response<Body> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut s = lock(state);
    match cmd {
        "expire-tokens" => s.sessions.reject_issued_access_tokens(),
        "quota-limit" => s.quota.limit = v["limit"].as_u64().unwrap_or(50),
        "fault" => {
            let path = v["path"].as_str().unwrap_or("*").to_string();
            s.faults.push_back((path, fault_of(&v)));
        }
        "count" => {
            let path = v["path"].as_str().unwrap_or("");
            let n = s.log.iter().filter(|r| r.path == path).count();
            return json_resp(200, &json!({ "count": n }));
        }
        "replay-window" => {
            let Some(ms) = v["ms"].as_u64() else {
                return error_resp(400, "bad_request", "ms (an integer) is required");
            };
            s.sessions.replay_window = Duration::from_millis(ms);
        }
        "chat-script" => s.chats.scripts.push_back(crate::ChatScript::from_json(&v)),
        "family-revocations" => {
            return json_resp(200, &json!({ "count": s.sessions.family_revocations }));
        }
        "refresh-token-state" => {
            let token = v["refresh_token"].as_str().unwrap_or("");
            let state = s.sessions.refresh_token_state(token);
            return json_resp(200, &json!({ "state": state }));
        }
        _ => return error_resp(404, "not_found", "unknown admin command"),
    }
    json_resp(200, &json!({ "ok": true }))
}

fn fault_of(v: &Value) -> Fault {
    let status = v["status"].as_u64().unwrap_or(503) as u16;
    let code: &'static str = match status {
        401 => "invalid_token",
        402 => "quota_exceeded",
        429 => "rate_limited",
        503 => "unavailable",
        s if s >= 500 => "internal",
        _ => "bad_request",
    };
    match v["kind"].as_str() {
        Some("drop") => Fault::Drop,
        Some("drop-after-handling") => Fault::DropAfterHandling,
        Some("delay") => Fault::Delay(Duration::from_millis(v["ms"].as_u64().unwrap_or(1000))),
        _ => Fault::Status {
            status,
            code,
            retry_after: v["retry_after"].as_u64(),
        },
    }
}
