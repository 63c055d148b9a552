//! `/templates`: the local templates sandboxes run on (list, build, delete).
//! A build streams its output as newline-delimited JSON ([`BuildEvent`])
//! while it runs; building and deleting take a key bound to no user.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::{ApiError, ApiJson, AppState};
use crate::error::Error;
use crate::ids::TemplateName;
use crate::model::*;
use crate::provider::TemplateSpec;
use crate::sandboxes::Caller;

/// Refuses callers whose key is bound to a user.
fn require_unbound(caller: &Caller, action: &'static str) -> Result<(), Error> {
    match &caller.user {
        Some(user) => Err(Error::NotAdmin {
            action,
            user: user.clone(),
        }),
        None => Ok(()),
    }
}

/// `GET /templates`: the templates sandboxes can be created from.
#[utoipa::path(
    get, path = "/templates",
    responses(
        (status = 200, body = TemplateList), (status = 401, body = ErrorResponse),
        (status = 501, description = "The provider has no local templates", body = ErrorResponse),
    )
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<TemplateList>, ApiError> {
    let templates = state.sandboxes.provider().templates().await?;
    Ok(Json(TemplateList { templates }))
}

/// `POST /templates`: builds a template with mmdebstrap. The answer (200,
/// `application/x-ndjson`) streams the build's output as `{"log": LINE}`
/// lines and ends with `{"template": TemplateInfo}`, or `{"error":
/// {code, message}}` when the build fails (then nothing of it is kept).
/// Requests that cannot start a build get a plain error answer instead.
#[utoipa::path(
    post, path = "/templates", request_body = BuildTemplateRequest,
    responses(
        (status = 200, description = "Newline-delimited BuildEvent lines", body = BuildEvent, content_type = "application/x-ndjson"),
        (status = 400, body = ErrorResponse), (status = 401, body = ErrorResponse),
        (status = 403, description = "The key is bound to a user", body = ErrorResponse),
        (status = 409, description = "A template of that name exists", body = ErrorResponse),
        (status = 501, body = ErrorResponse),
    )
)]
pub async fn build(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<BuildTemplateRequest>,
) -> Result<Response, ApiError> {
    require_unbound(&caller, "build templates")?;
    let name = TemplateName::parse(&req.name).map_err(Error::Invalid)?;
    let sandboxes = state.sandboxes.clone();
    // What can be refused at once is, with a plain error answer.
    if sandboxes
        .provider()
        .templates()
        .await?
        .iter()
        .any(|t| t.name == name.as_str())
    {
        return Err(Error::Conflict(format!(
            "template {name} exists; delete it first to build it again"
        ))
        .into());
    }
    let (events, body) = tokio::sync::mpsc::unbounded_channel::<Result<Bytes, std::io::Error>>();
    let (log, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let forward = {
        let events = events.clone();
        tokio::spawn(async move {
            while let Some(line) = lines.recv().await {
                let _ = events.send(Ok(event_line(&BuildEvent::Log(line))));
            }
        })
    };
    // The build runs to its end even if the client leaves: an interrupted
    // build would only be cleaned up.
    tokio::spawn(async move {
        let spec = TemplateSpec {
            name,
            packages: req.packages,
            vscode: req.vscode,
        };
        let built = sandboxes.provider().build_template(spec, log).await;
        let _ = forward.await;
        let last = match built {
            Ok(info) => BuildEvent::Template(info),
            Err(e) => {
                let (_, code) = super::error::status_and_code(&e);
                tracing::warn!("template build failed: {e}");
                BuildEvent::Error(ErrorBody {
                    code: code.into(),
                    message: e.to_string(),
                })
            }
        };
        let _ = events.send(Ok(event_line(&last)));
    });
    let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(body);
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// `DELETE /templates/{name}`: removes a template no sandbox uses.
#[utoipa::path(
    delete, path = "/templates/{name}", params(("name" = String, Path)),
    responses(
        (status = 200, body = DeleteResponse),
        (status = 403, description = "The key is bound to a user", body = ErrorResponse),
        (status = 404, body = ErrorResponse),
        (status = 409, description = "A sandbox uses it", body = ErrorResponse),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<DeleteResponse>, ApiError> {
    require_unbound(&caller, "delete templates")?;
    let name = TemplateName::parse(&name).map_err(|_| Error::TemplateNotFound { name })?;
    state.sandboxes.provider().delete_template(&name).await?;
    Ok(Json(DeleteResponse { success: true }))
}

/// One NDJSON line.
fn event_line(event: &BuildEvent) -> Bytes {
    let mut line = serde_json::to_vec(event).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}
