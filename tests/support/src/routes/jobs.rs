//! Long-running jobs: metered `POST /api/v1/jobs` (the `transcribe` kind only; anything
//! else `422 invalid_input`) and `GET /api/v1/jobs/{id}`, which finds only its caller's
//! jobs and reports every one as already succeeded.

use std::collections::HashMap;

use hyper::Response;
use serde_json::{json, Value};

use super::{metered, Req};
use crate::http::{error_resp, json_resp, Body};
use crate::Inner;

#[derive(Default)]
pub(crate) struct Jobs {
    /// Job id -> the user who queued it.
    owners: HashMap<String, String>,
}

/// The job id in `/api/v1/jobs/{id}`, if `path` is one.
pub(crate) fn id_of(path: &str) -> Option<&str> {
    path.strip_prefix("/api/v1/jobs/")
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// `POST /api/v1/jobs`: validated before anything is charged, like the Worker.
pub(crate) fn create(s: &mut Inner, req: &Req, user: &str) -> Response<Body> {
    let Some(body) = req.json_object() else {
        return error_resp(400, "bad_request", "body must be a JSON object");
    };
    let Some(kind) = body.get("kind").and_then(Value::as_str) else {
        return error_resp(400, "bad_request", "kind missing");
    };
    if !body.get("input").is_some_and(Value::is_object) {
        return error_resp(400, "bad_request", "input must be a JSON object");
    }
    if kind != "transcribe" {
        return error_resp(422, "invalid_input", "unknown kind");
    }
    metered(s, req, user, |s| {
        let id = format!("j_{}", s.next_id());
        s.jobs.owners.insert(id.clone(), user.to_string());
        (202, json!({ "job_id": id, "status": "queued" }))
    })
}

/// `GET /api/v1/jobs/{id}`.
pub(crate) fn get(s: &mut Inner, req: &Req, user: &str) -> Response<Body> {
    let id = id_of(&req.path).unwrap_or_default();
    if s.jobs.owners.get(id).map(String::as_str) != Some(user) {
        return error_resp(404, "not_found", "no such job");
    }
    json_resp(
        200,
        &json!({ "job_id": id, "status": "succeeded", "result": { "text": "hello" }, "error": null }),
    )
}
