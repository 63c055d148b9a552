//! The command line: `control-plane serve` runs the service; every other
//! subcommand is a client of a running service (through [`crate::client`]).
//!
//! One module per command group, named for it: [`create`], [`list`],
//! [`status`] (`status`, `stats`), [`exec`], [`files`] (`read`, `write`),
//! [`lifecycle`] (`pause`, `resume`, `connect`, `timeout`, `delete`),
//! [`mcp_config`] (`mcp-config`, `expose-port`), [`template`] (`template
//! build`, `list`, `delete`); [`output`] holds what they share for printing.

mod create;
mod exec;
mod files;
mod lifecycle;
mod list;
mod mcp_config;
mod output;
mod status;
mod template;

use clap::{Parser, Subcommand};

use crate::client::{Client, ClientError};
use crate::config::ServeConfig;

pub use create::CreateArgs;
pub use exec::ExecArgs;
pub use list::ListArgs;
pub use mcp_config::McpFormat;
pub use template::{TemplateBuildArgs, TemplateCommand};

/// Sandboxes for AI agents: create them, run commands in them, and connect
/// MCP clients (Claude Code, any agent) to them.
#[derive(Debug, Parser)]
#[command(name = "control-plane", version, propagate_version = true)]
#[command(after_help = "Quick start:\n  \
    control-plane serve &\n  \
    ID=$(control-plane create --user me)\n  \
    control-plane exec $ID -- uname -a\n  \
    control-plane mcp-config $ID      # prints the `claude mcp add` line")]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,

    /// URL of the control plane (client commands).
    #[arg(
        long,
        global = true,
        env = "CONTROL_PLANE_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,

    /// API key (client commands), sent as `Authorization: Bearer`.
    #[arg(
        long,
        global = true,
        env = "CONTROL_PLANE_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane service.
    Serve(Box<ServeConfig>),
    /// Create a sandbox and print its id (--json for everything).
    Create(CreateArgs),
    /// Show what a running sandbox uses: CPU, memory, processes, disk, OOM kills.
    Stats {
        /// Sandbox id.
        id: String,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List sandboxes.
    List(ListArgs),
    /// Show one sandbox.
    Status {
        /// Sandbox id (from `create` or `list`).
        id: String,
        /// Print the whole record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a command in a sandbox; prints its output and exits with its exit code.
    ///
    /// Flags go before `--`, the command after it. One argument is run as a
    /// shell line (`exec ID -- 'ls | wc -l'`); several are quoted and joined
    /// (`exec ID -- ls -la`). Data piped to exec (up to 64 KiB) is the
    /// command's stdin.
    Exec(ExecArgs),
    /// Print a file of the sandbox's workspace.
    Read {
        /// Sandbox id.
        id: String,
        /// Path inside the workspace.
        path: String,
    },
    /// Write a file in the sandbox's workspace from FILE, or stdin with `-`.
    Write {
        /// Sandbox id.
        id: String,
        /// Path inside the workspace.
        path: String,
        /// A local file, or `-` for stdin.
        #[arg(default_value = "-")]
        source: String,
    },
    /// Stop a sandbox, keeping its files.
    Pause {
        /// Sandbox id.
        id: String,
    },
    /// Start a paused sandbox again.
    Resume {
        /// Sandbox id.
        id: String,
    },
    /// Resume if paused, and push the expiry forward.
    Connect {
        /// Sandbox id.
        id: String,
    },
    /// Set the inactivity timeout (seconds from now).
    Timeout {
        /// Sandbox id.
        id: String,
        /// Seconds of inactivity after which it expires.
        seconds: u64,
    },
    /// Print the URL of a port inside the sandbox.
    ExposePort {
        /// Sandbox id.
        id: String,
        /// Port inside the sandbox.
        port: u16,
    },
    /// Delete a sandbox and its files.
    Delete {
        /// Sandbox id.
        id: String,
    },
    /// Build, list and delete the local templates sandboxes run on.
    #[command(subcommand)]
    Template(TemplateCommand),
    /// Print how to connect an MCP client to the sandbox.
    McpConfig {
        /// Sandbox id.
        id: String,
        /// Server name in the MCP client.
        #[arg(long, default_value = "sandbox")]
        name: String,
        /// What to print.
        #[arg(long, value_enum, default_value = "claude")]
        format: McpFormat,
    },
}

/// Runs a client subcommand; returns the process exit code.
pub async fn run_client(cli: Cli) -> i32 {
    let client = match Client::new(&cli.url) {
        Ok(c) => match cli.api_key {
            Some(k) => c.with_api_key(k),
            None => c,
        },
        Err(e) => return fail(e),
    };
    match client_command(&client, cli.command).await {
        Ok(code) => code,
        Err(e) => fail(e),
    }
}

/// What a client subcommand can fail with.
#[derive(Debug, thiserror::Error)]
enum CliError {
    /// The control plane refused, or could not be reached.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The command line or local input cannot work; the message says why.
    #[error("{0}")]
    Usage(String),
}

fn fail(e: impl std::fmt::Display) -> i32 {
    eprintln!("error: {e}");
    1
}

/// Runs one client subcommand; `Ok` holds the exit code.
async fn client_command(client: &Client, command: Command) -> Result<i32, CliError> {
    match command {
        Command::Serve(_) => unreachable_serve(),
        Command::Create(args) => create::create(client, args).await?,
        Command::List(args) => list::list(client, args).await?,
        Command::Status { id, json } => status::status(client, &id, json).await?,
        Command::Stats { id, json } => status::stats(client, &id, json).await?,
        Command::Exec(args) => return exec::exec(client, args).await,
        Command::Read { id, path } => files::read(client, &id, &path).await?,
        Command::Write { id, path, source } => files::write(client, &id, &path, &source).await?,
        Command::Pause { id } => lifecycle::pause(client, &id).await?,
        Command::Resume { id } => lifecycle::resume(client, &id).await?,
        Command::Connect { id } => lifecycle::connect(client, &id).await?,
        Command::Timeout { id, seconds } => lifecycle::timeout(client, &id, seconds).await?,
        Command::Delete { id } => lifecycle::delete(client, &id).await?,
        Command::ExposePort { id, port } => mcp_config::expose_port(client, &id, port).await?,
        Command::McpConfig { id, name, format } => {
            mcp_config::mcp_config(client, &id, &name, format).await?
        }
        Command::Template(command) => template::template(client, command).await?,
    }
    Ok(0)
}

fn unreachable_serve() -> ! {
    // main() dispatches `serve` before building a client.
    eprintln!("error: serve is not a client command");
    std::process::exit(2)
}
