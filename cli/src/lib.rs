//! What the `tether` and `tether-bench` binaries share: the one place this crate builds
//! an [`ApiRequest`], so a field added to it is filled in here and nowhere else.

use tether::{ApiRequest, HttpMethod};

/// A request to `/api/v1/<path>` for `TetherClient::send`.
pub fn api_request(
    method: HttpMethod,
    path: &str,
    json_body: Option<String>,
    authenticated: bool,
) -> ApiRequest {
    ApiRequest {
        method,
        path: path.to_string(),
        json_body,
        authenticated,
        idempotency_key: None,
    }
}
