//! `tether detect FILE` and `tether vision FILE QUESTION`: one upload each through
//! `TetherClient`, with a progress bar on stderr (when it is a terminal, or always with
//! `--verbose`), and the answer as text or JSON.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tether::{ImageInfo, ImageSource, TetherClient, TetherError, UploadProgress};

/// Draws `[#####-----]  42%  1.2 MB of 2.9 MB (attempt 2)` on one stderr line.
struct Bar {
    shown: Mutex<bool>,
}

impl UploadProgress for Bar {
    fn on_progress(&self, attempt: u32, sent: u32, total: u32) {
        let pct = if total == 0 {
            100
        } else {
            (sent as u64 * 100 / total as u64) as usize
        };
        let filled = pct / 5;
        let retry = if attempt > 1 {
            format!(" (attempt {attempt})")
        } else {
            String::new()
        };
        let mb = |n: u32| n as f64 / 1e6;
        eprint!(
            "\r[{}{}] {pct:>3}%  {:.1} MB of {:.1} MB{retry}   ",
            "#".repeat(filled),
            "-".repeat(20 - filled),
            mb(sent),
            mb(total)
        );
        let _ = std::io::stderr().flush();
        *self.shown.lock().unwrap_or_else(|p| p.into_inner()) = true;
    }
}

impl Bar {
    fn end(&self) {
        if *self.shown.lock().unwrap_or_else(|p| p.into_inner()) {
            eprintln!();
        }
    }
}

fn source(file: &Path) -> ImageSource {
    ImageSource::File {
        path: file.to_string_lossy().into_owned(),
    }
}

fn bar(verbose: bool) -> Option<Arc<Bar>> {
    (verbose || std::io::stderr().is_terminal()).then(|| {
        Arc::new(Bar {
            shown: Mutex::new(false),
        })
    })
}

fn info_json(i: &ImageInfo) -> Value {
    json!({ "media_type": i.media_type, "width": i.width, "height": i.height,
            "byte_size": i.byte_size, "resized": i.resized, "metadata_stripped": i.metadata_stripped })
}

fn info_text(i: &ImageInfo) -> String {
    format!(
        "sent {} {}x{}, {} bytes{}{}",
        i.media_type,
        i.width,
        i.height,
        i.byte_size,
        if i.resized { ", downscaled" } else { "" },
        if i.metadata_stripped {
            ", metadata removed"
        } else {
            ", metadata NOT removed"
        }
    )
}

/// Runs `detect`; returns (text, json).
pub async fn detect(
    c: &TetherClient,
    file: &Path,
    verbose: bool,
) -> Result<(String, Value), TetherError> {
    let b = bar(verbose);
    let progress = b.clone().map(|b| b as Arc<dyn UploadProgress>);
    let r = c.detect(source(file), None, progress, None).await;
    if let Some(b) = &b {
        b.end();
    }
    let d = r?;
    let mut text: Vec<String> = d
        .objects
        .iter()
        .map(|o| {
            let b = &o.bounding_box;
            format!(
                "{} {:.2} at x={:.2} y={:.2} w={:.2} h={:.2}",
                o.label, o.score, b.x, b.y, b.width, b.height
            )
        })
        .collect();
    if text.is_empty() {
        text.push("no objects found".into());
    }
    text.push(format!("model {}; {}", d.model, info_text(&d.image)));
    let objects: Vec<Value> = d
        .objects
        .iter()
        .map(|o| {
            let b = &o.bounding_box;
            json!({ "label": o.label, "score": o.score, "box": [b.x, b.y, b.width, b.height] })
        })
        .collect();
    Ok((
        text.join("\n"),
        json!({ "objects": objects, "model": d.model, "image": info_json(&d.image) }),
    ))
}

/// Runs `vision`; returns (text, json).
pub async fn vision(
    c: &TetherClient,
    file: &Path,
    question: String,
    verbose: bool,
) -> Result<(String, Value), TetherError> {
    let b = bar(verbose);
    let progress = b.clone().map(|b| b as Arc<dyn UploadProgress>);
    let r = c.vision(source(file), question, None, progress, None).await;
    if let Some(b) = &b {
        b.end();
    }
    let v = r?;
    Ok((
        format!(
            "{}\n(model {}; {})",
            v.response.trim_end(),
            v.model,
            info_text(&v.image)
        ),
        json!({ "response": v.response, "model": v.model, "image": info_json(&v.image) }),
    ))
}
