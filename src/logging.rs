//! Logging: Tether's `tracing` events handed to a foreign [`Logger`], so apps see them in
//! os_log / Logcat / the JS console.
//!
//! Each client has its own dispatch (attached to every task it runs), so two clients
//! with two loggers never mix, and Tether never installs a global subscriber behind the
//! app's back. Only events from Tether's own modules are forwarded, TRACE never.

use std::fmt::Write as _;
use std::sync::Arc;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Severity of a log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, uniffi::Enum)]
pub enum LogLevel {
    /// Step-by-step detail (each response, each retry decision).
    Debug,
    /// What happened (signed in, session refreshed).
    Info,
    /// Something went wrong and was handled (a retry, a failed save kept in memory).
    Warn,
    /// Something went wrong and was not handled.
    Error,
}

/// Receives Tether's log records. Implement it to route them to os_log, Logcat, etc.
/// Called from a Tether thread; keep it quick.
#[uniffi::export(with_foreign)]
pub trait Logger: Send + Sync {
    /// One log record: `target` is the Tether module (e.g. `tether::auth`), `message`
    /// the text with its fields (`request_id=…`, `status=…`). Never contains a token.
    fn log(&self, level: LogLevel, target: String, message: String);
}

struct Bridge(Arc<dyn Logger>);

impl<S: Subscriber> Layer<S> for Bridge {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if !meta.target().starts_with("tether") {
            return;
        }
        let level = match *meta.level() {
            Level::ERROR => LogLevel::Error,
            Level::WARN => LogLevel::Warn,
            Level::INFO => LogLevel::Info,
            Level::DEBUG => LogLevel::Debug,
            Level::TRACE => return,
        };
        let mut v = Fields::default();
        event.record(&mut v);
        // A logger that throws (an exception surfacing as a panic here) must not break
        // the call that happened to log.
        let logger = &self.0;
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            logger.log(level, meta.target().to_string(), v.0)
        }));
    }
}

#[derive(Default)]
struct Fields(String);

impl Fields {
    fn push(&mut self, name: &str, value: std::fmt::Arguments<'_>) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        if name != "message" {
            let _ = write!(self.0, "{name}=");
        }
        let _ = self.0.write_fmt(value);
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.push(field.name(), format_args!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field.name(), format_args!("{value}"));
    }
}

/// The dispatch a client attaches to its work: the foreign logger, or nothing.
pub(crate) fn dispatch(logger: Option<Arc<dyn Logger>>) -> tracing::Dispatch {
    match logger {
        Some(l) => tracing::Dispatch::new(tracing_subscriber::registry().with(Bridge(l))),
        None => tracing::Dispatch::none(),
    }
}
