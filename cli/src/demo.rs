//! `tether demo`: a walkthrough of what the core does (sign-in, quota, retries with one
//! idempotency key, single-flight refresh, restore on next launch, an image decoded to a
//! PNG file, a job waited on to the end, the paywall through the quota state and its
//! listener up to a purchase that lifts it, a photo upload that arrives upright and
//! without its GPS position, a chat reply streamed into the on-device history, sign-out)
//! against an embedded local contract server on loopback. It checks its own steps, so
//! the test command fails loudly if it ever stops demonstrating what it claims.

use std::sync::Arc;
use std::time::Instant;

use tether::{
    ApiRequest, AuthState, ChatListener, ClientConfig, HttpMethod, Message, MessageStatus, PageAt,
    SearchQuery, TetherClient, TetherError,
};
use tether_cli::api_request;
use tether_test_server::{Fault, TestServer};

use crate::StderrLogger;

/// One app launch: a client on the demo's config and token store (with the stderr
/// logger when `--verbose`).
fn launch(
    config: &ClientConfig,
    store: &Arc<dyn tether::TokenStore>,
    verbose: bool,
) -> Result<Arc<TetherClient>, TetherError> {
    if verbose {
        TetherClient::with_logger(config.clone(), store.clone(), Arc::new(StderrLogger))
    } else {
        TetherClient::new(config.clone(), store.clone())
    }
}

/// The demo waits on its job without a spinner.
struct Quiet;

impl tether::JobListener for Quiet {
    fn on_status_changed(&self, _job: tether::JobInfo) {}
}

fn quota_call() -> ApiRequest {
    api_request(HttpMethod::Get, "quota", None, true)
}

fn job_call() -> ApiRequest {
    api_request(
        HttpMethod::Post,
        "jobs",
        Some(r#"{"kind":"transcribe","input":{"media":"demo.m4a"}}"#.into()),
        true,
    )
}

/// Counts the paywalls a `QuotaListener` heard of.
#[derive(Default)]
struct PaywallSeen(std::sync::atomic::AtomicUsize);

impl PaywallSeen {
    fn raised(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl tether::QuotaListener for PaywallSeen {
    fn on_quota_changed(&self, _state: tether::QuotaState) {}
    fn on_paywall(&self, _plan_required: String, _state: tether::QuotaState) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Records every `UploadProgress` call.
#[derive(Default)]
struct ProgressSeen(std::sync::Mutex<Vec<(u32, u32, u32)>>);

impl ProgressSeen {
    fn calls(&self) -> Vec<(u32, u32, u32)> {
        self.0.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl tether::UploadProgress for ProgressSeen {
    fn on_progress(&self, attempt: u32, sent: u32, total: u32) {
        if let Ok(mut c) = self.0.lock() {
            c.push((attempt, sent, total));
        }
    }
}

/// The EXIF of a JPEG, if it has any.
fn exif_of(jpeg: &[u8]) -> Option<exif::Exif> {
    exif::Reader::new()
        .read_from_container(&mut std::io::Cursor::new(jpeg))
        .ok()
}

fn has_gps(e: Option<&exif::Exif>) -> bool {
    e.is_some_and(|e| {
        e.get_field(exif::Tag::GPSLatitude, exif::In::PRIMARY)
            .is_some()
    })
}

fn orientation(e: Option<&exif::Exif>) -> u32 {
    e.and_then(|e| e.get_field(exif::Tag::Orientation, exif::In::PRIMARY))
        .and_then(|f| f.value.get_uint(0))
        .unwrap_or(1)
}

/// Decodes a JPEG: RGB pixels, width, height.
fn pixels(jpeg: &[u8]) -> Option<(Vec<u8>, usize, usize)> {
    let mut d = jpeg_decoder::Decoder::new(std::io::Cursor::new(jpeg));
    let px = d.decode().ok()?;
    let info = d.info()?;
    (info.pixel_format == jpeg_decoder::PixelFormat::RGB24).then_some((
        px,
        info.width.into(),
        info.height.into(),
    ))
}

/// The upload step: a sideways photo with a GPS position goes through `detect`; what the
/// server received is read back (pixels and EXIF) to show it is upright and has no GPS.
async fn upload_step(
    client: &TetherClient,
    server: &TestServer,
    dir: &std::path::Path,
    expect: &mut impl FnMut(bool, &str),
) -> Result<(), TetherError> {
    // As stored: 1600x800, left red, right blue; orientation 6 shows it turned a
    // quarter clockwise: 800x1600, red on top.
    let photo = tether_test_server::sample::sideways_photo(1600, 800);
    let path = dir.join("IMG_0001.JPG");
    std::fs::write(&path, &photo).map_err(|e| TetherError::Storage {
        detail: format!("{}: {e}", path.display()),
    })?;
    let before = exif_of(&photo);
    println!(
        "\n8. Upload a photo: detect(IMG_0001.JPG) with a progress listener. The file: 1600x800 as stored, \
         EXIF orientation {}, GPS position in EXIF: {}, {} bytes",
        orientation(before.as_ref()),
        has_gps(before.as_ref()),
        photo.len()
    );
    let progress = Arc::new(ProgressSeen::default());
    let image = tether::ImageSource::File {
        path: path.to_string_lossy().into_owned(),
    };
    let d = client
        .detect(image, None, Some(progress.clone()), None)
        .await?;
    let found: Vec<String> = d
        .objects
        .iter()
        .map(|o| format!("{} {:.2}", o.label, o.score))
        .collect();
    println!(
        "   -> {:?} by {}; sent {} {}x{}, {} bytes (resized: {}, metadata stripped: {})",
        found,
        d.model,
        d.image.media_type,
        d.image.width,
        d.image.height,
        d.image.byte_size,
        d.image.resized,
        d.image.metadata_stripped
    );
    let calls = progress.calls();
    let up = server.uploads().pop();
    let body_len = up.as_ref().and_then(|u| u.content_length).unwrap_or(0);
    let last = calls.last().copied();
    println!(
        "   progress: {} call(s), last {:?} (attempt, sent, total); the body was {body_len} bytes",
        calls.len(),
        last
    );
    expect(
        last.is_some_and(|(a, s, t)| a == 1 && s == t && u64::from(t) == body_len),
        "step 8: the last progress call is sent == total == the body length",
    );
    let got = up.and_then(|u| u.image).unwrap_or_default();
    let after = exif_of(&got);
    let px = pixels(&got);
    let (top, bottom, w, h) = match &px {
        Some((px, w, h)) => {
            let at = |x: usize, y: usize| {
                let i = (y * w + x) * 3;
                px.get(i..i + 3)
                    .map(|p| [p[0], p[1], p[2]])
                    .unwrap_or_default()
            };
            (at(w / 2, h / 8), at(w / 2, h * 7 / 8), *w, *h)
        }
        None => ([0; 3], [0; 3], 0, 0),
    };
    println!(
        "   the server received {} bytes: {w}x{h} pixels, top {top:?}, bottom {bottom:?} (RGB); \
         EXIF: {}, GPS: {}",
        got.len(),
        if after.is_some() { "present" } else { "none" },
        has_gps(after.as_ref())
    );
    let red = |p: [u8; 3]| p[0] > 180 && p[2] < 60;
    let blue = |p: [u8; 3]| p[2] > 180 && p[0] < 60;
    expect(
        (w, h) == (512, 1024) && red(top) && blue(bottom) && orientation(after.as_ref()) == 1,
        "step 8: the server got the photo upright (portrait pixels, red on top, no rotation tag)",
    );
    expect(
        has_gps(before.as_ref()) && !has_gps(after.as_ref()),
        "step 8: GPS in the original, none in what was sent",
    );
    expect(
        d.image.resized && d.image.metadata_stripped && got.len() as u32 == d.image.byte_size,
        "step 8: ImageInfo says what was sent",
    );
    Ok(())
}

/// Runs the walkthrough; returns the steps that did not go as the text says (so the test
/// command can run the demo and fail loudly if it ever stops demonstrating what it claims).
pub async fn demo(verbose: bool) -> Result<Vec<String>, TetherError> {
    let mut problems = Vec::new();
    let mut expect = |ok: bool, what: &str| {
        if !ok {
            problems.push(what.to_string());
        }
    };
    let server = TestServer::start().await;
    let dir = std::env::temp_dir().join(format!("tether-demo-{}", std::process::id()));
    let store_path = dir.join("session.json");
    let config = ClientConfig::new(server.url(), "tether-demo", dir.to_string_lossy());
    let store = tether::file_token_store(store_path.to_string_lossy().into());

    println!("Tether {} demo", tether::tether_version());
    println!(
        "backend: embedded local contract server at {} (stand-in for the reference Worker)",
        server.url()
    );
    let client = launch(&config, &store, verbose)?;
    println!(
        "\n1. First launch: restore_session() -> {:?}",
        client.restore_session().await?
    );
    let user = client.sign_in_anonymously(None, None).await?;
    println!(
        "   sign_in_anonymously() -> user {} (anonymous: {})",
        user.id, user.anonymous
    );
    println!(
        "   session saved to the token store ({})",
        store_path.display()
    );

    client.send(quota_call(), None).await?;
    let q = client.quota();
    let (Some(plan), Some(limit), Some(remaining)) = (q.plan.clone(), q.limit, q.remaining) else {
        return Err(TetherError::Decode {
            detail: "the quota response carried no quota headers".into(),
        });
    };
    println!(
        "\n2. Quota state from the response headers: plan {plan}, {remaining}/{limit} left (source {:?})",
        q.source
    );

    server.fault(
        "/api/v1/jobs",
        Fault::Status {
            status: 503,
            code: "unavailable",
            retry_after: Some(1),
        },
    );
    server.fault("/api/v1/jobs", Fault::DropAfterHandling);
    let t = Instant::now();
    let reply = client.send(job_call(), None).await?;
    let keys: Vec<_> = server
        .idempotency_keys("/api/v1/jobs")
        .into_iter()
        .flatten()
        .collect();
    println!("\n3. A metered call through a 503 (Retry-After: 1) and a connection lost after the server charged it:");
    println!(
        "   {} attempts in {:.1} s, one Idempotency-Key ({}), charged {} time(s) -> {} {}",
        keys.len(),
        t.elapsed().as_secs_f64(),
        keys.windows(2).all(|w| w[0] == w[1]),
        server.charges(),
        reply.status,
        reply.body
    );
    expect(
        keys.len() == 3 && keys.windows(2).all(|w| w[0] == w[1]) && server.charges() == 1,
        "step 3: three attempts with one key, charged once",
    );

    server.expire_access_tokens();
    let before = server.count("/api/v1/auth/refresh");
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.send(quota_call(), None).await })
        })
        .collect();
    let mut ok = 0;
    for c in calls {
        ok += usize::from(c.await.map(|r| r.is_ok()).unwrap_or(false));
    }
    println!(
        "\n4. The server rejected the access token; 20 concurrent calls -> {ok} succeeded after {} refresh(es)",
        server.count("/api/v1/auth/refresh") - before
    );
    expect(
        ok == 20 && server.count("/api/v1/auth/refresh") - before == 1,
        "step 4: 20 calls succeed after exactly one refresh",
    );

    let next_launch = launch(&config, &store, verbose)?;
    let restored = next_launch.restore_session().await?;
    println!("\n5. Next launch: restore_session() -> {restored:?}");
    expect(
        restored
            == AuthState::SignedIn {
                user_id: user.id.clone(),
                anonymous: true,
            },
        "step 5: the same user restored",
    );

    let restored_quota = next_launch.quota();
    println!(
        "   quota known before any request: plan {:?}, {:?} left (source {:?})",
        restored_quota.plan.as_deref().unwrap_or("?"),
        restored_quota.remaining,
        restored_quota.source
    );
    expect(
        restored_quota.source == tether::QuotaSource::Cached && restored_quota.plan.is_some(),
        "step 5: the quota state restored from the device",
    );

    let paywalls = Arc::new(PaywallSeen::default());
    let _quota_listener = next_launch.add_quota_listener(paywalls.clone());
    let img = next_launch
        .generate_image(
            "a lighthouse at dusk".into(),
            Some(tether::ImageOptions {
                width: Some(512),
                height: Some(300),
                path: Some(dir.join("lighthouse.png").to_string_lossy().into_owned()),
            }),
            None,
        )
        .await?;
    println!(
        "\n6. generate_image() -> {} ({}x{} PNG from its IHDR, {} bytes, decoded while it arrived)",
        img.path, img.width, img.height, img.byte_size
    );
    expect(
        (img.width, img.height) == (512, 300)
            && std::fs::metadata(&img.path).map(|m| m.len()).ok() == Some(u64::from(img.byte_size)),
        "step 6: a 512x300 PNG written whole",
    );
    let job = next_launch
        .submit_job(
            "transcribe".into(),
            r#"{"url":"https://example.com/demo.m4a","steps":3}"#.into(),
            None,
        )
        .await?;
    let done = next_launch
        .wait_for_job(job.id.clone(), Arc::new(Quiet), None)
        .await?;
    println!(
        "   submit_job(transcribe) -> {} queued; wait_for_job() -> {:?} after {} polls: {}",
        job.id,
        done.status,
        server.count(&format!("/api/v1/jobs/{}", job.id)),
        done.result_json.as_deref().unwrap_or("")
    );
    expect(
        done.status == tether::JobStatus::Succeeded && done.result_json.is_some(),
        "step 6: the job succeeded with a result",
    );

    server.set_quota_limit(u64::from(limit.min(3)));
    let mut paywall = None;
    for _ in 0..10 {
        if let Err(e) = next_launch.send(job_call(), None).await {
            paywall = Some(e);
            break;
        }
    }
    match paywall {
        Some(TetherError::PlanRequired {
            plan_required,
            quota,
            ..
        }) => println!(
            "\n7. Quota used up -> PlanRequired (show the paywall for plan {:?}; {} left)",
            plan_required.unwrap_or_default(),
            quota.map(|q| q.remaining).unwrap_or(0)
        ),
        other => expect(
            false,
            &format!("step 7: expected PlanRequired, got {other:?}"),
        ),
    }
    let before = server.count("/api/v1/jobs");
    let fail_fast = next_launch.send(job_call(), None).await;
    let sent = server.count("/api/v1/jobs") - before;
    println!(
        "   paywall raised: {:?}; the next metered call fails at once ({}), {sent} request(s) sent",
        next_launch.quota().paywall,
        if matches!(fail_fast, Err(TetherError::PlanRequired { .. })) {
            "PlanRequired"
        } else {
            "?"
        },
    );
    expect(
        matches!(fail_fast, Err(TetherError::PlanRequired { .. })) && sent == 0,
        "step 7: fail-fast without a request",
    );
    for _ in 0..100 {
        if paywalls.raised() > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    println!(
        "   the QuotaListener heard on_paywall {} time(s)",
        paywalls.raised()
    );
    expect(paywalls.raised() == 1, "step 7: on_paywall once");

    // The purchase completes; the backend raises the plan; the app asks for the quota.
    server.set_plan("pro", 5000);
    let after = next_launch.refresh_quota(None).await?;
    println!(
        "   purchase -> plan raised on the server -> refresh_quota(): plan {:?}, {:?} left, paywall {:?}",
        after.plan.as_deref().unwrap_or("?"),
        after.remaining,
        after.paywall
    );
    let lifted = next_launch.send(job_call(), None).await;
    println!("   the metered call succeeds again: {}", lifted.is_ok());
    expect(
        after.paywall.is_none() && after.plan.as_deref() == Some("pro") && lifted.is_ok(),
        "step 7: paywall lifted after the purchase",
    );

    upload_step(&next_launch, &server, &dir, &mut expect).await?;

    next_launch.sign_out().await?;
    expect(
        next_launch.auth_state() == AuthState::SignedOut && !store_path.exists(),
        "step 9: signed out, store cleared",
    );
    println!(
        "\n9. sign_out() -> {:?}; store cleared: {}",
        next_launch.auth_state(),
        !store_path.exists()
    );
    match next_launch.send(quota_call(), None).await {
        Err(TetherError::SignedOut) => {
            println!("   a call now fails with SignedOut (route to sign-in)")
        }
        other => expect(false, &format!("step 9: expected SignedOut, got {other:?}")),
    }

    chat_step(&next_launch, &server, &mut expect).await?;

    let _ = std::fs::remove_dir_all(&dir);
    println!("\ndone.");
    Ok(problems)
}

/// Prints the reply as it streams, and counts the listener crossings.
struct Terminal {
    deltas: std::sync::atomic::AtomicUsize,
}

impl ChatListener for Terminal {
    fn on_delta(&self, _message_id: String, text: String) {
        use std::io::Write;
        self.deltas
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        print!("{text}");
        let _ = std::io::stdout().flush();
    }
    fn on_complete(&self, _message: Message) {}
    fn on_error(&self, _message_id: String, _error: TetherError) {}
}

/// Step 8: a reply streamed to the terminal and into the history, then read back.
async fn chat_step(
    client: &Arc<TetherClient>,
    server: &TestServer,
    expect: &mut impl FnMut(bool, &str),
) -> Result<(), TetherError> {
    client.sign_in_anonymously(None, None).await?;
    let pieces: Vec<String> =
        "Streaming replies land in SQLite as they arrive, so nothing the user saw is lost."
            .split_inclusive(' ')
            .map(str::to_string)
            .collect();
    server.script_chat(tether_test_server::ChatScript {
        pieces: pieces.clone(),
        chunk_sizes: vec![5],
        line_end: "\r\n",
        keep_alive_every: 4,
        delay: std::time::Duration::from_millis(15),
        ..Default::default()
    });
    let conv = client
        .create_conversation("Demo".into(), Some("Be brief.".into()))
        .await?;
    let listener = Arc::new(Terminal {
        deltas: Default::default(),
    });
    print!("\n10. Chat: send_message(\"What happens to a reply?\") streams:\n   ");
    let reply = client
        .send_message(
            conv.id.clone(),
            "What happens to a reply?".into(),
            None,
            listener.clone(),
            None,
        )
        .await?;
    let page = client
        .list_messages(conv.id.clone(), PageAt::Newest, 10)
        .await?;
    let hits = client
        .search_messages(SearchQuery::new("SQLite"), None)
        .await?;
    println!(
        "\n   stored: {} message(s), reply {:?}, {} characters from {} SSE pieces in {} listener call(s); search \"SQLite\" -> {}",
        page.messages.len(),
        reply.status,
        reply.content.chars().count(),
        pieces.len(),
        listener.deltas.load(std::sync::atomic::Ordering::Relaxed),
        hits.first().map(|h| h.snippet.clone()).unwrap_or_default()
    );
    expect(
        reply.status == MessageStatus::Complete
            && reply.content == pieces.concat()
            && page.messages.len() == 2
            && hits.len() == 1,
        "step 10: the reply streamed, stored whole and found by search",
    );
    Ok(())
}
