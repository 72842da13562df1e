//! What an image is, from its bytes alone: the media type from magic bytes (never the
//! file name or the caller's word) and the pixel size from the header, both without
//! decoding (`imagesize` reads only the header boxes/segments it needs).

use std::path::Path;

use crate::error::{Error, Result};

/// The media types the contract accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Jpeg,
    Png,
    WebP,
    Heic,
}

impl Kind {
    pub fn media_type(self) -> &'static str {
        match self {
            Kind::Jpeg => "image/jpeg",
            Kind::Png => "image/png",
            Kind::WebP => "image/webp",
            Kind::Heic => "image/heic",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Kind::Jpeg => "jpg",
            Kind::Png => "png",
            Kind::WebP => "webp",
            Kind::Heic => "heic",
        }
    }
}

/// The kind and stored size (width, height) of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub kind: Kind,
    pub width: u32,
    pub height: u32,
}

fn kind_of(head: &[u8]) -> Result<Kind> {
    use imagesize::ImageType as T;
    match imagesize::image_type(head) {
        Ok(T::Jpeg) => Ok(Kind::Jpeg),
        Ok(T::Png) => Ok(Kind::Png),
        Ok(T::Webp) => Ok(Kind::WebP),
        Ok(T::Heif(imagesize::Compression::Hevc | imagesize::Compression::Unknown)) => {
            Ok(Kind::Heic)
        }
        Ok(other) => Err(Error::UnsupportedMedia(format!(
            "{other:?} images are not accepted; use JPEG, PNG, WebP or HEIC"
        ))),
        Err(_) => Err(Error::UnsupportedMedia(
            "not a JPEG, PNG, WebP or HEIC image".into(),
        )),
    }
}

fn header(kind: Kind, size: imagesize::ImageResult<imagesize::ImageSize>) -> Result<Header> {
    let size = size.map_err(|e| {
        Error::UnsupportedMedia(format!(
            "{} header could not be read: {e}",
            kind.media_type()
        ))
    })?;
    let (width, height) = (size.width as u64, size.height as u64);
    if width == 0 || height == 0 || width > u32::MAX as u64 || height > u32::MAX as u64 {
        return Err(Error::UnsupportedMedia(format!(
            "{} header names an impossible size {width}x{height}",
            kind.media_type()
        )));
    }
    Ok(Header {
        kind,
        width: width as u32,
        height: height as u32,
    })
}

/// Sniffs an image in memory.
pub(crate) fn sniff_bytes(data: &[u8]) -> Result<Header> {
    let kind = kind_of(&data[..data.len().min(64)])?;
    header(kind, imagesize::blob_size(data))
}

/// Sniffs a file; a missing or unreadable file is `InvalidInput` naming it.
pub(crate) fn sniff_file(path: &Path) -> Result<Header> {
    use std::io::Read;
    let unreadable = |e: std::io::Error| {
        Error::InvalidInput(format!("cannot read image {}: {e}", path.display()))
    };
    let mut f = std::fs::File::open(path).map_err(unreadable)?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]).map_err(unreadable)? {
            0 => break,
            k => n += k,
        }
    }
    let kind = kind_of(&head[..n])?;
    header(kind, imagesize::size(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_type_comes_from_the_bytes_not_the_name() {
        let png = super::super::pixels::tests::tiny_png(3, 2);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("photo.jpg");
        std::fs::write(&path, &png).unwrap();
        let h = sniff_file(&path).unwrap();
        assert_eq!((h.kind, h.width, h.height), (Kind::Png, 3, 2));
        assert!(matches!(
            sniff_bytes(b"GIF89a\x01\x00\x01\x00"),
            Err(Error::UnsupportedMedia(_))
        ));
        assert!(matches!(
            sniff_bytes(b"hello, not an image at all"),
            Err(Error::UnsupportedMedia(_))
        ));
        assert!(matches!(
            sniff_file(&dir.path().join("gone.jpg")),
            Err(Error::InvalidInput(m)) if m.contains("gone.jpg")
        ));
    }
}
