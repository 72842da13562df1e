//! Image generation (`POST /api/v1/images`): the base64 PNG of the reply is decoded to a
//! file while the body arrives (`reply.rs`), so memory stays at a few chunks whatever the
//! image's size. The file is written under a temporary name in the destination's folder
//! and renamed only once the reply proved to be a whole PNG: a reply that is not base64,
//! not a PNG, or cut off leaves no file behind (nor does a cancelled call).
//!
//! Width and height are what the PNG's IHDR says, not what was asked (the server clamps
//! to 256..2048). Files at the default destination (`data_dir/images/`) belong to the app:
//! Tether never deletes them; the app deletes each one when it no longer shows it.

mod reply;

use std::path::{Path, PathBuf};

use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::api::Api;
use crate::error::{Error, Result};
use crate::transport::Request;

/// Larger PNGs are refused: a 2048x2048 RGBA image, even stored uncompressed, is 16 MiB.
const MAX_PNG_BYTES: u64 = 64 << 20;

/// Options of [`crate::TetherClient::generate_image`].
#[derive(Debug, Clone, Default, PartialEq, uniffi::Record)]
pub struct ImageOptions {
    /// The width asked for, in pixels (the server clamps to 256..2048; default 1024).
    #[uniffi(default = None)]
    pub width: Option<u32>,
    /// The height asked for, in pixels (the server clamps to 256..2048; default 1024).
    #[uniffi(default = None)]
    pub height: Option<u32>,
    /// Where to write the PNG: an absolute file path (its folder is created; an existing
    /// file is replaced once the new one is complete). Default: a new file under
    /// `data_dir/images/`, which the app deletes when done with it.
    #[uniffi(default = None)]
    pub path: Option<String>,
}

/// A generated image, written to a file.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct GeneratedImage {
    /// The absolute path of the PNG file. The app owns it (Tether never deletes it).
    pub path: String,
    /// Always `image/png`.
    pub media_type: String,
    /// The width in pixels, from the PNG's IHDR.
    pub width: u32,
    /// The height in pixels, from the PNG's IHDR.
    pub height: u32,
    /// The file's size in bytes.
    pub byte_size: u32,
    /// The model the backend named (empty if it named none).
    pub model: String,
}

/// Removes the temporary file unless it was renamed into place (also when the call's
/// future is dropped half-way).
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Storage(format!("{what} {}: {e}", path.display()))
}

/// The destination file: the caller's absolute path, or a new name in `default_dir`.
fn destination(path: Option<String>, default_dir: &Path) -> Result<PathBuf> {
    match path {
        None => Ok(default_dir.join(format!("{}.png", uuid::Uuid::new_v4()))),
        Some(p) => {
            let p = PathBuf::from(p);
            if !p.is_absolute() || p.file_name().is_none() || p.is_dir() {
                return Err(Error::InvalidInput(format!(
                    "image path {:?} must be an absolute path to a file",
                    p.display()
                )));
            }
            Ok(p)
        }
    }
}

/// Asks for an image and writes it to its destination.
pub async fn generate(
    api: &Api,
    default_dir: &Path,
    prompt: String,
    options: ImageOptions,
) -> Result<GeneratedImage> {
    if prompt.trim().is_empty() {
        return Err(Error::InvalidInput("the prompt is empty".into()));
    }
    let dest = destination(options.path, default_dir)?;
    let dir = dest.parent().unwrap_or(default_dir).to_path_buf();
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| io("creating", &dir, e))?;
    let mut body = json!({ "prompt": prompt });
    if let Some(w) = options.width {
        body["width"] = w.into();
    }
    if let Some(h) = options.height {
        body["height"] = h.into();
    }
    let mut stream = api
        .send_stream(Request::post_json("images", body.to_string()))
        .await?;

    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut temp = TempFile {
        path: dir.join(format!(".{name}.{}.part", uuid::Uuid::new_v4().simple())),
        keep: false,
    };
    let mut file = tokio::fs::File::create(&temp.path)
        .await
        .map_err(|e| io("creating", &temp.path, e))?;
    let mut reply = reply::ImageReply::default();
    let mut out = Vec::with_capacity(64 * 1024);
    let mut written: u64 = 0;
    loop {
        let chunk = match stream.next().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(Error::Network { message, .. }) => {
                return Err(Error::decode(format!(
                    "image reply: cut off mid-body ({message})"
                )))
            }
            Err(e) => return Err(e),
        };
        out.clear();
        reply.feed(&chunk, &mut out)?;
        written += out.len() as u64;
        if written > MAX_PNG_BYTES {
            return Err(Error::ResponseTooLarge {
                limit: MAX_PNG_BYTES,
            });
        }
        file.write_all(&out)
            .await
            .map_err(|e| io("writing", &temp.path, e))?;
    }
    out.clear();
    let decoded = reply.finish(&mut out)?;
    file.write_all(&out)
        .await
        .map_err(|e| io("writing", &temp.path, e))?;
    file.flush()
        .await
        .map_err(|e| io("writing", &temp.path, e))?;
    // On disk before it takes the final name: a crash never leaves a truncated PNG there.
    file.sync_all()
        .await
        .map_err(|e| io("writing", &temp.path, e))?;
    drop(file);
    tokio::fs::rename(&temp.path, &dest)
        .await
        .map_err(|e| io("renaming into", &dest, e))?;
    temp.keep = true;
    tracing::debug!(target: "tether::images", width = decoded.width, height = decoded.height, bytes = decoded.byte_size, "image written");
    Ok(GeneratedImage {
        path: dest.to_string_lossy().into_owned(),
        media_type: "image/png".into(),
        width: decoded.width,
        height: decoded.height,
        byte_size: u32::try_from(decoded.byte_size).unwrap_or(u32::MAX),
        model: decoded.model.unwrap_or_default(),
    })
}
