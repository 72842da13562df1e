//! The facade: [`TetherClient`], the one object an app holds for its lifetime. Each
//! method is a short delegation to the floors below, run on the library's runtime.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use tokio::time::Instant;

use crate::api::{Api, Request};
use crate::auth::{Auth, AuthListener, AuthState, TokenStore, User};
use crate::config::ClientConfig;
use crate::error::{Error, TetherError};
use crate::logging::{self, Logger};
use crate::quota::{LatestQuota, Quota};
use crate::runtime::{run, CancelHandle};
use crate::store::Store;
use crate::subscription::Subscription;
use crate::transport::Transport;

const CLOCK_OFFSET_KEY: &str = "server_clock_offset_ms";

/// HTTP methods for [`TetherClient::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum HttpMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

/// A request to an endpoint of the backend that Tether has no typed method for.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ApiRequest {
    pub method: HttpMethod,
    /// Path under `/api/v1/`, e.g. `"quota"` or `"jobs/j_123"`.
    pub path: String,
    /// A JSON body, sent as `application/json`.
    #[uniffi(default = None)]
    pub json_body: Option<String>,
    /// Whether to send the session's access token (and refresh it as needed).
    #[uniffi(default = true)]
    pub authenticated: bool,
}

/// A successful (2xx) response.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ApiResponse {
    pub status: u16,
    /// The body as UTF-8 text (JSON for every endpoint of the contract).
    pub body: String,
    /// The backend's `X-Request-ID`, if it sent one.
    pub request_id: Option<String>,
}

/// The Tether client: auth session, HTTP pipeline and (later) uploads, quota, chat and
/// history. Create one per app and keep it for the app's lifetime.
#[derive(uniffi::Object)]
pub struct TetherClient {
    api: Arc<Api>,
    auth: Arc<Auth>,
    quota: Arc<LatestQuota>,
    dispatch: logging::LogDispatch,
    first_byte: Duration,
}

impl TetherClient {
    fn build(
        config: ClientConfig,
        token_store: Arc<dyn TokenStore>,
        logger: Option<Arc<dyn Logger>>,
    ) -> Result<Arc<Self>, TetherError> {
        let transport = Arc::new(Transport::new(&config)?);
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| Error::Storage(format!("data_dir {:?}: {e}", config.data_dir)))?;
        let store = Arc::new(Store::open(Path::new(&config.data_dir))?);
        if let Some(offset) = store.get(CLOCK_OFFSET_KEY)?.and_then(|v| v.parse().ok()) {
            transport.clock.seed(offset);
        }
        let st = store.clone();
        transport.on_clock_change(move |offset| {
            let st = st.clone();
            // Off the async workers; a failed write only costs the hint on next launch.
            drop(tokio::task::spawn_blocking(move || {
                st.set(CLOCK_OFFSET_KEY, &offset.to_string())
            }));
        });
        let auth = Arc::new(Auth::new(
            transport.clone(),
            token_store,
            config.refresh_skew_s.into(),
        ));
        let quota = Arc::new(LatestQuota::default());
        let api = Arc::new(Api::new(
            transport,
            auth.clone(),
            quota.clone(),
            config.retry.clone(),
            Duration::from_millis(config.timeouts.total_ms.into()),
            config.max_response_bytes.into(),
        ));
        Ok(Arc::new(TetherClient {
            api,
            auth,
            quota,
            dispatch: logging::dispatch(logger, config.min_log_level()),
            first_byte: Duration::from_millis(config.timeouts.first_byte_ms.into()),
        }))
    }
}

impl std::fmt::Debug for TetherClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TetherClient")
            .field("auth_state", &self.auth.state())
            .finish_non_exhaustive()
    }
}

#[uniffi::export]
impl TetherClient {
    /// Creates the client. Fails with `Config` if the configuration is invalid (for
    /// example `http://` for a non-loopback host, a relative URL or a zero timeout) and
    /// with `Storage` if `data_dir` cannot be created. Does no network I/O; call
    /// `restore_session()` next to load the saved session.
    #[uniffi::constructor]
    pub fn new(
        config: ClientConfig,
        token_store: Arc<dyn TokenStore>,
    ) -> Result<Arc<Self>, TetherError> {
        Self::build(config, token_store, None)
    }

    /// Like `new`, with Tether's log records sent to `logger` (os_log, Logcat, console).
    #[uniffi::constructor]
    pub fn with_logger(
        config: ClientConfig,
        token_store: Arc<dyn TokenStore>,
        logger: Arc<dyn Logger>,
    ) -> Result<Arc<Self>, TetherError> {
        Self::build(config, token_store, Some(logger))
    }

    /// The current auth state, from memory (no I/O). `Unknown` until `restore_session()`.
    pub fn auth_state(&self) -> AuthState {
        self.auth.state()
    }

    /// Loads the saved session from the token store. If the store fails (e.g. the iOS
    /// keychain is locked), the state stays `Unknown` and this returns `Storage`: call it
    /// again later; the user is never signed out because of it.
    pub async fn restore_session(&self) -> Result<AuthState, TetherError> {
        let auth = self.auth.clone();
        run(
            &self.dispatch,
            None,
            async move { Ok(auth.restore().await?) },
        )
        .await
    }

    /// Creates an anonymous user on the backend and signs in as it (replacing any
    /// current session). `device_id`, if given, is passed to the backend.
    #[uniffi::method(default(device_id = None, cancel = None))]
    pub async fn sign_in_anonymously(
        &self,
        device_id: Option<String>,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<User, TetherError> {
        let api = self.api.clone();
        run(&self.dispatch, cancel, async move {
            let body = match device_id {
                Some(id) => serde_json::json!({ "device_id": id }),
                None => serde_json::json!({}),
            };
            let reply = api
                .send(Request::post_json("auth/anonymous", body.to_string()).unauthenticated())
                .await?;
            Ok(api.auth.adopt(&reply.body).await?)
        })
        .await
    }

    /// Signs out: the local session and the token store are cleared at once (listeners
    /// are told), then the backend is asked to revoke the refresh token (best effort).
    /// Fails only with `Storage` if the token store could not be cleared.
    pub async fn sign_out(&self) -> Result<(), TetherError> {
        let auth = self.auth.clone();
        let deadline = Instant::now() + self.first_byte;
        run(&self.dispatch, None, async move {
            Ok(auth.sign_out(deadline).await?)
        })
        .await
    }

    /// A fresh access token for the app's own calls to its backend (refreshed first if it
    /// is about to expire). `SignedOut` if there is no session.
    #[uniffi::method(default(cancel = None))]
    pub async fn access_token(
        &self,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<String, TetherError> {
        let api = self.api.clone();
        let deadline = Instant::now() + self.first_byte;
        run(&self.dispatch, cancel, async move {
            Ok(api.auth.access_token(deadline).await?)
        })
        .await
    }

    /// Registers a listener told of every auth state change (and of the current state,
    /// at once) and every token rotation. Keep the returned handle: dropping it stops
    /// the listener.
    pub fn add_auth_listener(&self, listener: Arc<dyn AuthListener>) -> Arc<Subscription> {
        self.auth.subscribe(self.dispatch.clone(), listener)
    }

    /// Sends a request through the full pipeline (auth, idempotency key, retries, error
    /// mapping, quota headers) to an endpoint Tether has no typed method for.
    #[uniffi::method(default(cancel = None))]
    pub async fn send(
        &self,
        request: ApiRequest,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<ApiResponse, TetherError> {
        let api = self.api.clone();
        run(&self.dispatch, cancel, async move {
            let req = Request {
                method: match request.method {
                    HttpMethod::Get => Method::GET,
                    HttpMethod::Post => Method::POST,
                    HttpMethod::Put => Method::PUT,
                    HttpMethod::Patch => Method::PATCH,
                    HttpMethod::Delete => Method::DELETE,
                },
                path: request.path,
                json_body: request.json_body.map(Into::into),
                authenticated: request.authenticated,
            };
            let reply = api.send(req).await?;
            let body = String::from_utf8(reply.body)
                .map_err(|_| Error::decode("response body is not UTF-8"))?;
            Ok(ApiResponse {
                status: reply.status,
                body,
                request_id: reply.request_id,
            })
        })
        .await
    }

    /// The latest quota the server reported in response headers, if any (no I/O).
    pub fn last_quota(&self) -> Option<Quota> {
        self.quota.get()
    }

    /// The offset of the server's clock from the device's, in milliseconds, once a
    /// response has been seen (no I/O).
    pub fn server_clock_offset_ms(&self) -> Option<i64> {
        self.api.transport.clock.offset_ms()
    }
}
