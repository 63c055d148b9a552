//! The one error type of the tools, and its mapping to MCP tool results.
//!
//! Every refusal or failure a model can act on becomes a tool result with
//! `isError: true` and a message that says what to do next. JSON-RPC errors
//! are left for protocol faults.

use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock};

/// Why a tool call could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("'{path}' is outside the workspace ({reason}); use a path inside {root}")]
    OutsideWorkspace {
        path: String,
        reason: &'static str,
        root: String,
    },
    #[error("'{0}' does not exist")]
    NotFound(String),
    #[error("'{0}' is a directory, not a file; use list_directory to see what it holds")]
    IsADirectory(String),
    #[error("'{0}' is not a directory")]
    NotADirectory(String),
    #[error(
        "'{path}' looks like a binary file ({size} bytes); it is not shown as text. \
         Use run_command with a tool such as `xxd` or `file` to inspect it"
    )]
    Binary { path: String, size: u64 },
    #[error(
        "'{path}' is {size} bytes, above the {limit}-byte limit for reading a whole file. \
         Read part of it with offset and limit (e.g. offset=1, limit=500), or search it with search_files/run_command"
    )]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("{action} '{path}' failed: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
}

impl ToolError {
    /// Maps an I/O error on `path` to the most useful variant: a missing
    /// file or a wrong kind says so plainly instead of quoting errno.
    pub fn io(action: &'static str, path: &str, source: std::io::Error) -> Self {
        use std::io::ErrorKind;
        match source.kind() {
            ErrorKind::NotFound => ToolError::NotFound(path.to_owned()),
            ErrorKind::IsADirectory => ToolError::IsADirectory(path.to_owned()),
            ErrorKind::NotADirectory => ToolError::NotADirectory(path.to_owned()),
            _ => ToolError::Io {
                action,
                path: path.to_owned(),
                source,
            },
        }
    }
}

impl From<ToolError> for CallToolResult {
    fn from(err: ToolError) -> Self {
        CallToolResult::error(vec![ContentBlock::text(format!("Error: {err}"))])
    }
}

impl IntoCallToolResult for ToolError {
    fn into_call_tool_result(self) -> Result<CallToolResponse, rmcp::ErrorData> {
        Ok(CallToolResult::from(self).into())
    }
}

/// The result type of every tool function.
pub type ToolResult = Result<CallToolResult, ToolError>;
