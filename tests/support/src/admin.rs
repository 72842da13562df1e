//! Scripting over HTTP, for the binding tests in other languages (which run this server
//! as the `tether serve` process): `POST /__admin/<command>` with a JSON body. Admin
//! calls are never logged nor faulted.
//!
//! | command | body | answer |
//! |---|---|---|
//! | `expire-tokens` | | access tokens issued so far answer `401 invalid_token` |
//! | `quota-limit` | `{"limit": N}` | quota per user from now on |
//! | `plan` | `{"plan": "pro", "limit": N}` | every user's plan and limit from now on (a purchase) |
//! | `fault` | `{"path", "status", "retry_after"}` or `{"path", "kind": "drop" \| "drop-after-handling" \| "delay" \| "reset-mid-body" \| "slow-upload", "ms"}` | queues a [`Fault`] |
//! | `count` | `{"path"}` | `{"count": N}` requests seen on `path` |
//! | `hold` | `{"path"}` | the next request to `path` is handled, then its response waits for `release` (see [`TestServer::hold`](crate::TestServer::hold)) |
//! | `hold-state` | `{"path"}` | `{"handled": bool \| null}`: whether the newest `hold` on `path` has caught its request |
//! | `release` | `{"path"}` | sends the responses the `hold`s on `path` keep back (a client gone away gets nothing) |
//! | `upload-limit` | `{"bytes": N}` | the largest image `detect`/`vision` accept |
//! | `uploads` | | `{"uploads": [{"route", "sha256", "len", "content_type", "fields"}]}` charged uploads |
//! | `replay-window` | `{"ms": N}` | how long a retried refresh is replayed |
//! | `family-revocations` | | `{"count": N}` families revoked by reuse or sign-out |
//! | `image-fault` | `{"kind": "corrupt-base64" \| "not-png" \| "cut-off"}` | the next `/images` answer has that defect |
//! | `job-runs` | | `{"count": N}` jobs created (a replayed submission creates none) |
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
use crate::{lock, Fault, ImageFault, Inner};

pub(crate) fn handle(state: &Mutex<Inner>, cmd: &str, body: &[u8]) -> Response<Body> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut s = lock(state);
    match cmd {
        "expire-tokens" => s.sessions.reject_issued_access_tokens(),
        "quota-limit" => s.quota.limit = v["limit"].as_u64().unwrap_or(50),
        "plan" => {
            s.quota.plan = v["plan"].as_str().unwrap_or("free").to_string();
            s.quota.limit = v["limit"].as_u64().unwrap_or(s.quota.limit);
        }
        "upload-limit" => {
            s.upload_limit = v["bytes"]
                .as_u64()
                .unwrap_or(crate::routes::upload::DEFAULT_LIMIT)
        }
        "uploads" => {
            let list: Vec<Value> = s
                .uploads
                .iter()
                .map(|u| {
                    json!({ "route": u.route, "sha256": u.sha256, "len": u.len,
                                 "content_type": u.content_type, "fields": u.fields })
                })
                .collect();
            return json_resp(200, &json!({ "uploads": list }));
        }
        "fault" => {
            let path = v["path"].as_str().unwrap_or("*").to_string();
            s.faults.push_back((path, fault_of(&v)));
        }
        "hold" => s.admin_hold(v["path"].as_str().unwrap_or("*")),
        "hold-state" => {
            let handled = s.admin_hold_handled(v["path"].as_str().unwrap_or("*"));
            return json_resp(200, &json!({ "handled": handled }));
        }
        "release" => s.admin_release(v["path"].as_str().unwrap_or("*")),
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
        "image-fault" => {
            let Some(f) = v["kind"].as_str().and_then(ImageFault::parse) else {
                return error_resp(
                    400,
                    "bad_request",
                    "kind: corrupt-base64, not-png or cut-off",
                );
            };
            s.images.faults.push_back(f);
        }
        "job-runs" => return json_resp(200, &json!({ "count": s.jobs.runs })),
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
        Some("reset-mid-body") => Fault::ResetMidBody,
        Some("slow-upload") => {
            Fault::SlowUpload(Duration::from_millis(v["ms"].as_u64().unwrap_or(50)))
        }
        _ => Fault::Status {
            status,
            code,
            retry_after: v["retry_after"].as_u64(),
        },
    }
}
