//! Long-running jobs: metered `POST /api/v1/jobs` (the `transcribe` kind only; anything
//! else `422 invalid_input`) and `GET /api/v1/jobs/{id}`, which finds only its caller's
//! jobs (another user's is `404`, like the Worker: ids are not confirmed).
//!
//! A job moves one step per poll, so a test drives it by polling: `queued` when created,
//! `running` at the first `GET`, and finished at the `steps`-th `GET` (`input.steps`,
//! default 2). `input.fail: true` makes it end `failed` with the Worker's error object
//! instead of `succeeded` with a transcript. [`Jobs::runs`] counts the jobs created (a
//! replayed submission creates none), so a test can tell that work ran once.

use std::collections::HashMap;

use hyper::Response;
use serde_json::{json, Value};

use super::{metered, Req};
use crate::http::{error_resp, json_resp, Body};
use crate::Inner;

#[derive(Default)]
pub(crate) struct Jobs {
    jobs: HashMap<String, Job>,
    /// Jobs created (each one is work the backend runs).
    pub(crate) runs: usize,
}

struct Job {
    owner: String,
    kind: String,
    media: String,
    polls: u64,
    steps: u64,
    fail: bool,
}

impl Job {
    fn status(&self) -> &'static str {
        match self.polls {
            0 => "queued",
            p if p < self.steps => "running",
            _ if self.fail => "failed",
            _ => "succeeded",
        }
    }
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
    let Some(input) = body.get("input").and_then(Value::as_object) else {
        return error_resp(400, "bad_request", "input must be a JSON object");
    };
    if kind != "transcribe" {
        return error_resp(
            422,
            "invalid_input",
            &format!("Unknown job kind {kind:?}; this backend runs: transcribe"),
        );
    }
    let media = ["url", "media_url", "media"]
        .iter()
        .find_map(|k| input.get(*k).and_then(Value::as_str))
        .unwrap_or("")
        .to_string();
    let job = Job {
        owner: user.to_string(),
        kind: kind.to_string(),
        media,
        polls: 0,
        steps: input
            .get("steps")
            .and_then(Value::as_u64)
            .unwrap_or(2)
            .max(1),
        fail: input.get("fail").and_then(Value::as_bool).unwrap_or(false),
    };
    metered(s, req, user, move |s| {
        let id = format!("j_{}", s.next_id());
        s.jobs.jobs.insert(id.clone(), job);
        s.jobs.runs += 1;
        (202, json!({ "job_id": id, "status": "queued" }))
    })
}

/// `GET /api/v1/jobs/{id}`: each call moves the job one step on.
pub(crate) fn get(s: &mut Inner, req: &Req, user: &str) -> Response<Body> {
    let id = id_of(&req.path).unwrap_or_default();
    let Some(job) = s.jobs.jobs.get_mut(id).filter(|j| j.owner == user) else {
        return error_resp(404, "not_found", "No such job");
    };
    job.polls += 1;
    let status = job.status();
    let result = (status == "succeeded").then(
        || json!({ "text": format!("transcript of {}", job.media), "model": "@cf/openai/whisper" }),
    );
    let error = (status == "failed")
        .then(|| json!({ "code": "internal", "message": "transcription failed (scripted)" }));
    json_resp(
        200,
        &json!({ "job_id": id, "kind": job.kind, "status": status, "result": result, "error": error }),
    )
}
