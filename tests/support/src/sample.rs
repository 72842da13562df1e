//! Sample photos made on the spot for tests, the demo and the bench (nothing binary is
//! shipped): a JPEG whose left half is red and right half blue as stored, with an EXIF
//! block holding a GPS position and an orientation, and optionally an ICC profile; and a
//! photo-like picture (smooth gradients with grain) for timing the resize.

/// A fake ICC profile: decoders carry it through without reading it.
pub const SAMPLE_ICC: &[u8] = b"tether-sample-icc-profile: Display P3 stand-in \x00\x01\x02\x03";

/// The GPS latitude the sample carries (48 deg 51 min 30 s N: Paris).
pub const SAMPLE_LATITUDE: [(u32, u32); 3] = [(48, 1), (51, 1), (30, 1)];

/// EXIF (TIFF) bytes with `orientation` and, if asked, a GPS position.
pub fn exif_block(orientation: u16, gps: bool) -> Vec<u8> {
    use exif::{Field, In, Rational, Tag, Value};
    let mut fields = vec![
        Field {
            tag: Tag::Orientation,
            ifd_num: In::PRIMARY,
            value: Value::Short(vec![orientation]),
        },
        Field {
            tag: Tag::Make,
            ifd_num: In::PRIMARY,
            value: Value::Ascii(vec![b"TetherCam".to_vec()]),
        },
    ];
    if gps {
        let r = |(n, d): (u32, u32)| Rational { num: n, denom: d };
        fields.push(Field {
            tag: Tag::GPSLatitudeRef,
            ifd_num: In::PRIMARY,
            value: Value::Ascii(vec![b"N".to_vec()]),
        });
        fields.push(Field {
            tag: Tag::GPSLatitude,
            ifd_num: In::PRIMARY,
            value: Value::Rational(SAMPLE_LATITUDE.iter().map(|&p| r(p)).collect()),
        });
        fields.push(Field {
            tag: Tag::GPSLongitudeRef,
            ifd_num: In::PRIMARY,
            value: Value::Ascii(vec![b"E".to_vec()]),
        });
        fields.push(Field {
            tag: Tag::GPSLongitude,
            ifd_num: In::PRIMARY,
            value: Value::Rational(vec![r((2, 1)), r((17, 1)), r((40, 1))]),
        });
    }
    let mut w = exif::experimental::Writer::new();
    for f in &fields {
        w.push_field(f);
    }
    let mut out = std::io::Cursor::new(Vec::new());
    w.write(&mut out, false).expect("EXIF of the sample photo");
    out.into_inner()
}

/// RGB pixels: left half red, right half blue (as stored), with a little grain.
pub fn two_tone(width: u32, height: u32) -> Vec<u8> {
    let mut px = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            let g = ((x * 7 + y * 13) % 16) as u8;
            if x < width / 2 {
                px.extend_from_slice(&[230 + g, g, g]);
            } else {
                px.extend_from_slice(&[g, g, 230 + g]);
            }
        }
    }
    px
}

/// Smooth gradients with grain, compressing like a photo does.
pub fn photo_like(width: u32, height: u32) -> Vec<u8> {
    let mut px = Vec::with_capacity((width * height * 3) as usize);
    let mut seed = 0x2545_f491_u32;
    for y in 0..height {
        for x in 0..width {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let n = (seed % 24) as i32 - 12;
            let fx = x as f32 / width as f32;
            let fy = y as f32 / height as f32;
            let r = 128.0 + 100.0 * (fx * 6.0 + fy * 2.0).sin();
            let g = 128.0 + 90.0 * (fy * 5.0 - fx * 3.0).cos();
            let b = 128.0 + 80.0 * ((fx + fy) * 4.0).sin();
            let c = |v: f32| (v as i32 + n).clamp(0, 255) as u8;
            px.extend_from_slice(&[c(r), c(g), c(b)]);
        }
    }
    px
}

/// Encodes RGB pixels as a JPEG with an EXIF block (if given) and an ICC profile (if
/// given).
pub fn jpeg(
    px: &[u8],
    width: u16,
    height: u16,
    exif: Option<&[u8]>,
    icc: Option<&[u8]>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 90);
    if let Some(exif) = exif {
        let mut seg = b"Exif\0\0".to_vec();
        seg.extend_from_slice(exif);
        enc.add_app_segment(1, &seg).expect("EXIF segment");
    }
    if let Some(icc) = icc {
        enc.add_icc_profile(icc).expect("ICC profile");
    }
    enc.encode(px, width, height, jpeg_encoder::ColorType::Rgb)
        .expect("sample JPEG");
    out
}

/// The demo's photo: `width` x `height` as stored (left red, right blue), EXIF
/// orientation 6 (shown rotated 90 degrees clockwise: red on top), a GPS position, an
/// ICC profile.
pub fn sideways_photo(width: u16, height: u16) -> Vec<u8> {
    let px = two_tone(width.into(), height.into());
    jpeg(
        &px,
        width,
        height,
        Some(&exif_block(6, true)),
        Some(SAMPLE_ICC),
    )
}
