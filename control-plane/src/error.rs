//! The crate's one error type, and how it becomes an HTTP answer.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Everything the control plane can fail with. Each variant maps to one HTTP
/// status in [`Error::status`], so handlers just use `?`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or asks for something impossible.
    #[error("{0}")]
    BadRequest(String),
    /// No API key, or one that is not configured.
    #[error("missing or invalid API key: send `Authorization: Bearer KEY` or `X-API-Key: KEY`")]
    Unauthorized,
    /// The key is valid but bound to another user.
    #[error("{0}")]
    Forbidden(String),
    /// No such sandbox (or it belongs to a user this key cannot see).
    #[error("{0}")]
    NotFound(String),
    /// The sandbox is in the wrong state for this operation.
    #[error("{0}")]
    Conflict(String),
    /// The provider no longer has the sandbox (it was killed, or lost):
    /// only delete is left.
    #[error("{0}")]
    Gone(String),
    /// The provider cannot do this at all.
    #[error("the {provider} provider does not support {operation}")]
    Unsupported {
        provider: &'static str,
        operation: &'static str,
    },
    /// A tool in the sandbox answered with an error (bad path, binary file, ...).
    #[error("{0}")]
    Tool(String),
    /// The provider or the sandbox failed.
    #[error("{0}")]
    Upstream(String),
    /// The provider or the sandbox did not answer in time.
    #[error("{0}")]
    Timeout(String),
    /// The control plane's own fault (database, file system).
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) | Error::Tool(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Gone(_) => StatusCode::GONE,
            Error::Unsupported { .. } => StatusCode::NOT_IMPLEMENTED,
            Error::Upstream(_) => StatusCode::BAD_GATEWAY,
            Error::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable machine-readable code for the `error.code` field.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest(_) => "bad_request",
            Error::Unauthorized => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::Gone(_) => "gone",
            Error::Unsupported { .. } => "unsupported",
            Error::Tool(_) => "tool_error",
            Error::Upstream(_) => "upstream_error",
            Error::Timeout(_) => "timeout",
            Error::Internal(_) => "internal",
        }
    }

    pub(crate) fn sandbox_not_found(id: &str) -> Self {
        Error::NotFound(format!("sandbox {id:?} not found"))
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Internal(format!("database: {e}"))
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(code = self.code(), "{self}");
        }
        let body = json!({ "error": { "code": self.code(), "message": self.to_string() } });
        (status, axum::Json(body)).into_response()
    }
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
