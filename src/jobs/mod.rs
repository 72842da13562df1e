//! Long-running jobs (`POST /api/v1/jobs`, `GET /api/v1/jobs/{id}`): submission recorded
//! in the store with its idempotency key before it is sent (`store::jobs`), so a process
//! killed between the send and the answer re-sends the same body with the same key on
//! the next launch (`pending`) and the backend runs the work once; polling on a schedule
//! that starts fast and backs off to a cap, honouring `Retry-After`; a [`JobListener`]
//! told of each status it sees, in order, before the wait returns.
//!
//! A `failed` job is a value (its `error` filled in), not an error. Cancelling a wait
//! stops the polling only; the backend's job goes on.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use crate::api::Api;
use crate::error::{Error, Result};
use crate::paywall::rfc3339;
use crate::store::jobs::{self as table, JobRow, SUBMITTING};
use crate::store::Store;
use crate::subscription::call_foreign;
use crate::transport::Request;

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum JobStatus {
    /// Recorded and sent, but the backend's answer never came (offline, or the app was
    /// killed): `pending_jobs()` sends it again with the same idempotency key. No `id` yet.
    Submitting,
    /// Waiting on the backend.
    Queued,
    /// Running on the backend.
    Running,
    /// Done: `result_json` holds the result.
    Succeeded,
    /// Done: `error` says why it failed.
    Failed,
}

impl JobStatus {
    /// Whether the job is done (succeeded or failed).
    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed)
    }

    fn as_str(self) -> &'static str {
        match self {
            JobStatus::Submitting => SUBMITTING,
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
        }
    }

    /// The contract's status; one it does not name yet is taken as still running.
    fn parse(s: &str) -> JobStatus {
        match s {
            SUBMITTING => JobStatus::Submitting,
            "queued" => JobStatus::Queued,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            _ => JobStatus::Running,
        }
    }
}

/// Why a job failed: the backend's error object.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct JobFailure {
    /// The backend's error code (e.g. `internal`), or `unknown` if it gave none.
    pub code: String,
    /// The backend's message.
    pub message: String,
    /// The whole error object as JSON, for fields beyond `code` and `message`.
    pub json: String,
}

/// A long-running job on the backend. (Not `Job`: the generated Kotlin imports
/// `kotlinx.coroutines.Job`, and Swift concurrency has a `Job` of its own.)
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct JobInfo {
    /// The backend's job id (`j_...`); empty while the status is `Submitting`.
    pub id: String,
    /// The kind of work, e.g. `transcribe`.
    pub kind: String,
    /// Where it stands.
    pub status: JobStatus,
    /// When this device submitted it (RFC 3339, server clock); when it first looked at it,
    /// for a job submitted elsewhere.
    pub submitted_at: String,
    /// When this device last saw its status, result or error change (RFC 3339).
    pub updated_at: String,
    /// The result object as JSON, once succeeded.
    pub result_json: Option<String>,
    /// Why it failed, once failed.
    pub error: Option<JobFailure>,
}

/// Told of each status a wait sees: first the status found by the first poll, then every
/// change. Calls come in order, on a Tether thread, never while Tether holds a lock, and
/// all of them before `wait_for_job` returns.
#[uniffi::export(with_foreign)]
pub trait JobListener: Send + Sync {
    /// The job as just polled.
    fn on_status_changed(&self, job: JobInfo);
}

/// The poll schedule: the first poll at once, then waits growing by half from 250 ms up
/// to a cap of 5 s (a one-minute job costs about 16 polls).
pub fn poll_delay(polls_done: u32) -> Duration {
    const FIRST_MS: f64 = 250.0;
    const CAP_MS: f64 = 5_000.0;
    if polls_done == 0 {
        return Duration::ZERO;
    }
    let ms = FIRST_MS * 1.5f64.powi(polls_done.saturating_sub(1).min(30) as i32);
    Duration::from_millis(ms.min(CAP_MS) as u64)
}

/// The server's `Retry-After` is honoured up to this long.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// A wait gives up after this many polls in a row that got no answer.
const MAX_FAILED_POLLS: u32 = 5;

/// The wait before the next poll: the schedule's, or longer if the server asked for it.
fn next_delay(polls_done: u32, retry_after: Option<Duration>) -> Duration {
    poll_delay(polls_done).max(retry_after.unwrap_or_default().min(MAX_RETRY_AFTER))
}

/// Whether a failure leaves the request's fate unknown (no answer, or a transient one):
/// the work may yet run, so its record stays.
fn unanswered(e: &Error) -> bool {
    matches!(
        e,
        Error::Network { .. } | Error::Timeout(_) | Error::Cancelled
    ) || matches!(e, Error::Http(f) if f.is_transient())
}

/// A refusal of the request itself (bad body, unknown kind): sending it again never helps.
fn refused(e: &Error) -> Option<JobFailure> {
    match e {
        Error::Http(f) if matches!(f.status, 400 | 404 | 409 | 413 | 415 | 422) => {
            Some(JobFailure {
                code: f.code.clone(),
                message: f.message.clone(),
                json: serde_json::json!({ "code": f.code, "message": f.message }).to_string(),
            })
        }
        _ => None,
    }
}

#[derive(Deserialize)]
struct Submitted {
    job_id: String,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Deserialize)]
struct Polled {
    #[serde(default)]
    kind: Option<String>,
    status: String,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

fn failure_of(v: &Value) -> JobFailure {
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    JobFailure {
        code: text("code").unwrap_or_else(|| "unknown".into()),
        message: text("message").unwrap_or_default(),
        json: v.to_string(),
    }
}

fn job_of(row: &JobRow) -> JobInfo {
    let error = row
        .error
        .as_deref()
        .map(|e| failure_of(&serde_json::from_str(e).unwrap_or(Value::Null)));
    JobInfo {
        id: row.id.clone().unwrap_or_default(),
        kind: row.kind.clone(),
        status: JobStatus::parse(&row.status),
        submitted_at: rfc3339(row.submitted_at),
        updated_at: rfc3339(row.updated_at),
        result_json: row.result.clone(),
        error,
    }
}

/// The job id as a path segment; anything that could leave `jobs/` is refused.
fn job_path(id: &str) -> Result<String> {
    let ok = !id.is_empty()
        && id.len() <= 256
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'~' | b':'))
        && !id.contains("..");
    if !ok {
        return Err(Error::InvalidInput(format!("{id:?} is not a job id")));
    }
    Ok(format!("jobs/{id}"))
}

/// The jobs area: the store it records in and the server clock its times are read on.
pub struct Jobs {
    store: Store,
}

impl Jobs {
    pub fn new(store: Store) -> Self {
        Jobs { store }
    }

    fn now(api: &Api) -> i64 {
        api.transport.clock.now_s()
    }

    /// Records the submission, sends it with the recorded key, records the answer.
    pub async fn submit(&self, api: &Api, kind: String, input_json: String) -> Result<JobInfo> {
        if kind.trim().is_empty() {
            return Err(Error::InvalidInput("the job kind is empty".into()));
        }
        let input: Value = serde_json::from_str(&input_json)
            .map_err(|e| Error::InvalidInput(format!("input_json is not JSON: {e}")))?;
        if !input.is_object() {
            return Err(Error::InvalidInput(
                "input_json must be a JSON object".into(),
            ));
        }
        let body = serde_json::json!({ "kind": kind, "input": input }).to_string();
        let key = uuid::Uuid::new_v4().to_string();
        let now = Self::now(api);
        let (k, kd, b) = (key.clone(), kind.clone(), body.clone());
        self.store
            .write(move |tx| table::insert_submission(tx, &k, &kd, &b, now))
            .await?;
        match self.send_submission(api, &key, body).await {
            Ok(job) => Ok(job),
            Err(e) => {
                if !unanswered(&e) {
                    // Refused or never sent: nothing runs on the backend, nothing to resend.
                    let k = key.clone();
                    self.store
                        .write(move |tx| table::delete_submission(tx, &k))
                        .await?;
                }
                Err(e)
            }
        }
    }

    async fn send_submission(&self, api: &Api, key: &str, body: String) -> Result<JobInfo> {
        let reply = api
            .send(Request::post_json("jobs", body).with_key(key))
            .await?;
        let s: Submitted = serde_json::from_slice(&reply.body)
            .map_err(|e| Error::decode(format!("job submission reply: {e}")))?;
        job_path(&s.job_id)?;
        let status = JobStatus::parse(s.status.as_deref().unwrap_or("queued"));
        let status = if status == JobStatus::Submitting {
            JobStatus::Queued
        } else {
            status
        };
        let (k, id, now) = (key.to_string(), s.job_id.clone(), Self::now(api));
        let row = self
            .store
            .write(move |tx| {
                table::set_submitted(tx, &k, &id, status.as_str(), now)?;
                table::by_id(tx, &id)
            })
            .await?
            .ok_or_else(|| Error::Storage("the job's record vanished".into()))?;
        Ok(job_of(&row))
    }

    /// The job as the server has it now (recorded, if this device submitted it).
    pub async fn get(&self, api: &Api, id: &str) -> Result<JobInfo> {
        let reply = api.send(Request::new(Method::GET, job_path(id)?)).await?;
        let p: Polled = serde_json::from_slice(&reply.body)
            .map_err(|e| Error::decode(format!("job status reply: {e}")))?;
        let status = JobStatus::parse(&p.status);
        if status == JobStatus::Submitting {
            return Err(Error::decode(format!("job status {:?}", p.status)));
        }
        let result = p.result.filter(|v| !v.is_null()).map(|v| v.to_string());
        let error = p.error.filter(|v| !v.is_null());
        let error_text = error.as_ref().map(Value::to_string);
        let now = Self::now(api);
        let (i, r, e) = (id.to_string(), result.clone(), error_text.clone());
        let row = self
            .store
            .write(move |tx| {
                table::update(tx, &i, status.as_str(), r.as_deref(), e.as_deref(), now)
            })
            .await?;
        Ok(match row {
            Some(row) => job_of(&row),
            None => JobInfo {
                id: id.to_string(),
                kind: p.kind.unwrap_or_default(),
                status,
                submitted_at: rfc3339(now),
                updated_at: rfc3339(now),
                result_json: result,
                error: error.as_ref().map(failure_of),
            },
        })
    }

    /// Polls until the job is done, telling `listener` of each status seen.
    pub async fn wait(
        &self,
        api: &Api,
        id: &str,
        listener: Option<Arc<dyn JobListener>>,
    ) -> Result<JobInfo> {
        job_path(id)?;
        let mut last: Option<JobStatus> = None;
        let mut polls: u32 = 0;
        let mut failed_in_a_row: u32 = 0;
        let mut retry_after = None;
        loop {
            tokio::time::sleep(next_delay(polls, retry_after.take())).await;
            polls = polls.saturating_add(1);
            let job = match self.get(api, id).await {
                Ok(job) => job,
                Err(e) if unanswered(&e) && failed_in_a_row + 1 < MAX_FAILED_POLLS => {
                    failed_in_a_row += 1;
                    retry_after = e.retry_after();
                    tracing::debug!(target: "tether::jobs", job = id, error = %e, "poll failed; polling on");
                    continue;
                }
                Err(e) => return Err(e),
            };
            failed_in_a_row = 0;
            if last != Some(job.status) {
                last = Some(job.status);
                if let Some(l) = &listener {
                    notify(l.clone(), job.clone()).await;
                }
            }
            if job.status.is_final() {
                return Ok(job);
            }
        }
    }

    /// Every job not finished, oldest first. A submission that never got its answer is
    /// sent again (same body, same key) first: it comes back `Queued` with its id, or
    /// still `Submitting` if the backend cannot be reached now, or `Failed` (listed this
    /// once) if the backend refuses it (e.g. a kind it no longer runs).
    pub async fn pending(&self, api: &Api) -> Result<Vec<JobInfo>> {
        let rows = self.store.read(table::unfinished).await?;
        let mut jobs = Vec::with_capacity(rows.len());
        for row in rows {
            if row.id.is_some() {
                jobs.push(job_of(&row));
                continue;
            }
            tracing::info!(target: "tether::jobs", kind = %row.kind, "re-sending an unanswered job submission with its key");
            match self.send_submission(api, &row.key, row.body.clone()).await {
                Ok(job) => jobs.push(job),
                Err(e) if unanswered(&e) && !matches!(e, Error::Cancelled) => {
                    jobs.push(job_of(&row))
                }
                Err(e) => match refused(&e) {
                    Some(f) => {
                        let (k, now) = (row.key.clone(), Self::now(api));
                        let json = f.json.clone();
                        self.store
                            .write(move |tx| table::fail_submission(tx, &k, &json, now))
                            .await?;
                        let mut job = job_of(&row);
                        job.status = JobStatus::Failed;
                        job.error = Some(f);
                        jobs.push(job);
                    }
                    None => return Err(e),
                },
            }
        }
        Ok(jobs)
    }

    /// Forgets job `id` (its result included); whether this device had it.
    pub async fn delete(&self, id: String) -> Result<bool> {
        self.store.write(move |tx| table::delete(tx, &id)).await
    }
}

/// Calls the listener on a blocking thread and waits for it, so calls stay in order and
/// the last one has happened when the wait returns.
async fn notify(listener: Arc<dyn JobListener>, job: JobInfo) {
    let call = tokio::task::spawn_blocking(move || {
        let l = &listener;
        if catch_unwind(AssertUnwindSafe(|| {
            call_foreign(|| l.on_status_changed(job))
        }))
        .is_err()
        {
            tracing::warn!(target: "tether::jobs", "a job listener panicked");
        }
        call_foreign(move || drop(listener));
    });
    let _ = call.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_starts_fast_and_backs_off_to_a_cap() {
        assert_eq!(poll_delay(0), Duration::ZERO);
        assert_eq!(poll_delay(1), Duration::from_millis(250));
        let delays: Vec<_> = (1..40).map(poll_delay).collect();
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*delays.last().unwrap(), Duration::from_secs(5));
        // A minute of polling is a bounded number of polls.
        let mut t = Duration::ZERO;
        let mut n = 0;
        while t < Duration::from_secs(60) {
            n += 1;
            t += poll_delay(n);
        }
        assert!((10..=20).contains(&n), "{n} polls in a minute");
    }

    #[test]
    fn retry_after_lengthens_a_wait_but_never_shortens_it() {
        assert_eq!(
            next_delay(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            next_delay(30, Some(Duration::from_secs(1))),
            Duration::from_secs(5)
        );
        assert_eq!(
            next_delay(1, Some(Duration::from_secs(9_999))),
            MAX_RETRY_AFTER
        );
        assert_eq!(next_delay(1, None), poll_delay(1));
    }

    #[test]
    fn job_ids_cannot_leave_the_jobs_path() {
        assert_eq!(job_path("j_12-a").unwrap(), "jobs/j_12-a");
        for bad in ["", "../quota", "a/b", "a?x=1", "a#b", "a%2f", "a b", ".."] {
            assert!(
                matches!(job_path(bad), Err(Error::InvalidInput(_))),
                "{bad:?}"
            );
        }
    }
}
