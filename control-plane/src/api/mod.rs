//! The HTTP API: routes, authentication, the JSON body extractor and the
//! OpenAPI document. Handlers live in [`handlers`] and stay thin.

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequest, Request, State};
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;
use utoipa::OpenApi;

use crate::config::ApiKey;
use crate::public_url::PublicUrl;
use crate::sandboxes::{Caller, Sandboxes};

pub mod error;
pub mod forward;
pub mod handlers;
pub mod templates;

pub use error::ApiError;

/// Largest request body accepted (a write-file carries the file).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    /// The sandboxes every request works on.
    pub sandboxes: Arc<Sandboxes>,
    /// The configured API keys; empty when the API is open (loopback only).
    pub keys: Arc<Vec<ApiKey>>,
    /// Where clients reach the API; exposed ports live under its domain.
    pub public_url: Arc<PublicUrl>,
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/sandboxes", get(handlers::list))
        .route("/sandboxes/create", post(handlers::create))
        .route("/sandboxes/connect", post(handlers::connect))
        .route("/sandboxes/run-command", post(handlers::run_command))
        .route("/sandboxes/expose-port", post(handlers::expose_port))
        .route("/sandboxes/write-file", post(handlers::write_file))
        .route("/sandboxes/read-file", post(handlers::read_file))
        .route("/sandboxes/{id}/status", get(handlers::status))
        .route("/sandboxes/{id}", delete(handlers::delete_sandbox))
        .route("/sandboxes/{id}/timeout", post(handlers::set_timeout))
        .route("/sandboxes/{id}/pause", post(handlers::pause))
        .route("/sandboxes/{id}/resume", post(handlers::resume))
        .route("/sandboxes/{id}/metrics", get(handlers::metrics))
        .route("/templates", get(templates::list).post(templates::build))
        .route("/templates/{name}", delete(templates::delete))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/health", get(handlers::health))
        .route("/openapi.json", get(openapi_json))
        // The sandbox's token guards it, not an API key (MCP clients carry
        // only the token).
        .route("/sandboxes/{id}/mcp", any(forward::mcp))
        .merge(protected)
        .fallback(|| async { ApiError::NoSuchEndpoint })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            forward::port_hosts,
        ))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// One debug line per request: method, path, status, time. Never headers,
/// which carry keys.
async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    tracing::debug!(
        %method,
        %path,
        status = resp.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    resp
}

/// Checks the API key and records who is calling. With no keys configured the
/// server is bound to loopback (enforced at startup) and everyone is admin.
async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let caller = if state.keys.is_empty() {
        Caller::default()
    } else {
        match presented_key(req.headers()).and_then(|k| find_key(&state.keys, k)) {
            Some(key) => Caller {
                user: key.user.clone(),
            },
            None => return ApiError::Unauthorized.into_response(),
        }
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    let auth = headers.get("authorization")?.to_str().ok()?;
    let (scheme, key) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

fn find_key<'a>(keys: &'a [ApiKey], presented: &str) -> Option<&'a ApiKey> {
    // Compare against every key in constant time so timing reveals nothing.
    let mut found = None;
    for k in keys {
        if bool::from(k.key.as_bytes().ct_eq(presented.as_bytes())) {
            found = Some(k);
        }
    }
    found
}

/// `axum::Json` whose rejections are our JSON errors (400), not plain text.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(e) => Err(ApiError::BadInput(e.body_text())),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "control-plane",
        description = "Creates and manages sandboxes for AI agents. Each sandbox serves MCP tools \
            (files, search, commands) at its `mcp_url`. Authenticate with `Authorization: Bearer KEY` \
            or `X-API-Key: KEY` when the server has API keys."
    ),
    paths(
        handlers::health,
        handlers::create,
        handlers::list,
        handlers::connect,
        handlers::run_command,
        handlers::expose_port,
        handlers::write_file,
        handlers::read_file,
        handlers::status,
        handlers::delete_sandbox,
        handlers::set_timeout,
        handlers::pause,
        handlers::resume,
        handlers::metrics,
        templates::list,
        templates::build,
        templates::delete,
    )
)]
struct ApiDoc;

/// The OpenAPI document, generated from the handlers and types.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

async fn openapi_json() -> impl IntoResponse {
    axum::Json(openapi())
}
