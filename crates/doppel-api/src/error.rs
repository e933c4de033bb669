//! The one error shape of the API, `{"error":{"code","message"}}`, made from the core's
//! [`Error`] (its codes are the CLI's and the window's), with the HTTP status each code means
//! and `Retry-After` where waiting helps.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use doppel_core::Error;
use serde_json::json;

/// An error on its way to the client.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub error: Error,
    /// A status other than the one the code means (a body that arrived too slowly).
    pub status: Option<StatusCode>,
}

impl From<Error> for ApiError {
    fn from(error: Error) -> ApiError {
        ApiError { error, status: None }
    }
}

/// The HTTP status of a core error code.
pub(crate) fn status_of(error: &Error) -> StatusCode {
    match error.code() {
        "unauthorized" => StatusCode::UNAUTHORIZED,
        "forbidden" => StatusCode::FORBIDDEN,
        "not_found" => StatusCode::NOT_FOUND,
        "rate_limited" | "budget_exhausted" | "busy" => StatusCode::TOO_MANY_REQUESTS,
        "too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_input" | "invalid_setting" | "empty" => StatusCode::BAD_REQUEST,
        "already_exists" => StatusCode::CONFLICT,
        "worker_gone" | "model_unavailable" | "chat_server" | "generation" => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The body of an error: `{"error":{"code":"…","message":"…"}}`.
pub(crate) fn body(error: &Error) -> serde_json::Value {
    json!({ "error": { "code": error.code(), "message": error.to_string() } })
}

/// Seconds after which the same request may succeed, for codes where waiting helps.
pub(crate) fn retry_after(error: &Error) -> Option<u64> {
    match error {
        Error::RateLimited { retry_after_s, .. } | Error::BudgetExhausted { retry_after_s, .. } => {
            Some((*retry_after_s).max(1))
        }
        Error::Busy(_) => Some(1),
        _ => None,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status.unwrap_or_else(|| status_of(&self.error));
        let mut response = (status, axum::Json(body(&self.error))).into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = retry_after(&self.error) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
