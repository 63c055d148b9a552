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
use crate::error::{Error, Result, StartError};
use crate::ids::{ProviderId, SandboxId, TemplateName};
use crate::model::{SandboxState, TemplateInfo};
use crate::public_url::PublicUrl;

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
    /// The control plane's id of the new sandbox.
    pub sandbox_id: SandboxId,
    /// Its owner.
    pub user_id: String,
    /// The template asked for; the provider's default when `None`.
    pub template_id: Option<String>,
    /// Inactivity timeout in seconds, for providers that enforce one themselves.
    pub timeout_secs: u64,
    /// The client's labels.
    pub metadata: BTreeMap<String, String>,
    /// Bearer token the sandbox's mcp-tools must require.
    pub token: String,
    /// Network and resources asked for.
    pub settings: Settings,
}

/// What a create asks of a sandbox's network and resources (E2B's names
/// where E2B has them); `None` takes the provider's default. A provider
/// refuses what it cannot honour with [`Error::Invalid`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settings {
    /// Whether the sandbox reaches the internet (E2B's `allow_internet_access`).
    pub allow_internet_access: Option<bool>,
    /// Memory limit in MiB (E2B's `memory_mb`).
    pub memory_mb: Option<u64>,
    /// CPUs' worth of CPU time (E2B's `cpu_count`).
    pub cpu_count: Option<u32>,
    /// Most processes and threads alive at once.
    pub process_limit: Option<u64>,
    /// Disk quota of its files in MiB (E2B's `diskSizeMB`).
    pub disk_size_mb: Option<u64>,
}

/// What of a sandbox the control plane forwards clients to, for providers
/// whose sandboxes have no address of their own ([`Provider::open_route`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The sandbox's MCP server.
    Mcp,
    /// A TCP port inside the sandbox.
    Port(u16),
}

/// A byte stream into a sandbox, from [`Provider::open_route`].
pub type RouteStream = Box<dyn RouteIo>;

/// What a [`RouteStream`] can do.
pub trait RouteIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> RouteIo for T {}

/// A sandbox's use of its machine, as `GET /sandboxes/{id}/metrics` reports
/// it. `None` where the provider cannot tell (E2B reports CPU as a
/// percentage and no process counts; a local sandbox without cgroups has no
/// counters).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Metrics {
    /// CPU time used since the sandbox (re)started, in microseconds.
    pub cpu_usec: Option<u64>,
    /// CPU use over the provider's last sampling interval, in percent of
    /// its `cpu_count` CPUs (E2B's `cpuUsedPct`).
    pub cpu_used_pct: Option<f64>,
    /// CPUs' worth of CPU time it may use, `None` when unlimited.
    pub cpu_count: Option<u32>,
    /// Memory in use in bytes (its tmpfs included).
    pub memory_bytes: u64,
    /// Its memory limit in bytes, `None` when unlimited.
    pub memory_limit_bytes: Option<u64>,
    /// Processes and threads alive.
    pub processes: Option<u64>,
    /// Its process limit, `None` when unlimited.
    pub process_limit: Option<u64>,
    /// Forks refused by the process limit.
    pub processes_refused: Option<u64>,
    /// Bytes its files take on disk (a local sandbox's workspace).
    pub disk_bytes: u64,
    /// The most its files may take, in bytes; `None` when no quota holds.
    pub disk_limit_bytes: Option<u64>,
    /// Processes the kernel ended because the memory limit was reached.
    pub oom_kills: Option<u64>,
}

/// The part of a sandbox's record a provider works with.
#[derive(Debug, Clone, Copy)]
pub struct SandboxRef<'a> {
    /// The control plane's id.
    pub id: &'a SandboxId,
    /// The provider's id; `None` when the create never answered (the
    /// control plane stopped in the middle), so the sandbox may or may not
    /// exist and is found by `id` if at all.
    pub provider_id: Option<&'a ProviderId>,
    /// The state the control plane last recorded.
    pub state: SandboxState,
    /// Bearer token its mcp-tools requires.
    pub token: &'a str,
    /// Inactivity timeout in seconds.
    pub timeout_secs: u64,
    /// What the provider asked to keep with the record ([`Running::provider_data`]).
    pub provider_data: &'a serde_json::Value,
}

/// Where a sandbox's MCP server answers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Endpoint {
    /// Streamable-HTTP MCP endpoint, e.g. `http://127.0.0.1:41234/mcp`.
    pub url: String,
    /// Headers besides `Authorization: Bearer <token>` that every request to
    /// `url` must carry (e.g. E2B's traffic token).
    pub headers: BTreeMap<String, String>,
}

/// A running sandbox, as its provider reports it after a create, a resume
/// or an inspection.
#[derive(Debug, Clone)]
pub struct Running {
    /// The provider's id of the sandbox.
    pub provider_id: ProviderId,
    /// Where its MCP server answers now.
    pub endpoint: Endpoint,
    /// Provider-private facts kept with the record (e.g. a port) and given
    /// back in [`SandboxRef::provider_data`].
    pub provider_data: serde_json::Value,
}

/// What a provider finds when it looks at a sandbox it made earlier.
#[derive(Debug, Clone)]
pub enum Inspection {
    /// Up and answering; re-adopt it as it is now.
    Running(Running),
    /// Not running, but its files are kept: it can be resumed.
    Stopped,
    /// The provider has no trace of it any more.
    Gone,
}

/// One sandbox in a provider's own list (see [`Provider::list_managed`]).
#[derive(Debug, Clone)]
pub struct Listed {
    /// Running, as opposed to paused.
    pub running: bool,
    /// Unix seconds at which the provider stops it by itself, if it does.
    pub ends_at: Option<i64>,
}

/// Where a template build sends its output, a line at a time, as it comes
/// (see [`Provider::build_template`]). Sends fail once nobody listens any
/// more; the build goes on.
pub type BuildLog = tokio::sync::mpsc::UnboundedSender<String>;

/// What `POST /templates` asks a provider to build.
#[derive(Debug, Clone)]
pub struct TemplateSpec {
    /// The new template's name.
    pub name: TemplateName,
    /// Debian packages to install; `None`: the sandbox environment's list
    /// (`sandbox-template/packages.txt`).
    pub packages: Option<Vec<String>>,
    /// Also install the editor, code-server (`sandbox-template/code-server.sh`).
    pub vscode: bool,
}

/// Port of the editor (code-server) inside a sandbox, whose URL is reported
/// as `vscode_url`, as in the original server.
pub const VSCODE_PORT: u16 = 9000;

/// A place that runs sandboxes.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Short name, stored with each record (`local`, `e2b`, ...).
    fn name(&self) -> &'static str;

    /// What this provider can do.
    fn capabilities(&self) -> Capabilities;

    /// A line for the startup log about how sandboxes are isolated.
    fn describe(&self) -> String;

    /// The protections that make a sandbox a boundary, by name, and whether
    /// each holds (shown by `/health`); empty when the provider does not say.
    fn protections(&self) -> Vec<(&'static str, bool)> {
        Vec::new()
    }

    /// What system a new sandbox sees when create names no template, for
    /// `/health` (empty when the provider does not say).
    fn environment(&self) -> String {
        String::new()
    }

    /// The templates this provider can create sandboxes from.
    async fn templates(&self) -> Result<Vec<TemplateInfo>> {
        Err(self.unsupported("templates"))
    }

    /// Builds a template, sending its output to `log`, and answers it once
    /// built. A failed build leaves nothing behind.
    async fn build_template(&self, spec: TemplateSpec, log: BuildLog) -> Result<TemplateInfo> {
        let _ = (spec, log);
        Err(self.unsupported("building templates"))
    }

    /// Removes a template. Refused ([`Error::Conflict`]) while a sandbox uses it.
    async fn delete_template(&self, name: &TemplateName) -> Result<()> {
        let _ = name;
        Err(self.unsupported("deleting templates"))
    }

    /// Starts a new sandbox and waits until its MCP endpoint answers.
    async fn create(&self, spec: &CreateSpec) -> Result<Running>;

    /// Starts a paused sandbox again with its files as they were.
    async fn resume(&self, sandbox: SandboxRef<'_>) -> Result<Running> {
        let _ = sandbox;
        Err(self.unsupported("resume"))
    }

    /// Stops a sandbox, keeping its files.
    async fn pause(&self, sandbox: SandboxRef<'_>) -> Result<()> {
        let _ = sandbox;
        Err(self.unsupported("pause"))
    }

    /// Removes a sandbox and its files. Succeeds if it is already gone.
    async fn delete(&self, sandbox: SandboxRef<'_>) -> Result<()>;

    /// Looks at a sandbox: used at startup to re-adopt survivors, and by status.
    async fn inspect(&self, sandbox: SandboxRef<'_>) -> Result<Inspection>;

    /// URL at which `port` inside the sandbox is reachable.
    fn port_url(&self, sandbox: SandboxRef<'_>, port: u16) -> Result<String> {
        let _ = (sandbox, port);
        Err(self.unsupported("expose-port"))
    }

    /// Whether the sandbox's system has the editor (`code-server` on its
    /// `PATH`), so the control plane starts it there (see
    /// `sandboxes::editor`). Found without asking the sandbox.
    fn has_editor(&self, sandbox: SandboxRef<'_>) -> bool {
        let _ = sandbox;
        false
    }

    /// Whether an HTTP server on `port` inside the running sandbox answers
    /// `GET path` with a success status, reached the way a client of
    /// [`Provider::port_url`] reaches it. Gives up after a few seconds;
    /// `false` also when the provider cannot tell.
    async fn port_answers(&self, sandbox: SandboxRef<'_>, port: u16, path: &str) -> bool {
        let _ = (sandbox, port, path);
        false
    }

    /// Every sandbox the provider holds for control planes, by provider id,
    /// in one look; `None` when it cannot list them. Reconciliation uses it
    /// to notice sandboxes the provider stopped or lost by itself.
    async fn list_managed(&self) -> Result<Option<HashMap<ProviderId, Listed>>> {
        Ok(None)
    }

    /// Tells the provider the sandbox's new timeout, for providers that enforce
    /// one themselves. The control plane's reaper enforces it in any case.
    async fn set_timeout(&self, sandbox: SandboxRef<'_>, timeout_secs: u64) -> Result<()> {
        let _ = (sandbox, timeout_secs);
        Ok(())
    }

    /// Opens a connection to `route` in a running sandbox, for providers
    /// whose sandboxes the control plane routes clients to itself (see
    /// `api::forward`). Their [`Endpoint::url`] and [`Provider::port_url`]
    /// lead to the control plane.
    async fn open_route(&self, sandbox: SandboxRef<'_>, route: Route) -> Result<RouteStream> {
        let _ = (sandbox, route);
        Err(self.unsupported("routing"))
    }

    /// The Unix socket on this machine at which the control plane itself
    /// reaches the sandbox's MCP server, when there is one (the `local`
    /// provider); `None` to use [`Endpoint::url`].
    fn mcp_socket(&self, sandbox: SandboxRef<'_>) -> Option<std::path::PathBuf> {
        let _ = sandbox;
        None
    }

    /// The sandbox's use of CPU, memory, processes and disk now.
    async fn metrics(&self, sandbox: SandboxRef<'_>) -> Result<Metrics> {
        let _ = sandbox;
        Err(self.unsupported("metrics"))
    }

    /// Whether the sandbox's MCP server is up, found cheaply (it is asked
    /// every quarter second during a tool call); `None` when the provider
    /// cannot tell cheaply.
    fn is_alive(&self, sandbox: SandboxRef<'_>) -> Option<bool> {
        let _ = sandbox;
        None
    }

    /// How many processes the kernel killed in the sandbox because its
    /// memory limit was reached, cheaply; `None` when the provider cannot tell.
    fn oom_kills(&self, sandbox: SandboxRef<'_>) -> Option<u64> {
        let _ = sandbox;
        None
    }

    /// The unsupported error for `operation`, named after this provider.
    fn unsupported(&self, operation: &'static str) -> Error {
        Error::Unsupported {
            provider: self.name(),
            operation,
        }
    }
}

/// Builds the provider that the configuration selects. `public_url` is
/// where clients reach the control plane, through which local sandboxes are
/// routed.
pub async fn build(
    config: &ServeConfig,
    public_url: &PublicUrl,
) -> Result<Arc<dyn Provider>, StartError> {
    match config.provider {
        ProviderKind::Local => Ok(Arc::new(
            local::LocalProvider::new(&config.local, &config.data_dir, public_url.clone()).await?,
        )),
        ProviderKind::E2b => Ok(Arc::new(e2b::E2bProvider::new(
            &config.e2b,
            config.max_timeout_secs,
        )?)),
    }
}
