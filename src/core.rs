//! `Core`: builds the floors below from a `ClientConfig` and owns the wiring between them
//! (the server clock persisted in the store, quota headers to their observer, one log
//! dispatch). The facade's methods each delegate to one method here; these return the
//! internal error and never reach through another floor's fields from outside.

use std::path::Path;
#[cfg(feature = "upload")]
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use tokio::time::Instant;

use crate::api::Api;
use crate::auth::{Auth, AuthListener, AuthState, AuthTiming, TokenStore, User};
use crate::chat::{Chat, ChatListener, ChatOptions};
use crate::client::{ApiRequest, ApiResponse, HttpMethod};
use crate::config::ClientConfig;
use crate::error::{Error, Result};
#[cfg(feature = "upload")]
use crate::images::{self, GeneratedImage, ImageOptions};
use crate::jobs::{JobInfo, JobListener, Jobs};
use crate::logging::{self, Logger};
use crate::paywall::{Paywall, QuotaListener, QuotaState};
use crate::runtime::{runtime, CancelHandle};
use crate::store::history::{
    self, Conversation, ConversationPage, ImportSummary, Message, MessagePage, PageAt, SearchHit,
    SearchQuery,
};
use crate::store::{kv::CLOCK_OFFSET, Store};
use crate::subscription::Subscription;
use crate::transport::{Body, Request, Transport};
#[cfg(feature = "upload")]
use crate::upload::{
    DetectOptions, Detection, ImageSource, UploadProgress, Uploads, VisionOptions, VisionReply,
};

pub(crate) struct Core {
    pub dispatch: logging::LogDispatch,
    transport: Arc<Transport>,
    auth: Arc<Auth>,
    api: Arc<Api>,
    paywall: Arc<Paywall>,
    first_byte: Duration,
    #[cfg(feature = "upload")]
    uploads: Uploads,
    jobs: Jobs,
    /// Where generated images go by default (`data_dir/images`).
    #[cfg(feature = "upload")]
    images_dir: PathBuf,
    store: Arc<Store>,
    chat: Chat,
}

impl Core {
    pub fn new(
        config: ClientConfig,
        token_store: Arc<dyn TokenStore>,
        logger: Option<Arc<dyn Logger>>,
    ) -> Result<Core> {
        let transport = Arc::new(Transport::new(&config)?);
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| Error::Storage(format!("data_dir {:?}: {e}", config.data_dir)))?;
        let store = Arc::new(Store::open(Path::new(&config.data_dir))?);
        persist_clock(&store, &transport)?;
        let total = Duration::from_millis(config.timeouts.total_ms.into());
        let auth = Arc::new(Auth::new(
            transport.clone(),
            token_store,
            AuthTiming {
                total,
                retry: config.retry.clone(),
                skew_s: config.refresh_skew_s.into(),
            },
        ));
        let paywall = Paywall::restore(&store, transport.clock.clone(), config.quota_fail_fast);
        let api = Arc::new(Api::new(
            transport.clone(),
            auth.clone(),
            paywall.clone(),
            config.retry.clone(),
            total,
            config.max_response_bytes.into(),
        ));
        let chat = Chat::new(api.clone(), store.clone())?;
        Ok(Core {
            dispatch: logging::dispatch(logger, config.min_log_level()),
            transport,
            auth,
            api,
            paywall,
            first_byte: Duration::from_millis(config.timeouts.first_byte_ms.into()),
            #[cfg(feature = "upload")]
            uploads: Uploads::new(Path::new(&config.data_dir))?,
            jobs: Jobs::new((*store).clone()),
            #[cfg(feature = "upload")]
            images_dir: Path::new(&config.data_dir).join("images"),
            store,
            chat,
        })
    }
}

/// The server-clock offset survives a relaunch: seeded from the store, saved on change.
fn persist_clock(store: &Arc<Store>, transport: &Transport) -> Result<()> {
    if let Some(offset) = store.read_blocking(|c| CLOCK_OFFSET.get(c))? {
        transport.clock.seed(offset);
    }
    let store = store.clone();
    transport.on_clock_change(move |offset| {
        let store = store.clone();
        // Off the async workers; a failed write only costs the hint on next launch.
        drop(
            runtime()
                .spawn(async move { store.write(move |tx| CLOCK_OFFSET.set(tx, &offset)).await }),
        );
    });
    Ok(())
}

/// Session.
impl Core {
    pub fn auth_state(&self) -> AuthState {
        self.auth.state()
    }

    pub async fn restore_session(&self) -> Result<AuthState> {
        self.auth.restore().await
    }

    pub async fn sign_in_anonymously(&self, device_id: Option<String>) -> Result<User> {
        self.auth.sign_in_anonymously(device_id).await
    }

    pub async fn sign_out(&self) -> Result<()> {
        self.auth.sign_out().await
    }

    pub async fn access_token(&self) -> Result<String> {
        let deadline = Instant::now() + self.first_byte;
        Ok(self.auth.token(deadline).await?.value().to_string())
    }

    pub fn add_auth_listener(&self, listener: Arc<dyn AuthListener>) -> Arc<Subscription> {
        self.auth.subscribe((*self.dispatch).clone(), listener)
    }
}

/// Requests.
impl Core {
    pub async fn send(&self, request: ApiRequest) -> Result<ApiResponse> {
        let first = request.path.trim_start_matches('/').split('/').next();
        // The session is the auth floor's alone: a raw call could spend the refresh token.
        if first.is_some_and(|s| s.eq_ignore_ascii_case("auth") || s.contains('%')) {
            return Err(Error::InvalidInput(format!(
                "{:?} is not for send(): sessions are managed by the client",
                request.path
            )));
        }
        let method = match request.method {
            HttpMethod::Get => Method::GET,
            HttpMethod::Post => Method::POST,
            HttpMethod::Put => Method::PUT,
            HttpMethod::Patch => Method::PATCH,
            HttpMethod::Delete => Method::DELETE,
        };
        let mut req = Request::new(method, request.path);
        req.authenticated = request.authenticated;
        req.idempotency_key = request.idempotency_key;
        if let Some(json) = request.json_body {
            req.body = Body::json(json);
        }
        let reply = self.api.send(req).await?;
        let body = String::from_utf8(reply.body)
            .map_err(|_| Error::decode("response body is not UTF-8"))?;
        Ok(ApiResponse {
            status: reply.status,
            body,
            request_id: reply.request_id,
        })
    }

    pub fn server_clock_offset_ms(&self) -> Option<i64> {
        self.transport.clock.offset_ms()
    }
}

/// Quota.
impl Core {
    pub fn quota(&self) -> QuotaState {
        self.paywall.state()
    }

    pub async fn refresh_quota(&self) -> Result<QuotaState> {
        let reply = self.api.send(Request::new(Method::GET, "quota")).await?;
        self.paywall.apply_quota_body(&reply.body)
    }

    pub fn add_quota_listener(&self, listener: Arc<dyn QuotaListener>) -> Arc<Subscription> {
        self.paywall.subscribe((*self.dispatch).clone(), listener)
    }
}

/// Uploads.
#[cfg(feature = "upload")]
impl Core {
    pub async fn detect(
        &self,
        image: ImageSource,
        options: DetectOptions,
        progress: Option<Arc<dyn UploadProgress>>,
    ) -> Result<Detection> {
        self.uploads
            .detect(&self.api, image, options, progress)
            .await
    }

    pub async fn vision(
        &self,
        image: ImageSource,
        prompt: String,
        options: VisionOptions,
        progress: Option<Arc<dyn UploadProgress>>,
    ) -> Result<VisionReply> {
        self.uploads
            .vision(&self.api, image, prompt, options, progress)
            .await
    }
}

/// Generated images.
#[cfg(feature = "upload")]
impl Core {
    pub async fn generate_image(
        &self,
        prompt: String,
        options: ImageOptions,
    ) -> Result<GeneratedImage> {
        images::generate(&self.api, &self.images_dir, prompt, options).await
    }
}

/// Jobs.
impl Core {
    pub async fn submit_job(&self, kind: String, input_json: String) -> Result<JobInfo> {
        self.jobs.submit(&self.api, kind, input_json).await
    }

    pub async fn job(&self, id: String) -> Result<JobInfo> {
        self.jobs.get(&self.api, &id).await
    }

    pub async fn wait_for_job(
        &self,
        id: String,
        listener: Option<Arc<dyn JobListener>>,
    ) -> Result<JobInfo> {
        self.jobs.wait(&self.api, &id, listener).await
    }

    pub async fn pending_jobs(&self) -> Result<Vec<JobInfo>> {
        self.jobs.pending(&self.api).await
    }

    pub async fn delete_job(&self, id: String) -> Result<bool> {
        self.jobs.delete(id).await
    }
}

/// Chat and history.
impl Core {
    pub async fn send_message(
        &self,
        conversation_id: String,
        text: String,
        options: Option<ChatOptions>,
        listener: Arc<dyn ChatListener>,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<Message> {
        let options = options.unwrap_or_default();
        self.chat
            .send_message(conversation_id, text, options, listener, cancel)
            .await
    }

    pub async fn regenerate(
        &self,
        message_id: String,
        options: Option<ChatOptions>,
        listener: Arc<dyn ChatListener>,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<Message> {
        let options = options.unwrap_or_default();
        self.chat
            .regenerate(message_id, options, listener, cancel)
            .await
    }

    pub async fn continue_incomplete(
        &self,
        message_id: String,
        options: Option<ChatOptions>,
        listener: Arc<dyn ChatListener>,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<Message> {
        let options = options.unwrap_or_default();
        self.chat
            .continue_incomplete(message_id, options, listener, cancel)
            .await
    }

    /// (write transactions of replies, `on_delta` crossings) so far.
    pub fn chat_counters(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let c = &self.chat.counters;
        (c.commits.load(Relaxed), c.deltas_delivered.load(Relaxed))
    }

    pub async fn create_conversation(
        &self,
        title: String,
        system_prompt: Option<String>,
    ) -> Result<Conversation> {
        self.store
            .write(move |tx| history::create_conversation(tx, &title, system_prompt.as_deref()))
            .await
    }

    pub async fn get_conversation(&self, id: String) -> Result<Option<Conversation>> {
        self.store
            .read(move |c| history::get_conversation(c, &id))
            .await
    }

    pub async fn list_conversations(
        &self,
        cursor: Option<String>,
        limit: u32,
        include_archived: bool,
    ) -> Result<ConversationPage> {
        self.store
            .read(move |c| {
                history::list_conversations(c, include_archived, cursor.as_deref(), limit)
            })
            .await
    }

    pub async fn rename_conversation(&self, id: String, title: String) -> Result<()> {
        self.store
            .write(move |tx| history::rename_conversation(tx, &id, &title))
            .await
    }

    pub async fn archive_conversation(&self, id: String, archived: bool) -> Result<()> {
        self.store
            .write(move |tx| history::set_archived(tx, &id, archived))
            .await
    }

    pub async fn delete_conversation(&self, id: String) -> Result<()> {
        self.store
            .write(move |tx| history::delete_conversation(tx, &id))
            .await
    }

    pub async fn list_messages(
        &self,
        conversation_id: String,
        at: PageAt,
        limit: u32,
    ) -> Result<MessagePage> {
        self.store
            .read(move |c| history::list_messages(c, &conversation_id, &at, limit))
            .await
    }

    pub async fn append_message(
        &self,
        conversation_id: String,
        role: history::Role,
        content: String,
        attachments: Vec<history::Attachment>,
    ) -> Result<Message> {
        let m = history::NewMessage {
            conversation_id,
            role,
            content,
            status: history::MessageStatus::Complete,
            model: None,
            attachments,
        };
        self.store
            .write(move |tx| history::insert_message(tx, m))
            .await
    }

    pub async fn get_message(&self, id: String) -> Result<Option<Message>> {
        self.store.read(move |c| history::get_message(c, &id)).await
    }

    pub async fn search_messages(&self, query: SearchQuery) -> Result<Vec<SearchHit>> {
        self.store.read(move |c| history::search(c, &query)).await
    }

    pub async fn export_history(&self, conversation_id: Option<String>) -> Result<String> {
        self.store
            .read(move |c| history::export(c, conversation_id.as_deref()))
            .await
    }

    pub async fn import_history(&self, json: String) -> Result<ImportSummary> {
        self.store.write(move |tx| history::import(tx, &json)).await
    }
}
