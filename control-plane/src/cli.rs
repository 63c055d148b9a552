//! The command line: `control-plane serve` runs the service; every other
//! subcommand is a client of a running service (through [`crate::client`]).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

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

/// `control-plane create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Owner (optional when the API key is bound to a user).
    #[arg(long)]
    pub user: Option<String>,
    /// Template to create it from (the provider's default when left out;
    /// the local provider has only `default`).
    #[arg(long)]
    pub template: Option<String>,
    /// Label as KEY=VALUE; repeatable.
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub metadata: Vec<(String, String)>,
    /// Inactivity timeout in seconds.
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Whether it reaches the internet (default: yes, where the host can).
    #[arg(long, value_name = "BOOL")]
    pub internet: Option<bool>,
    /// Memory limit in MiB (local provider).
    #[arg(long)]
    pub memory_mb: Option<u64>,
    /// CPUs' worth of CPU time (local provider).
    #[arg(long)]
    pub cpu_count: Option<u32>,
    /// Most processes and threads alive at once (local provider).
    #[arg(long)]
    pub process_limit: Option<u64>,
    /// Print the whole record as JSON instead of the id.
    #[arg(long)]
    pub json: bool,
}

/// `control-plane list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this user's sandboxes.
    #[arg(long)]
    pub user: Option<String>,
    /// creating, running, paused or gone.
    #[arg(long)]
    pub state: Option<String>,
    /// Only sandboxes with this label; repeatable.
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub metadata: Vec<(String, String)>,
    /// Print the records as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `control-plane exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Sandbox id (from `create` or `list`).
    pub id: String,
    /// Start it in the background and return at once.
    #[arg(long)]
    pub background: bool,
    /// Kill it after this many milliseconds.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Working directory inside the workspace.
    #[arg(long)]
    pub cwd: Option<String>,
    /// The command: one shell line, or a program and its arguments. Flags
    /// of exec come before it; after `--` everything is the command's.
    #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
    pub command: Vec<String>,
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
        Command::Create(args) => create(client, args).await?,
        Command::List(args) => list(client, args).await?,
        Command::Status { id, json } => status(client, &id, json).await?,
        Command::Stats { id, json } => stats(client, &id, json).await?,
        Command::Exec(args) => return exec(client, args).await,
        Command::Read { id, path } => {
            let content = client.read_file(&id, &path).await?;
            print!("{content}");
        }
        Command::Write { id, path, source } => {
            let content = if source == "-" {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .map_err(|e| CliError::Usage(format!("reading stdin: {e}")))?;
                s
            } else {
                std::fs::read_to_string(&source)
                    .map_err(|e| CliError::Usage(format!("reading {source}: {e}")))?
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
            println!("{id} expires in {}s", seconds_until(s.expires_at));
        }
        Command::ExposePort { id, port } => {
            println!("{}", client.expose_port(&id, port).await?);
        }
        Command::Delete { id } => {
            client.delete(&id).await?;
            println!("deleted {id}");
        }
        Command::McpConfig { id, name, format } => mcp_config(client, &id, &name, format).await?,
    }
    Ok(0)
}

/// The API's message when create names no owner; the CLI says which flag.
const USER_ID_REQUIRED: &str = "user_id is required";

async fn create(client: &Client, args: CreateArgs) -> Result<(), CliError> {
    let asked_for_user = args.user.is_some();
    let req = CreateSandboxRequest {
        user_id: args.user,
        template_id: args.template,
        metadata: args.metadata.into_iter().collect(),
        timeout_secs: args.timeout,
        allow_internet_access: args.internet,
        memory_mb: args.memory_mb,
        cpu_count: args.cpu_count,
        process_limit: args.process_limit,
    };
    let info = match with_spinner("creating sandbox", client.create(&req)).await {
        Err(ClientError::Api { message, .. }) if !asked_for_user && message == USER_ID_REQUIRED => {
            return Err(CliError::Usage(
                "--user is required: name the sandbox's owner (e.g. --user me), \
                 or use an API key bound to a user"
                    .into(),
            ));
        }
        other => other?,
    };
    if args.json {
        print_json(&info);
    } else {
        println!("{}", info.sandbox_id);
        eprintln!("mcp_url: {}", info.mcp_url);
    }
    Ok(())
}

async fn list(client: &Client, args: ListArgs) -> Result<(), CliError> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q: Vec<(String, String)> = Vec::new();
        if let Some(u) = &args.user {
            q.push(("user_id".into(), u.clone()));
        }
        if let Some(s) = &args.state {
            q.push(("state".into(), s.clone()));
        }
        for (k, v) in &args.metadata {
            q.push((format!("metadata.{k}"), v.clone()));
        }
        if let Some(c) = &cursor {
            q.push(("cursor".into(), c.clone()));
        }
        let pairs: Vec<(&str, &str)> = q.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let page = client.list(&pairs).await?;
        all.extend(page.sandboxes);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    if args.json {
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
    Ok(())
}

async fn stats(client: &Client, id: &str, json: bool) -> Result<(), CliError> {
    let m = client.metrics(id).await?;
    if json {
        print_json(&m);
    } else {
        let limit = |v: Option<u64>| v.map_or("unlimited".to_string(), |v| v.to_string());
        println!(
            "cpu:        {:.2}s used, {} CPUs",
            m.cpu_used_secs,
            limit(m.cpu_count.map(u64::from))
        );
        println!("memory:     {} of {} bytes", m.mem_used, limit(m.mem_total));
        println!(
            "processes:  {} of {} ({} forks refused)",
            m.processes,
            limit(m.process_limit),
            m.processes_refused
        );
        println!("disk:       {} bytes in the workspace", m.disk_used);
        println!("oom kills:  {}", m.oom_kills);
    }
    Ok(())
}

async fn status(client: &Client, id: &str, json: bool) -> Result<(), CliError> {
    let s = client.status(id).await?;
    if json {
        print_json(&s);
    } else {
        println!("id:        {}", s.sandbox_id);
        println!("status:    {}", s.status);
        println!("user:      {}", s.user_id);
        println!("provider:  {}", s.provider);
        println!("mcp_url:   {}", s.mcp_url);
        println!("expires:   in {}s", seconds_until(s.expires_at));
        for (k, v) in &s.metadata {
            println!("metadata:  {k}={v}");
        }
    }
    Ok(())
}

/// Most stdin `exec` passes on: the command line that carries it must stay
/// under Linux's limit for one argument (128 KiB), base64 included.
const MAX_EXEC_STDIN: usize = 64 * 1024;

/// Runs the command and returns its exit code (124 on timeout, 128 + N
/// for signal N).
async fn exec(client: &Client, args: ExecArgs) -> Result<i32, CliError> {
    let line = if args.command.len() == 1 {
        args.command[0].clone()
    } else {
        args.command
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let line = match piped_stdin()? {
        Some(input) if !input.is_empty() => with_stdin(&line, &input),
        _ => line,
    };
    let req = RunCommandRequest {
        sandbox_id: args.id,
        command: line,
        background: args.background,
        timeout_ms: args.timeout_ms,
        cwd: args.cwd,
        env: BTreeMap::new(),
    };
    let r = with_spinner("running", client.run(&req)).await?;
    if args.background {
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
    Ok(match (r.exit_code, r.signal) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    })
}

/// What was piped or redirected to this process's stdin, read to its end;
/// `None` for a terminal or a device such as /dev/null, which are not read.
fn piped_stdin() -> Result<Option<Vec<u8>>, CliError> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileTypeExt;
    let stdin = std::io::stdin();
    let Ok(fd) = stdin.as_fd().try_clone_to_owned() else {
        return Ok(None);
    };
    let kind = std::fs::File::from(fd)
        .metadata()
        .map(|m| m.file_type())
        .ok();
    if !kind.is_some_and(|k| k.is_fifo() || k.is_file() || k.is_socket()) {
        return Ok(None);
    }
    let mut input = Vec::new();
    stdin
        .lock()
        .take(MAX_EXEC_STDIN as u64 + 1)
        .read_to_end(&mut input)
        .map_err(|e| CliError::Usage(format!("reading stdin: {e}")))?;
    if input.len() > MAX_EXEC_STDIN {
        return Err(CliError::Usage(format!(
            "exec passes at most {} KiB of stdin to the command; write larger input \
             into the sandbox first (control-plane write ID FILE -) and run \
             exec ID -- 'COMMAND < FILE'",
            MAX_EXEC_STDIN / 1024
        )));
    }
    Ok(Some(input))
}

/// `line` run with `input` as its stdin: the bytes travel base64-encoded in
/// a here-document (whose alphabet cannot contain the end marker) and are
/// decoded in the sandbox by `base64 -d`.
fn with_stdin(line: &str, input: &[u8]) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(input);
    let mut doc = String::with_capacity(encoded.len() * 77 / 76 + line.len() + 96);
    doc.push_str("{ base64 -d <<'CONTROL_PLANE_STDIN'\n");
    for chunk in encoded.as_bytes().chunks(76) {
        doc.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        doc.push('\n');
    }
    // Own lines for the command, so a trailing comment in it cuts nothing.
    doc.push_str("CONTROL_PLANE_STDIN\n} | (\n");
    doc.push_str(line);
    doc.push_str("\n)");
    doc
}

async fn mcp_config(
    client: &Client,
    id: &str,
    name: &str,
    format: McpFormat,
) -> Result<(), CliError> {
    let s = client.status(id).await?;
    match s.status {
        SandboxState::Running => {}
        SandboxState::Gone => {
            return Err(CliError::Usage(format!(
                "sandbox {id} is gone: its provider no longer has it, so it has no MCP \
                 endpoint; delete it and create a new one"
            )));
        }
        other => eprintln!(
            "note: sandbox {id} is {other}: this URL answers only once it runs again \
             (control-plane resume {id})"
        ),
    }
    match format {
        McpFormat::Claude => {
            let mut line = format!(
                "claude mcp add --transport http {} {}",
                shell_quote(name),
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
    Ok(())
}

/// Seconds from now until Unix time `at` (0 if it passed).
fn seconds_until(at: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    (at - now).max(0)
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
    fn piped_stdin_reaches_the_command_byte_for_byte() {
        let input: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let line = with_stdin("od -An -v -tx1 # a comment", &input);
        let out = std::process::Command::new("sh")
            .args(["-c", &line])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let got: Vec<u8> = String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect();
        assert_eq!(got, input);
    }

    #[test]
    fn metadata_pairs_need_an_equals_sign() {
        assert_eq!(parse_pair("k=v=w").unwrap(), ("k".into(), "v=w".into()));
        assert!(parse_pair("novalue").is_err());
    }
}
