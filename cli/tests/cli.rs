//! The `tether` binary as a developer runs it: real processes against a `tether serve`
//! child, one data dir across commands, `--json` output, and bad input ending in one
//! line on stderr and a documented exit code.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_tether");

/// A `tether serve` child, read exactly as the binding tests read it.
struct Serve {
    child: Child,
    url: String,
}

impl Serve {
    fn start() -> Serve {
        let mut child = Command::new(BIN)
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let url = first
            .trim()
            .strip_prefix("listening ")
            .filter(|u| u.starts_with("http://127.0.0.1:"))
            .unwrap_or_else(|| panic!("unexpected first line from tether serve: {first:?}"))
            .to_string();
        Serve { child, url }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        // Closing stdin is how the binding tests stop it.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// `tether` with a private HOME (the default data dir must never be the real one).
fn tether(home: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_DATA_HOME")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Succeeded, and stdout is exactly one JSON document.
fn json_ok(o: &Output) -> Value {
    assert!(o.status.success(), "{:?}: {}", o.status, stderr(o));
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {:?}", o.stdout))
}

/// Failed with `code`, saying so in exactly one line and no panic.
fn one_line_failure(o: &Output, code: i32, what: &str) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "{what}: stderr {err:?}");
    assert_eq!(err.trim_end().lines().count(), 1, "{what}: {err:?}");
    assert!(err.starts_with("tether: "), "{what}: {err:?}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{what}: {err:?}"
    );
    err
}

#[test]
fn login_whoami_request_logout_share_one_data_dir() {
    let server = Serve::start();
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let (data_s, url) = (data.to_str().unwrap(), server.url.as_str());
    let run = |args: &[&str]| {
        let mut all = vec!["--base-url", url, "--data-dir", data_s, "--json"];
        all.extend_from_slice(args);
        tether(home.path(), &all)
    };

    let login = json_ok(&run(&["login"]));
    let user = login["user_id"].as_str().unwrap().to_string();
    assert_eq!(login["anonymous"], true);
    let session_dir = data.join("sessions");
    assert_eq!(std::fs::read_dir(&session_dir).unwrap().count(), 1);

    // A new process restores the session from the data dir.
    let who = json_ok(&run(&["whoami"]));
    assert_eq!(who["state"], "signed_in");
    assert_eq!(who["user_id"], user.as_str());

    let reply = json_ok(&run(&["request", "GET", "quota"]));
    assert_eq!(reply["status"], 200);
    assert_eq!(reply["body"]["plan"], "free");
    assert!(reply["request_id"].is_string());

    let quota = json_ok(&run(&["quota"]));
    assert_eq!(quota["state"]["limit"], 50);
    assert_eq!(quota["state"]["plan"], "free");
    assert_eq!(quota["state"]["source"], "server");
    assert_eq!(quota["state"]["paywall"], Value::Null);

    let job = json_ok(&run(&[
        "request",
        "post",
        "/api/v1/jobs",
        r#"{"kind":"transcribe","input":{}}"#,
    ]));
    assert_eq!(job["body"]["status"], "queued");

    // A request the backend rejects: one line with its request id, exit 7.
    let o = run(&[
        "request",
        "POST",
        "jobs",
        r#"{"kind":"no such kind","input":{}}"#,
    ]);
    let err = one_line_failure(&o, 7, "rejected");
    assert!(
        err.contains("invalid_input") && err.contains("request id req-"),
        "{err}"
    );

    // Text output, for people.
    let text = tether(
        home.path(),
        &["--base-url", url, "--data-dir", data_s, "quota"],
    );
    assert!(text.status.success(), "{}", stderr(&text));
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("plan free: 49 of 50 left"), "{text}");
    assert!(text.contains("source: the backend"), "{text}");

    let out = json_ok(&run(&["logout"]));
    assert_eq!(out["was_signed_in"], true);
    assert_eq!(std::fs::read_dir(&session_dir).unwrap().count(), 0);
    assert_eq!(json_ok(&run(&["whoami"]))["state"], "signed_out");

    // Signed out: one line on stderr, exit 4, and the error as JSON on stdout.
    let o = run(&["request", "GET", "quota"]);
    let err = one_line_failure(&o, 4, "signed out");
    assert!(err.contains("tether login"), "{err}");
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["error"]["kind"], "signed_out");
    assert_eq!(doc["error"]["exit_code"], 4);
}

#[test]
fn bad_input_is_one_line_and_a_documented_exit_code() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let file = file.to_str().unwrap();
    let cases: &[(&[&str], i32, &str)] = &[
        (&["request", "FETCH", "quota"], 2, "unknown method"),
        (&["request", "POST", "jobs", "{not json"], 2, "invalid JSON"),
        (&["request", "GET"], 2, "<PATH>"),
        (&["--frobnicate", "whoami"], 2, "--frobnicate"),
        (&["launch"], 2, "launch"),
        (&[], 2, "a command is required"),
        (&["--base-url", "not a url", "whoami"], 3, "absolute URL"),
        (
            &["--base-url", "http://example.com", "whoami"],
            3,
            "loopback",
        ),
        (&["--base-url", "ftp://127.0.0.1", "whoami"], 3, "scheme"),
        (&["--client-id", "", "whoami"], 3, "client_id"),
        (&["--data-dir", file, "whoami"], 11, "storage"),
        (&["serve", "--port", "http"], 2, "--port"),
    ];
    for (args, code, says) in cases {
        let o = tether(home.path(), args);
        let err = one_line_failure(&o, *code, &format!("{args:?}"));
        assert!(err.contains(says), "{args:?}: {err:?}");
        assert!(o.stdout.is_empty(), "{args:?}: {:?}", o.stdout);
    }
    // With --json the error is also a JSON document on stdout.
    let o = tether(home.path(), &["--json", "request", "FETCH", "quota"]);
    one_line_failure(&o, 2, "json usage");
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["error"]["kind"], "usage");
}

#[test]
fn every_subcommand_has_help_and_the_exit_codes_are_documented() {
    let home = tempfile::tempdir().unwrap();
    let top = tether(home.path(), &["--help"]);
    assert!(top.status.success());
    let top = String::from_utf8(top.stdout).unwrap();
    for needle in ["Exit codes:", "tether serve", "--base-url", "130 cancelled"] {
        assert!(top.contains(needle), "{needle}");
    }
    for sub in [
        "login", "logout", "whoami", "quota", "request", "image", "job", "chat", "history",
        "export", "import", "demo", "serve",
    ] {
        let o = tether(home.path(), &[sub, "--help"]);
        assert!(o.status.success(), "{sub}");
        let help = String::from_utf8(o.stdout).unwrap();
        assert!(
            help.contains(&format!("Usage: tether {sub}")),
            "{sub}: {help}"
        );
    }
}

#[test]
fn defaults_embedded_server_and_per_user_data_dir() {
    let home = tempfile::tempdir().unwrap();
    // No --base-url: a server of its own, so login works and nothing is kept.
    let o = tether(home.path(), &["--json", "login"]);
    assert_eq!(json_ok(&o)["anonymous"], true);
    let data = home.path().join(".local/share/tether");
    assert!(data.join("tether.sqlite3").exists());
    assert!(!data.join("sessions").exists());
    let o = tether(home.path(), &["--json", "whoami"]);
    assert_eq!(json_ok(&o)["state"], "signed_out");

    // XDG_DATA_HOME wins over HOME.
    let xdg = tempfile::tempdir().unwrap();
    let o = Command::new(BIN)
        .args(["--verbose", "whoami"])
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", xdg.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(xdg.path().join("tether/tether.sqlite3").exists());
    // --verbose: the library's own log lines on stderr.
    assert!(
        stderr(&o).contains("[Info tether::auth] session restored"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn image_writes_a_png_and_job_submit_waits_to_the_end() {
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("pics/fox.png");
    let o = tether(
        home.path(),
        &[
            "--json",
            "image",
            "a red fox",
            "--width",
            "300",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    let v = json_ok(&o);
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(300), Some(1024))
    );
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(v["byte_size"].as_u64(), Some(bytes.len() as u64));

    let o = tether(
        home.path(),
        &[
            "--json",
            "job",
            "submit",
            "transcribe",
            r#"{"url":"https://x/a.mp3","steps":2}"#,
            "--wait",
        ],
    );
    let v = json_ok(&o);
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["result"]["text"], "transcript of https://x/a.mp3");
    let o = tether(home.path(), &["job", "submit", "summarize"]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
}

/// `chat` streams into the history in the data dir; `history`, `--search`, `export` and
/// `import` read it back in later commands; Ctrl-C (SIGINT) keeps the partial reply.
#[test]
fn chat_history_search_export_import_and_ctrl_c() {
    let server = Serve::start();
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("data");
    let (d, url) = (data.to_str().unwrap(), server.url.as_str());
    let o = tether(home.path(), &["--data-dir", d, "--base-url", url, "login"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = tether(
        home.path(),
        &["--data-dir", d, "--base-url", url, "chat", "hello lisbon"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("You said: hello lisbon"), "{out}");
    let list = json_ok(&tether(
        home.path(),
        &["--data-dir", d, "--json", "history"],
    ));
    let conv = list["conversations"][0]["id"].as_str().unwrap().to_string();
    let msgs = json_ok(&tether(
        home.path(),
        &["--data-dir", d, "--json", "history", &conv],
    ));
    assert_eq!(msgs["messages"][1]["content"], "You said: hello lisbon");
    assert_eq!(msgs["messages"][1]["status"], "complete");
    let hits = json_ok(&tether(
        home.path(),
        &[
            "--data-dir",
            d,
            "--json",
            "history",
            "--search",
            "lisbon AND (\"x",
        ],
    ));
    assert_eq!(hits.as_array().unwrap().len(), 0, "every word must occur");
    let hits = json_ok(&tether(
        home.path(),
        &["--data-dir", d, "--json", "history", "--search", "LISBON"],
    ));
    assert_eq!(hits.as_array().unwrap().len(), 2);
    let file = home.path().join("export.json");
    let o = tether(
        home.path(),
        &["--data-dir", d, "export", "-o", file.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let other = home.path().join("other");
    let o = tether(
        home.path(),
        &[
            "--data-dir",
            other.to_str().unwrap(),
            "--json",
            "import",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(json_ok(&o)["messages"], 2);

    // A long slow reply, interrupted once it is printing.
    let script = r#"{"repeat":["word ",3000],"delay_ms":5}"#;
    let admin = std::process::Command::new("curl")
        .args([
            "-s",
            "-XPOST",
            &format!("{url}/__admin/chat-script"),
            "-d",
            script,
        ])
        .output();
    if admin.map(|o| !o.status.success()).unwrap_or(true) {
        eprintln!("curl is missing: the Ctrl-C part is skipped");
        return;
    }
    let mut child = Command::new(BIN)
        .args([
            "--data-dir",
            d,
            "--base-url",
            url,
            "chat",
            "--conversation",
            &conv,
            "go",
        ])
        .env("HOME", home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 5];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    assert_eq!(&first, b"word ");
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(stderr(&o).contains("partial reply"), "{}", stderr(&o));
    let msgs = json_ok(&tether(
        home.path(),
        &["--data-dir", d, "--json", "history", &conv],
    ));
    let last = msgs["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["status"], "cancelled");
    let text = last["content"].as_str().unwrap();
    assert!(!text.is_empty() && "word ".repeat(3000).starts_with(text));
}
