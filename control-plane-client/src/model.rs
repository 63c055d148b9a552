//! The JSON bodies of the HTTP API, shared by the server, the client library
//! and the OpenAPI document. Field names follow the original Python sandbox
//! server so its clients keep working.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Lifecycle state of a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SandboxState {
    /// The provider is still starting it.
    Creating,
    /// Its MCP endpoint answers.
    Running,
    /// Stopped; its files are kept and `resume`/`connect` starts it again.
    Paused,
    /// The provider no longer has it (e.g. E2B killed it): only delete is left.
    Gone,
}

impl SandboxState {
    /// The name stored in the database and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxState::Creating => "creating",
            SandboxState::Running => "running",
            SandboxState::Paused => "paused",
            SandboxState::Gone => "gone",
        }
    }

    /// Parses [`SandboxState::as_str`]'s output.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "creating" => Some(SandboxState::Creating),
            "running" => Some(SandboxState::Running),
            "paused" => Some(SandboxState::Paused),
            "gone" => Some(SandboxState::Gone),
            _ => None,
        }
    }
}

impl std::fmt::Display for SandboxState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// `POST /sandboxes/create`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateSandboxRequest {
    /// Owner of the sandbox. May be left out when the API key is bound to a user.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Provider template; the provider's default when absent.
    #[serde(default)]
    pub template_id: Option<String>,
    /// Free-form labels, usable as filters in `GET /sandboxes`.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Seconds of inactivity after which the sandbox expires (default from config).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Whether the sandbox reaches the internet (default true where the
    /// host can provide it). Never this machine, its LAN or other sandboxes.
    #[serde(default)]
    pub allow_internet_access: Option<bool>,
    /// Memory limit in MiB, its tmpfs included (default and maximum from
    /// the server's configuration; local provider only).
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// CPUs' worth of CPU time it may use (local provider only).
    #[serde(default)]
    pub cpu_count: Option<u32>,
    /// Most processes and threads alive at once (local provider only).
    #[serde(default)]
    pub process_limit: Option<u64>,
    /// Disk quota of its workspace in MiB (E2B's `diskSizeMB`; default and
    /// maximum from the server's configuration; local provider, as root).
    #[serde(default)]
    pub disk_size_mb: Option<u64>,
}

/// What a client needs to know about one sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SandboxInfo {
    /// The control plane's id, e.g. `sb-0123456789abcdef`.
    pub sandbox_id: String,
    /// The owner.
    pub user_id: String,
    /// The provider that runs it: `local` or `e2b`.
    pub provider: String,
    /// The template it was made from, if create named one.
    pub template_id: Option<String>,
    /// Where it is in its life.
    pub status: SandboxState,
    /// Streamable-HTTP MCP endpoint of the sandbox (valid while running).
    pub mcp_url: String,
    /// Headers every request to `mcp_url` must carry (includes `Authorization`).
    pub mcp_headers: BTreeMap<String, String>,
    /// URL of the editor (code-server on port 9000) when the sandbox runs
    /// one; `null` otherwise.
    pub vscode_url: Option<String>,
    /// The labels given at create.
    pub metadata: BTreeMap<String, String>,
    /// Inactivity timeout in seconds.
    pub timeout_secs: u64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; activity and `connect` push it forward.
    pub expires_at: i64,
}

/// A request naming one sandbox (`connect`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SandboxIdRequest {
    /// The sandbox.
    pub sandbox_id: String,
}

/// Answer of `connect`, `pause` and `resume`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LifecycleResponse {
    /// Always true (failures are error answers).
    pub success: bool,
    /// The sandbox after the change.
    #[serde(flatten)]
    pub sandbox: SandboxInfo,
}

/// `POST /sandboxes/run-command`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunCommandRequest {
    /// The sandbox to run it in.
    pub sandbox_id: String,
    /// Shell command line, run with `sh -c` in the workspace.
    pub command: String,
    /// Start it and return at once; its output goes to a log in the sandbox.
    #[serde(default)]
    pub background: bool,
    /// Kill a foreground command after this long (mcp-tools' default otherwise).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Working directory relative to the workspace.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// Answer of `run-command`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunCommandResponse {
    /// stdout followed by stderr (what the original server returned).
    pub output: String,
    /// Exit code of a foreground command that exited (not killed by a signal).
    pub exit_code: Option<i32>,
    /// The command's standard output (head and tail when it was long).
    pub stdout: String,
    /// The command's standard error (head and tail when it was long).
    pub stderr: String,
    /// Signal that ended the command, if any.
    pub signal: Option<i32>,
    /// True when the command was killed at its timeout.
    pub timed_out: bool,
    /// How long it ran, in milliseconds.
    pub duration_ms: Option<u64>,
    /// Background commands: the job id inside the sandbox.
    pub job_id: Option<String>,
    /// Background commands: the process id inside the sandbox.
    pub pid: Option<u32>,
    /// Background commands: the path of its output log inside the sandbox.
    pub log_path: Option<String>,
    /// True when the sandbox's memory limit was reached while the command
    /// ran and the kernel killed a process of it (the command, or one it
    /// started).
    #[serde(default)]
    pub oom_killed: bool,
}

/// `POST /sandboxes/expose-port`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExposePortRequest {
    /// The sandbox.
    pub sandbox_id: String,
    /// The port inside it, 1 to 65535.
    pub port: u16,
}

/// Answer of `expose-port`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExposePortResponse {
    /// Where the port is reachable, e.g. `http://127.0.0.1:3000`.
    pub url: String,
}

/// `POST /sandboxes/write-file` and `POST /sandboxes/read-file`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileOperationRequest {
    /// The sandbox.
    pub sandbox_id: String,
    /// Path relative to the sandbox workspace.
    pub path: String,
    /// Required for write-file (may be empty); ignored by read-file.
    #[serde(default)]
    pub content: Option<String>,
}

/// Answer of `write-file` and `read-file`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileOperationResponse {
    /// The file's text (read-file); absent for write-file.
    pub content: Option<String>,
    /// How the file stores its text (read-file): `utf-8`, `utf-8-bom`,
    /// `utf-16le` or `utf-16be` (a BOM-marked file is returned decoded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// Always true (failures are error answers).
    pub success: bool,
}

/// `POST /sandboxes/{id}/timeout`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetTimeoutRequest {
    /// New inactivity timeout in seconds, counted from now.
    pub timeout_secs: u64,
}

/// Answer of `GET /sandboxes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ListResponse {
    /// This page, oldest first.
    pub sandboxes: Vec<SandboxInfo>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Answer of `DELETE /sandboxes/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeleteResponse {
    /// Always true (failures are error answers).
    pub success: bool,
}

/// Answer of `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthResponse {
    /// `ok`.
    pub status: String,
    /// The control plane's version.
    pub version: String,
    /// The provider that runs the sandboxes: `local` or `e2b`.
    pub provider: String,
    /// Whether sandboxes are isolated from each other and from this machine.
    pub isolated: bool,
    /// Which protections hold for new sandboxes, by name (`filesystem`,
    /// `network`, `user`, `cgroups`, `quota`); a missing one is `false`.
    pub protections: std::collections::BTreeMap<String, bool>,
    /// What system a new sandbox sees as `/` when create names no template:
    /// e.g. `template "default" (Debian bookworm, 14 packages)`, or a note
    /// that it is this machine's own system, read-only.
    #[serde(default)]
    pub environment: String,
}

/// A local template: a Debian root filesystem that sandboxes run on as `/`
/// (`GET /templates`, and the end of a build).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TemplateInfo {
    /// Its name, the `template_id` a create gives.
    pub name: String,
    /// The Debian release it was built from, e.g. `bookworm`.
    pub release: String,
    /// The packages asked for (their dependencies come too).
    pub packages: Vec<String>,
    /// Whether it carries code-server, the editor behind `vscode_url`.
    #[serde(default)]
    pub vscode: bool,
    /// When its build finished, RFC 3339 (UTC).
    pub created_at: String,
    /// Bytes its files take.
    pub size_bytes: u64,
    /// Seconds its build took, downloads included.
    pub build_secs: u64,
    /// Whether it is the one a create without `template_id` gets.
    #[serde(default)]
    pub default: bool,
}

/// Answer of `GET /templates`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TemplateList {
    /// Every built template, by name.
    pub templates: Vec<TemplateInfo>,
}

/// `POST /templates`: build a template.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BuildTemplateRequest {
    /// Its name: 1 to 64 lowercase letters, digits, `-`, `_` and `.`,
    /// starting with a letter or a digit.
    pub name: String,
    /// Debian packages to install; absent: the sandbox environment's own
    /// list (`sandbox-template/packages.txt`).
    #[serde(default)]
    pub packages: Option<Vec<String>>,
    /// Also install code-server, the editor behind `vscode_url`
    /// (`sandbox-template/code-server.sh`: from npm, a few minutes more;
    /// needs nodejs, npm, build-essential, python3 and ripgrep among the
    /// packages, as the sandbox environment has them).
    #[serde(default)]
    pub vscode: bool,
}

/// One line of the answer of `POST /templates`, which streams as
/// newline-delimited JSON (`application/x-ndjson`) while the build runs:
/// `log` lines, then exactly one `template` (built) or `error` (failed; no
/// template is left behind).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum BuildEvent {
    /// A line of the build's output (mmdebstrap and apt).
    Log(String),
    /// The build succeeded: the new template.
    Template(TemplateInfo),
    /// The build failed, with the same body as any error answer.
    Error(ErrorBody),
}

/// `GET /sandboxes/{id}/metrics`: what a running sandbox uses now. A
/// `null` is something the provider cannot tell: E2B reports CPU use as
/// `cpu_used_pct` and no process counts; a local sandbox without cgroups
/// has no counters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MetricsResponse {
    /// CPU time used since it (re)started, in seconds.
    pub cpu_used_secs: Option<f64>,
    /// CPU use over the provider's last sampling interval, in percent of
    /// `cpu_count` CPUs (E2B's `cpuUsedPct`).
    #[serde(default)]
    pub cpu_used_pct: Option<f64>,
    /// CPUs' worth of CPU time it may use; absent when unlimited.
    pub cpu_count: Option<u32>,
    /// Memory in use, in bytes (its tmpfs included).
    pub mem_used: u64,
    /// Its memory limit in bytes; absent when unlimited.
    pub mem_total: Option<u64>,
    /// Processes and threads alive.
    pub processes: Option<u64>,
    /// Its process limit; absent when unlimited.
    pub process_limit: Option<u64>,
    /// Forks refused because of the process limit.
    pub processes_refused: Option<u64>,
    /// Bytes its files take on disk (a local sandbox's workspace).
    pub disk_used: u64,
    /// The most its files may take, in bytes (the local workspace quota,
    /// E2B's disk size); absent when unlimited.
    #[serde(default)]
    pub disk_total: Option<u64>,
    /// Processes the kernel killed because the memory limit was reached.
    pub oom_kills: Option<u64>,
}

/// Body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorResponse {
    /// What went wrong.
    pub error: ErrorBody,
}

/// `error` in [`ErrorResponse`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Stable code: bad_request, unauthorized, forbidden, not_found, conflict,
    /// gone, unsupported, tool_error, upstream_error, timeout, internal.
    pub code: String,
    /// What happened and, where there is something to do, what.
    pub message: String,
}
