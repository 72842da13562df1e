//! Image upload (`detect`, `vision`) over real loopback HTTP: the test server parses the
//! multipart body with a real parser and keeps the bytes it received, so each test checks
//! what actually left the device (EXIF read back with `kamadak-exif`, pixels decoded).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tether::{
    CancelHandle, DetectOptions, ImageSource, PrepareOptions, TetherError, UploadProgress,
    VisionOptions,
};
use tether_test_server::sample;

const DETECT: &str = "/api/v1/detect";

#[derive(Default)]
struct Progress {
    calls: Mutex<Vec<(u32, u32, u32)>>,
    cancel_at_first: Mutex<Option<Arc<CancelHandle>>>,
}

impl UploadProgress for Progress {
    fn on_progress(&self, attempt: u32, sent: u32, total: u32) {
        self.calls.lock().unwrap().push((attempt, sent, total));
        if sent > 0 {
            if let Some(c) = self.cancel_at_first.lock().unwrap().take() {
                c.cancel();
            }
        }
    }
}

impl Progress {
    fn calls(&self) -> Vec<(u32, u32, u32)> {
        self.calls.lock().unwrap().clone()
    }
}

fn file(env: &Env, name: &str, data: &[u8]) -> ImageSource {
    let path = env.dir.path().join(name);
    std::fs::write(&path, data).unwrap();
    ImageSource::File {
        path: path.to_str().unwrap().into(),
    }
}

fn raw(prepare: PrepareOptions) -> Option<DetectOptions> {
    Some(DetectOptions {
        prepare,
        ..Default::default()
    })
}

fn unchanged() -> PrepareOptions {
    PrepareOptions {
        max_dimension: None,
        strip_metadata: false,
        ..Default::default()
    }
}

fn exif_fields(jpeg: &[u8]) -> Option<exif::Exif> {
    exif::Reader::new()
        .read_from_container(&mut Cursor::new(jpeg))
        .ok()
}

fn decode(jpeg: &[u8]) -> (Vec<u8>, u16, u16, Option<Vec<u8>>) {
    let mut d = jpeg_decoder::Decoder::new(Cursor::new(jpeg));
    let px = d.decode().unwrap();
    let info = d.info().unwrap();
    (px, info.width, info.height, d.icc_profile())
}

fn tmp_files(env: &Env) -> usize {
    std::fs::read_dir(env.dir.path().join("upload-tmp"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Checks the progress contract on a successful call's calls.
fn check_progress(calls: &[(u32, u32, u32)], total: u64) {
    assert!(!calls.is_empty());
    let last = *calls.last().unwrap();
    assert_eq!(
        (last.1, last.2),
        (total as u32, total as u32),
        "ends at 100%: {calls:?}"
    );
    for w in calls.windows(2) {
        assert!(w[0].0 <= w[1].0, "attempts only grow: {calls:?}");
        if w[0].0 == w[1].0 {
            assert!(w[0].1 <= w[1].1, "monotonic within an attempt: {calls:?}");
        }
    }
    assert!(calls.iter().all(|c| c.1 <= c.2), "never past 100%");
}

#[tokio::test]
async fn a_sideways_photo_arrives_upright_downscaled_without_gps_with_its_icc() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let photo = sample::sideways_photo(2000, 1000);
    assert!(exif_fields(&photo)
        .unwrap()
        .get_field(exif::Tag::GPSLatitude, exif::In::PRIMARY)
        .is_some());
    let progress = Arc::new(Progress::default());
    let d = c
        .detect(
            file(&env, "IMG_0001.JPG", &photo),
            None,
            Some(progress.clone()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(d.objects[0].label, "cat");
    assert_eq!(d.model, "yolov8n");
    assert!(d.image.resized && d.image.metadata_stripped);
    assert_eq!((d.image.width, d.image.height), (512, 1024));
    let ups = env.server.uploads();
    assert_eq!(ups.len(), 1);
    let got = ups[0].image.clone().unwrap();
    assert_eq!(got.len() as u32, d.image.byte_size);
    assert_eq!(ups[0].content_type, "image/jpeg");
    assert_eq!(
        ups[0].filename, "image.jpg",
        "the user's file name stays home"
    );
    assert!(
        exif_fields(&got).is_none(),
        "no EXIF at all after a re-encode"
    );
    let (px, w, h, icc) = decode(&got);
    assert_eq!((w, h), (512, 1024));
    assert_eq!(icc.as_deref(), Some(sample::SAMPLE_ICC));
    // Pixels, not the header: red on top, blue below once turned upright.
    let at = |x: usize, y: usize| &px[(y * w as usize + x) * 3..][..3];
    let (top, bottom) = (at(256, 100), at(256, 900));
    assert!(top[0] > 180 && top[2] < 60, "top is red: {top:?}");
    assert!(
        bottom[2] > 180 && bottom[0] < 60,
        "bottom is blue: {bottom:?}"
    );
    check_progress(&progress.calls(), ups[0].content_length.unwrap());
    assert_eq!(tmp_files(&env), 0, "the prepared copy is removed");
}

#[tokio::test]
async fn without_a_resize_metadata_is_stripped_losslessly_keeping_orientation_and_icc() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let photo = sample::sideways_photo(600, 300);
    let d = c
        .detect(
            ImageSource::Bytes {
                data: photo.clone(),
            },
            None,
            None,
            None,
        )
        .await
        .unwrap();
    assert!(!d.image.resized && d.image.metadata_stripped);
    let got = env.server.uploads()[0].image.clone().unwrap();
    assert!(got.len() < photo.len());
    let e = exif_fields(&got).expect("the orientation tag is kept");
    assert!(e
        .get_field(exif::Tag::GPSLatitude, exif::In::PRIMARY)
        .is_none());
    assert!(e.get_field(exif::Tag::Make, exif::In::PRIMARY).is_none());
    let o = e
        .get_field(exif::Tag::Orientation, exif::In::PRIMARY)
        .unwrap();
    assert_eq!(o.value.get_uint(0), Some(6));
    let (a, ..) = decode(&photo);
    let (b, _, _, icc) = decode(&got);
    assert_eq!(a, b, "the same pixels: no re-encode");
    assert_eq!(icc.as_deref(), Some(sample::SAMPLE_ICC));
}

fn png_with_text(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.add_text_chunk("Location".into(), "48.85N 2.29E".into())
        .unwrap();
    let mut wr = enc.write_header().unwrap();
    wr.write_image_data(&sample::two_tone(w, h)).unwrap();
    wr.finish().unwrap();
    out
}

fn webp(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = image_webp::WebPEncoder::new(&mut out);
    enc.set_exif_metadata(sample::exif_block(1, true));
    enc.encode(&sample::two_tone(w, h), w, h, image_webp::ColorType::Rgb8)
        .unwrap();
    out
}

/// A HEIC header (`ftyp` + `meta`/`iprp`/`ipco`/`ispe`); nothing here decodes it.
fn heic(w: u32, h: u32) -> Vec<u8> {
    fn bx(kind: &[u8], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }
    let mut ispe = vec![0u8; 4];
    ispe.extend_from_slice(&w.to_be_bytes());
    ispe.extend_from_slice(&h.to_be_bytes());
    let ipco = bx(b"ipco", &bx(b"ispe", &ispe));
    let mut meta = vec![0u8; 4];
    meta.extend(bx(b"hdlr", &[0u8; 4 + 4 + 4 + 12 + 1]));
    meta.extend(bx(b"iprp", &ipco));
    let mut f = bx(b"ftyp", b"heic\0\0\0\0mif1heic");
    f.extend(bx(b"meta", &meta));
    f.extend(bx(b"mdat", &[0x42; 4096]));
    f
}

#[tokio::test]
async fn every_supported_type_is_sniffed_from_its_bytes_and_sent_as_such() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    // A PNG named .jpg is a PNG; its text chunk goes.
    let d = c
        .detect(
            file(&env, "photo.jpg", &png_with_text(40, 20)),
            None,
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(d.image.media_type, "image/png");
    let up = env.server.uploads().pop().unwrap();
    assert_eq!(up.content_type, "image/png");
    let got = up.image.unwrap();
    assert!(!got.windows(8).any(|w| w == b"Location"), "tEXt removed");
    let mut r = png::Decoder::new(Cursor::new(&got[..]))
        .read_info()
        .unwrap();
    let mut buf = vec![0; r.output_buffer_size()];
    r.next_frame(&mut buf).unwrap();
    assert_eq!(&buf[..3 * 40 * 20], &sample::two_tone(40, 20)[..]);

    let d = c
        .detect(ImageSource::Bytes { data: webp(30, 10) }, None, None, None)
        .await
        .unwrap();
    assert_eq!(d.image.media_type, "image/webp");
    let got = env.server.uploads().pop().unwrap().image.unwrap();
    let mut dec = image_webp::WebPDecoder::new(Cursor::new(&got[..])).unwrap();
    assert_eq!(dec.exif_metadata().unwrap(), None, "EXIF chunk removed");
    let mut buf = vec![0; dec.output_buffer_size().unwrap()];
    dec.read_image(&mut buf).unwrap();

    let h = heic(4032, 3024);
    let d = c
        .detect(file(&env, "x.heic", &h), None, None, None)
        .await
        .unwrap();
    assert_eq!(d.image.media_type, "image/heic");
    assert!(!d.image.metadata_stripped && !d.image.resized);
    assert_eq!((d.image.width, d.image.height), (4032, 3024));
    assert_eq!(
        &env.server.uploads().pop().unwrap().image.unwrap()[..],
        &h[..]
    );

    let v = c
        .vision(
            ImageSource::Bytes {
                data: sample::sideways_photo(64, 32),
            },
            "What colour is on top?".into(),
            Some(VisionOptions::default()),
            None,
            None,
        )
        .await
        .unwrap();
    assert!(
        v.response.contains("What colour is on top?"),
        "{}",
        v.response
    );
    assert_eq!(
        env.server.uploads().pop().unwrap().fields["prompt"],
        "What colour is on top?"
    );
}

#[tokio::test]
async fn bad_input_is_refused_before_any_byte_is_sent() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let mut corrupt = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00];
    corrupt.extend_from_slice(b"not really a jpeg at all");
    let e = c
        .detect(file(&env, "bad.jpg", &corrupt), None, None, None)
        .await
        .unwrap_err();
    assert!(matches!(e, TetherError::UnsupportedMedia { .. }), "{e:?}");
    let e = c
        .detect(
            file(&env, "a.gif", b"GIF89a\x01\x00\x01\x00\x00\x00"),
            None,
            None,
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(e, TetherError::UnsupportedMedia { .. }), "{e:?}");
    let missing = env.dir.path().join("nope.jpg");
    let e = c
        .detect(
            ImageSource::File {
                path: missing.to_str().unwrap().into(),
            },
            None,
            None,
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, TetherError::InvalidInput { detail, .. } if detail.contains("nope.jpg")),
        "{e:?}"
    );
    // A decompression bomb: a valid PNG header claiming 50000x50000 pixels.
    let mut bomb = Vec::new();
    let mut enc = png::Encoder::new(&mut bomb, 50_000, 50_000);
    enc.set_color(png::ColorType::Rgb);
    drop(enc.write_header().unwrap());
    let e = c
        .detect(ImageSource::Bytes { data: bomb }, None, None, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, TetherError::InvalidInput { detail, .. } if detail.contains("max_pixels")),
        "{e:?}"
    );
    // Over the limit, and preparation cannot help: refused locally.
    let e = c
        .detect(
            ImageSource::Bytes {
                data: sample::sideways_photo(200, 100),
            },
            raw(PrepareOptions {
                max_bytes: 1000,
                ..unchanged()
            }),
            None,
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            TetherError::PayloadTooLarge {
                max_bytes: Some(1000),
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(env.server.count(DETECT), 0, "nothing was sent");
}

#[tokio::test]
async fn a_photo_over_the_limit_is_sent_once_preparation_brings_it_under() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let big = sample::jpeg(&sample::photo_like(1600, 1200), 1600, 1200, None, None);
    let limit = (big.len() / 2) as u32;
    let d = c
        .detect(
            ImageSource::Bytes { data: big },
            raw(PrepareOptions {
                max_bytes: limit,
                max_dimension: Some(512),
                ..Default::default()
            }),
            None,
            None,
        )
        .await
        .unwrap();
    assert!(d.image.resized && d.image.byte_size < limit);
}

#[tokio::test]
async fn a_reset_mid_body_is_retried_with_the_same_key_and_charged_once() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let data: Vec<u8> = {
        let mut v = png_with_text(400, 400);
        v.truncate(v.len()); // a plain PNG of ~480 kB, sent as is
        v
    };
    env.server.fault(DETECT, Fault::ResetMidBody);
    let progress = Arc::new(Progress::default());
    c.detect(
        file(&env, "p.png", &data),
        raw(unchanged()),
        Some(progress.clone()),
        None,
    )
    .await
    .unwrap();
    let keys = env.server.idempotency_keys(DETECT);
    assert_eq!(keys.len(), 1, "the reset request never reached the routes");
    assert_eq!(env.server.charges(), 1);
    let up = env.server.uploads().pop().unwrap();
    assert_eq!(
        &up.image.unwrap()[..],
        &data[..],
        "the bytes hash to what was sent"
    );
    let calls = progress.calls();
    assert_eq!(
        calls.last().unwrap().0,
        2,
        "the retry is attempt 2: {calls:?}"
    );
    check_progress(&calls, up.content_length.unwrap());

    // A 503 cold start, then success: the same key twice, one charge.
    env.server.fault(
        DETECT,
        Fault::Status {
            status: 503,
            code: "unavailable",
            retry_after: Some(0),
        },
    );
    c.detect(file(&env, "p.png", &data), raw(unchanged()), None, None)
        .await
        .unwrap();
    let keys = env.server.idempotency_keys(DETECT);
    assert_eq!(keys.len(), 3);
    assert_eq!(keys[1], keys[2]);
    assert_ne!(keys[0], keys[1]);
    assert_eq!(env.server.charges(), 2);
}

#[tokio::test]
async fn cancelling_mid_upload_stops_progress_and_removes_the_temp_file() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    env.server
        .fault(DETECT, Fault::SlowUpload(Duration::from_millis(30)));
    let photo = png_with_text(900, 900); // ~2.4 MB: many chunks, slowly read
    let cancel = CancelHandle::new();
    let progress = Arc::new(Progress::default());
    *progress.cancel_at_first.lock().unwrap() = Some(cancel.clone());
    let opts = raw(PrepareOptions {
        max_dimension: None,
        ..Default::default()
    });
    let e = c
        .detect(
            file(&env, "p.png", &photo),
            opts,
            Some(progress.clone()),
            Some(cancel),
        )
        .await
        .unwrap_err();
    assert_eq!(e, TetherError::Cancelled);
    let seen = progress.calls().len();
    assert!(seen >= 1);
    assert_eq!(tmp_files(&env), 0, "the stripped copy is gone");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        progress.calls().len(),
        seen,
        "no progress after the call returned"
    );
    assert_eq!(env.server.charges(), 0);
}

#[tokio::test]
async fn refusals_map_to_the_contract_errors() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let img = || ImageSource::Bytes {
        data: sample::sideways_photo(64, 32),
    };
    env.server.set_quota_limit(0);
    let e = c.detect(img(), None, None, None).await.unwrap_err();
    match e {
        TetherError::PlanRequired {
            plan_required,
            quota,
            ..
        } => {
            assert_eq!(plan_required.as_deref(), Some("pro"));
            assert_eq!(quota.unwrap().remaining, 0);
        }
        other => panic!("{other:?}"),
    }
    env.server.set_quota_limit(50);
    // The paywall is up on the device until the backend says otherwise.
    c.refresh_quota(None).await.unwrap();
    env.server.set_upload_limit(100);
    let e = c.detect(img(), None, None, None).await.unwrap_err();
    assert!(
        matches!(
            e,
            TetherError::PayloadTooLarge {
                max_bytes: Some(100),
                ..
            }
        ),
        "{e:?}"
    );
}
