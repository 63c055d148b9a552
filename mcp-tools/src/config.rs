//! Command-line flags and environment variables, read once at start.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// MCP server that gives an LLM agent file, search and process tools
/// inside a sandbox, over MCP streamable HTTP at /mcp.
///
/// File tools are confined to the workspace folder. run_command is a shell
/// and is not: the sandbox itself is its boundary.
#[derive(Debug, Parser)]
#[command(name = "mcp-tools", version, about, long_about)]
pub struct Cli {
    /// How to serve (the flags without a subcommand).
    #[command(flatten)]
    pub serve: ServeConfig,
    /// Something other than serving, when given.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands; without one, the server runs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check that a running server answers: exits 0 when GET /health says ok.
    Health {
        /// Base URL of the server.
        #[arg(long, default_value = "http://127.0.0.1:6060")]
        url: String,
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
}

/// How the server runs.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address to listen on. Defaults to 0.0.0.0 when a token is set, and to
    /// 127.0.0.1 without one.
    #[arg(long, env = "MCP_HOST")]
    pub host: Option<IpAddr>,

    /// Port to listen on (0 picks a free one and prints it).
    #[arg(long, env = "MCP_PORT", default_value_t = 6060)]
    pub port: u16,

    /// Folder the file tools are confined to, and where commands start.
    #[arg(long, env = "WORKSPACE_DIR", default_value = "/workspace")]
    pub workspace: PathBuf,

    /// Bearer token every /mcp request must carry.
    #[arg(long, env = "MCP_AUTH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// File holding the bearer token; re-read when it changes, so the token
    /// can be set or rotated while the server runs. Until the file exists
    /// and is not empty, every /mcp request is refused.
    #[arg(long, env = "MCP_AUTH_TOKEN_FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,

    /// Browser origins allowed to call /mcp (comma-separated, e.g.
    /// https://app.example.com). A request with any other Origin gets 403.
    #[arg(long, env = "MCP_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Host names accepted in the Host header (comma-separated). Without a
    /// token only loopback names are accepted by default; with a token any
    /// Host is, so sandbox URLs like 6060-<id>.e2b.app work.
    #[arg(long, env = "MCP_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,

    /// Folder for background command logs; must be outside the workspace.
    /// Defaults to mcp-tools-<pid> under the system temp directory.
    #[arg(long, env = "MCP_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Largest file read_file returns whole, in bytes; larger files are read
    /// in parts with offset and limit.
    #[arg(long, env = "MCP_MAX_READ_BYTES", default_value_t = 256 * 1024)]
    pub max_read_bytes: u64,

    /// Largest image or notebook read_file reads, in bytes.
    #[arg(long, env = "MCP_MAX_IMAGE_BYTES", default_value_t = 20 * 1024 * 1024)]
    pub max_image_bytes: u64,

    /// Longest side, in pixels, of an image read_file returns; larger images
    /// are scaled down to it (1568 is what Claude's vision guide recommends).
    #[arg(long, env = "MCP_IMAGE_MAX_SIDE", default_value_t = 1568,
          value_parser = clap::value_parser!(u32).range(16..=8192))]
    pub image_max_side: u32,

    /// Listen on a Unix socket at this path instead of a TCP port (--host
    /// and --port are then ignored). The socket is made connectable by this
    /// user only; a supervisor on the same machine forwards to it. The
    /// connection timeouts and budget below hold there too.
    #[arg(long, env = "MCP_UNIX_SOCKET")]
    pub unix_socket: Option<PathBuf>,

    /// Write the address the server listens on (e.g. 127.0.0.1:41234) to
    /// this file once it accepts connections; for supervisors that start
    /// it with --port 0.
    #[arg(long, env = "MCP_ADDR_FILE")]
    pub addr_file: Option<PathBuf>,

    /// Run as this account (e.g. `user`). Started as root, the server
    /// switches to the account's user, group and supplementary groups
    /// before serving, and sets HOME, USER and LOGNAME to the account's;
    /// started as the account, it carries on. Any other user is an error.
    #[arg(long, env = "MCP_USER")]
    pub user: Option<String>,

    /// Log level when RUST_LOG is not set (error, warn, info, debug, trace).
    #[arg(long, env = "MCP_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Limits on sessions, requests, jobs and output.
    #[command(flatten)]
    pub limits: LimitsConfig,
}

/// What one client may hold: connections, sessions, background processes.
/// Defaults suit one agent (or a few) per sandbox.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitsConfig {
    /// Seconds a connection may take to send a request's headers; also how
    /// long an idle kept-alive connection stays open. Once the headers are
    /// in, a response may take as long as it needs (streams, long commands).
    #[arg(long, env = "MCP_HEADER_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_secs: u64,

    /// Seconds a request body may take to arrive whole, counted from its
    /// headers; a slower one gets 408.
    #[arg(long, env = "MCP_BODY_TIMEOUT_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_secs: u64,

    /// Most connections open at once, lowered to half the open-files limit.
    /// Over it, the oldest connection with no request in flight is closed;
    /// when all are busy, a new one gets 503.
    #[arg(long, env = "MCP_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,

    /// Most MCP sessions open at once. Over it, a session idle for 10 s or
    /// more is closed to make room; when none is, initialize gets an error.
    #[arg(long, env = "MCP_MAX_SESSIONS", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_sessions: u64,

    /// Seconds after which a session with no request in progress and no
    /// traffic is closed (its client must initialize again).
    #[arg(long, env = "MCP_SESSION_IDLE_SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub session_idle_secs: u64,

    /// Most background processes running at once; run_command with
    /// background=true is refused over it until one ends or is killed.
    #[arg(long, env = "MCP_MAX_JOBS", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_jobs: u64,
}

impl LimitsConfig {
    /// The connection limits, with the connection budget fitted to
    /// `open_files` (the soft RLIMIT_NOFILE).
    pub fn http(&self, open_files: u64) -> http_serve::Limits {
        http_serve::Limits {
            header_read_timeout: Duration::from_secs(self.header_timeout_secs),
            body_read_timeout: Duration::from_secs(self.body_timeout_secs),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
        }
        .connection_budget(open_files)
    }
}

impl ServeConfig {
    /// True when /mcp requires a bearer token.
    pub fn has_token(&self) -> bool {
        self.token.is_some() || self.token_file.is_some()
    }

    /// The address to bind: loopback unless a token guards the server or
    /// the user chose otherwise.
    pub fn bind_host(&self) -> IpAddr {
        self.host.unwrap_or(if self.has_token() {
            IpAddr::from([0, 0, 0, 0])
        } else {
            IpAddr::from([127, 0, 0, 1])
        })
    }

    /// The folder for background command logs.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("mcp-tools-{}", std::process::id()))
        })
    }
}
