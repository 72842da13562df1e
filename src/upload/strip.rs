//! Lossless metadata removal (no re-encode) and the EXIF facts preparation needs.
//!
//! Removed: EXIF (GPS, camera, dates, thumbnail), XMP, IPTC/Photoshop, comments; in PNG
//! also `tEXt`/`zTXt`/`iTXt`/`tIME`; in a JPEG, anything after the primary image (the
//! extra pictures of a multi-picture file carry their own EXIF). Kept: the pixels as
//! they are, the ICC colour profile, JFIF and Adobe segments (they change how colours
//! decode), PNG's colour and physical chunks. A photo stored sideways keeps one EXIF tag,
//! its orientation, so it still displays upright.
//!
//! Segments and chunks are parsed by `img-parts`; two gaps are filled here: the end of a
//! JPEG's primary image, and the WebP `VP8X` flags (`img-parts` leaves them stale).

use bytes::{Bytes, BytesMut};
use img_parts::jpeg::{markers, Jpeg, JpegSegment};
use img_parts::png::Png;
use img_parts::riff::{RiffChunk, RiffContent};
use img_parts::webp::WebP;
use img_parts::{DynImage, ImageEXIF};

use super::sniff::Kind;
use crate::error::{Error, Result};

fn corrupt(kind: Kind, e: impl std::fmt::Display) -> Error {
    Error::UnsupportedMedia(format!("{} could not be parsed: {e}", kind.media_type()))
}

/// The raw EXIF (TIFF) block of a JPEG, PNG or WebP, if it has one.
pub(crate) fn exif_of(data: &[u8]) -> Option<Bytes> {
    DynImage::from_bytes(Bytes::copy_from_slice(data))
        .ok()
        .flatten()
        .and_then(|i| i.exif())
}

/// The EXIF orientation (1-8), 1 when absent or unreadable.
pub(crate) fn orientation(exif: Option<&Bytes>) -> u32 {
    let Some(raw) = exif else { return 1 };
    let Ok(e) = exif::Reader::new().read_raw(raw.to_vec()) else {
        return 1;
    };
    e.get_field(exif::Tag::Orientation, exif::In::PRIMARY)
        .and_then(|f| f.value.get_uint(0))
        .filter(|o| (1..=8).contains(o))
        .unwrap_or(1)
}

/// An EXIF block holding the orientation tag and nothing else.
fn orientation_only(o: u32) -> Option<Bytes> {
    let field = exif::Field {
        tag: exif::Tag::Orientation,
        ifd_num: exif::In::PRIMARY,
        value: exif::Value::Short(vec![o as u16]),
    };
    let mut w = exif::experimental::Writer::new();
    w.push_field(&field);
    let mut out = std::io::Cursor::new(Vec::new());
    w.write(&mut out, false).ok()?;
    Some(out.into_inner().into())
}

/// `data` without its metadata, byte-identical pixels.
pub(crate) fn strip(kind: Kind, data: Bytes) -> Result<Vec<u8>> {
    match kind {
        Kind::Jpeg => strip_jpeg(data),
        Kind::Png => strip_png(data),
        Kind::WebP => strip_webp(data),
        Kind::Heic => Err(Error::UnsupportedMedia(
            "HEIC cannot be rewritten here".into(),
        )),
    }
}

const ICC_PREFIX: &[u8] = b"ICC_PROFILE\0";
const EXIF_PREFIX: &[u8] = b"Exif\0\0";

fn strip_jpeg(data: Bytes) -> Result<Vec<u8>> {
    let mut jpeg = Jpeg::from_bytes(data).map_err(|e| corrupt(Kind::Jpeg, e))?;
    let o = orientation(jpeg.exif().as_ref());
    jpeg.segments_mut().retain(|s| match s.marker() {
        markers::APP0 | markers::APP14 => true,
        markers::APP2 => s.contents().starts_with(ICC_PREFIX),
        m if (markers::APP1..=markers::APP15).contains(&m) => false,
        markers::COM => false,
        _ => true,
    });
    if o != 1 {
        if let Some(exif) = orientation_only(o) {
            let mut contents = BytesMut::from(EXIF_PREFIX);
            contents.extend_from_slice(&exif);
            let at = jpeg
                .segments()
                .iter()
                .take_while(|s| s.marker() == markers::APP0)
                .count();
            jpeg.segments_mut().insert(
                at,
                JpegSegment::new_with_contents(markers::APP1, contents.freeze()),
            );
        }
    }
    // The scan segment's entropy runs to the end of the file: cut it after the primary
    // image's EOI, dropping whatever was appended (MPF pictures with their own EXIF).
    if let Some(last) = jpeg.segments_mut().last_mut() {
        if last.has_entropy() {
            let (marker, contents) = (last.marker(), last.contents().clone());
            let mut rest = Vec::new();
            last.clone()
                .encoder()
                .write_to(&mut rest)
                .map_err(|e| corrupt(Kind::Jpeg, e))?;
            // `rest` = marker, length, contents, entropy.
            let head = 4 + contents.len();
            let entropy = Bytes::from(rest).slice(head..);
            let end =
                primary_end(&entropy).ok_or_else(|| corrupt(Kind::Jpeg, "no end of image"))?;
            *last = JpegSegment::new_with_entropy(marker, contents, entropy.slice(..end));
        }
    }
    let mut out = Vec::new();
    jpeg.encoder()
        .write_to(&mut out)
        .map_err(|e| corrupt(Kind::Jpeg, e))?;
    Ok(out)
}

/// Where the primary image ends in the bytes after the first scan header (just past its
/// EOI): entropy-coded data stuffs `FF 00` and uses `FF D0..D7` restarts; other markers
/// between progressive scans carry a length to skip.
fn primary_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] != 0xFF {
            i += 1;
            continue;
        }
        match b[i + 1] {
            0x00 | 0xFF | 0xD0..=0xD7 => i += 1,
            0xD9 => return Some(i + 2),
            _ => {
                let len = u16::from_be_bytes([*b.get(i + 2)?, *b.get(i + 3)?]) as usize;
                i += 2 + len;
            }
        }
    }
    None
}

fn strip_png(data: Bytes) -> Result<Vec<u8>> {
    let mut png = Png::from_bytes(data).map_err(|e| corrupt(Kind::Png, e))?;
    let o = orientation(png.exif().as_ref());
    png.chunks_mut()
        .retain(|c| !matches!(&c.kind(), b"eXIf" | b"tEXt" | b"zTXt" | b"iTXt" | b"tIME"));
    if o != 1 {
        png.set_exif(orientation_only(o));
    }
    let mut out = Vec::new();
    png.encoder()
        .write_to(&mut out)
        .map_err(|e| corrupt(Kind::Png, e))?;
    Ok(out)
}

/// `VP8X` flag bits (WebP container spec): EXIF present, XMP present.
const FLAG_EXIF: u8 = 0x08;
const FLAG_XMP: u8 = 0x04;

fn strip_webp(data: Bytes) -> Result<Vec<u8>> {
    let mut webp = WebP::from_bytes(data).map_err(|e| corrupt(Kind::WebP, e))?;
    let o = orientation(webp.exif().as_ref());
    webp.chunks_mut()
        .retain(|c| !matches!(&c.id(), b"EXIF" | b"XMP "));
    // WebP has no standard orientation use in decoders besides EXIF; keep that tag only.
    let keep_exif = if o != 1 { orientation_only(o) } else { None };
    if let Some(exif) = &keep_exif {
        webp.chunks_mut()
            .push(RiffChunk::new(*b"EXIF", RiffContent::Data(exif.clone())));
    }
    for c in webp.chunks_mut() {
        if &c.id() == b"VP8X" {
            if let RiffContent::Data(d) = c.content_mut() {
                let mut flags = d.to_vec();
                if let Some(f) = flags.first_mut() {
                    *f &= !(FLAG_EXIF | FLAG_XMP);
                    if keep_exif.is_some() {
                        *f |= FLAG_EXIF;
                    }
                }
                *d = flags.into();
            }
        }
    }
    let mut out = Vec::new();
    webp.encoder()
        .write_to(&mut out)
        .map_err(|e| corrupt(Kind::WebP, e))?;
    Ok(out)
}
