//! The upload area of the facade: `detect` and `vision`, multipart image uploads
//! streamed from disk, prepared on the device (see `crate::upload`).

use std::sync::Arc;

use super::TetherClient;
use crate::error::TetherError;
use crate::runtime::CancelHandle;
use crate::upload::{
    DetectOptions, Detection, ImageSource, UploadProgress, VisionOptions, VisionReply,
};

#[uniffi::export]
impl TetherClient {
    /// Finds objects in an image (`POST /api/v1/detect`). The image is checked on the
    /// device first (type from its bytes, size, pixel count), prepared (upright,
    /// downscaled to `max_dimension`, metadata removed), then streamed with a
    /// `Content-Length`; retries re-send it with the same `Idempotency-Key`. Errors:
    /// `PlanRequired` (402), `PayloadTooLarge`, `UnsupportedMedia`, `InvalidInput` (a
    /// missing file, a decompression bomb), `Cancelled`.
    #[uniffi::method(default(options = None, progress = None, cancel = None))]
    pub async fn detect(
        &self,
        image: ImageSource,
        options: Option<DetectOptions>,
        progress: Option<Arc<dyn UploadProgress>>,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<Detection, TetherError> {
        self.call(cancel, |c| async move {
            c.detect(image, options.unwrap_or_default(), progress).await
        })
        .await
    }

    /// Asks a question about an image (`POST /api/v1/vision`); the image is prepared and
    /// sent as for `detect`.
    #[uniffi::method(default(options = None, progress = None, cancel = None))]
    pub async fn vision(
        &self,
        image: ImageSource,
        prompt: String,
        options: Option<VisionOptions>,
        progress: Option<Arc<dyn UploadProgress>>,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<VisionReply, TetherError> {
        self.call(cancel, |c| async move {
            c.vision(image, prompt, options.unwrap_or_default(), progress)
                .await
        })
        .await
    }
}
