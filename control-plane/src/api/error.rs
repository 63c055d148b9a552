//! How errors become HTTP answers: the one place that chooses a status and a
//! stable `error.code` for each [`Error`], and that keeps internal faults
//! (database, file system) in the log instead of the answer.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::error::{Error, ProviderFault};
use crate::model::{ErrorBody, ErrorResponse};

/// What a request can fail with: a domain [`Error`], or a fault of the HTTP
/// exchange itself.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The operation failed.
    #[error(transparent)]
    Domain(#[from] Error),
    /// No API key, or one that is not configured.
    #[error("missing or invalid API key: send `Authorization: Bearer KEY` or `X-API-Key: KEY`")]
    Unauthorized,
    /// The body or the query cannot be read as the endpoint's input.
    #[error("{0}")]
    BadInput(String),
    /// No route matches.
    #[error("no such endpoint; see /openapi.json")]
    NoSuchEndpoint,
}

impl ApiError {
    /// The HTTP status and the `error.code` of this error.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Domain(e) => status_and_code(e),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::BadInput(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::NoSuchEndpoint => (StatusCode::NOT_FOUND, "not_found"),
        }
    }
}

/// The HTTP status and `error.code` of a domain error. The codes are part of
/// the API: bad_request, unauthorized, forbidden, not_found, conflict, gone,
/// unsupported, tool_error, payload_too_large, upstream_error, timeout, internal.
pub fn status_and_code(e: &Error) -> (StatusCode, &'static str) {
    match e {
        Error::Invalid(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        Error::Forbidden { .. } | Error::NotAdmin { .. } => (StatusCode::FORBIDDEN, "forbidden"),
        Error::NotFound { .. } | Error::TemplateNotFound { .. } => {
            (StatusCode::NOT_FOUND, "not_found")
        }
        Error::WrongState { .. } | Error::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
        Error::Gone { .. } => (StatusCode::GONE, "gone"),
        Error::Unsupported { .. } => (StatusCode::NOT_IMPLEMENTED, "unsupported"),
        Error::Tool(_) => (StatusCode::BAD_REQUEST, "tool_error"),
        Error::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        Error::Provider(p) => match p.kind {
            ProviderFault::Refused => (StatusCode::BAD_REQUEST, "bad_request"),
            ProviderFault::Busy => (StatusCode::CONFLICT, "conflict"),
            ProviderFault::Lost => (StatusCode::GONE, "gone"),
            ProviderFault::Failed => (StatusCode::BAD_GATEWAY, "upstream_error"),
            ProviderFault::Timeout => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
        },
        Error::Store(_) | Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            ApiError::Domain(e @ (Error::Store(_) | Error::Internal(_))) => {
                tracing::error!(code, "{e}");
                "the control plane failed internally; its log has the details".to_string()
            }
            other => {
                if status.is_server_error() {
                    tracing::warn!(code, "{other}");
                }
                other.to_string()
            }
        };
        let body = ErrorResponse {
            error: ErrorBody {
                code: code.to_string(),
                message,
            },
        };
        (status, axum::Json(body)).into_response()
    }
}
