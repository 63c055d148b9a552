//! MCP sessions from the control plane to running sandboxes.
//!
//! Every provider exposes the same mcp-tools endpoint, so commands and files
//! take this one path. Sessions are kept per sandbox and reused; a session
//! whose transport broke is dropped and opened again once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig};
use rmcp::service::{RoleClient, RunningService, ServiceExt};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransport, StreamableHttpClientTransportConfig,
};
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use crate::error::{Error, ProviderError, Result};
use crate::ids::SandboxId;

type Session = RunningService<RoleClient, ClientConfig>;

/// Largest tool arguments sent, in bytes of JSON: mcp-tools accepts
/// requests of up to 4 MiB, and the JSON-RPC envelope needs a little room.
const MAX_CALL_BYTES: usize = 4 * 1024 * 1024 - 4096;

/// How to reach one sandbox's MCP endpoint.
#[derive(Clone)]
pub struct Target {
    /// The sandbox, which names its session in the pool.
    pub sandbox_id: SandboxId,
    /// Its streamable-HTTP MCP endpoint.
    pub url: String,
    /// The bearer token its mcp-tools requires.
    pub token: String,
    /// Headers besides `Authorization` that `url` needs.
    pub headers: BTreeMap<String, String>,
    /// A Unix socket on this machine to reach the server through instead of
    /// `url`'s host (the path of `url` still applies).
    pub socket: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Target {
    // The token never reaches a log, even through Debug.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("sandbox_id", &self.sandbox_id)
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// What a successful tool call gave back.
pub struct ToolOutput {
    /// `structuredContent`, or `null` when the tool sent only text.
    pub structured: Value,
    /// The text blocks joined.
    pub text: String,
}

/// Open sessions, one per sandbox.
#[derive(Default)]
pub struct McpPool {
    sessions: Mutex<HashMap<SandboxId, Arc<PooledSession>>>,
}

struct PooledSession {
    /// The URL + token it was opened for; a resumed sandbox may have a new URL.
    url: String,
    token: String,
    session: Session,
}

impl McpPool {
    /// Calls `tool` in the sandbox with `args`, giving up after `timeout`.
    /// A tool's own failure (isError) becomes [`Error::Tool`].
    pub async fn call(
        &self,
        target: &Target,
        tool: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<ToolOutput> {
        let args = match args {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        // mcp-tools refuses a larger request with a 413 that names no
        // request, which MCP clients cannot match to the call: said here.
        let size = serde_json::to_vec(&args).map_or(0, |v| v.len());
        if size > MAX_CALL_BYTES {
            return Err(Error::TooLarge(format!(
                "the {tool} call is {size} bytes; a sandbox accepts at most {MAX_CALL_BYTES} \
                 (write large files in parts, or with a command)"
            )));
        }
        let work = async {
            let mut retried = false;
            loop {
                let session = self.session(target).await?;
                let params =
                    CallToolRequestParams::new(tool.to_string()).with_arguments(args.clone());
                match session.session.call_tool(params).await {
                    Ok(result) => return tool_output(result),
                    Err(e) => {
                        self.forget_session(&target.sandbox_id, &session).await;
                        // A broken or expired session (e.g. the sandbox was restarted
                        // behind our back): forget it and try once more, but only when
                        // running the call twice is harmless.
                        if retried || !tool_is_idempotent(tool) {
                            return Err(ProviderError::failed(format!(
                                "sandbox {} did not answer the {tool} call: {e}",
                                target.sandbox_id
                            ))
                            .into());
                        }
                        retried = true;
                    }
                }
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(ProviderError::timeout(format!(
                "sandbox {} did not answer the {tool} call within {}s",
                target.sandbox_id,
                timeout.as_secs()
            ))
            .into()),
        }
    }

    /// Closes and forgets the session of a sandbox (on pause and delete).
    pub async fn forget(&self, sandbox_id: &SandboxId) {
        let removed = self.sessions.lock().await.remove(sandbox_id);
        if let Some(s) = removed {
            // Wait, so the session ends before the provider stops the sandbox.
            close(s).await;
        }
    }

    /// Closes every session (on shutdown).
    pub async fn close_all(&self) {
        let all: Vec<_> = self.sessions.lock().await.drain().map(|(_, s)| s).collect();
        let mut closing = tokio::task::JoinSet::new();
        for s in all {
            closing.spawn(close(s));
        }
        while closing.join_next().await.is_some() {}
    }

    async fn forget_session(&self, sandbox_id: &SandboxId, session: &Arc<PooledSession>) {
        let mut sessions = self.sessions.lock().await;
        if sessions
            .get(sandbox_id)
            .is_some_and(|s| Arc::ptr_eq(s, session))
            && let Some(s) = sessions.remove(sandbox_id)
        {
            tokio::spawn(close(s));
        }
    }

    async fn session(&self, target: &Target) -> Result<Arc<PooledSession>> {
        {
            let sessions = self.sessions.lock().await;
            if let Some(s) = sessions.get(&target.sandbox_id)
                && s.url == target.url
                && s.token == target.token
                && !s.session.is_closed()
            {
                return Ok(s.clone());
            }
        }
        // Connect without holding the lock, so one slow sandbox does not block others.
        let session = Arc::new(connect(target).await?);
        let mut sessions = self.sessions.lock().await;
        if let Some(old) = sessions.insert(target.sandbox_id.clone(), session.clone()) {
            tokio::spawn(close(old));
        }
        Ok(session)
    }
}

async fn connect(target: &Target) -> Result<PooledSession> {
    let mut headers = HashMap::new();
    for (k, v) in &target.headers {
        let name = axum::http::HeaderName::from_bytes(k.as_bytes())
            .map_err(|e| Error::Internal(format!("bad MCP header name {k:?}: {e}")))?;
        let value = axum::http::HeaderValue::from_str(v)
            .map_err(|_| Error::Internal(format!("bad value for MCP header {k:?}")))?;
        headers.insert(name, value);
    }
    // Over the socket the server is mcp-tools itself, which serves /mcp.
    let uri = match &target.socket {
        Some(_) => "http://localhost/mcp".to_string(),
        None => target.url.clone(),
    };
    let config = StreamableHttpClientTransportConfig::with_uri(uri)
        .auth_header(target.token.clone())
        .custom_headers(headers);
    let transport = match &target.socket {
        Some(socket) => {
            let client = reqwest::Client::builder()
                .unix_socket(socket.clone())
                .build()
                .map_err(|e| Error::Internal(format!("MCP client: {e}")))?;
            StreamableHttpClientTransport::with_client(client, config)
        }
        None => StreamableHttpClientTransport::from_config(config),
    };
    let session = ClientConfig::default()
        .serve(transport)
        .await
        .map_err(|e| {
            ProviderError::failed(format!(
                "cannot open an MCP session to sandbox {}: {e}",
                target.sandbox_id
            ))
        })?;
    Ok(PooledSession {
        url: target.url.clone(),
        token: target.token.clone(),
        session,
    })
}

/// Tools whose repetition does no harm. A command may have run even though
/// its answer was lost, so run_command is never repeated.
fn tool_is_idempotent(tool: &str) -> bool {
    matches!(
        tool,
        "read_file" | "write_file" | "list_directory" | "search_files"
    )
}

/// Ends a session: cancelling sends the DELETE that frees the server side.
/// If a call still holds the session, dropping the last handle cancels it.
async fn close(session: Arc<PooledSession>) {
    if let Ok(s) = Arc::try_unwrap(session) {
        let _ = tokio::time::timeout(Duration::from_secs(2), s.session.cancel()).await;
    }
}

fn tool_output(result: CallToolResult) -> Result<ToolOutput> {
    let text = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
        .collect::<Vec<_>>()
        .join("\n");
    if result.is_error == Some(true) {
        // mcp-tools words its failures for a model ("Error: ..."); the API
        // answer already says it is an error.
        let message = text.strip_prefix("Error: ").unwrap_or(&text).trim();
        return Err(Error::Tool(if message.is_empty() {
            "the tool failed without a message".into()
        } else {
            message.to_string()
        }));
    }
    Ok(ToolOutput {
        structured: result.structured_content.unwrap_or(Value::Null),
        text,
    })
}
