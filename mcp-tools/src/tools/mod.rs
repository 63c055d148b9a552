//! The MCP tools, one file per family, and the server handler that lists
//! and calls them.

pub mod arguments;
mod command;
mod edit;
mod files;
mod grep;
mod jobs;
mod media;
mod patch;
mod paths;
mod search;
mod terminal;
mod walk;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler};
use serde::Serialize;

use crate::error::{ToolError, ToolResult};
use crate::process::Jobs;
use crate::workspace::Workspace;

pub use media::ImageLimits;

/// What every tool call shares: the workspace, the background jobs, limits.
#[derive(Debug)]
pub struct ToolContext {
    pub workspace: Workspace,
    pub jobs: Jobs,
    /// Largest file read_file returns whole.
    pub max_read_bytes: u64,
    /// Limits on images read_file returns.
    pub image_limits: ImageLimits,
    /// Held by edit_file from its read to its rename, and by write_file, so
    /// that two concurrent edits of one file cannot lose one of them.
    pub file_writes: std::sync::Mutex<()>,
}

impl ToolContext {
    /// Takes the file-write lock (a panic elsewhere does not poison it).
    pub fn lock_writes(&self) -> std::sync::MutexGuard<'_, ()> {
        self.file_writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The MCP server handler. Cheap to clone: one per session.
#[derive(Clone)]
pub struct Tools {
    ctx: Arc<ToolContext>,
    router: Arc<ToolRouter<Tools>>,
    /// The tools/list answer, built once.
    listed: Arc<Vec<Tool>>,
    /// Each tool's listed input schema, which its arguments are checked
    /// and repaired against before the call (see [`arguments`]).
    input_schemas: Arc<HashMap<String, Arc<JsonObject>>>,
}

impl Tools {
    pub fn new(ctx: Arc<ToolContext>) -> Self {
        let router = Self::files_router()
            + Self::edit_router()
            + Self::patch_router()
            + Self::paths_router()
            + Self::search_router()
            + Self::grep_router()
            + Self::command_router()
            + Self::jobs_router()
            + Self::terminal_router();
        let listed: Vec<Tool> = router.list_all().into_iter().map(compact).collect();
        let input_schemas = listed
            .iter()
            .map(|t| (t.name.to_string(), t.input_schema.clone()))
            .collect();
        Tools {
            ctx,
            router: Arc::new(router),
            listed: Arc::new(listed),
            input_schemas: Arc::new(input_schemas),
        }
    }
}

const INSTRUCTIONS: &str = "Tools to work in a sandbox: read, write and list files in the \
workspace, search file names, and run shell commands. Paths are relative to the workspace \
root; file tools refuse paths outside it, and every path a tool returns is relative to the \
root, ready to pass to another tool. Optional parameters may be left out or sent as null.";

impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("mcp-tools", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS.to_owned())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, rmcp::ErrorData> {
        Ok(ListToolsResult::with_all_items(self.listed.to_vec()))
    }

    fn get_tool(&self, name: &str) -> Option<rmcp::model::Tool> {
        self.router.get(name).cloned()
    }

    async fn call_tool(
        &self,
        mut request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, rmcp::ErrorData> {
        let started = Instant::now();
        let name = request.name.clone();
        // Arguments are checked and repaired against the listed schema;
        // those that do not fit come back as a tool error the model can
        // read and fix, not as a protocol fault.
        let checked = match self.input_schemas.get(&*name) {
            Some(schema) => arguments::normalize(&name, schema, request.arguments.take()).map(Some),
            None => Ok(request.arguments.take()),
        };
        let checked_paths = checked
            .as_ref()
            .ok()
            .and_then(Option::as_ref)
            .map(path_arguments);
        let result = match checked {
            Ok(arguments) => {
                request.arguments = arguments;
                self.router
                    .call(ToolCallContext::new(self, request, context))
                    .await
            }
            Err(e) => Ok(CallToolResult::from(ToolError::InvalidArgument(e.to_string())).into()),
        };
        let result = match result {
            Ok(CallToolResponse::Complete(mut r)) if r.is_error == Some(true) => {
                self.suggest_paths(&mut r, checked_paths.as_ref());
                Ok(CallToolResponse::Complete(r))
            }
            other => other,
        };
        let outcome = match &result {
            Ok(CallToolResponse::Complete(r)) if r.is_error == Some(true) => "tool_error",
            Ok(_) => "ok",
            Err(_) => "protocol_error",
        };
        tracing::info!(
            tool = %name,
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            outcome,
            "tool call"
        );
        result
    }
}

/// Arguments that name a workspace path, by the names the tools use.
const PATH_ARGUMENTS: [&str; 4] = ["path", "source", "destination", "cwd"];

fn path_arguments(arguments: &JsonObject) -> Vec<String> {
    PATH_ARGUMENTS
        .iter()
        .filter_map(|name| arguments.get(*name)?.as_str().map(str::to_owned))
        .collect()
}

impl Tools {
    /// Adds "did you mean" to a failed call for each path argument that
    /// names nothing while a name differing only by Unicode normalisation,
    /// a Unicode space or letter case exists
    /// ([`Workspace::near_miss`](crate::workspace::Workspace::near_miss)).
    fn suggest_paths(&self, result: &mut CallToolResult, paths: Option<&Vec<String>>) {
        let hints: Vec<String> = paths
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let twin = self.ctx.workspace.near_miss(p)?;
                Some(format!(
                    "'{p}' does not exist; did you mean '{twin}'? (the names differ only in \
                     Unicode normalisation, spaces or letter case)"
                ))
            })
            .collect();
        if hints.is_empty() {
            return;
        }
        let text = result.content.iter_mut().find_map(|c| match c {
            ContentBlock::Text(text) => Some(text),
            _ => None,
        });
        if let Some(text) = text {
            text.text.push_str(&format!("\n{}", hints.join("\n")));
        }
    }
}

/// Shapes a tool's schemas for the clients that read them: the input
/// schema made portable ([`arguments::portable_schema`]: one JSON type per
/// parameter, no references), without a description of its own. The output schema keeps its structure and
/// types, for clients that validate `structuredContent`, and loses what
/// only words are for (`description`, `minimum`, integer `format`,
/// `$schema`): models do not read it, and tools/list stays small (under
/// 24 KB) for the clients that send all of it on every turn.
fn compact(mut tool: Tool) -> Tool {
    let mut input = arguments::portable_schema(&tool.input_schema);
    // The arguments type's own doc is for programmers; the tool's
    // description is what a model reads about the whole call.
    input.remove("description");
    tool.input_schema = Arc::new(input);
    tool.output_schema = tool.output_schema.as_ref().map(|schema| {
        let mut schema = (**schema).clone();
        schema.remove("$schema");
        structure_only(&mut schema);
        Arc::new(schema)
    });
    tool
}

/// Removes the keywords of `schema` (and of the schemas in it) that do not
/// constrain structure or types. Members of `properties` and `$defs` are
/// names, not keywords, and are kept.
fn structure_only(schema: &mut JsonObject) {
    for keyword in ["description", "title", "minimum", "format"] {
        schema.remove(keyword);
    }
    for (key, value) in schema.iter_mut() {
        match value {
            serde_json::Value::Object(inner) if key == "properties" || key == "$defs" => inner
                .values_mut()
                .filter_map(serde_json::Value::as_object_mut)
                .for_each(structure_only),
            serde_json::Value::Object(inner) => structure_only(inner),
            serde_json::Value::Array(items) => items
                .iter_mut()
                .filter_map(serde_json::Value::as_object_mut)
                .for_each(structure_only),
            _ => {}
        }
    }
}

/// The default `path` of the tools that take a folder: the workspace root.
fn default_dot() -> String {
    ".".to_owned()
}

/// The default of a boolean parameter that is on unless turned off.
fn default_true() -> bool {
    true
}

/// A successful tool result: `text` for the model to read, `data` as the
/// structured content matching the tool's output schema.
pub(crate) fn success<T: Serialize>(text: String, data: &T) -> CallToolResult {
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = serde_json::to_value(data).ok();
    result
}

/// Runs blocking file I/O off the async workers.
pub(crate) async fn blocking<F>(f: F) -> ToolResult
where
    F: FnOnce() -> ToolResult + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ToolError::Failed(format!("internal error: {e}"))))
}

/// The output schema of a tool, from the type of its structured content.
pub(crate) fn schema<T: schemars::JsonSchema + 'static>() -> Arc<JsonObject> {
    rmcp::handler::server::common::schema_for_output::<T>()
}
