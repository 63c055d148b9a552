//! Configuration of `control-plane serve`: flags with environment fallbacks,
//! read once and passed down.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::error::StartError;
use crate::ids::TemplateName;
use crate::provider::local::UidRange;
use crate::public_url::PublicUrl;

/// Which provider runs the sandboxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderKind {
    /// Each sandbox is an mcp-tools child process on this machine.
    Local,
    /// Each sandbox is a microVM in E2B's cloud, from a template built from
    /// sandbox-template/ (needs E2B_API_KEY and E2B_TEMPLATE_ID).
    E2b,
}

/// What the reaper does with a sandbox whose timeout has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExpiryAction {
    /// Stop it and keep its files (resume brings it back).
    Pause,
    /// Remove it and its files.
    Delete,
}

/// Filesystem isolation of local sandboxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Isolation {
    /// Use bubblewrap when it is installed and works, otherwise run unisolated.
    Auto,
    /// Require bubblewrap; refuse to start without it.
    On,
    /// Never isolate.
    Off,
}

/// `control-plane serve` flags.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address to listen on. Without API keys only a loopback address is allowed.
    #[arg(long, env = "CONTROL_PLANE_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,

    /// Port to listen on (0 picks a free one; see --addr-file).
    #[arg(long, env = "CONTROL_PLANE_PORT", default_value_t = 8080)]
    pub port: u16,

    /// The base URL clients reach this API at, when it is not the listening
    /// address (behind a proxy, or listening on 0.0.0.0), e.g.
    /// https://sandboxes.example.com. mcp_url and expose-port URLs are made
    /// from it; exposed ports are served at {port}-{id}.HOST, so HOST needs a
    /// wildcard DNS record (an address has no subdomains: ports then stay
    /// under localhost). Default: http://HOST:PORT as listened on.
    #[arg(long, env = "CONTROL_PLANE_PUBLIC_URL", value_parser = PublicUrl::parse)]
    pub public_url: Option<PublicUrl>,

    /// Folder for the database and the local sandboxes' workspaces.
    #[arg(
        long,
        env = "CONTROL_PLANE_DATA_DIR",
        default_value = "control-plane-data"
    )]
    pub data_dir: PathBuf,

    /// Where sandboxes run.
    #[arg(
        long,
        env = "CONTROL_PLANE_PROVIDER",
        value_enum,
        default_value = "local"
    )]
    pub provider: ProviderKind,

    /// API keys, comma-separated. `KEY` may call everything; `KEY:USER` sees and
    /// touches only USER's sandboxes. Without keys the API is open to this machine only.
    #[arg(long, env = "CONTROL_PLANE_API_KEYS", hide_env_values = true)]
    pub api_keys: Option<String>,

    /// File with API keys, one `KEY` or `KEY:USER` per line (# starts a comment).
    /// Read at start: restart to apply a change. A missing file stops the start.
    #[arg(long, env = "CONTROL_PLANE_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,

    /// Inactivity timeout of a sandbox when create does not say (seconds).
    #[arg(long, env = "CONTROL_PLANE_DEFAULT_TIMEOUT", default_value_t = 3600)]
    pub default_timeout_secs: u64,

    /// Largest timeout a client may ask for (seconds).
    #[arg(long, env = "CONTROL_PLANE_MAX_TIMEOUT", default_value_t = 86_400)]
    pub max_timeout_secs: u64,

    /// What happens to a sandbox whose timeout has passed.
    #[arg(
        long,
        env = "CONTROL_PLANE_ON_EXPIRE",
        value_enum,
        default_value = "pause"
    )]
    pub on_expire: ExpiryAction,

    /// How often the reaper looks for expired sandboxes, after comparing the
    /// records with what the provider sees (seconds).
    #[arg(long, env = "CONTROL_PLANE_REAPER_INTERVAL", default_value_t = 15)]
    pub reaper_interval_secs: u64,

    /// Most sandboxes running at once (creates and resumes beyond it answer 409).
    #[arg(long, env = "CONTROL_PLANE_MAX_RUNNING", default_value_t = 50)]
    pub max_running: usize,

    /// Settings of the local provider.
    #[command(flatten)]
    pub local: LocalConfig,

    /// Write the address actually listened on to this file once ready (useful with --port 0).
    #[arg(long, env = "CONTROL_PLANE_ADDR_FILE")]
    pub addr_file: Option<PathBuf>,

    /// Log filter, e.g. info or control_plane=debug.
    #[arg(long, env = "CONTROL_PLANE_LOG", default_value = "info")]
    pub log_level: String,

    /// Timeouts and the connection budget of the API server.
    #[command(flatten)]
    pub connections: ConnectionArgs,

    /// Settings of the e2b provider.
    #[command(flatten)]
    pub e2b: E2bConfig,
}

/// Settings of the `local` provider (mcp-tools child processes on this machine).
#[derive(Debug, Clone, Args)]
pub struct LocalConfig {
    /// The mcp-tools binary (local provider). Default: next to this binary, then $PATH.
    #[arg(long, env = "MCP_TOOLS_BIN")]
    pub mcp_tools_bin: Option<PathBuf>,

    /// Isolation of local sandboxes with bubblewrap (files, processes), a
    /// network namespace each (slirp4netns, nftables), a host user each (when
    /// run as root) and cgroup limits. `on` refuses to start unless every
    /// one of these protections holds here.
    #[arg(
        long,
        env = "CONTROL_PLANE_ISOLATION",
        value_enum,
        default_value = "auto"
    )]
    pub isolation: Isolation,

    /// Host user ids for local sandboxes, one each, when the control plane
    /// runs as root (FIRST-LAST; each id's group is the same number).
    #[arg(
        long,
        env = "CONTROL_PLANE_SANDBOX_UIDS",
        default_value = "2000000-2099999"
    )]
    pub sandbox_uids: UidRange,

    /// Memory limit of a local sandbox when create does not say (MiB).
    #[arg(long, env = "CONTROL_PLANE_DEFAULT_MEMORY_MB", default_value_t = 2048)]
    pub default_memory_mb: u64,

    /// Largest memory_mb a create may ask for (MiB).
    #[arg(long, env = "CONTROL_PLANE_MAX_MEMORY_MB", default_value_t = 16384)]
    pub max_memory_mb: u64,

    /// CPUs' worth of CPU time of a local sandbox when create does not say.
    #[arg(long, env = "CONTROL_PLANE_DEFAULT_CPU_COUNT", default_value_t = 2)]
    pub default_cpu_count: u32,

    /// Largest cpu_count a create may ask for.
    #[arg(long, env = "CONTROL_PLANE_MAX_CPU_COUNT", default_value_t = 16)]
    pub max_cpu_count: u32,

    /// Process (and thread) limit of a local sandbox when create does not say.
    #[arg(
        long,
        env = "CONTROL_PLANE_DEFAULT_PROCESS_LIMIT",
        default_value_t = 1024
    )]
    pub default_process_limit: u64,

    /// Largest process_limit a create may ask for.
    #[arg(long, env = "CONTROL_PLANE_MAX_PROCESS_LIMIT", default_value_t = 16384)]
    pub max_process_limit: u64,

    /// Disk quota of a local sandbox's workspace when create does not say
    /// (MiB; an ext4 image of that size on a loop device, root only). 0: no
    /// quota unless create asks (saves a mkfs and a mount at create).
    #[arg(
        long,
        env = "CONTROL_PLANE_DEFAULT_DISK_SIZE_MB",
        default_value_t = 10240
    )]
    pub default_disk_size_mb: u64,

    /// Largest disk_size_mb a create may ask for (MiB).
    #[arg(
        long,
        env = "CONTROL_PLANE_MAX_DISK_SIZE_MB",
        default_value_t = 102_400
    )]
    pub max_disk_size_mb: u64,

    /// The local template a create without template_id runs on as `/`, or
    /// `none` to run sandboxes on this machine's own system (read-only).
    /// Build it with `control-plane template build NAME`, or pass
    /// --build-default-template.
    #[arg(
        long,
        env = "CONTROL_PLANE_DEFAULT_TEMPLATE",
        default_value = "default",
        value_parser = parse_default_template
    )]
    pub default_template: DefaultTemplate,

    /// Build the default template (from sandbox-template/packages.txt) at
    /// start if it is not built yet, showing mmdebstrap's progress, before
    /// serving. Later starts reuse it.
    #[arg(long, env = "CONTROL_PLANE_BUILD_DEFAULT_TEMPLATE", value_parser = clap::builder::BoolishValueParser::new())]
    pub build_default_template: bool,

    /// Folder of the local templates. Default: DATA_DIR/templates.
    #[arg(long, env = "CONTROL_PLANE_TEMPLATES_DIR")]
    pub templates_dir: Option<PathBuf>,

    /// apt's download cache for template builds, shared by every build that
    /// names it (they take turns). Default: TEMPLATES_DIR/.apt-cache.
    #[arg(long, env = "CONTROL_PLANE_TEMPLATE_APT_CACHE")]
    pub template_apt_cache: Option<PathBuf>,

    /// The statically linked mcp-tools that sandboxes on a template run (the
    /// template has its own libc). Default: --mcp-tools-bin if it is static,
    /// else TARGET/x86_64-unknown-linux-musl/release/mcp-tools beside this
    /// binary's TARGET/<profile>/ folder.
    #[arg(long, env = "MCP_TOOLS_STATIC_BIN")]
    pub template_mcp_tools_bin: Option<PathBuf>,
}

/// `--default-template`: a template's name, or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefaultTemplate {
    /// Sandboxes see this machine's system, read-only.
    None,
    /// Sandboxes run on this template.
    Named(TemplateName),
}

impl DefaultTemplate {
    /// The template's name, if there is one.
    pub fn name(&self) -> Option<&TemplateName> {
        match self {
            DefaultTemplate::None => None,
            DefaultTemplate::Named(n) => Some(n),
        }
    }
}

fn parse_default_template(s: &str) -> Result<DefaultTemplate, String> {
    match s {
        "none" => Ok(DefaultTemplate::None),
        name => TemplateName::parse(name).map(DefaultTemplate::Named),
    }
}

/// What one client connection may take. Once a request's headers are in, its
/// answer may take as long as it needs (a command runs up to 10 minutes).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Connections")]
pub struct ConnectionArgs {
    /// Seconds a connection may take to send a request's headers; also how
    /// long an idle kept-alive connection stays open.
    #[arg(long, env = "CONTROL_PLANE_HEADER_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_secs: u64,

    /// Seconds a request body may take to arrive whole, counted from its
    /// headers.
    #[arg(long, env = "CONTROL_PLANE_BODY_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_secs: u64,

    /// Most connections open at once, lowered to half the open-files limit.
    /// Over it, the oldest connection with no request in flight is closed;
    /// when all are busy, a new one gets 503.
    #[arg(long, env = "CONTROL_PLANE_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,
}

impl ConnectionArgs {
    /// The connection limits, with the budget fitted to `open_files` (the
    /// soft RLIMIT_NOFILE).
    pub fn limits(&self, open_files: u64) -> http_serve::Limits {
        http_serve::Limits {
            header_read_timeout: std::time::Duration::from_secs(self.header_timeout_secs),
            body_read_timeout: std::time::Duration::from_secs(self.body_timeout_secs),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
        }
        .connection_budget(open_files)
    }
}

/// Settings of the `e2b` provider (E2B's cloud microVMs). The environment
/// variables are the ones E2B's own SDKs and CLI read.
#[derive(Clone, Args)]
pub struct E2bConfig {
    /// E2B API key (https://e2b.dev/dashboard). Never logged.
    #[arg(long, env = "E2B_API_KEY", hide_env_values = true)]
    pub e2b_api_key: Option<String>,

    /// Template to create sandboxes from: one built from sandbox-template/
    /// (its name or id). A create may name another with template_id.
    #[arg(long, env = "E2B_TEMPLATE_ID")]
    pub e2b_template_id: Option<String>,

    /// E2B's domain: sandbox ports are reached at https://{port}-{id}.{domain}.
    #[arg(long, env = "E2B_DOMAIN", default_value = "e2b.app")]
    pub e2b_domain: String,

    /// E2B's API. Default: https://api.{domain}. Plain http only with --e2b-debug.
    #[arg(long, env = "E2B_API_URL")]
    pub e2b_api_url: Option<String>,

    /// Debug mode, as in E2B's SDKs: sandbox ports are reached at
    /// http://localhost:{port} instead (for a local E2B stand-in or tunnel).
    #[arg(long, env = "E2B_DEBUG", value_parser = clap::builder::BoolishValueParser::new())]
    pub e2b_debug: bool,

    /// Port of mcp-tools inside the sandbox (the template's --port).
    #[arg(long, env = "E2B_MCP_PORT", default_value_t = 6060)]
    pub e2b_mcp_port: u16,

    /// Port of envd, E2B's agent in every sandbox (change it only in debug mode).
    #[arg(long, env = "E2B_ENVD_PORT", default_value_t = 49983)]
    pub e2b_envd_port: u16,

    /// mcp-tools' token file inside the sandbox (the template's --token-file),
    /// written as the sandbox's `user` on create and resume.
    #[arg(
        long,
        env = "E2B_MCP_TOKEN_FILE",
        default_value = "/var/lib/mcp-tools/token"
    )]
    pub e2b_token_file: String,

    /// When E2B's own timeout of a sandbox passes (the control plane being
    /// down), E2B pauses it (true) or kills it (false).
    #[arg(long, env = "E2B_AUTO_PAUSE", default_value_t = true, action = clap::ArgAction::Set)]
    pub e2b_auto_pause: bool,

    /// The template has code-server (built with INSTALL_CODE_SERVER=true):
    /// start it in each sandbox on port 9000, with the sandbox's token as
    /// its password, and report its URL as vscode_url once it answers.
    #[arg(long, env = "E2B_CODE_SERVER", value_parser = clap::builder::BoolishValueParser::new())]
    pub e2b_code_server: bool,

    /// Time limit of each call to E2B's API (seconds; creates get twice this).
    #[arg(long, env = "E2B_REQUEST_TIMEOUT", default_value_t = 30)]
    pub e2b_request_timeout_secs: u64,
}

impl std::fmt::Debug for E2bConfig {
    // The API key never reaches a log, even through Debug.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("E2bConfig")
            .field(
                "e2b_api_key",
                &self.e2b_api_key.as_ref().map(|_| "<redacted>"),
            )
            .field("e2b_template_id", &self.e2b_template_id)
            .field("e2b_domain", &self.e2b_domain)
            .field("e2b_api_url", &self.e2b_api_url)
            .field("e2b_debug", &self.e2b_debug)
            .field("e2b_mcp_port", &self.e2b_mcp_port)
            .field("e2b_envd_port", &self.e2b_envd_port)
            .field("e2b_token_file", &self.e2b_token_file)
            .field("e2b_auto_pause", &self.e2b_auto_pause)
            .field("e2b_code_server", &self.e2b_code_server)
            .field("e2b_request_timeout_secs", &self.e2b_request_timeout_secs)
            .finish()
    }
}

/// One configured API key.
#[derive(Clone)]
pub struct ApiKey {
    /// The secret itself, at least 16 characters. Never logged.
    pub key: String,
    /// When set, the key only sees this user's sandboxes.
    pub user: Option<String>,
}

impl std::fmt::Debug for ApiKey {
    // Keys never reach a log, even through Debug.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("key", &"<redacted>")
            .field("user", &self.user)
            .finish()
    }
}

impl ServeConfig {
    /// All API keys from --api-keys and --api-keys-file.
    pub fn load_api_keys(&self) -> Result<Vec<ApiKey>, StartError> {
        let mut keys = Vec::new();
        if let Some(list) = &self.api_keys {
            for item in list.split(',') {
                push_key(&mut keys, item)?;
            }
        }
        if let Some(path) = &self.api_keys_file {
            let text = std::fs::read_to_string(path).map_err(|source| StartError::Io {
                what: "cannot read API key file",
                path: path.clone(),
                source,
            })?;
            for line in text.lines() {
                let line = line.trim();
                if !line.starts_with('#') {
                    push_key(&mut keys, line)?;
                }
            }
        }
        Ok(keys)
    }
}

fn push_key(keys: &mut Vec<ApiKey>, item: &str) -> Result<(), StartError> {
    let item = item.trim();
    if item.is_empty() {
        return Ok(());
    }
    let (key, user) = match item.split_once(':') {
        Some((k, u)) => (k.trim(), Some(u.trim().to_string())),
        None => (item, None),
    };
    if key.len() < 16 {
        return Err(StartError::Config(
            "an API key must be at least 16 characters long".into(),
        ));
    }
    if user.as_deref() == Some("") {
        return Err(StartError::Config(
            "an API key ends with ':' but names no user".into(),
        ));
    }
    keys.push(ApiKey {
        key: key.to_string(),
        user,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(list: &str) -> Result<Vec<ApiKey>, StartError> {
        let mut keys = Vec::new();
        for item in list.split(',') {
            push_key(&mut keys, item)?;
        }
        Ok(keys)
    }

    #[test]
    fn keys_may_be_bound_to_users() {
        let keys = parse(" aaaaaaaaaaaaaaaa , bbbbbbbbbbbbbbbb:alice,").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].key, "aaaaaaaaaaaaaaaa");
        assert_eq!(keys[0].user, None);
        assert_eq!(keys[1].key, "bbbbbbbbbbbbbbbb");
        assert_eq!(keys[1].user.as_deref(), Some("alice"));
    }

    #[test]
    fn short_keys_and_empty_users_are_refused() {
        assert!(parse("short").is_err());
        assert!(parse("bbbbbbbbbbbbbbbb:").is_err());
    }

    #[test]
    fn debug_output_hides_the_key() {
        let keys = parse("secretsecretsecret:bob").unwrap();
        let shown = format!("{keys:?}");
        assert!(!shown.contains("secretsecretsecret"), "{shown}");
        assert!(shown.contains("bob"));
    }
}
