//! Long-running jobs over loopback: the lifecycle queued -> running -> succeeded (and ->
//! failed, as a value), the polls a wait makes, `Retry-After`, cancellation of a wait, a
//! restart between submit and finish, a kill between the submission's send and its
//! answer (re-sent with the same key; the backend runs the job once), typed refusals.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tether::{
    file_token_store, CancelHandle, JobInfo, JobListener, JobStatus, TetherClient, TetherError,
};

const JOBS: &str = "/api/v1/jobs";

/// Records every job the listener is told of, and signals each call.
#[derive(Default)]
struct Seen {
    jobs: Mutex<Vec<JobInfo>>,
    calls: Mutex<Option<tokio::sync::mpsc::UnboundedSender<JobStatus>>>,
}

impl JobListener for Seen {
    fn on_status_changed(&self, job: JobInfo) {
        if let Some(tx) = &*self.calls.lock().unwrap() {
            let _ = tx.send(job.status);
        }
        self.jobs.lock().unwrap().push(job);
    }
}

impl Seen {
    fn statuses(&self) -> Vec<JobStatus> {
        self.jobs.lock().unwrap().iter().map(|j| j.status).collect()
    }
}

fn input(steps: u32, fail: bool) -> String {
    format!(r#"{{"url":"https://example.com/talk.mp3","steps":{steps},"fail":{fail}}}"#)
}

fn polls(env: &Env, id: &str) -> usize {
    env.server.count(&format!("{JOBS}/{id}"))
}

#[tokio::test]
async fn a_job_runs_queued_then_running_then_succeeded_in_as_many_polls_as_it_takes() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let job = c
        .submit_job("transcribe".into(), input(3, false), None)
        .await
        .unwrap();
    assert_eq!(job.status, JobStatus::Queued);
    assert!(job.id.starts_with("j_"), "{job:?}");
    assert_eq!(job.kind, "transcribe");
    let seen = Arc::new(Seen::default());
    let done = c
        .wait_for_job(job.id.clone(), seen.clone(), None)
        .await
        .unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    let result: serde_json::Value =
        serde_json::from_str(done.result_json.as_deref().unwrap()).unwrap();
    assert_eq!(result["text"], "transcript of https://example.com/talk.mp3");
    assert_eq!(done.error, None);
    assert_eq!(done.submitted_at, job.submitted_at);
    // Every change was told, before the wait returned; the running status once.
    assert_eq!(seen.statuses(), [JobStatus::Running, JobStatus::Succeeded]);
    // Three polls for a job that finishes at the third: none after it finished.
    assert_eq!(polls(&env, &done.id), 3);
    assert_eq!(c.pending_jobs(None).await.unwrap(), Vec::<JobInfo>::new());
    // Finished jobs are kept until deleted.
    assert!(c.delete_job(done.id.clone()).await.unwrap());
    assert!(!c.delete_job(done.id).await.unwrap());
}

#[tokio::test]
async fn a_failed_job_is_a_value_with_its_error() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let job = c
        .submit_job("transcribe".into(), input(2, true), None)
        .await
        .unwrap();
    let seen = Arc::new(Seen::default());
    let done = c
        .wait_for_job(job.id.clone(), seen.clone(), None)
        .await
        .unwrap();
    assert_eq!(done.status, JobStatus::Failed);
    let error = done.error.unwrap();
    assert_eq!(error.code, "internal");
    assert!(error.message.contains("failed"), "{error:?}");
    assert_eq!(done.result_json, None);
    assert_eq!(seen.statuses(), [JobStatus::Running, JobStatus::Failed]);
    // job() reports the same from the server.
    let again = c.job(job.id, None).await.unwrap();
    assert_eq!(again.status, JobStatus::Failed);
}

#[tokio::test]
async fn a_poll_refused_with_retry_after_is_waited_out_not_fatal() {
    let env = Env::new().await;
    let mut config = env.config();
    // The pipeline gives up on any Retry-After: the wait's own schedule must honour it.
    config.retry.max_retry_after_s = 0;
    let c = env.client_with(config);
    c.restore_session().await.unwrap();
    c.sign_in_anonymously(None, None).await.unwrap();
    let job = c
        .submit_job("transcribe".into(), input(2, false), None)
        .await
        .unwrap();
    env.server.fault(
        &format!("{JOBS}/{}", job.id),
        Fault::Status {
            status: 429,
            code: "rate_limited",
            retry_after: Some(1),
        },
    );
    let done = c
        .wait_for_job(job.id.clone(), Arc::new(Seen::default()), None)
        .await
        .unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(polls(&env, &job.id), 3, "the refused poll, then two");
}

#[tokio::test]
async fn cancelling_a_wait_stops_the_polling_not_the_job() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let job = c
        .submit_job("transcribe".into(), input(1000, false), None)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let seen = Arc::new(Seen::default());
    *seen.calls.lock().unwrap() = Some(tx);
    let cancel = CancelHandle::new();
    let (c2, id, k, l) = (c.clone(), job.id.clone(), cancel.clone(), seen.clone());
    let wait = tokio::spawn(async move { c2.wait_for_job(id, l, Some(k)).await });
    assert_eq!(rx.recv().await, Some(JobStatus::Running));
    cancel.cancel();
    assert_eq!(wait.await.unwrap().unwrap_err(), TetherError::Cancelled);
    let after_cancel = polls(&env, &job.id);
    // Longer than the schedule's next waits: a poll that was still coming would show.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(polls(&env, &job.id), after_cancel);
    // The job itself goes on.
    assert_eq!(
        c.job(job.id.clone(), None).await.unwrap().status,
        JobStatus::Running
    );
    let pending = c.pending_jobs(None).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, job.id);
}

#[tokio::test]
async fn a_restart_between_submit_and_finish_picks_the_job_up_again() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let job = c
        .submit_job("transcribe".into(), input(2, false), None)
        .await
        .unwrap();
    drop(c);
    // A new client on the same data_dir (the same keychain holds the session).
    let c = env.client();
    c.restore_session().await.unwrap();
    let pending = c.pending_jobs(None).await.unwrap();
    assert_eq!(pending, std::slice::from_ref(&job));
    let done = c
        .wait_for_job(job.id.clone(), Arc::new(Seen::default()), None)
        .await
        .unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(c.pending_jobs(None).await.unwrap(), Vec::<JobInfo>::new());
    assert_eq!(env.server.job_runs(), 1);
}

#[tokio::test]
async fn an_unanswered_submission_is_kept_and_re_sent_with_its_key() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    // The backend runs the job, but every answer is lost until the pipeline gives up.
    for _ in 0..4 {
        env.server.fault(JOBS, Fault::DropAfterHandling);
    }
    let err = c
        .submit_job("transcribe".into(), input(2, false), None)
        .await
        .unwrap_err();
    assert!(matches!(err, TetherError::Network { .. }), "{err:?}");
    let pending = c.pending_jobs(None).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].status, JobStatus::Queued);
    let keys = env.server.idempotency_keys(JOBS);
    assert_eq!(keys.len(), 5);
    assert!(keys.iter().all(|k| k == &keys[0]));
    assert_eq!(env.server.job_runs(), 1);
    let done = c
        .wait_for_job(pending[0].id.clone(), Arc::new(Seen::default()), None)
        .await
        .unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);

    // Unreachable at the re-send too: listed as still submitting, without an id.
    for _ in 0..4 {
        env.server.fault(JOBS, Fault::Drop);
    }
    c.submit_job("transcribe".into(), input(2, false), None)
        .await
        .unwrap_err();
    for _ in 0..4 {
        env.server.fault(JOBS, Fault::Drop);
    }
    let pending = c.pending_jobs(None).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].status, pending[0].id.as_str()),
        (JobStatus::Submitting, "")
    );
    let pending = c.pending_jobs(None).await.unwrap();
    assert_eq!(pending[0].status, JobStatus::Queued);
}

#[tokio::test]
async fn unknown_kinds_unknown_ids_and_plans_are_typed_errors() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let err = c
        .submit_job("summarize".into(), "{}".into(), None)
        .await
        .unwrap_err();
    match err {
        TetherError::InvalidInput { code, .. } => assert_eq!(code, "invalid_input"),
        other => panic!("{other:?}"),
    }
    // A refused submission is not kept for a re-send.
    assert_eq!(c.pending_jobs(None).await.unwrap(), Vec::<JobInfo>::new());
    assert_eq!(env.server.count(JOBS), 1);

    for id in ["j_404", "j_404"] {
        let err = c.job(id.into(), None).await.unwrap_err();
        match err {
            TetherError::InvalidInput { code, .. } => assert_eq!(code, "not_found"),
            other => panic!("{other:?}"),
        }
    }
    let err = c
        .wait_for_job("j_404".into(), Arc::new(Seen::default()), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, TetherError::InvalidInput { ref code, .. } if code == "not_found"),
        "{err:?}"
    );
    let err = c.job("../quota".into(), None).await.unwrap_err();
    assert!(matches!(err, TetherError::InvalidInput { .. }), "{err:?}");
    let err = c
        .submit_job("transcribe".into(), "[1]".into(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, TetherError::InvalidInput { .. }), "{err:?}");

    env.server.fault(
        JOBS,
        Fault::Raw {
            status: 403,
            content_type: "application/json",
            body: r#"{"error":{"code":"forbidden","message":"Jobs need the pro plan","plan_required":"pro"}}"#.into(),
        },
    );
    let err = c
        .submit_job("transcribe".into(), input(2, false), None)
        .await
        .unwrap_err();
    assert!(matches!(err, TetherError::Forbidden { .. }), "{err:?}");
    env.server.set_quota_limit(0);
    let err = c
        .submit_job("transcribe".into(), input(2, false), None)
        .await
        .unwrap_err();
    assert!(matches!(err, TetherError::PlanRequired { .. }), "{err:?}");
    assert_eq!(c.pending_jobs(None).await.unwrap(), Vec::<JobInfo>::new());
    assert_eq!(env.server.job_runs(), 0);
}

/// Run as a child process by `a_kill_between_sending_a_job_and_its_answer_runs_it_once`
/// (does nothing when run as an ordinary test): submits a job whose answer the parent
/// holds back, until the parent kills this process.
#[test]
fn child_submits_a_held_job() {
    let (Ok(url), Ok(dir)) = (
        std::env::var("TETHER_CHILD_URL"),
        std::env::var("TETHER_CHILD_DIR"),
    ) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let mut cfg = tether::ClientConfig::new(url, "test-app", dir.clone());
        cfg.timeouts.total_ms = 60_000;
        cfg.timeouts.first_byte_ms = 60_000;
        let store = file_token_store(format!("{dir}/session.json"));
        let c = TetherClient::new(cfg, store).unwrap();
        c.restore_session().await.unwrap();
        let _ = c
            .submit_job("transcribe".into(), input(2, false), None)
            .await;
    });
    panic!("the parent should have killed this process");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_between_sending_a_job_and_its_answer_runs_it_once() {
    let env = Env::new().await;
    let dir = env.dir.path().to_str().unwrap().to_string();
    let launch = || {
        let store = file_token_store(format!("{dir}/session.json"));
        TetherClient::new(env.config(), store).unwrap()
    };
    let c = launch();
    c.restore_session().await.unwrap();
    c.sign_in_anonymously(None, None).await.unwrap();
    drop(c);
    let hold = env.server.hold(JOBS);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_submits_a_held_job", "--nocapture"])
        .env("TETHER_CHILD_URL", env.server.url())
        .env("TETHER_CHILD_DIR", &dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), hold.handled())
        .await
        .expect("the child sent its submission");
    child.kill().unwrap();
    child.wait().unwrap();
    drop(hold);
    assert_eq!(env.server.job_runs(), 1, "the backend ran it");

    let c = launch();
    c.restore_session().await.unwrap();
    let pending = c.pending_jobs(None).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].status, JobStatus::Queued);
    let keys = env.server.idempotency_keys(JOBS);
    assert_eq!(keys.len(), 2, "the killed submission, then its re-send");
    assert_eq!(keys[0], keys[1]);
    assert_eq!(
        env.server.job_runs(),
        1,
        "the re-send was replayed, not run again"
    );
    let done = c
        .wait_for_job(pending[0].id.clone(), Arc::new(Seen::default()), None)
        .await
        .unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
}
