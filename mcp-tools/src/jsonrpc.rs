//! Answers malformed JSON-RPC with a JSON-RPC error.
//!
//! rmcp answers a body it cannot parse with a plain-text 415; a client
//! then cannot tell a parse error from a transport fault. This layer checks
//! POST bodies first and answers the JSON-RPC 2.0 way: -32700 for text that
//! is not JSON, -32600 for JSON that is not a JSON-RPC message.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Largest POST body accepted, as rmcp's own default.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// What [`reject_malformed`] read from a POST body, left in the request's
/// extensions for the layers inside it.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The message's `id`; `Null` when it has none (a notification).
    pub id: Value,
    /// The method of a request or notification; `None` for a response.
    pub method: Option<String>,
}

pub async fn reject_malformed(request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let bytes = match to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) if http_serve::BodyTimeout::caused(&e) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                Value::Null,
                -32600,
                format!("Invalid Request: {e}"),
            );
        }
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                Value::Null,
                -32600,
                format!("Invalid Request: body larger than {MAX_BODY_BYTES} bytes"),
            );
        }
    };
    let message: Value = match serde_json::from_slice(&bytes) {
        Ok(message) => message,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                Value::Null,
                -32700,
                format!("Parse error: {e}"),
            );
        }
    };
    if let Some(problem) = invalid_request(&message) {
        let id = message
            .get("id")
            .filter(|id| id.is_string() || id.is_number())
            .cloned()
            .unwrap_or(Value::Null);
        return error(
            StatusCode::BAD_REQUEST,
            id,
            -32600,
            format!("Invalid Request: {problem}"),
        );
    }
    parts.extensions.insert(Parsed {
        id: message.get("id").cloned().unwrap_or(Value::Null),
        method: message
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_owned),
    });
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Why `message` is not a JSON-RPC 2.0 request, notification or response.
fn invalid_request(message: &Value) -> Option<&'static str> {
    let Some(object) = message.as_object() else {
        return Some("expected a JSON object (batches are not supported)");
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Some(r#"missing "jsonrpc": "2.0""#);
    }
    let is_call = object.get("method").is_some_and(Value::is_string);
    let is_response = object.contains_key("result") || object.contains_key("error");
    if !is_call && !is_response {
        return Some(r#"needs a string "method" (or a "result"/"error" for a response)"#);
    }
    None
}

/// A JSON-RPC 2.0 error answer with HTTP status `status`.
pub fn error(status: StatusCode, id: Value, code: i32, message: String) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}
