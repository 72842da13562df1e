//! Preflight and preparation, before any byte is sent: sniff, cap the pixel count from
//! the header, then choose what goes out: the original (streamed from its file, or from
//! memory), a losslessly stripped copy, or an upright, downscaled JPEG. A copy is
//! written to a temporary file in `data_dir` that [`TempFile`] removes when the call
//! ends, however it ends. Blocking: runs on a blocking thread.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::sniff::{self, Header, Kind};
use super::{pixels, strip, ImageInfo, ImageSource, PrepareOptions};
use crate::error::{Error, Result};
use crate::transport::Source;

/// The most input bytes read into memory to re-encode an image (one that preparation
/// would bring under `max_bytes`); beyond it the input is refused as too large.
const MAX_DECODE_INPUT: u64 = 256 << 20;

/// A file removed when dropped.
#[derive(Debug)]
pub(crate) struct TempFile(PathBuf);

impl TempFile {
    fn write(dir: &Path, ext: &str, data: &[u8]) -> Result<TempFile> {
        let path = dir.join(format!(
            "tether-upload-{}.{ext}",
            uuid::Uuid::new_v4().simple()
        ));
        // Guard first: a failed write leaves nothing behind either.
        let t = TempFile(path);
        std::fs::write(&t.0, data)
            .map_err(|e| Error::Storage(format!("{}: {e}", t.0.display())))?;
        Ok(t)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What will be sent: its source, what it is, and the temporary copy (if any) that must
/// live until the upload ends.
pub(crate) struct Prepared {
    pub source: Source,
    pub info: ImageInfo,
    kind: Kind,
    _temp: Option<TempFile>,
}

impl Prepared {
    /// The part's `filename`: never the user's own file name (it may say too much).
    pub fn filename(&self) -> String {
        format!("image.{}", self.kind.extension())
    }
}

fn too_large(max_bytes: u32) -> Error {
    Error::PayloadTooLarge {
        max_bytes: max_bytes.into(),
    }
}

/// Runs preflight and preparation for one image.
pub(crate) fn prepare(image: ImageSource, o: &PrepareOptions, tmp_dir: &Path) -> Result<Prepared> {
    let (header, input_len) = match &image {
        ImageSource::File { path } => {
            let path = Path::new(path);
            let h = sniff::sniff_file(path)?;
            let len = std::fs::metadata(path)
                .map_err(|e| {
                    Error::InvalidInput(format!("cannot read image {}: {e}", path.display()))
                })?
                .len();
            (h, len)
        }
        ImageSource::Bytes { data } => (sniff::sniff_bytes(data)?, data.len() as u64),
    };
    let Header {
        kind,
        width,
        height,
    } = header;
    if width as u64 * height as u64 > o.max_pixels as u64 {
        return Err(Error::InvalidInput(format!(
            "the image is {width}x{height} pixels, over max_pixels ({}); refused before decoding",
            o.max_pixels
        )));
    }
    let info = |media: Kind, w, h, len: u64, resized, stripped| ImageInfo {
        media_type: media.media_type().into(),
        width: w,
        height: h,
        byte_size: u32::try_from(len).unwrap_or(u32::MAX),
        resized,
        metadata_stripped: stripped,
    };
    let resize_to = o
        .max_dimension
        .filter(|&m| m > 0 && kind != Kind::Heic && width.max(height) > m);
    let rewrite = resize_to.is_some() || (o.strip_metadata && kind != Kind::Heic);
    if !rewrite {
        if input_len > o.max_bytes as u64 {
            return Err(too_large(o.max_bytes));
        }
        let info = info(kind, width, height, input_len, false, false);
        let source = match image {
            ImageSource::File { path } => Source::File(path.into()),
            ImageSource::Bytes { data } => Source::Bytes(Bytes::from(data)),
        };
        return Ok(Prepared {
            source,
            info,
            kind,
            _temp: None,
        });
    }
    if resize_to.is_none() && input_len > o.max_bytes as u64 {
        // A lossless strip never makes an image meaningfully smaller.
        return Err(too_large(o.max_bytes));
    }
    if input_len > MAX_DECODE_INPUT {
        return Err(too_large(o.max_bytes));
    }
    let data: Bytes = match image {
        ImageSource::File { path } => std::fs::read(&path)
            .map_err(|e| Error::InvalidInput(format!("cannot read image {path}: {e}")))?
            .into(),
        ImageSource::Bytes { data } => data.into(),
    };
    let (out, out_kind, w, h, resized) = match resize_to {
        Some(max) => {
            let exif = strip::exif_of(&data);
            let orientation = strip::orientation(exif.as_ref());
            let (tw, th) = pixels::fit(width, height, max);
            let (decoded, icc) = pixels::decode(kind, &data, (tw, th))?;
            drop(data);
            let small = pixels::resize(decoded, tw, th)?;
            let upright = pixels::orient(small, orientation);
            let jpeg = pixels::encode_jpeg(&upright, o.jpeg_quality, icc.as_deref())?;
            (jpeg, Kind::Jpeg, upright.width, upright.height, true)
        }
        None => (strip::strip(kind, data)?, kind, width, height, false),
    };
    if out.len() as u64 > o.max_bytes as u64 {
        return Err(too_large(o.max_bytes));
    }
    let temp = TempFile::write(tmp_dir, out_kind.extension(), &out)?;
    Ok(Prepared {
        source: Source::File(temp.0.clone()),
        info: info(out_kind, w, h, out.len() as u64, resized, true),
        kind: out_kind,
        _temp: Some(temp),
    })
}
