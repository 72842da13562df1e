//! The requests area of the facade: `send()` for endpoints Tether has no typed method
//! for, and the records it takes and returns.

use std::sync::Arc;

use super::TetherClient;
use crate::error::TetherError;
use crate::runtime::CancelHandle;

/// HTTP methods for [`TetherClient::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum HttpMethod {
    /// `GET`: retried after a failure.
    Get,
    /// `POST`: sent with an `Idempotency-Key` (the caller's or a fresh one) and retried
    /// with it.
    Post,
    /// `PUT`: retried after a failure.
    Put,
    /// `PATCH`: retried after a failure only with an `idempotency_key`, or if the request
    /// never left the device.
    Patch,
    /// `DELETE`: retried after a failure.
    Delete,
}

/// A request to an endpoint of the backend that Tether has no typed method for.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ApiRequest {
    /// The method.
    pub method: HttpMethod,
    /// Path under `/api/v1/`, e.g. `"quota"` or `"jobs/j_123"`. `auth/...` is refused:
    /// the session is the client's to manage.
    pub path: String,
    /// A JSON body, sent as `application/json`.
    #[uniffi(default = None)]
    pub json_body: Option<String>,
    /// Whether to send the session's access token (and refresh it as needed).
    #[uniffi(default = true)]
    pub authenticated: bool,
    /// The `Idempotency-Key` to send, e.g. one the app stored before the first attempt so
    /// that a retry after a relaunch is charged once. `None`: a fresh one for a POST.
    /// It must be a valid header value (visible ASCII, e.g. a UUID); otherwise the call
    /// fails with `InvalidInput` and nothing is sent.
    #[uniffi(default = None)]
    pub idempotency_key: Option<String>,
}

impl ApiRequest {
    /// A request with the defaults: authenticated, no body, no caller-chosen key.
    pub fn new(method: HttpMethod, path: impl Into<String>) -> Self {
        ApiRequest {
            method,
            path: path.into(),
            json_body: None,
            authenticated: true,
            idempotency_key: None,
        }
    }
}

/// A successful (2xx) response.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ApiResponse {
    /// The HTTP status.
    pub status: u16,
    /// The body as UTF-8 text (JSON for every endpoint of the contract).
    pub body: String,
    /// The backend's `X-Request-ID`, if it sent one.
    pub request_id: Option<String>,
}

#[uniffi::export]
impl TetherClient {
    /// Sends a request through the full pipeline (auth, idempotency key, retries, error
    /// mapping, quota headers) to an endpoint Tether has no typed method for.
    #[uniffi::method(default(cancel = None))]
    pub async fn send(
        &self,
        request: ApiRequest,
        cancel: Option<Arc<CancelHandle>>,
    ) -> Result<ApiResponse, TetherError> {
        self.call(cancel, |c| async move { c.send(request).await })
            .await
    }

    /// The offset of the server's clock from the device's, in milliseconds, once a
    /// response has been seen (no I/O).
    pub fn server_clock_offset_ms(&self) -> Option<i64> {
        self.core.server_clock_offset_ms()
    }
}
