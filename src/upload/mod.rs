//! Image upload: `detect` and `vision` (`POST /api/v1/detect|vision`, multipart). The
//! exported records live here; the steps live in their own files:
//!
//! - `sniff.rs`: the media type from magic bytes and the size from the header, before
//!   any decode (the pixel cap stops a decompression bomb there).
//! - `prepare.rs`: what is sent: the original, a losslessly stripped copy, or a resized
//!   JPEG; written to a temporary file in `data_dir` that is removed however the call ends.
//! - `strip.rs`: lossless metadata removal for JPEG, PNG and WebP (ICC kept).
//! - `pixels.rs`: decode (DCT-scaled for JPEG), orientation, resize, JPEG encode.
//! - `progress.rs`: turns the body stream's byte counts into throttled, per-attempt
//!   `UploadProgress` calls made from the caller's own task.
//!
//! The request goes through the one pipeline (`api::send`): one `Idempotency-Key` for the
//! logical request, the form re-opened and re-streamed from disk for every attempt.

mod pixels;
mod prepare;
mod progress;
mod sniff;
mod strip;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use reqwest::Method;
use serde::Deserialize;

use crate::api::Api;
use crate::error::{Error, Result};
use crate::transport::{Body, Multipart, Part, Request, Source};

pub(crate) use prepare::{prepare, Prepared};

/// The image to upload: JPEG, PNG, WebP or HEIC, recognised from its bytes (never its
/// name). HEIC cannot be decoded or rewritten here, so it is sent as it is, metadata
/// included (`ImageInfo.metadata_stripped` is false): to strip it, convert it to JPEG on
/// the platform first. iOS: `UIImage(contentsOfFile:)?.jpegData(compressionQuality: 0.9)`,
/// or `CGImageSourceCreateWithURL` + `CGImageDestinationCreateWithURL(url,
/// UTType.jpeg.identifier, 1, nil)` + `CGImageDestinationAddImageFromSource` with
/// `kCGImageDestinationMetadata` left out (and `kCGImagePropertyGPSDictionary` set to
/// `kCFNull`). Android: `ImageDecoder.decodeBitmap(ImageDecoder.createSource(file))`, then
/// `bitmap.compress(Bitmap.CompressFormat.JPEG, 90, out)` (a `Bitmap` carries no EXIF,
/// and `ImageDecoder` has already applied the orientation).
#[derive(Clone, PartialEq, uniffi::Enum)]
pub enum ImageSource {
    /// A file on the device, e.g. a photo the app just took. Streamed from disk.
    File {
        /// The file's path.
        path: String,
    },
    /// Encoded image bytes in memory (JPEG, PNG, WebP or HEIC).
    Bytes {
        /// The encoded image.
        data: Vec<u8>,
    },
}

impl std::fmt::Debug for ImageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageSource::File { path } => write!(f, "File({path:?})"),
            ImageSource::Bytes { data } => write!(f, "Bytes(<{} bytes>)", data.len()),
        }
    }
}

/// How the image is prepared on the device before it is sent. The defaults suit the
/// models the backend runs (their inputs are well under 1024 px).
///
/// What `strip_metadata` removes, exactly: the EXIF block (GPS position, camera make and
/// model, serial numbers, dates, the embedded thumbnail, maker notes), XMP (APP1 in a
/// JPEG, `XMP ` in WebP, `iTXt` in PNG), IPTC/Photoshop (APP13), JPEG comments (COM) and
/// other application segments (APP2-APP15 except the ICC profile and Adobe's APP14), the
/// extra pictures of a multi-picture JPEG (with their own EXIF), PNG `eXIf`/`tEXt`/`zTXt`/
/// `iTXt`/`tIME` chunks, and WebP `EXIF`/`XMP ` chunks. Kept: the pixels, the ICC colour profile,
/// JFIF, Adobe and PNG colour/physical chunks; a photo stored sideways and sent without a
/// resize keeps one EXIF tag, its orientation, so it still shows upright. A resized image
/// is re-encoded as JPEG with no EXIF at all (it is already upright) and its ICC profile.
/// HEIC is not stripped: see `ImageSource`.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct PrepareOptions {
    /// The longest side, in pixels, of what is sent. A larger JPEG, PNG or WebP is
    /// turned upright (EXIF orientation), downscaled to fit (Lanczos3) and re-encoded as
    /// JPEG. `None`: never resize.
    #[uniffi(default = Some(1024))]
    pub max_dimension: Option<u32>,
    /// JPEG quality (1-100) of a re-encoded image.
    #[uniffi(default = 85)]
    pub jpeg_quality: u32,
    /// Remove EXIF (GPS included), XMP, IPTC, comments and text chunks before sending.
    /// Without a resize this is lossless (no re-encode) for JPEG, PNG and WebP; the ICC
    /// colour profile is always kept, and a non-upright photo keeps only its orientation
    /// tag. HEIC cannot be rewritten here: it is sent unchanged and `ImageInfo` says its
    /// metadata was not stripped (convert it to JPEG on the platform first to strip it).
    #[uniffi(default = true)]
    pub strip_metadata: bool,
    /// The most bytes the image may have when sent (the backend's limit is 10 MiB). A
    /// larger one is `PayloadTooLarge` before any byte is sent.
    #[uniffi(default = 10485760)]
    pub max_bytes: u32,
    /// The most pixels (width x height, read from the header) an image may have; more is
    /// refused as `InvalidInput` before anything is decoded (a decompression bomb).
    #[uniffi(default = 100000000)]
    pub max_pixels: u32,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions {
            max_dimension: Some(1024),
            jpeg_quality: 85,
            strip_metadata: true,
            max_bytes: 10 << 20,
            max_pixels: 100_000_000,
        }
    }
}

/// Options of `detect`.
#[derive(Debug, Clone, PartialEq, Default, uniffi::Record)]
pub struct DetectOptions {
    /// Objects scoring lower are left out (the backend's default when `None`).
    #[uniffi(default = None)]
    pub min_score: Option<f32>,
    /// At most this many objects (the backend's default when `None`).
    #[uniffi(default = None)]
    pub max_objects: Option<u32>,
    /// How the image is prepared before it is sent.
    #[uniffi(default)]
    pub prepare: PrepareOptions,
}

/// Options of `vision`.
#[derive(Debug, Clone, PartialEq, Default, uniffi::Record)]
pub struct VisionOptions {
    /// How the image is prepared before it is sent.
    #[uniffi(default)]
    pub prepare: PrepareOptions,
}

/// What was actually sent.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ImageInfo {
    /// `image/jpeg`, `image/png`, `image/webp` or `image/heic`.
    pub media_type: String,
    /// Width in pixels, as stored in the file sent.
    pub width: u32,
    /// Height in pixels, as stored in the file sent.
    pub height: u32,
    /// Size of the image sent, in bytes.
    pub byte_size: u32,
    /// Whether it was downscaled (and so re-encoded as JPEG).
    pub resized: bool,
    /// Whether its metadata was removed (false for HEIC, or when not asked).
    pub metadata_stripped: bool,
}

/// A box around a detected object, normalised to 0..1 of the image's width and height.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct BoundingBox {
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Width.
    pub width: f32,
    /// Height.
    pub height: f32,
}

/// One detected object.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct DetectedObject {
    /// What it is, e.g. `"cat"`.
    pub label: String,
    /// Confidence, 0..1.
    pub score: f32,
    /// Where it is (the contract's `box`).
    pub bounding_box: BoundingBox,
}

/// The answer of `detect`.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Detection {
    /// The objects found.
    pub objects: Vec<DetectedObject>,
    /// The model that found them.
    pub model: String,
    /// What was sent.
    pub image: ImageInfo,
}

/// The answer of `vision`.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct VisionReply {
    /// The model's answer.
    pub response: String,
    /// The model that answered.
    pub model: String,
    /// What was sent.
    pub image: ImageInfo,
}

/// Told how an upload is going. `total` is the exact body length; `sent` only grows within
/// one attempt and reaches `total` on the attempt that succeeds; a retry starts again at 0
/// with the next `attempt` number. At most about 20 calls a second, on a Tether thread,
/// never after the call returned or was cancelled.
#[uniffi::export(with_foreign)]
pub trait UploadProgress: Send + Sync {
    /// `sent` of `total` bytes of attempt number `attempt` (from 1) are on their way.
    fn on_progress(&self, attempt: u32, sent: u32, total: u32);
}

/// The upload floor: prepares, sends through the pipeline, decodes the answer.
pub(crate) struct Uploads {
    /// Where prepared copies live while a call runs (`<data_dir>/upload-tmp`).
    tmp_dir: PathBuf,
}

impl Uploads {
    /// Creates the temporary directory and clears what a killed process left there.
    pub fn new(data_dir: &Path) -> Result<Uploads> {
        let tmp_dir = data_dir.join("upload-tmp");
        std::fs::create_dir_all(&tmp_dir)
            .map_err(|e| Error::Storage(format!("{}: {e}", tmp_dir.display())))?;
        if let Ok(entries) = std::fs::read_dir(&tmp_dir) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(Uploads { tmp_dir })
    }

    pub async fn detect(
        &self,
        api: &Api,
        image: ImageSource,
        options: DetectOptions,
        progress: Option<Arc<dyn UploadProgress>>,
    ) -> Result<Detection> {
        let prepared = self.prepare(image, options.prepare.clone()).await?;
        let mut opts = serde_json::Map::new();
        if let Some(s) = options.min_score {
            opts.insert("min_score".into(), serde_json::json!(s));
        }
        if let Some(m) = options.max_objects {
            opts.insert("max_objects".into(), serde_json::json!(m));
        }
        let extra = (!opts.is_empty()).then(|| Part {
            name: "options".into(),
            filename: None,
            content_type: Some("application/json".into()),
            source: Source::Bytes(serde_json::Value::Object(opts).to_string().into()),
        });
        let body = send(api, "detect", &prepared, extra, progress).await?;
        let wire: DetectWire = serde_json::from_slice(&body)
            .map_err(|e| Error::decode(format!("detect answer: {e}")))?;
        Ok(Detection {
            objects: wire
                .objects
                .into_iter()
                .map(|o| DetectedObject {
                    label: o.label,
                    score: o.score,
                    bounding_box: BoundingBox {
                        x: o.bbox[0],
                        y: o.bbox[1],
                        width: o.bbox[2],
                        height: o.bbox[3],
                    },
                })
                .collect(),
            model: wire.model,
            image: prepared.info.clone(),
        })
    }

    pub async fn vision(
        &self,
        api: &Api,
        image: ImageSource,
        prompt: String,
        options: VisionOptions,
        progress: Option<Arc<dyn UploadProgress>>,
    ) -> Result<VisionReply> {
        if prompt.trim().is_empty() {
            return Err(Error::InvalidInput("the prompt is empty".into()));
        }
        let prepared = self.prepare(image, options.prepare).await?;
        let extra = Part {
            name: "prompt".into(),
            filename: None,
            content_type: None,
            source: Source::Bytes(Bytes::from(prompt)),
        };
        let body = send(api, "vision", &prepared, Some(extra), progress).await?;
        let wire: VisionWire = serde_json::from_slice(&body)
            .map_err(|e| Error::decode(format!("vision answer: {e}")))?;
        Ok(VisionReply {
            response: wire.response,
            model: wire.model,
            image: prepared.info.clone(),
        })
    }

    /// Prepares on a blocking thread. If the caller goes away meanwhile, the result (and
    /// with it the temporary file) is dropped as soon as the work ends.
    pub async fn prepare(&self, image: ImageSource, options: PrepareOptions) -> Result<Prepared> {
        let dir = self.tmp_dir.clone();
        tokio::task::spawn_blocking(move || prepare(image, &options, &dir))
            .await
            .map_err(|e| Error::Storage(format!("image preparation stopped: {e}")))?
    }
}

/// For `tether-upload-bench` only (not exported to the bindings): runs preflight and
/// preparation on a file exactly as `detect` does, in `tmp_dir`, and says what would be
/// sent; the prepared copy is removed before it returns.
#[doc(hidden)]
pub fn prepare_for_bench(
    path: &str,
    options: PrepareOptions,
    tmp_dir: &str,
) -> std::result::Result<ImageInfo, crate::error::TetherError> {
    let image = ImageSource::File { path: path.into() };
    let prepared = prepare(image, &options, Path::new(tmp_dir))?;
    Ok(prepared.info.clone())
}

/// Sends the prepared image (and the extra part) as one logical request, reporting
/// progress from this task.
pub(crate) async fn send(
    api: &Api,
    path: &str,
    prepared: &Prepared,
    extra: Option<Part>,
    listener: Option<Arc<dyn UploadProgress>>,
) -> Result<Vec<u8>> {
    let mut parts = vec![Part {
        name: "image".into(),
        filename: Some(prepared.filename()),
        content_type: Some(prepared.info.media_type.clone()),
        source: prepared.source.clone(),
    }];
    parts.extend(extra);
    let mut form = Multipart::new(parts)?;
    let counter = progress::Counter::default();
    if listener.is_some() {
        form = form.with_progress(counter.hook());
    }
    let req = Request::new(Method::POST, path).with_body(Body::Multipart(Arc::new(form)));
    let reply = progress::report(api.send(req), &counter, listener).await?;
    Ok(reply.body)
}

#[derive(Deserialize)]
struct DetectWire {
    objects: Vec<ObjectWire>,
    model: String,
}

#[derive(Deserialize)]
struct ObjectWire {
    label: String,
    score: f32,
    #[serde(rename = "box")]
    bbox: [f32; 4],
}

#[derive(Deserialize)]
struct VisionWire {
    response: String,
    model: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_deleted_between_preflight_and_upload_is_invalid_input_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("holiday.png");
        std::fs::write(&path, pixels::tests::tiny_png(4, 4)).unwrap();
        let options = PrepareOptions {
            max_dimension: None,
            strip_metadata: false,
            ..Default::default()
        };
        let image = ImageSource::File {
            path: path.to_str().unwrap().into(),
        };
        let prepared = prepare(image, &options, dir.path()).unwrap();
        assert!(matches!(&prepared.source, Source::File(p) if p == &path));
        std::fs::remove_file(&path).unwrap();
        let part = Part {
            name: "image".into(),
            filename: Some(prepared.filename()),
            content_type: Some(prepared.info.media_type.clone()),
            source: prepared.source.clone(),
        };
        assert!(matches!(
            Multipart::new(vec![part]),
            Err(Error::InvalidInput(m)) if m.contains("holiday.png")
        ));
    }
}
