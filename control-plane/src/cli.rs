//! The command line: `control-plane serve` runs the service; every other
//! subcommand is a client of a running service (through [`crate::client`]).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::client::{Client, ClientError};
use crate::config::ServeConfig;
use crate::model::*;

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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane service.
    Serve(Box<ServeConfig>),
    /// Create a sandbox and print its id (--json for everything).
    Create {
        /// Owner (optional when the API key is bound to a user).
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        template: Option<String>,
        /// Label as KEY=VALUE; repeatable.
        #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_pair)]
        metadata: Vec<(String, String)>,
        /// Inactivity timeout in seconds.
        #[arg(long)]
        timeout: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// List sandboxes.
    List {
        #[arg(long)]
        user: Option<String>,
        /// creating, running, paused or gone.
        #[arg(long)]
        state: Option<String>,
        /// Only sandboxes with this label; repeatable.
        #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_pair)]
        metadata: Vec<(String, String)>,
        #[arg(long)]
        json: bool,
    },
    /// Show one sandbox.
    Status {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Run a command in a sandbox; prints its output and exits with its exit code.
    ///
    /// One argument is run as a shell line (`exec ID -- 'ls | wc -l'`); several
    /// are quoted and joined (`exec ID -- ls -la`).
    Exec {
        /// Sandbox id (from `create` or `list`).
        id: String,
        /// Start it in the background and return at once.
        #[arg(long)]
        background: bool,
        /// Kill it after this many milliseconds.
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Working directory inside the workspace.
        #[arg(long)]
        cwd: Option<String>,
        /// The command: one shell line, or a program and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Print a file of the sandbox's workspace.
    Read { id: String, path: String },
    /// Write a file in the sandbox's workspace from FILE, or stdin with `-`.
    Write {
        id: String,
        path: String,
        #[arg(default_value = "-")]
        source: String,
    },
    /// Stop a sandbox, keeping its files.
    Pause { id: String },
    /// Start a paused sandbox again.
    Resume { id: String },
    /// Resume if paused, and push the expiry forward.
    Connect { id: String },
    /// Set the inactivity timeout (seconds from now).
    Timeout { id: String, seconds: u64 },
    /// Print the URL of a port inside the sandbox.
    ExposePort { id: String, port: u16 },
    /// Delete a sandbox and its files.
    Delete { id: String },
    /// Print how to connect an MCP client to the sandbox.
    McpConfig {
        id: String,
        /// Server name in the MCP client.
        #[arg(long, default_value = "sandbox")]
        name: String,
        #[arg(long, value_enum, default_value = "claude")]
        format: McpFormat,
    },
}

/// Output of `mcp-config`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum McpFormat {
    /// A `claude mcp add` command line.
    Claude,
    /// A `.mcp.json` snippet.
    Json,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
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

fn fail(e: ClientError) -> i32 {
    eprintln!("error: {e}");
    1
}

async fn client_command(client: &Client, command: Command) -> Result<i32, ClientError> {
    match command {
        Command::Serve(_) => unreachable_serve(),
        Command::Create {
            user,
            template,
            metadata,
            timeout,
            json,
        } => {
            let req = CreateSandboxRequest {
                user_id: user,
                template_id: template,
                metadata: metadata.into_iter().collect(),
                timeout_secs: timeout,
            };
            let info = with_spinner("creating sandbox", client.create(&req)).await?;
            if json {
                print_json(&info);
            } else {
                println!("{}", info.sandbox_id);
                eprintln!("mcp_url: {}", info.mcp_url);
            }
        }
        Command::List {
            user,
            state,
            metadata,
            json,
        } => {
            let mut all = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let mut q: Vec<(String, String)> = Vec::new();
                if let Some(u) = &user {
                    q.push(("user_id".into(), u.clone()));
                }
                if let Some(s) = &state {
                    q.push(("state".into(), s.clone()));
                }
                for (k, v) in &metadata {
                    q.push((format!("metadata.{k}"), v.clone()));
                }
                if let Some(c) = &cursor {
                    q.push(("cursor".into(), c.clone()));
                }
                let pairs: Vec<(&str, &str)> =
                    q.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let page = client.list(&pairs).await?;
                all.extend(page.sandboxes);
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            if json {
                print_json(&all);
            } else {
                println!("{:<20} {:<9} {:<16} MCP URL", "ID", "STATUS", "USER");
                for s in all {
                    println!(
                        "{:<20} {:<9} {:<16} {}",
                        s.sandbox_id, s.status, s.user_id, s.mcp_url
                    );
                }
            }
        }
        Command::Status { id, json } => {
            let s = client.status(&id).await?;
            if json {
                print_json(&s);
            } else {
                println!("id:        {}", s.sandbox_id);
                println!("status:    {}", s.status);
                println!("user:      {}", s.user_id);
                println!("provider:  {}", s.provider);
                println!("mcp_url:   {}", s.mcp_url);
                println!(
                    "expires:   in {}s",
                    (s.expires_at - crate::sandboxes::now()).max(0)
                );
                for (k, v) in &s.metadata {
                    println!("metadata:  {k}={v}");
                }
            }
        }
        Command::Exec {
            id,
            background,
            timeout_ms,
            cwd,
            command,
        } => {
            let line = if command.len() == 1 {
                command[0].clone()
            } else {
                command
                    .iter()
                    .map(|a| shell_quote(a))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let req = RunCommandRequest {
                sandbox_id: id,
                command: line,
                background,
                timeout_ms,
                cwd,
                env: BTreeMap::new(),
            };
            let r = with_spinner("running", client.run(&req)).await?;
            if background {
                println!("{}", r.output);
                return Ok(0);
            }
            print!("{}", r.stdout);
            let _ = std::io::stdout().flush();
            eprint!("{}", r.stderr);
            if r.timed_out {
                eprintln!("error: the command timed out");
                return Ok(124);
            }
            return Ok(match (r.exit_code, r.signal) {
                (Some(c), _) => c,
                (None, Some(sig)) => 128 + sig,
                (None, None) => 1,
            });
        }
        Command::Read { id, path } => {
            let content = client.read_file(&id, &path).await?;
            print!("{content}");
        }
        Command::Write { id, path, source } => {
            let content = if source == "-" {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .map_err(|e| ClientError::Http(format!("reading stdin: {e}")))?;
                s
            } else {
                std::fs::read_to_string(&source)
                    .map_err(|e| ClientError::Http(format!("reading {source}: {e}")))?
            };
            client.write_file(&id, &path, &content).await?;
            eprintln!("wrote {} bytes to {path}", content.len());
        }
        Command::Pause { id } => {
            with_spinner("pausing", client.pause(&id)).await?;
            println!("paused {id}");
        }
        Command::Resume { id } => {
            let r = with_spinner("resuming", client.resume(&id)).await?;
            println!("resumed {id}: {}", r.sandbox.mcp_url);
        }
        Command::Connect { id } => {
            let r = with_spinner("connecting", client.connect(&id)).await?;
            println!("{id} is {}: {}", r.sandbox.status, r.sandbox.mcp_url);
        }
        Command::Timeout { id, seconds } => {
            let s = client.set_timeout(&id, seconds).await?;
            println!(
                "{id} expires in {}s",
                (s.expires_at - crate::sandboxes::now()).max(0)
            );
        }
        Command::ExposePort { id, port } => {
            println!("{}", client.expose_port(&id, port).await?);
        }
        Command::Delete { id } => {
            client.delete(&id).await?;
            println!("deleted {id}");
        }
        Command::McpConfig { id, name, format } => {
            let s = client.status(&id).await?;
            match format {
                McpFormat::Claude => {
                    let mut line = format!(
                        "claude mcp add --transport http {} {}",
                        shell_quote(&name),
                        shell_quote(&s.mcp_url)
                    );
                    for (k, v) in &s.mcp_headers {
                        line.push_str(&format!(" --header {}", shell_quote(&format!("{k}: {v}"))));
                    }
                    println!("{line}");
                }
                McpFormat::Json => {
                    let snippet = serde_json::json!({
                        "mcpServers": {
                            name: { "type": "http", "url": s.mcp_url, "headers": s.mcp_headers }
                        }
                    });
                    print_json(&snippet);
                }
            }
        }
    }
    Ok(0)
}

fn unreachable_serve() -> ! {
    // main() dispatches `serve` before building a client.
    eprintln!("error: serve is not a client command");
    std::process::exit(2)
}

fn print_json<T: serde::Serialize>(v: &T) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot print JSON: {e}"),
    }
}

/// Quotes `s` for a POSIX shell when it needs it.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Shows a spinner on stderr while `fut` runs, when stderr is a terminal.
async fn with_spinner<T>(label: &str, fut: impl std::future::Future<Output = T>) -> T {
    if !std::io::stderr().is_terminal() {
        return fut.await;
    }
    let label = label.to_string();
    let spinner = tokio::spawn(async move {
        let frames = ['|', '/', '-', '\\'];
        let mut i = 0;
        loop {
            eprint!("\r{} {label}...", frames[i % frames.len()]);
            let _ = std::io::stderr().flush();
            i += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let out = fut.await;
    spinner.abort();
    eprint!("\r\x1b[2K");
    let _ = std::io::stderr().flush();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_leaves_plain_words_and_quotes_the_rest() {
        assert_eq!(shell_quote("ls"), "ls");
        assert_eq!(shell_quote("a/b.txt"), "a/b.txt");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn metadata_pairs_need_an_equals_sign() {
        assert_eq!(parse_pair("k=v=w").unwrap(), ("k".into(), "v=w".into()));
        assert!(parse_pair("novalue").is_err());
    }
}
