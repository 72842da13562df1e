//! `tether demo`: a walkthrough of what the core does (sign-in, quota, retries with one
//! idempotency key, single-flight refresh, restore on next launch, paywall, sign-out,
//! a chat reply streamed into the on-device history)
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
    let q = client.last_quota().ok_or_else(|| TetherError::Decode {
        detail: "the quota response carried no quota headers".into(),
    })?;
    println!(
        "\n2. Quota from response headers: plan {}, {}/{} left",
        q.plan, q.remaining, q.limit
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

    server.set_quota_limit(u64::from(q.limit.min(3)));
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
            "\n6. Quota used up -> PlanRequired (show the paywall for plan {:?}; {} left)",
            plan_required.unwrap_or_default(),
            quota.map(|q| q.remaining).unwrap_or(0)
        ),
        other => expect(
            false,
            &format!("step 6: expected PlanRequired, got {other:?}"),
        ),
    }

    next_launch.sign_out().await?;
    expect(
        next_launch.auth_state() == AuthState::SignedOut && !store_path.exists(),
        "step 7: signed out, store cleared",
    );
    println!(
        "\n7. sign_out() -> {:?}; store cleared: {}",
        next_launch.auth_state(),
        !store_path.exists()
    );
    match next_launch.send(quota_call(), None).await {
        Err(TetherError::SignedOut) => {
            println!("   a call now fails with SignedOut (route to sign-in)")
        }
        other => expect(false, &format!("step 7: expected SignedOut, got {other:?}")),
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
    print!("\n8. Chat: send_message(\"What happens to a reply?\") streams:\n   ");
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
        "step 8: the reply streamed, stored whole and found by search",
    );
    Ok(())
}
