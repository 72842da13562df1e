//! `tether image` and `tether job submit|status|wait|pending`: image generation to a PNG
//! file, and long-running jobs, with a spinner on stderr (a terminal only, not with
//! `--json`) while a wait polls.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Subcommand;
use serde_json::{json, Value};
use tether::{ImageOptions, JobInfo, JobListener, JobStatus, TetherClient};

use crate::{Failure, Output};

#[derive(Subcommand)]
pub enum JobCommand {
    /// POST /api/v1/jobs: submit a job of KIND (e.g. transcribe) with INPUT (a JSON object).
    Submit {
        /// The kind of work, e.g. `transcribe`.
        kind: String,
        /// The job's input, a JSON object, e.g. '{"url": "https://.../talk.mp3"}'.
        #[arg(value_name = "JSON", default_value = "{}")]
        input: String,
        /// Wait for it to finish (needed with the embedded server, which ends with the command).
        #[arg(long)]
        wait: bool,
    },
    /// GET /api/v1/jobs/ID once.
    Status {
        /// The job id (`j_...`).
        id: String,
    },
    /// Poll the job until it succeeds or fails.
    Wait {
        /// The job id (`j_...`).
        id: String,
    },
    /// The jobs this data dir submitted that are not finished (an unanswered submission
    /// is re-sent with its idempotency key first).
    Pending,
}

fn status_name(s: JobStatus) -> &'static str {
    match s {
        JobStatus::Submitting => "submitting",
        JobStatus::Queued => "queued",
        JobStatus::Running => "running",
        JobStatus::Succeeded => "succeeded",
        JobStatus::Failed => "failed",
    }
}

pub fn job_json(j: &JobInfo) -> Value {
    let parse = |s: &Option<String>| {
        s.as_deref()
            .map(|t| serde_json::from_str(t).unwrap_or(Value::Null))
    };
    json!({
        "id": j.id,
        "kind": j.kind,
        "status": status_name(j.status),
        "submitted_at": j.submitted_at,
        "updated_at": j.updated_at,
        "result": parse(&j.result_json),
        "error": parse(&j.error.as_ref().map(|e| e.json.clone())),
    })
}

fn job_text(j: &JobInfo) -> String {
    let mut t = format!("job {} ({}): {}", j.id, j.kind, status_name(j.status));
    if let Some(r) = &j.result_json {
        t.push_str(&format!("\nresult: {r}"));
    }
    if let Some(e) = &j.error {
        t.push_str(&format!("\nerror: {} ({})", e.message, e.code));
    }
    t
}

fn job_output(j: &JobInfo) -> Output {
    Output {
        text: job_text(j),
        json: job_json(j),
    }
}

/// The spinner's state: the last status the wait saw.
struct Spinner {
    status: Mutex<String>,
}

impl JobListener for Spinner {
    fn on_status_changed(&self, job: JobInfo) {
        if let Ok(mut s) = self.status.lock() {
            *s = status_name(job.status).to_string();
        }
    }
}

/// Waits for job `id`, drawing a spinner on stderr when it is a terminal.
async fn wait(c: &TetherClient, id: String, quiet: bool) -> Result<JobInfo, Failure> {
    let spinner = Arc::new(Spinner {
        status: Mutex::new("waiting".into()),
    });
    let draw = (!quiet && std::io::stderr().is_terminal()).then(|| {
        let s = spinner.clone();
        let id = id.clone();
        tokio::spawn(async move {
            const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
            for i in 0.. {
                let status = s.status.lock().map(|s| s.clone()).unwrap_or_default();
                eprint!("\r{} job {id}: {status}   ", FRAMES[i % FRAMES.len()]);
                let _ = std::io::stderr().flush();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });
    let result = c.wait_for_job(id, spinner, None).await;
    if let Some(d) = draw {
        d.abort();
        eprint!("\r\x1b[2K");
    }
    Ok(result?)
}

pub async fn job(c: &TetherClient, cmd: JobCommand, quiet: bool) -> Result<Output, Failure> {
    match cmd {
        JobCommand::Submit {
            kind,
            input,
            wait: w,
        } => {
            let job = c.submit_job(kind, input, None).await?;
            if !w {
                return Ok(job_output(&job));
            }
            Ok(job_output(&wait(c, job.id, quiet).await?))
        }
        JobCommand::Status { id } => Ok(job_output(&c.job(id, None).await?)),
        JobCommand::Wait { id } => Ok(job_output(&wait(c, id, quiet).await?)),
        JobCommand::Pending => {
            let jobs = c.pending_jobs(None).await?;
            let text = if jobs.is_empty() {
                "no pending jobs".to_string()
            } else {
                jobs.iter().map(job_text).collect::<Vec<_>>().join("\n")
            };
            Ok(Output {
                text,
                json: json!({ "jobs": jobs.iter().map(job_json).collect::<Vec<_>>() }),
            })
        }
    }
}

pub async fn image(
    c: &TetherClient,
    prompt: String,
    output: Option<PathBuf>,
    width: Option<u32>,
    height: Option<u32>,
) -> Result<Output, Failure> {
    // The library takes absolute paths only; a relative one is the shell's cwd.
    let path = match output {
        None => None,
        Some(p) if p.is_absolute() => Some(p),
        Some(p) => Some(
            std::env::current_dir()
                .map_err(|e| Failure::new("usage", 2, format!("no current directory: {e}")))?
                .join(p),
        ),
    };
    let img = c
        .generate_image(
            prompt,
            Some(ImageOptions {
                width,
                height,
                path: path.map(|p| p.to_string_lossy().into_owned()),
            }),
            None,
        )
        .await?;
    Ok(Output {
        text: format!(
            "{} ({}x{} PNG, {} bytes, model {})",
            img.path, img.width, img.height, img.byte_size, img.model
        ),
        json: json!({
            "path": img.path, "media_type": img.media_type, "width": img.width,
            "height": img.height, "byte_size": img.byte_size, "model": img.model,
        }),
    })
}
