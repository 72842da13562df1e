//! Tether: the shared Rust core an AI-backed mobile app embeds to talk to its backend.
//! See `src/README.md` for which file does what, and `../shared/contract/API.md` for the
//! backend contract every request follows.

uniffi::setup_scaffolding!();

mod api;
mod auth;
mod chat;
mod client;
mod config;
mod core;
mod error;
#[cfg(feature = "upload")]
mod images;
mod jobs;
mod logging;
mod paywall;
mod quota;
mod retry;
mod runtime;
pub mod sse;
mod store;
mod subscription;
mod transport;
#[cfg(feature = "upload")]
mod upload;

pub use auth::{
    file_token_store, in_memory_token_store, AuthListener, AuthState, FileTokenStore,
    InMemoryTokenStore, TokenStore, TokenStoreError, User,
};
pub use chat::{ChatListener, ChatOptions};
pub use client::{ApiRequest, ApiResponse, HttpMethod, TetherClient};
pub use config::{ClientConfig, RetryPolicy, Timeouts};
pub use error::TetherError;
#[cfg(feature = "upload")]
pub use images::{GeneratedImage, ImageOptions};
pub use jobs::{JobFailure, JobInfo, JobListener, JobStatus};
pub use logging::{LogLevel, Logger};
pub use paywall::{QuotaListener, QuotaSource, QuotaState};
pub use quota::Quota;
pub use runtime::CancelHandle;
#[doc(hidden)]
pub use store::bench::StoreForBench;
pub use store::history::{
    Attachment, Conversation, ConversationPage, ImportSummary, Message, MessagePage, MessageStatus,
    PageAt, Role, SearchHit, SearchQuery, TokenUsage,
};
pub use subscription::Subscription;
#[cfg(feature = "upload")]
#[doc(hidden)]
pub use upload::prepare_for_bench;
#[cfg(feature = "upload")]
pub use upload::{
    BoundingBox, DetectOptions, DetectedObject, Detection, ImageInfo, ImageSource, PrepareOptions,
    UploadProgress, VisionOptions, VisionReply,
};

/// The library's version (`tether/<version>` in the User-Agent).
#[uniffi::export]
pub fn tether_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
