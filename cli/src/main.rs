//! `tether`: the command-line face of the Tether core, for a developer working against a
//! real backend (or the embedded contract server). This file owns the command line
//! (clap), the client set-up, each command's output (text or `--json`), and the mapping
//! of every `TetherError` to one line on stderr and an exit code.
//!
//! - `login`, `logout`, `whoami`, `quota`, `request METHOD PATH [JSON]`: one call each
//!   through `TetherClient`, the session kept in a file token store under `--data-dir`.
//! - `detect FILE`, `vision FILE QUESTION`: image uploads with a progress bar (`upload.rs`).
//! - `image PROMPT [-o FILE]`, `job submit|status|wait|pending`: in `jobs.rs`.
//! - `chat TEXT`, `history`, `export`, `import`: the chat and the on-device history
//!   (`chat.rs`).
//! - `demo [--verbose]`: the walkthrough in `demo.rs`.
//! - `serve [--port N]`: the contract server alone (for the binding tests), printing
//!   `listening http://127.0.0.1:<port>` and serving until killed or stdin closes.

mod chat;
mod demo;
mod jobs;
mod upload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use tether::{
    AuthState, ClientConfig, HttpMethod, LogLevel, Logger, QuotaSource, QuotaState, TetherClient,
    TetherError,
};
use tether_cli::api_request;
use tether_test_server::TestServer;

const AFTER_HELP: &str = "\
With no --base-url, each command starts its own embedded contract server, which ends with
it: nothing carries over to the next command. For a session over several commands, run
`tether serve` in another terminal and pass its address to each command:
    tether serve --port 8787
    tether --base-url http://127.0.0.1:8787 login
    tether --base-url http://127.0.0.1:8787 request GET quota

The session is kept per backend and client id in DATA_DIR/sessions/ (a plain file with
mode 0600: for development only), next to the SQLite database tether.sqlite3.

Exit codes:
    0   success
    1   demo: a step did not go as described
    2   bad command line (unknown command or method, invalid JSON, missing argument)
    3   invalid configuration (bad --base-url, http:// to a non-loopback host, bad --client-id)
    4   not signed in, or the backend refused the credentials: run `tether login`
    5   refused by the plan (the paywall: plan required) or forbidden
    6   rate limited: retry later
    7   the backend rejected the request as invalid, too large or of an unsupported type
    8   network failure or timeout
    9   the backend failed (5xx) and retries ran out
    10  the response could not be read (malformed, or larger than the client's cap)
    11  local storage failed (data dir, database or session file)
    130 cancelled";

#[derive(Parser)]
#[command(
    name = "tether",
    version,
    about = "Tether's command line: sign in, send requests through the Tether client core, \
             run the demo or the contract server.",
    after_help = AFTER_HELP
)]
struct Cli {
    /// The backend's origin (https://, or http:// on a loopback host). Default: an
    /// embedded contract server started in this process.
    #[arg(long, global = true, value_name = "URL")]
    base_url: Option<String>,
    /// The app id sent as X-Client-ID.
    #[arg(
        long,
        global = true,
        value_name = "ID",
        default_value = "dev.tether.cli"
    )]
    client_id: String,
    /// Where the session and the SQLite database live. Default: $XDG_DATA_HOME/tether,
    /// else ~/.local/share/tether.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Machine-readable output: one JSON document per command on stdout (errors too, as
    /// {"error": {...}}).
    #[arg(long, global = true)]
    json: bool,
    /// Show the library's log lines on stderr.
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sign in anonymously (creates a new anonymous user) and save the session.
    Login {
        /// A device id passed to the backend.
        #[arg(long, value_name = "ID")]
        device_id: Option<String>,
    },
    /// Sign out: clear the saved session and ask the backend to revoke it.
    Logout,
    /// Load the saved session and show who is signed in (no network call).
    Whoami,
    /// The quota and paywall state: asks the backend (GET /api/v1/quota) and prints the
    /// plan, what is left, the reset time, the paywall and where the state came from
    /// (server, or the copy saved on this device when the backend cannot be reached).
    Quota,
    /// Send a request to /api/v1/PATH through the full pipeline (token, refresh,
    /// idempotency key, retries, error mapping) and print the response body.
    Request {
        /// GET, POST, PUT, PATCH or DELETE (any case).
        #[arg(value_parser = parse_method)]
        method: HttpMethod,
        /// The path under /api/v1/, e.g. `quota` or `jobs/j_123` (a leading `/api/v1/`
        /// is accepted too).
        path: String,
        /// A JSON body, sent as application/json.
        #[arg(value_parser = parse_json, value_name = "JSON")]
        body: Option<String>,
        /// Send it without the session's access token.
        #[arg(long)]
        no_auth: bool,
    },
    /// POST /api/v1/detect: find objects in an image (JPEG, PNG, WebP or HEIC), prepared
    /// on the device first (upright, at most 1024 px, metadata removed).
    Detect {
        /// The image file.
        file: PathBuf,
    },
    /// POST /api/v1/vision: ask a question about an image.
    Vision {
        /// The image file.
        file: PathBuf,
        /// The question, e.g. "What is in this picture?".
        question: String,
    },
    /// POST /api/v1/images: generate an image and write it as a PNG file (default: a new
    /// file under DATA_DIR/images/).
    Image {
        /// What to draw.
        prompt: String,
        /// The PNG file to write.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Width in pixels (the backend clamps to 256..2048; default 1024).
        #[arg(long)]
        width: Option<u32>,
        /// Height in pixels (the backend clamps to 256..2048; default 1024).
        #[arg(long)]
        height: Option<u32>,
    },
    /// Long-running jobs: submit, status, wait (with a spinner), pending.
    Job {
        #[command(subcommand)]
        action: jobs::JobCommand,
    },
    /// Send TEXT in a conversation (a new one unless --conversation) and print the reply
    /// as it streams; Ctrl-C cancels and keeps the partial reply in the history.
    Chat {
        /// The message.
        text: String,
        /// Continue this conversation (an id from `tether history`).
        #[arg(long, value_name = "ID")]
        conversation: Option<String>,
        /// The system prompt of a new conversation.
        #[arg(long, value_name = "TEXT")]
        system: Option<String>,
        /// Ask for the reply whole instead of streamed.
        #[arg(long)]
        no_stream: bool,
    },
    /// The on-device history: conversations (most recent first), a conversation's newest
    /// messages, or --search across messages (newest first).
    History {
        /// A conversation id: show its messages (or search only in it).
        conversation: Option<String>,
        /// Full-text search (literal words, all must occur).
        #[arg(long, value_name = "TEXT")]
        search: Option<String>,
        /// Items per page (1..=200).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Include archived conversations in the list.
        #[arg(long)]
        archived: bool,
    },
    /// Export the history (or one conversation) as JSON.
    Export {
        /// Only this conversation.
        #[arg(long, value_name = "ID")]
        conversation: Option<String>,
        /// Write to FILE instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Import an export (conversations with the same id are replaced).
    Import {
        /// The JSON file written by `tether export`.
        file: PathBuf,
    },
    /// Walk through what the core does against its own embedded contract server (it
    /// ignores --base-url and --data-dir). --verbose shows the library's log lines.
    Demo,
    /// Run the contract server alone: prints `listening http://127.0.0.1:<port>`, serves
    /// until killed or stdin closes.
    Serve {
        /// The port on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
}

fn parse_method(s: &str) -> Result<HttpMethod, String> {
    match s.to_ascii_uppercase().as_str() {
        "GET" => Ok(HttpMethod::Get),
        "POST" => Ok(HttpMethod::Post),
        "PUT" => Ok(HttpMethod::Put),
        "PATCH" => Ok(HttpMethod::Patch),
        "DELETE" => Ok(HttpMethod::Delete),
        _ => Err("unknown method (expected GET, POST, PUT, PATCH or DELETE)".into()),
    }
}

fn parse_json(s: &str) -> Result<String, String> {
    serde_json::from_str::<Value>(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("invalid JSON: {e}"))
}

/// The library's log records, one line each on stderr.
struct StderrLogger;

impl Logger for StderrLogger {
    fn log(&self, level: LogLevel, target: String, message: String) {
        eprintln!("  [{level:?} {target}] {message}");
    }
}

/// Why a command failed: one line for stderr, a kind for `--json`, an exit code.
struct Failure {
    kind: &'static str,
    message: String,
    code: u8,
    request_id: Option<String>,
}

impl Failure {
    fn new(kind: &'static str, code: u8, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
            code,
            request_id: None,
        }
    }
}

impl From<TetherError> for Failure {
    fn from(e: TetherError) -> Self {
        use TetherError as E;
        let (kind, code, message, request_id) = match e {
            E::Network { detail } => ("network", 8, format!("network error: {detail}"), None),
            E::Timeout { detail } => ("timeout", 8, format!("timed out: {detail}"), None),
            E::Cancelled => ("cancelled", 130, "cancelled".to_string(), None),
            E::Unauthorized { detail, request_id } => (
                "unauthorized",
                4,
                format!("the backend refused the credentials ({detail}): run `tether login`"),
                request_id,
            ),
            E::SignedOut => (
                "signed_out",
                4,
                "not signed in: run `tether login` first".to_string(),
                None,
            ),
            E::PlanRequired {
                plan_required,
                quota,
                request_id,
            } => (
                "plan_required",
                5,
                format!(
                    "plan required: upgrade to {}{}",
                    plan_required.as_deref().unwrap_or("a paid plan"),
                    quota
                        .map(|q| format!(" ({} of {} left)", q.remaining, q.limit))
                        .unwrap_or_default()
                ),
                request_id,
            ),
            E::Forbidden {
                detail,
                plan_required,
                request_id,
            } => (
                "forbidden",
                5,
                match plan_required {
                    Some(p) => format!("forbidden: {detail} (needs plan {p})"),
                    None => format!("forbidden: {detail}"),
                },
                request_id,
            ),
            E::RateLimited {
                retry_after_s,
                request_id,
            } => (
                "rate_limited",
                6,
                match retry_after_s {
                    Some(s) => format!("rate limited: retry in {s} s"),
                    None => "rate limited: retry later".to_string(),
                },
                request_id,
            ),
            E::PayloadTooLarge {
                max_bytes,
                request_id,
            } => (
                "payload_too_large",
                7,
                match max_bytes {
                    Some(n) => {
                        format!("request body too large (the backend takes {n} bytes at most)")
                    }
                    None => "request body too large".to_string(),
                },
                request_id,
            ),
            E::UnsupportedMedia { detail, request_id } => (
                "unsupported_media",
                7,
                format!("unsupported media type: {detail}"),
                request_id,
            ),
            E::InvalidInput {
                code,
                detail,
                request_id,
            } => (
                "invalid_input",
                7,
                format!("rejected as invalid ({code}): {detail}"),
                request_id,
            ),
            E::Server {
                status,
                code,
                detail,
                request_id,
            } => (
                "server",
                9,
                format!("the backend failed: {status} {code}: {detail}"),
                request_id,
            ),
            E::ResponseTooLarge { limit_bytes } => (
                "response_too_large",
                10,
                format!("response larger than the client's cap of {limit_bytes} bytes"),
                None,
            ),
            E::Decode { detail } => (
                "decode",
                10,
                format!("could not read the response: {detail}"),
                None,
            ),
            E::Storage { detail } => (
                "storage",
                11,
                format!("local storage failed: {detail}"),
                None,
            ),
            E::Config { detail } => (
                "config",
                3,
                format!("invalid configuration: {detail}"),
                None,
            ),
        };
        Failure {
            kind,
            message,
            code,
            request_id,
        }
    }
}

/// A command's result: text for people, a JSON document for `--json`.
struct Output {
    text: String,
    json: Value,
}

fn main() -> ExitCode {
    // A bug must still end in one line, not a stack trace.
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("tether: internal error{at}: {}", one_line(&what));
    }));
    let wants_json = std::env::args().any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e, wants_json),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tether: could not start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = cli.json;
    match cli.command {
        Command::Demo => {
            return match runtime.block_on(demo::demo(cli.verbose)) {
                Ok(problems) if problems.is_empty() => ExitCode::SUCCESS,
                Ok(problems) => {
                    eprintln!(
                        "demo: {} step(s) did not go as described:\n  {}",
                        problems.len(),
                        problems.join("\n  ")
                    );
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("demo failed: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Serve { port } => {
            runtime.block_on(serve(port));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    match runtime.block_on(run(cli)) {
        Ok(out) => {
            if json {
                println!("{}", out.json);
            } else {
                println!("{}", out.text);
            }
            ExitCode::SUCCESS
        }
        Err(f) => fail(f, json),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn fail(f: Failure, json: bool) -> ExitCode {
    let rid = f
        .request_id
        .as_deref()
        .map(|r| format!(" (request id {r})"))
        .unwrap_or_default();
    eprintln!("tether: {}{rid}", one_line(&f.message));
    if json {
        println!(
            "{}",
            json!({ "error": {
                "kind": f.kind,
                "message": f.message,
                "exit_code": f.code,
                "request_id": f.request_id,
            }})
        );
    }
    ExitCode::from(f.code)
}

/// clap's own help and version go out as they are; every parse error becomes one line.
fn usage_error(e: clap::Error, json: bool) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            print!("{e}");
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => fail(
            Failure::new(
                "usage",
                2,
                "a command is required (login, logout, whoami, quota, request, detect, vision, image, job, chat, history, export, import, demo, serve); see `tether --help`",
            ),
            json,
        ),
        _ => {
            // The message is the first paragraph (a list of missing arguments follows
            // its first line); usage and tips come after a blank line.
            let text = e.to_string();
            let first: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let first = first.join(" ");
            let first = first.strip_prefix("error: ").unwrap_or(&first);
            fail(
                Failure::new("usage", 2, format!("{first}; see `tether --help`")),
                json,
            )
        }
    }
}

async fn serve(port: u16) {
    let server = TestServer::start_on(port).await;
    println!("listening {}", server.url());
    // Serve until stdin closes (the parent test process died) or we are killed.
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin()
            .read_line(&mut sink)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            sink.clear();
        }
    })
    .await
    .ok();
    drop(server);
}

/// `$XDG_DATA_HOME/tether`, else `~/.local/share/tether`.
fn default_data_dir() -> Result<PathBuf, Failure> {
    let xdg = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from);
    if let Some(dir) = xdg.filter(|d| d.is_absolute()) {
        return Ok(dir.join("tether"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/tether")),
        None => Err(Failure::new(
            "usage",
            2,
            "no --data-dir given, and neither XDG_DATA_HOME nor HOME is set",
        )),
    }
}

/// The session file of one backend and client id: a token made for one backend is
/// never sent to another.
fn session_file(data_dir: &Path, base_url: &str, client_id: &str) -> PathBuf {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' => c,
                _ => '_',
            })
            .collect()
    };
    let origin = base_url.trim().trim_end_matches('/');
    data_dir
        .join("sessions")
        .join(format!("{}__{}.json", clean(origin), clean(client_id)))
}

/// The client of one command, and the embedded server it talks to (if any).
struct Session {
    client: Arc<TetherClient>,
    session_file: Option<PathBuf>,
    _server: Option<TestServer>,
}

async fn connect(cli: &Cli) -> Result<Session, Failure> {
    let data_dir = match &cli.data_dir {
        Some(d) => d.clone(),
        None => default_data_dir()?,
    };
    let (base_url, server) = match &cli.base_url {
        Some(url) => (url.clone(), None),
        None => {
            let server = TestServer::start().await;
            (server.url(), Some(server))
        }
    };
    // The embedded server forgets its users when the command ends; so does its session.
    let session_file =
        (server.is_none()).then(|| session_file(&data_dir, &base_url, &cli.client_id));
    let store = match &session_file {
        Some(f) => tether::file_token_store(f.to_string_lossy().into_owned()),
        None => tether::in_memory_token_store(),
    };
    let config = ClientConfig::new(base_url, cli.client_id.clone(), data_dir.to_string_lossy());
    let client = if cli.verbose {
        TetherClient::with_logger(config, store, Arc::new(StderrLogger))?
    } else {
        TetherClient::new(config, store)?
    };
    if let Some(dir) = session_file.as_deref().and_then(Path::parent) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(|e| {
            Failure::new(
                "storage",
                11,
                format!("local storage failed: {}: {e}", dir.display()),
            )
        })?;
    }
    client.restore_session().await?;
    Ok(Session {
        client,
        session_file,
        _server: server,
    })
}

fn quota_state_json(q: &QuotaState) -> Value {
    json!({ "plan": q.plan, "limit": q.limit, "remaining": q.remaining, "reset_at": q.reset_at,
            "features": q.features, "paywall": q.paywall, "updated_at": q.updated_at,
            "source": format!("{:?}", q.source).to_lowercase() })
}

fn quota_text(q: &QuotaState) -> String {
    let n = |v: Option<u32>| v.map_or("?".to_string(), |v| v.to_string());
    let mut t = format!(
        "plan {}: {} of {} left",
        q.plan.as_deref().unwrap_or("?"),
        n(q.remaining),
        n(q.limit)
    );
    if let Some(r) = &q.reset_at {
        t.push_str(&format!(", resets at {r}"));
    }
    if !q.features.is_empty() {
        t.push_str(&format!("\nfeatures: {}", q.features.join(", ")));
    }
    match &q.paywall {
        Some(p) => t.push_str(&format!("\npaywall: up (plan {p} lifts it)")),
        None => t.push_str("\npaywall: none"),
    }
    let source = match q.source {
        QuotaSource::Server => "the backend, just now",
        QuotaSource::Cached => "this device's saved copy (not confirmed by the backend yet)",
        QuotaSource::Unknown => "nothing known yet",
    };
    t.push_str(&format!("\nsource: {source}"));
    t
}

/// The body as JSON if it is JSON, else as a string.
fn body_json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string()))
}

async fn run(cli: Cli) -> Result<Output, Failure> {
    let s = connect(&cli).await?;
    let c = &s.client;
    // The embedded server knows no one: sign in to it for the commands that need a user.
    if s._server.is_some() && matches!(cli.command, Command::Image { .. } | Command::Job { .. }) {
        c.sign_in_anonymously(None, None).await?;
    }
    match cli.command {
        Command::Login { device_id } => {
            let user = c.sign_in_anonymously(device_id, None).await?;
            let kept = match &s.session_file {
                Some(f) => format!("session saved to {}", f.display()),
                None => "session kept in memory only (embedded server)".to_string(),
            };
            Ok(Output {
                text: format!(
                    "signed in as {} ({}); {kept}",
                    user.id,
                    if user.anonymous {
                        "anonymous"
                    } else {
                        "registered"
                    }
                ),
                json: json!({ "user_id": user.id, "anonymous": user.anonymous }),
            })
        }
        Command::Logout => {
            let was = matches!(c.auth_state(), AuthState::SignedIn { .. });
            c.sign_out().await?;
            Ok(Output {
                text: if was {
                    "signed out"
                } else {
                    "was not signed in"
                }
                .to_string(),
                json: json!({ "signed_out": true, "was_signed_in": was }),
            })
        }
        Command::Whoami => Ok(match c.auth_state() {
            AuthState::SignedIn { user_id, anonymous } => Output {
                text: format!(
                    "signed in as {user_id} ({})",
                    if anonymous { "anonymous" } else { "registered" }
                ),
                json: json!({ "state": "signed_in", "user_id": user_id, "anonymous": anonymous }),
            },
            AuthState::SignedOut => Output {
                text: "signed out".to_string(),
                json: json!({ "state": "signed_out" }),
            },
            AuthState::Unknown => Output {
                text: "unknown (the session could not be loaded)".to_string(),
                json: json!({ "state": "unknown" }),
            },
        }),
        Command::Quota => {
            // The backend's answer, or (offline) the state this device kept.
            let (state, offline) = match c.refresh_quota(None).await {
                Ok(state) => (state, None),
                Err(e @ (TetherError::Network { .. } | TetherError::Timeout { .. })) => {
                    (c.quota(), Some(e.to_string()))
                }
                Err(e) => return Err(e.into()),
            };
            let mut text = quota_text(&state);
            if let Some(why) = &offline {
                text.push_str(&format!("\n(the backend could not be reached: {why})"));
            }
            Ok(Output {
                text,
                json: json!({ "state": quota_state_json(&state), "offline": offline }),
            })
        }
        Command::Request {
            method,
            path,
            body,
            no_auth,
        } => {
            let path = path.trim_start_matches('/');
            let path = path.strip_prefix("api/v1/").unwrap_or(path);
            let reply = c
                .send(api_request(method, path, body, !no_auth), None)
                .await?;
            Ok(Output {
                text: reply.body.trim_end().to_string(),
                json: json!({
                    "status": reply.status,
                    "request_id": reply.request_id,
                    "body": body_json(&reply.body),
                }),
            })
        }
        Command::Detect { file } => {
            sign_in_if_embedded(&s).await?;
            let (text, json) = upload::detect(c, &file, cli.verbose).await?;
            Ok(Output { text, json })
        }
        Command::Vision { file, question } => {
            sign_in_if_embedded(&s).await?;
            let (text, json) = upload::vision(c, &file, question, cli.verbose).await?;
            Ok(Output { text, json })
        }
        Command::Image {
            prompt,
            output,
            width,
            height,
        } => jobs::image(c, prompt, output, width, height).await,
        Command::Job { action } => jobs::job(c, action, cli.json).await,
        Command::Chat {
            text,
            conversation,
            system,
            no_stream,
        } => {
            let args = chat::ChatArgs {
                text,
                conversation,
                system,
                no_stream,
                embedded: s._server.is_some(),
                json: cli.json,
            };
            chat::chat(c, args).await
        }
        Command::History {
            conversation,
            search,
            limit,
            archived,
        } => chat::history(c, conversation, search, limit, archived).await,
        Command::Export { conversation, out } => chat::export(c, conversation, out).await,
        Command::Import { file } => chat::import(c, file).await,
        Command::Demo | Command::Serve { .. } => Err(Failure::new(
            "usage",
            2,
            "demo and serve are not client commands",
        )),
    }
}

/// The embedded server forgets everyone when the command ends: sign in for this command.
async fn sign_in_if_embedded(s: &Session) -> Result<(), Failure> {
    if s._server.is_some() && !matches!(s.client.auth_state(), AuthState::SignedIn { .. }) {
        s.client.sign_in_anonymously(None, None).await?;
    }
    Ok(())
}
