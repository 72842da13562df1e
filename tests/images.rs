//! Image generation over loopback: a real PNG decoded to a file and its bytes checked; a
//! reply that is not base64, not a PNG, or cut off fails with `Decode` and leaves no file;
//! the pipeline's errors (402, 403, a transient status retried with one key).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

mod common;

use std::path::Path;

use common::*;
use tether::{CancelHandle, ImageOptions, TetherError};
use tether_test_server::{png, ImageFault};

const IMAGES: &str = "/api/v1/images";

fn files_in(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Err(_) => Vec::new(),
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
    }
}

fn size(width: u32, height: u32) -> Option<ImageOptions> {
    Some(ImageOptions {
        width: Some(width),
        height: Some(height),
        path: None,
    })
}

#[tokio::test]
async fn a_generated_png_is_written_whole_with_the_size_its_ihdr_names() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    // 100 is clamped to 256 by the server: the size comes from the PNG, not the request.
    let img = c
        .generate_image("a lighthouse".into(), size(300, 100), None)
        .await
        .unwrap();
    assert_eq!((img.width, img.height), (300, 256));
    assert_eq!(img.media_type, "image/png");
    assert_eq!(img.model, "@cf/black-forest-labs/flux-1-schnell");
    let bytes = std::fs::read(&img.path).unwrap();
    assert_eq!(bytes, png(300, 256));
    assert_eq!(img.byte_size as usize, bytes.len());
    let images = env.dir.path().join("images");
    assert!(Path::new(&img.path).starts_with(&images));
    assert_eq!(files_in(&images).len(), 1, "no temporary file left");
    let sent = env.server.requests_to(IMAGES);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].body.contains("\"width\":300"));
    assert!(sent[0].idempotency_key.is_some());
}

#[tokio::test]
async fn a_chosen_path_is_created_and_replaced_only_by_a_whole_png() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let target = env.dir.path().join("out/nested/pic.png");
    let options = |w| {
        Some(ImageOptions {
            width: Some(w),
            height: Some(256),
            path: Some(target.to_string_lossy().into_owned()),
        })
    };
    let img = c
        .generate_image("a cat".into(), options(256), None)
        .await
        .unwrap();
    assert_eq!(Path::new(&img.path), target);
    assert_eq!(std::fs::read(&target).unwrap(), png(256, 256));
    // A failed second image leaves the first one in place, and nothing else.
    env.server.image_fault(ImageFault::CutOff);
    let err = c
        .generate_image("a dog".into(), options(512), None)
        .await
        .unwrap_err();
    assert!(matches!(err, TetherError::Decode { .. }), "{err:?}");
    assert_eq!(std::fs::read(&target).unwrap(), png(256, 256));
    assert_eq!(files_in(target.parent().unwrap()), ["pic.png"]);

    let relative = c
        .generate_image(
            "x".into(),
            Some(ImageOptions {
                path: Some("pic.png".into()),
                ..Default::default()
            }),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(relative, TetherError::InvalidInput { .. }),
        "{relative:?}"
    );
}

#[tokio::test]
async fn corrupt_base64_a_non_png_and_a_cut_off_reply_fail_with_decode_and_leave_no_file() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let images = env.dir.path().join("images");
    for (fault, says) in [
        (ImageFault::CorruptBase64, "base64"),
        (ImageFault::NotPng, "not a PNG"),
        (ImageFault::CutOff, "cut off"),
    ] {
        env.server.image_fault(fault);
        let err = c
            .generate_image("a storm".into(), size(512, 512), None)
            .await
            .unwrap_err();
        match &err {
            TetherError::Decode { detail } => assert!(detail.contains(says), "{fault:?}: {detail}"),
            other => panic!("{fault:?}: {other:?}"),
        }
        assert_eq!(files_in(&images), Vec::<String>::new(), "{fault:?}");
    }
    // The server is fine again: the next one works.
    c.generate_image("a storm".into(), size(256, 256), None)
        .await
        .unwrap();
    assert_eq!(files_in(&images).len(), 1);
}

#[tokio::test]
async fn a_cancelled_generation_leaves_no_file() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    let hold = env.server.hold(IMAGES);
    let cancel = CancelHandle::new();
    let (c2, k) = (c.clone(), cancel.clone());
    let call = tokio::spawn(async move {
        c2.generate_image("slow".into(), size(256, 256), Some(k))
            .await
    });
    hold.handled().await;
    cancel.cancel();
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err, TetherError::Cancelled);
    drop(hold);
    assert_eq!(
        files_in(&env.dir.path().join("images")),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn plan_forbidden_and_transient_statuses_take_the_pipeline() {
    let env = Env::new().await;
    let c = env.signed_in().await;
    env.server.fault(
        IMAGES,
        Fault::Status {
            status: 503,
            code: "unavailable",
            retry_after: Some(0),
        },
    );
    c.generate_image("retried".into(), size(256, 256), None)
        .await
        .unwrap();
    let keys = env.server.idempotency_keys(IMAGES);
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1]);
    assert_eq!(env.server.charges(), 1);

    env.server.fault(
        IMAGES,
        Fault::Raw {
            status: 403,
            content_type: "application/json",
            body: r#"{"error":{"code":"forbidden","message":"Image generation needs the pro plan","plan_required":"pro"}}"#.into(),
        },
    );
    let err = c
        .generate_image("forbidden".into(), size(256, 256), None)
        .await
        .unwrap_err();
    assert!(matches!(err, TetherError::Forbidden { .. }), "{err:?}");

    env.server.set_quota_limit(0);
    let err = c
        .generate_image("no quota".into(), size(256, 256), None)
        .await
        .unwrap_err();
    assert!(matches!(err, TetherError::PlanRequired { .. }), "{err:?}");
    assert_eq!(files_in(&env.dir.path().join("images")).len(), 1);

    let empty = c.generate_image("  ".into(), None, None).await.unwrap_err();
    assert!(
        matches!(empty, TetherError::InvalidInput { .. }),
        "{empty:?}"
    );
}
