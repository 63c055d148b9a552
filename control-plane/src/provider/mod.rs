//! Where sandboxes run. A [`Provider`] starts, stops and removes them; the
//! control plane does everything else (records, timeouts, auth, tool calls
//! through each sandbox's MCP endpoint) the same way for every provider.
//!
//! A new provider is one new file implementing [`Provider`] plus one line in
//! [`build`]. Operations it cannot do keep the default methods, which answer
//! [`Error::Unsupported`] instead of pretending.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;

use crate::config::{ProviderKind, ServeConfig};
use crate::error::{Error, Result};
use crate::store::SandboxRecord;

pub mod e2b;
pub mod local;

/// What a provider can do, shown at startup and used to refuse early.
#[derive(Debug, Clone, Copy)]
pub struct Capabilities {
    /// pause and resume keep the sandbox's files.
    pub pause: bool,
    /// expose-port gives a reachable URL.
    pub expose_port: bool,
    /// Sandboxes cannot see each other's files or this machine's.
    pub isolated: bool,
    /// Running sandboxes should be paused when the control plane stops,
    /// because nothing else would ever stop them (true for local processes).
    pub pause_on_shutdown: bool,
}

/// What the control plane asks a provider to create.
#[derive(Debug, Clone)]
pub struct CreateSpec {
    pub sandbox_id: String,
    pub user_id: String,
    pub template_id: Option<String>,
    pub timeout_secs: u64,
    pub metadata: BTreeMap<String, String>,
    /// Bearer token the sandbox's mcp-tools must require.
    pub token: String,
}

/// A running sandbox's whereabouts, as the provider reports them.
#[derive(Debug, Clone)]
pub struct Started {
    pub provider_id: String,
    /// Streamable-HTTP MCP endpoint.
    pub mcp_url: String,
    /// Headers besides `Authorization: Bearer <token>` that `mcp_url` needs.
    pub mcp_headers: BTreeMap<String, String>,
    /// Provider-private facts kept with the record (e.g. a port).
    pub provider_data: serde_json::Value,
}

/// What a provider finds when it looks at a sandbox it made earlier.
#[derive(Debug, Clone)]
pub enum Observed {
    /// Up and answering; re-adopt it as it is now.
    Running(Started),
    /// Not running, but its files are kept: it can be resumed.
    Stopped,
    /// The provider has no trace of it any more.
    Gone,
}

/// One sandbox in a provider's own list (see [`Provider::survey`]).
#[derive(Debug, Clone)]
pub struct Seen {
    /// Running, as opposed to paused.
    pub running: bool,
    /// Unix seconds at which the provider stops it by itself, if it does.
    pub ends_at: Option<i64>,
}

/// Port whose URL is reported as `vscode_url`, as in the original server.
pub const VSCODE_PORT: u16 = 9000;

/// A place that runs sandboxes.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Short name, stored with each record (`local`, `e2b`, ...).
    fn name(&self) -> &'static str;

    fn capabilities(&self) -> Capabilities;

    /// A line for the startup log about how sandboxes are isolated.
    fn describe(&self) -> String;

    /// Starts a new sandbox and waits until its MCP endpoint answers.
    async fn create(&self, spec: &CreateSpec) -> Result<Started>;

    /// Starts a paused sandbox again with its files as they were.
    async fn resume(&self, record: &SandboxRecord) -> Result<Started> {
        let _ = record;
        Err(self.unsupported("resume"))
    }

    /// Stops a sandbox, keeping its files.
    async fn pause(&self, record: &SandboxRecord) -> Result<()> {
        let _ = record;
        Err(self.unsupported("pause"))
    }

    /// Removes a sandbox and its files. Succeeds if it is already gone.
    async fn delete(&self, record: &SandboxRecord) -> Result<()>;

    /// Looks at a sandbox: used at startup to re-adopt survivors, and by status.
    async fn observe(&self, record: &SandboxRecord) -> Result<Observed>;

    /// URL at which `port` inside the sandbox is reachable.
    fn port_url(&self, record: &SandboxRecord, port: u16) -> Result<String> {
        let _ = (record, port);
        Err(self.unsupported("expose-port"))
    }

    /// URL of the editor (code-server on [`VSCODE_PORT`]), or empty when the
    /// provider's sandboxes have none.
    fn vscode_url(&self, record: &SandboxRecord) -> String {
        self.port_url(record, VSCODE_PORT).unwrap_or_default()
    }

    /// Every sandbox the provider holds for control planes, by provider id,
    /// in one look; `None` when it cannot list them. Reconciliation uses it
    /// to notice sandboxes the provider stopped or lost by itself.
    async fn survey(&self) -> Result<Option<HashMap<String, Seen>>> {
        Ok(None)
    }

    /// Tells the provider the sandbox's new timeout, for providers that enforce
    /// one themselves. The control plane's reaper enforces it in any case.
    async fn set_timeout(&self, record: &SandboxRecord, timeout_secs: u64) -> Result<()> {
        let _ = (record, timeout_secs);
        Ok(())
    }

    /// The unsupported error for `operation`, named after this provider.
    fn unsupported(&self, operation: &'static str) -> Error {
        Error::Unsupported {
            provider: self.name(),
            operation,
        }
    }
}

/// Builds the provider that the configuration selects.
pub async fn build(config: &ServeConfig) -> Result<Arc<dyn Provider>> {
    match config.provider {
        ProviderKind::Local => Ok(Arc::new(local::LocalProvider::new(config).await?)),
        ProviderKind::E2b => Ok(Arc::new(e2b::E2bProvider::new(config)?)),
    }
}
