//! One function per endpoint: unpack the request, call [`Sandboxes`] (or
//! [`tools`] for commands and files), wrap the answer. The
//! `#[utoipa::path]` attributes make the OpenAPI document.
//!
//! [`Sandboxes`]: crate::sandboxes::Sandboxes

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};

use super::{ApiError, ApiJson, AppState};
use crate::error::Error;
use crate::ids::SandboxId;
use crate::model::*;
use crate::sandboxes::{Caller, ListQuery};
use crate::tools;

/// What every handler answers.
type Result<T, E = ApiError> = std::result::Result<T, E>;

/// The id a request names. One that cannot be an id is a sandbox that does
/// not exist, like any other unknown id.
fn sandbox_id(id: &str) -> Result<SandboxId, Error> {
    SandboxId::parse(id).ok_or_else(|| Error::NotFound { id: id.to_string() })
}

/// Runs a lifecycle change to its end even if the client hangs up (which
/// drops the handler), so no half-made or half-stopped sandbox is left behind.
async fn to_completion<T: Send + 'static>(
    work: impl Future<Output = Result<T, Error>> + Send + 'static,
) -> Result<T> {
    Ok(tokio::spawn(work)
        .await
        .map_err(|e| Error::Internal(format!("operation failed: {e}")))??)
}

/// `GET /health`: the service answers, and with which provider.
#[utoipa::path(get, path = "/health", responses((status = 200, body = HealthResponse)))]
pub async fn health(State(state): State<AppState>) -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        provider: state.sandboxes.provider().name().into(),
        isolated: state.sandboxes.provider().capabilities().isolated,
        protections: state
            .sandboxes
            .provider()
            .protections()
            .into_iter()
            .map(|(name, holds)| (name.to_string(), holds))
            .collect(),
        environment: state.sandboxes.provider().environment(),
    })
}

/// `POST /sandboxes/create`: creates a sandbox and answers once it runs.
#[utoipa::path(
    post, path = "/sandboxes/create", request_body = CreateSandboxRequest,
    responses(
        (status = 200, description = "Created and running", body = SandboxInfo),
        (status = 400, body = ErrorResponse), (status = 401, body = ErrorResponse),
        (status = 409, description = "Too many running sandboxes", body = ErrorResponse),
        (status = 502, body = ErrorResponse),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<CreateSandboxRequest>,
) -> Result<Json<SandboxInfo>> {
    let sandboxes = state.sandboxes.clone();
    Ok(Json(
        to_completion(async move { sandboxes.create(&caller, req).await }).await?,
    ))
}

/// `GET /sandboxes`: one page of the sandboxes the caller may see.
#[utoipa::path(
    get, path = "/sandboxes",
    params(
        ("user_id" = Option<String>, Query, description = "Only this user's sandboxes"),
        ("state" = Option<String>, Query, description = "creating, running, paused or gone"),
        ("metadata.KEY" = Option<String>, Query, description = "Only sandboxes whose metadata KEY has this value (repeatable with different keys)"),
        ("limit" = Option<usize>, Query, description = "Page size, 1..=1000, default 100"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses((status = 200, body = ListResponse), (status = 400, body = ErrorResponse))
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<ListResponse>> {
    let mut q = ListQuery::default();
    for (k, v) in pairs {
        match k.as_str() {
            "user_id" => q.user_id = Some(v),
            "state" => {
                q.state = Some(SandboxState::parse(&v).ok_or_else(|| {
                    ApiError::BadInput("state must be creating, running, paused or gone".into())
                })?)
            }
            "limit" => {
                q.limit = Some(
                    v.parse()
                        .map_err(|_| ApiError::BadInput("limit must be a number".into()))?,
                )
            }
            "cursor" => q.cursor = Some(v),
            _ => match k.strip_prefix("metadata.") {
                Some(key) if !key.is_empty() => q.metadata.push((key.to_string(), v)),
                _ => return Err(ApiError::BadInput(format!("unknown query parameter {k:?}"))),
            },
        }
    }
    Ok(Json(state.sandboxes.list(&caller, q).await?))
}

/// `POST /sandboxes/connect`: resumes a paused sandbox, or pushes a running one's expiry forward.
#[utoipa::path(
    post, path = "/sandboxes/connect", request_body = SandboxIdRequest,
    responses(
        (status = 200, description = "Running (resumed if it was paused); expiry pushed forward", body = LifecycleResponse),
        (status = 404, body = ErrorResponse), (status = 502, body = ErrorResponse),
    )
)]
pub async fn connect(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<SandboxIdRequest>,
) -> Result<Json<LifecycleResponse>> {
    let id = sandbox_id(&req.sandbox_id)?;
    let sandboxes = state.sandboxes.clone();
    let sandbox = to_completion(async move { sandboxes.connect(&caller, &id).await }).await?;
    Ok(Json(LifecycleResponse {
        success: true,
        sandbox,
    }))
}

/// `POST /sandboxes/run-command`: runs a shell command in the sandbox.
#[utoipa::path(
    post, path = "/sandboxes/run-command", request_body = RunCommandRequest,
    responses(
        (status = 200, description = "The command ran (see exit_code) or started in the background", body = RunCommandResponse),
        (status = 400, body = ErrorResponse), (status = 404, body = ErrorResponse),
        (status = 409, description = "The sandbox is not running", body = ErrorResponse),
        (status = 502, body = ErrorResponse), (status = 504, body = ErrorResponse),
    )
)]
pub async fn run_command(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<RunCommandRequest>,
) -> Result<Json<RunCommandResponse>> {
    let id = sandbox_id(&req.sandbox_id)?;
    Ok(Json(
        tools::run_command(&state.sandboxes, &caller, &id, req).await?,
    ))
}

/// `POST /sandboxes/expose-port`: the URL of a port inside the sandbox.
#[utoipa::path(
    post, path = "/sandboxes/expose-port", request_body = ExposePortRequest,
    responses((status = 200, body = ExposePortResponse), (status = 404, body = ErrorResponse))
)]
pub async fn expose_port(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<ExposePortRequest>,
) -> Result<Json<ExposePortResponse>> {
    let id = sandbox_id(&req.sandbox_id)?;
    let url = state.sandboxes.expose_port(&caller, &id, req.port)?;
    Ok(Json(ExposePortResponse { url }))
}

/// `POST /sandboxes/write-file`: creates or replaces a text file in the workspace.
#[utoipa::path(
    post, path = "/sandboxes/write-file", request_body = FileOperationRequest,
    responses(
        (status = 200, body = FileOperationResponse), (status = 400, body = ErrorResponse),
        (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse),
    )
)]
pub async fn write_file(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<FileOperationRequest>,
) -> Result<Json<FileOperationResponse>> {
    let id = sandbox_id(&req.sandbox_id)?;
    tools::write_file(&state.sandboxes, &caller, &id, req).await?;
    Ok(Json(FileOperationResponse {
        content: None,
        encoding: None,
        success: true,
    }))
}

/// `POST /sandboxes/read-file`: a whole text file of the workspace.
#[utoipa::path(
    post, path = "/sandboxes/read-file", request_body = FileOperationRequest,
    responses(
        (status = 200, body = FileOperationResponse), (status = 400, body = ErrorResponse),
        (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse),
    )
)]
pub async fn read_file(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<FileOperationRequest>,
) -> Result<Json<FileOperationResponse>> {
    let id = sandbox_id(&req.sandbox_id)?;
    let text = tools::read_file(&state.sandboxes, &caller, &id, req).await?;
    Ok(Json(FileOperationResponse {
        content: Some(text.content),
        encoding: Some(text.encoding),
        success: true,
    }))
}

/// `GET /sandboxes/{id}/status`: the sandbox as it is now.
#[utoipa::path(
    get, path = "/sandboxes/{id}/status", params(("id" = String, Path)),
    responses(
        (status = 200, description = "`status` and `sandbox_id`, as in the original server, and the rest", body = SandboxInfo),
        (status = 404, body = ErrorResponse),
    )
)]
pub async fn status(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<SandboxInfo>> {
    let id = sandbox_id(&id)?;
    Ok(Json(state.sandboxes.status(&caller, &id).await?))
}

/// `GET /sandboxes/{id}/metrics`: what a running sandbox uses now (its
/// cgroup's counters and its workspace's size, for the local provider; the
/// latest sample of E2B's `GET /sandboxes/{sandboxID}/metrics` for e2b).
#[utoipa::path(
    get, path = "/sandboxes/{id}/metrics", params(("id" = String, Path)),
    responses(
        (status = 200, description = "What the running sandbox uses now", body = MetricsResponse),
        (status = 404, body = ErrorResponse),
        (status = 409, description = "The sandbox is not running", body = ErrorResponse),
        (status = 501, description = "The provider cannot tell", body = ErrorResponse),
    )
)]
pub async fn metrics(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<MetricsResponse>> {
    let id = sandbox_id(&id)?;
    let m = state.sandboxes.metrics(&caller, &id).await?;
    Ok(Json(MetricsResponse {
        cpu_used_secs: m.cpu_usec.map(|us| us as f64 / 1e6),
        cpu_used_pct: m.cpu_used_pct,
        cpu_count: m.cpu_count,
        mem_used: m.memory_bytes,
        mem_total: m.memory_limit_bytes,
        processes: m.processes,
        process_limit: m.process_limit,
        processes_refused: m.processes_refused,
        disk_used: m.disk_bytes,
        disk_total: m.disk_limit_bytes,
        oom_kills: m.oom_kills,
    }))
}

/// `DELETE /sandboxes/{id}`: removes the sandbox and its files.
#[utoipa::path(
    delete, path = "/sandboxes/{id}", params(("id" = String, Path)),
    responses(
        (status = 200, body = DeleteResponse),
        (status = 404, description = "Unknown, or already deleted", body = ErrorResponse),
    )
)]
pub async fn delete_sandbox(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<DeleteResponse>> {
    let id = sandbox_id(&id)?;
    let sandboxes = state.sandboxes.clone();
    to_completion(async move { sandboxes.delete(&caller, &id).await }).await?;
    Ok(Json(DeleteResponse { success: true }))
}

/// `POST /sandboxes/{id}/timeout`: sets the inactivity timeout, counted from now.
#[utoipa::path(
    post, path = "/sandboxes/{id}/timeout", params(("id" = String, Path)),
    request_body = SetTimeoutRequest,
    responses((status = 200, body = SandboxInfo), (status = 400, body = ErrorResponse), (status = 404, body = ErrorResponse))
)]
pub async fn set_timeout(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<SetTimeoutRequest>,
) -> Result<Json<SandboxInfo>> {
    let id = sandbox_id(&id)?;
    Ok(Json(
        state
            .sandboxes
            .set_timeout(&caller, &id, req.timeout_secs)
            .await?,
    ))
}

/// `POST /sandboxes/{id}/pause`: stops the sandbox, keeping its files.
#[utoipa::path(
    post, path = "/sandboxes/{id}/pause", params(("id" = String, Path)),
    responses(
        (status = 200, body = LifecycleResponse), (status = 404, body = ErrorResponse),
        (status = 409, description = "Not running", body = ErrorResponse),
        (status = 501, description = "The provider cannot pause", body = ErrorResponse),
    )
)]
pub async fn pause(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<LifecycleResponse>> {
    let id = sandbox_id(&id)?;
    let sandboxes = state.sandboxes.clone();
    let sandbox = to_completion(async move { sandboxes.pause(&caller, &id).await }).await?;
    Ok(Json(LifecycleResponse {
        success: true,
        sandbox,
    }))
}

/// `POST /sandboxes/{id}/resume`: starts a paused sandbox again.
#[utoipa::path(
    post, path = "/sandboxes/{id}/resume", params(("id" = String, Path)),
    responses(
        (status = 200, body = LifecycleResponse), (status = 404, body = ErrorResponse),
        (status = 409, description = "Not paused", body = ErrorResponse),
    )
)]
pub async fn resume(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<LifecycleResponse>> {
    let id = sandbox_id(&id)?;
    let sandboxes = state.sandboxes.clone();
    let sandbox = to_completion(async move { sandboxes.resume(&caller, &id).await }).await?;
    Ok(Json(LifecycleResponse {
        success: true,
        sandbox,
    }))
}
