//! The images and jobs area of the facade: `generate_image` (a PNG decoded to a file as
//! it arrives) and long-running jobs (submit, status, wait with a listener, the ones a
//! restart left pending, delete).

use std::sync::Arc;

use super::TetherClient;
use crate::error::TetherError;
#[cfg(feature = "upload")]
use crate::images::{GeneratedImage, ImageOptions};
use crate::jobs::{JobInfo, JobListener};
use crate::runtime::CancelHandle;

// Its own export block: it goes with the `upload` feature, the jobs below do not.
#[cfg(feature = "upload")]
#[uniffi::export]
impl TetherClient {
    /// Generates an image from `prompt` and writes it as a PNG file (see
    /// `ImageOptions.path`; by default under `data_dir/images/`, which the app deletes
    /// when done). Width and height are the PNG's own. A reply that is not a whole PNG
    /// fails with `Decode` and leaves no file. 402: `PlanRequired`; 403: `Forbidden`.
    #[uniffi::method(default(options = None, cancel = None))]
    pub async fn generate_image(
        &self,
        prompt: String,
        options: Option<ImageOptions>,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<GeneratedImage, TetherError> {
        let options = options.unwrap_or_default();
        self.call(cancel, |c| async move {
            c.generate_image(prompt, options).await
        })
        .await
    }
}

#[uniffi::export]
impl TetherClient {
    /// Submits a job of `kind` with `input_json` (a JSON object) and returns it `Queued`.
    /// It is recorded before it is sent: if this fails with `Network`, `Timeout` or
    /// `Server`, or the app is killed meanwhile, `pending_jobs()` sends it again with the
    /// same idempotency key and the backend runs it once, so do not submit it again. An
    /// unknown kind: `InvalidInput` (code `invalid_input`).
    #[uniffi::method(default(cancel = None))]
    pub async fn submit_job(
        &self,
        kind: String,
        input_json: String,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<JobInfo, TetherError> {
        self.call(
            cancel,
            |c| async move { c.submit_job(kind, input_json).await },
        )
        .await
    }

    /// The job as the backend has it now. An unknown id (or another user's job):
    /// `InvalidInput` with code `not_found`.
    #[uniffi::method(default(cancel = None))]
    pub async fn job(
        &self,
        id: String,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<JobInfo, TetherError> {
        self.call(cancel, |c| async move { c.job(id).await }).await
    }

    /// Polls the job until it succeeds or fails (fast at first, then at most every 5 s,
    /// longer when the backend asks with `Retry-After`) and returns it; a failed job is
    /// returned, not thrown. `listener` hears each status seen, all before this returns.
    /// (The listener is required: ubrn's TypeScript cannot pass an optional foreign
    /// object.) Cancelling stops the polling, not the job. Five polls in a row without an answer
    /// end the wait with that error (wait again later).
    #[uniffi::method(default(cancel = None))]
    pub async fn wait_for_job(
        &self,
        id: String,
        listener: Arc<dyn JobListener>,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<JobInfo, TetherError> {
        self.call(cancel, |c| async move {
            c.wait_for_job(id, Some(listener)).await
        })
        .await
    }

    /// Every job this device submitted that is not finished, oldest first; call it at
    /// launch and wait on them again. A submission that never got its answer is sent
    /// again first (same key): it comes back `Queued`, or still `Submitting` (no id) if
    /// the backend is unreachable now, or `Failed` (listed this once) if it is refused.
    #[uniffi::method(default(cancel = None))]
    pub async fn pending_jobs(
        &self,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<Vec<JobInfo>, TetherError> {
        self.call(cancel, |c| async move { c.pending_jobs().await })
            .await
    }

    /// Forgets a job this device recorded (finished jobs keep their result until this is
    /// called). Returns whether there was one. The backend's job is not touched.
    pub async fn delete_job(&self, id: String) -> Result<bool, TetherError> {
        self.call(None, |c| async move { c.delete_job(id).await })
            .await
    }
}
