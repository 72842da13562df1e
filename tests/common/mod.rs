//! Shared helpers for the integration tests: client construction against the
//! fault-injection server, a log collector, an auth-event recorder and token stores that
//! behave like a real keychain (including a locked one).
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use tether::{
    AuthListener, AuthState, ClientConfig, InMemoryTokenStore, LogLevel, Logger, RetryPolicy,
    TetherClient, Timeouts, TokenStore, TokenStoreError,
};

#[allow(unused_imports)]
pub use tether_test_server::{Fault, TestServer};

pub fn config(url: &str, dir: &tempfile::TempDir) -> ClientConfig {
    let mut c = ClientConfig::new(url, "test-app", dir.path().to_str().unwrap());
    c.timeouts = Timeouts {
        connect_ms: 2_000,
        first_byte_ms: 5_000,
        idle_ms: 5_000,
        total_ms: 20_000,
    };
    c.retry = RetryPolicy {
        max_attempts: 4,
        base_delay_ms: 10,
        max_delay_ms: 100,
        max_retry_after_s: 5,
    };
    c.log_level = Some(LogLevel::Debug);
    c
}

pub struct Env {
    pub server: TestServer,
    pub dir: tempfile::TempDir,
    pub store: Arc<SharedStore>,
    pub logs: Arc<LogCollector>,
}

impl Env {
    pub async fn new() -> Env {
        Env {
            server: TestServer::start().await,
            dir: tempfile::tempdir().unwrap(),
            store: Arc::new(SharedStore::default()),
            logs: Arc::new(LogCollector::default()),
        }
    }

    pub fn config(&self) -> ClientConfig {
        config(&self.server.url(), &self.dir)
    }

    pub fn client(&self) -> Arc<TetherClient> {
        self.client_with(self.config())
    }

    pub fn client_with(&self, config: ClientConfig) -> Arc<TetherClient> {
        TetherClient::with_logger(config, self.store.clone(), self.logs.clone()).unwrap()
    }

    pub async fn signed_in(&self) -> Arc<TetherClient> {
        let c = self.client();
        c.restore_session().await.unwrap();
        c.sign_in_anonymously(None, None).await.unwrap();
        c
    }
}

/// What the next `save` of a [`SharedStore`] does.
#[derive(Debug, Clone, Copy)]
pub enum SaveStep {
    Ok,
    /// Refused, like a keychain item saved `WhenUnlocked` while the device is locked.
    Fail,
    /// Slow (a keychain under load), then saved.
    Delay(std::time::Duration),
}

/// An in-memory token store whose content tests can inspect, that can be "locked" like
/// the iOS keychain during prewarming, and whose next saves and loads can be scripted.
#[derive(Default)]
pub struct SharedStore {
    pub inner: InMemoryTokenStore,
    pub locked: Mutex<bool>,
    pub clears: Mutex<usize>,
    /// Saves begun so far.
    pub saves: Mutex<usize>,
    /// Steps for the next saves, in order (then: `Ok`).
    pub next_saves: Mutex<std::collections::VecDeque<SaveStep>>,
    /// A delay for every load.
    pub load_delay: Mutex<Option<std::time::Duration>>,
}

impl SharedStore {
    pub fn value(&self) -> Option<String> {
        self.inner.load().unwrap()
    }
    pub fn lock(&self, locked: bool) {
        *self.locked.lock().unwrap() = locked;
    }
    pub fn script_saves(&self, steps: &[SaveStep]) {
        self.next_saves
            .lock()
            .unwrap()
            .extend(steps.iter().copied());
    }
    pub fn saves_begun(&self) -> usize {
        *self.saves.lock().unwrap()
    }
    /// The refresh token of the stored session, if any.
    pub fn refresh_token(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(&self.value()?).ok()?;
        v["refresh_token"].as_str().map(str::to_string)
    }
    fn check(&self) -> Result<(), TokenStoreError> {
        if *self.locked.lock().unwrap() {
            Err(TokenStoreError::Unavailable {
                detail: "keychain locked".into(),
            })
        } else {
            Ok(())
        }
    }
}

impl TokenStore for SharedStore {
    fn load(&self) -> Result<Option<String>, TokenStoreError> {
        let delay = *self.load_delay.lock().unwrap();
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        self.check()?;
        self.inner.load()
    }
    fn save(&self, value: String) -> Result<(), TokenStoreError> {
        *self.saves.lock().unwrap() += 1;
        let step = self.next_saves.lock().unwrap().pop_front();
        match step {
            Some(SaveStep::Fail) => {
                return Err(TokenStoreError::Unavailable {
                    detail: "keychain refused the write".into(),
                })
            }
            Some(SaveStep::Delay(d)) => std::thread::sleep(d),
            Some(SaveStep::Ok) | None => {}
        }
        self.check()?;
        self.inner.save(value)
    }
    fn clear(&self) -> Result<(), TokenStoreError> {
        self.check()?;
        *self.clears.lock().unwrap() += 1;
        self.inner.clear()
    }
}

#[derive(Default)]
pub struct LogCollector(pub Mutex<Vec<(LogLevel, String, String)>>);

impl Logger for LogCollector {
    fn log(&self, level: LogLevel, target: String, message: String) {
        self.0.lock().unwrap().push((level, target, message));
    }
}

impl LogCollector {
    pub fn text(&self) -> String {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(l, t, m)| format!("{l:?} {t} {m}\n"))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    State(AuthState),
    Refreshed(String),
}

#[derive(Default)]
pub struct Recorder(pub Mutex<Vec<Seen>>);

impl AuthListener for Recorder {
    fn on_state_changed(&self, state: AuthState) {
        self.0.lock().unwrap().push(Seen::State(state));
    }
    fn on_session_refreshed(&self, user_id: String) {
        self.0.lock().unwrap().push(Seen::Refreshed(user_id));
    }
}

impl Recorder {
    pub fn events(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }

    pub fn last(&self) -> Option<Seen> {
        self.events().last().cloned()
    }

    /// Listener calls are asynchronous: wait (bounded) until `pred` holds.
    pub async fn wait_for(&self, pred: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
        for _ in 0..200 {
            let ev = self.events();
            if pred(&ev) {
                return ev;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        self.events()
    }
}

pub fn quota_request() -> tether::ApiRequest {
    tether::ApiRequest {
        method: tether::HttpMethod::Get,
        path: "quota".into(),
        json_body: None,
        authenticated: true,
        idempotency_key: None,
    }
}

pub fn job_request() -> tether::ApiRequest {
    tether::ApiRequest {
        method: tether::HttpMethod::Post,
        path: "jobs".into(),
        json_body: Some(r#"{"kind":"transcribe","input":{"media":"m1"}}"#.into()),
        authenticated: true,
        idempotency_key: None,
    }
}

/// Polls `cond` every 10 ms for up to 10 s; panics with `what` if it never holds.
pub async fn eventually(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}
