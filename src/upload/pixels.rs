//! The re-encode path: decode (a JPEG at 1/2, 1/4 or 1/8 scale while decoding, the
//! trick that makes libjpeg-turbo and vips fast), downscale with Lanczos3
//! (our own, `crates/resample`), turn upright by the EXIF orientation, encode as JPEG with the
//! ICC profile carried over (`jpeg-encoder`). Alpha is flattened onto white: JPEG has none.

use std::io::Cursor;

use super::sniff::Kind;
use crate::error::{Error, Result};

/// Decoded pixels: 1 (grey) or 3 (RGB) bytes per pixel.
pub(crate) struct Pixels {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub data: Vec<u8>,
}

fn corrupt(kind: Kind, e: impl std::fmt::Display) -> Error {
    Error::UnsupportedMedia(format!("{} could not be decoded: {e}", kind.media_type()))
}

/// The size that fits `(w, h)` into `max` on its longer side, keeping the aspect.
pub(crate) fn fit(w: u32, h: u32, max: u32) -> (u32, u32) {
    let long = w.max(h) as u64;
    let scale = |v: u32| ((v as u64 * max as u64 + long / 2) / long).max(1) as u32;
    (scale(w), scale(h))
}

/// Decodes `data`, at a reduced scale (never below `want`) where the format allows.
/// Returns the pixels and the ICC profile.
pub(crate) fn decode(
    kind: Kind,
    data: &[u8],
    want: (u32, u32),
) -> Result<(Pixels, Option<Vec<u8>>)> {
    match kind {
        Kind::Jpeg => {
            let mut d = jpeg_decoder::Decoder::new(Cursor::new(data));
            d.read_info().map_err(|e| corrupt(kind, e))?;
            let clamp = |v: u32| v.min(u16::MAX as u32) as u16;
            let (w, h) = d
                .scale(clamp(want.0), clamp(want.1))
                .map_err(|e| corrupt(kind, e))?;
            let px = d.decode().map_err(|e| corrupt(kind, e))?;
            let channels = match d.info().map(|i| i.pixel_format) {
                Some(jpeg_decoder::PixelFormat::RGB24) => 3,
                Some(jpeg_decoder::PixelFormat::L8) => 1,
                other => {
                    return Err(Error::UnsupportedMedia(format!(
                        "JPEG pixel format {other:?} is not supported; send RGB or greyscale"
                    )))
                }
            };
            let pixels = Pixels {
                width: w.into(),
                height: h.into(),
                channels,
                data: px,
            };
            Ok((pixels, d.icc_profile()))
        }
        Kind::Png => {
            let mut dec = png::Decoder::new(Cursor::new(data));
            dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
            let mut reader = dec.read_info().map_err(|e| corrupt(kind, e))?;
            let icc = reader.info().icc_profile.as_ref().map(|c| c.to_vec());
            let mut buf = vec![0; reader.output_buffer_size()];
            let frame = reader.next_frame(&mut buf).map_err(|e| corrupt(kind, e))?;
            buf.truncate(frame.buffer_size());
            let (w, h) = (frame.width, frame.height);
            let pixels = match frame.color_type {
                png::ColorType::Grayscale => flatten(w, h, buf, 1, false),
                png::ColorType::GrayscaleAlpha => flatten(w, h, buf, 1, true),
                png::ColorType::Rgb => flatten(w, h, buf, 3, false),
                png::ColorType::Rgba => flatten(w, h, buf, 3, true),
                png::ColorType::Indexed => return Err(corrupt(kind, "palette was not expanded")),
            };
            Ok((pixels, icc))
        }
        Kind::WebP => {
            let mut d =
                image_webp::WebPDecoder::new(Cursor::new(data)).map_err(|e| corrupt(kind, e))?;
            let icc = d.icc_profile().ok().flatten();
            let (w, h) = d.dimensions();
            let alpha = d.has_alpha();
            let size = d
                .output_buffer_size()
                .ok_or_else(|| corrupt(kind, "image too large"))?;
            let mut buf = vec![0; size];
            d.read_image(&mut buf).map_err(|e| corrupt(kind, e))?;
            Ok((flatten(w, h, buf, 3, alpha), icc))
        }
        Kind::Heic => Err(Error::UnsupportedMedia(
            "HEIC cannot be decoded on the device by Tether".into(),
        )),
    }
}

/// Drops an alpha channel by compositing onto white.
fn flatten(width: u32, height: u32, buf: Vec<u8>, colour: u8, alpha: bool) -> Pixels {
    let data = if alpha {
        let step = colour as usize + 1;
        let mut out = Vec::with_capacity(buf.len() / step * colour as usize);
        for px in buf.chunks_exact(step) {
            let a = px[colour as usize] as u32;
            for &c in &px[..colour as usize] {
                out.push(((c as u32 * a + 255 * (255 - a) + 127) / 255) as u8);
            }
        }
        out
    } else {
        buf
    };
    Pixels {
        width,
        height,
        channels: colour,
        data,
    }
}

/// Resamples to exactly `(w, h)` with Lanczos3, grey or RGB as it came.
pub(crate) fn resize(p: Pixels, w: u32, h: u32) -> Result<Pixels> {
    if (p.width, p.height) == (w, h) {
        return Ok(p);
    }
    let data = tether_resample::lanczos3(&p.data, (p.width, p.height), p.channels, (w, h))
        .map_err(|e| Error::InvalidInput(e.to_string()))?;
    Ok(Pixels {
        width: w,
        height: h,
        channels: p.channels,
        data,
    })
}

/// Applies an EXIF orientation (1-8) so the pixels are stored upright.
pub(crate) fn orient(p: Pixels, orientation: u32) -> Pixels {
    if !(2..=8).contains(&orientation) {
        return p;
    }
    let (w, h, c) = (p.width as usize, p.height as usize, p.channels as usize);
    let swap = orientation >= 5;
    let (ow, oh) = if swap { (h, w) } else { (w, h) };
    let mut out = vec![0u8; p.data.len()];
    for y in 0..oh {
        for x in 0..ow {
            // Which stored pixel shows at (x, y) once displayed upright.
            let (sx, sy) = match orientation {
                2 => (w - 1 - x, y),
                3 => (w - 1 - x, h - 1 - y),
                4 => (x, h - 1 - y),
                5 => (y, x),
                6 => (y, h - 1 - x),
                7 => (w - 1 - y, h - 1 - x),
                _ => (w - 1 - y, x),
            };
            let (s, d) = ((sy * w + sx) * c, (y * ow + x) * c);
            out[d..d + c].copy_from_slice(&p.data[s..s + c]);
        }
    }
    Pixels {
        width: ow as u32,
        height: oh as u32,
        channels: p.channels,
        data: out,
    }
}

/// Encodes as baseline JPEG at `quality`, with the ICC profile if there is one.
pub(crate) fn encode_jpeg(p: &Pixels, quality: u32, icc: Option<&[u8]>) -> Result<Vec<u8>> {
    let bad = |e: jpeg_encoder::EncodingError| Error::InvalidInput(format!("JPEG encode: {e}"));
    let (w, h) = (
        u16::try_from(p.width)
            .map_err(|_| Error::InvalidInput("image too wide to encode".into()))?,
        u16::try_from(p.height)
            .map_err(|_| Error::InvalidInput("image too tall to encode".into()))?,
    );
    let mut out = Vec::with_capacity(p.data.len() / 8);
    let mut enc = jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100) as u8);
    if let Some(icc) = icc {
        enc.add_icc_profile(icc).map_err(bad)?;
    }
    if p.data.len() != w as usize * h as usize * p.channels as usize {
        return Err(Error::InvalidInput(
            "JPEG encode: pixel data of the wrong size".into(),
        ));
    }
    enc.encode_image(Frame {
        pixels: p,
        width: w,
        height: h,
    })
    .map_err(bad)?;
    Ok(out)
}

/// Grey or RGB pixels as the encoder reads them. Our own, one type for both layouts:
/// `Encoder::encode` matches on all nine of the crate's colour types and links an
/// encoder for each (~55 KB of the stripped library, see scripts/size-breakdown).
struct Frame<'a> {
    pixels: &'a Pixels,
    width: u16,
    height: u16,
}

impl jpeg_encoder::ImageBuffer for Frame<'_> {
    fn get_jpeg_color_type(&self) -> jpeg_encoder::JpegColorType {
        if self.pixels.channels == 1 {
            jpeg_encoder::JpegColorType::Luma
        } else {
            jpeg_encoder::JpegColorType::Ycbcr
        }
    }

    fn width(&self) -> u16 {
        self.width
    }

    fn height(&self) -> u16 {
        self.height
    }

    fn fill_buffers(&self, y: u16, buffers: &mut [Vec<u8>; 4]) {
        let c = self.pixels.channels as usize;
        let row_len = self.width as usize * c;
        let start = y as usize * row_len;
        // In range: `encode_jpeg` checked the length, and the encoder asks for rows
        // below `height` only; an empty row is the safe answer otherwise.
        let row = self.pixels.data.get(start..start + row_len).unwrap_or(&[]);
        if c == 1 {
            buffers[0].extend_from_slice(row);
            return;
        }
        for px in row.chunks_exact(3) {
            let (luma, cb, cr) = jpeg_encoder::rgb_to_ycbcr(px[0], px[1], px[2]);
            buffers[0].push(luma);
            buffers[1].push(cb);
            buffers[2].push(cr);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tiny RGB PNG (test input).
    pub(crate) fn tiny_png(w: u32, h: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        let mut wr = enc.write_header().unwrap();
        wr.write_image_data(&vec![200u8; (w * h * 3) as usize])
            .unwrap();
        wr.finish().unwrap();
        out
    }

    #[test]
    fn orientation_six_turns_a_landscape_image_upright() {
        // 2x1 stored: red at the left, blue at the right. Orientation 6 = rotate 90° CW.
        let p = Pixels {
            width: 2,
            height: 1,
            channels: 3,
            data: vec![255, 0, 0, 0, 0, 255],
        };
        let o = orient(p, 6);
        assert_eq!((o.width, o.height), (1, 2));
        // Rotated clockwise, the left (red) ends on top.
        assert_eq!(o.data, vec![255, 0, 0, 0, 0, 255]);
        let p = Pixels {
            width: 2,
            height: 1,
            channels: 3,
            data: vec![255, 0, 0, 0, 0, 255],
        };
        let o = orient(p, 8);
        assert_eq!(o.data, vec![0, 0, 255, 255, 0, 0]);
        assert_eq!(fit(4000, 3000, 1024), (1024, 768));
        assert_eq!(fit(3000, 4000, 1024), (768, 1024));
    }
}
