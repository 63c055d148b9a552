//! Starts the real mcp-tools binary on an ephemeral port and talks MCP to it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};

pub type Client = RunningService<RoleClient, ()>;

/// A running mcp-tools with its own workspace and state folder.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub token: Option<String>,
    pub workspace: PathBuf,
    pub state_dir: PathBuf,
    logs: std::sync::Arc<std::sync::Mutex<String>>,
    _tmp: tempfile::TempDir,
}

#[derive(Default)]
pub struct Options {
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub extra_args: Vec<String>,
    /// Collect the server's log lines at this level (readable with `logs()`).
    pub log_level: Option<&'static str>,
    /// Extra environment variables for the server.
    pub env: Vec<(&'static str, &'static str)>,
    /// RLIMIT_NOFILE for the server, soft and hard, so it cannot raise it.
    pub open_files: Option<u64>,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(Options::default())
    }

    pub fn with_token(token: &str) -> Server {
        Server::start_with(Options {
            token: Some(token.to_owned()),
            ..Options::default()
        })
    }

    pub fn start_with(opts: Options) -> Server {
        let tmp = tempfile::tempdir().expect("temp dir");
        let workspace = tmp.path().join("workspace");
        let state_dir = tmp.path().join("state");
        std::fs::create_dir(&workspace).unwrap();
        let addr_file = tmp.path().join("addr");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-tools"));
        cmd.arg("--port")
            .arg("0")
            .arg("--workspace")
            .arg(&workspace)
            .arg("--state-dir")
            .arg(&state_dir)
            .arg("--addr-file")
            .arg(&addr_file)
            .args(&opts.extra_args)
            .env_remove("MCP_AUTH_TOKEN")
            .envs(opts.env.iter().copied())
            .env_remove("RUST_LOG")
            .env("MCP_LOG_LEVEL", opts.log_level.unwrap_or("warn"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if opts.log_level.is_some() {
                Stdio::piped()
            } else {
                Stdio::inherit()
            });
        if let Some(token) = &opts.token {
            cmd.arg("--token").arg(token);
        }
        if let Some(path) = &opts.token_file {
            cmd.arg("--token-file").arg(path);
        }
        if let Some(limit) = opts.open_files {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            // SAFETY: setrlimit is async-signal-safe and reads a struct copied
            // into the closure.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("start mcp-tools");
        let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            let logs = logs.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    let mut logs = logs.lock().unwrap();
                    logs.push_str(&line);
                    logs.push('\n');
                }
            });
        }
        let addr = wait_for_addr(&addr_file);
        Server {
            child,
            addr,
            token: opts.token,
            workspace,
            state_dir,
            logs,
            _tmp: tmp,
        }
    }

    /// What the server has logged so far (with `Options::log_level`).
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.workspace.join(rel)
    }

    /// An MCP client session, with the server's token if it has one.
    pub async fn client(&self) -> Client {
        self.client_with_token(self.token.as_deref()).await
    }

    pub async fn client_with_token(&self, token: Option<&str>) -> Client {
        let mut config = StreamableHttpClientTransportConfig::with_uri(self.url());
        if let Some(token) = token {
            config = config.auth_header(token.to_owned());
        }
        let transport = StreamableHttpClientTransport::from_config(config);
        ().serve(transport).await.expect("MCP initialize")
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) with a pid this test started or found; no memory is involved.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().expect("wait for mcp-tools")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for mcp-tools to write the address it listens on (`--addr-file`).
pub fn wait_for_addr(addr_file: &Path) -> String {
    let started = Instant::now();
    loop {
        if let Ok(addr) = std::fs::read_to_string(addr_file) {
            return addr;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "mcp-tools did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Calls a tool; panics on a protocol error (tool errors come back as results).
pub async fn call(client: &Client, tool: &str, args: Value) -> CallToolResult {
    let Value::Object(args) = args else {
        panic!("tool arguments must be an object")
    };
    client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("{tool} failed at the protocol level: {e}"))
}

/// The text of a result's first content block.
pub fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The structured content of a successful result.
pub fn ok(result: &CallToolResult) -> Value {
    assert_ne!(
        result.is_error,
        Some(true),
        "expected success, got error: {}",
        text(result)
    );
    result
        .structured_content
        .clone()
        .expect("structured content")
}

/// The message of a tool error.
pub fn err(result: &CallToolResult) -> String {
    assert_eq!(
        result.is_error,
        Some(true),
        "expected a tool error, got: {}",
        text(result)
    );
    text(result)
}

/// True while a process with this pid exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name in parentheses.
    let state = stat.rsplit(')').next().unwrap_or("").trim_start();
    !state.starts_with('Z')
}

/// Waits up to `timeout` for `cond` to hold.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

pub fn write(path: &Path, content: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, content).unwrap();
}

/// A hand-made MCP session over plain HTTP, for what the client library
/// does not expose (sending notifications/cancelled for a request).
#[derive(Clone)]
pub struct RawSession {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    pub session_id: String,
}

impl RawSession {
    pub async fn open(server: &Server) -> RawSession {
        match RawSession::try_open(server).await {
            Ok(raw) => raw,
            Err(resp) => panic!("initialize: {}", resp.status()),
        }
    }

    /// Initializes a session; the answer when the server refuses.
    pub async fn try_open(server: &Server) -> Result<RawSession, reqwest::Response> {
        // A client of its own: its own connection.
        RawSession::try_open_on(reqwest::Client::new(), server.url(), server.token.clone()).await
    }

    /// Initializes a session at `url` through `http`'s connections.
    pub async fn try_open_on(
        http: reqwest::Client,
        url: String,
        token: Option<String>,
    ) -> Result<RawSession, reqwest::Response> {
        let mut raw = RawSession {
            http,
            url,
            token,
            session_id: String::new(),
        };
        let resp = raw
            .send(
                json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "raw", "version": "1"}}}),
            )
            .await;
        if !resp.status().is_success() {
            return Err(resp);
        }
        raw.session_id = resp.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_owned();
        resp.bytes().await.unwrap();
        raw.post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        Ok(raw)
    }

    pub async fn post(&self, body: Value) -> reqwest::Response {
        let resp = self.send(body).await;
        assert!(resp.status().is_success(), "POST /mcp: {}", resp.status());
        resp
    }

    /// POSTs `body` in this session, whatever the answer.
    pub async fn send(&self, body: Value) -> reqwest::Response {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .body(body.to_string());
        if !self.session_id.is_empty() {
            req = req.header("mcp-session-id", &self.session_id);
        }
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        req.send().await.expect("POST /mcp")
    }

    /// Ends the session (HTTP DELETE); returns the status.
    pub async fn delete(&self) -> reqwest::StatusCode {
        let mut req = self
            .http
            .delete(&self.url)
            .header("mcp-session-id", &self.session_id);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        req.send().await.expect("DELETE /mcp").status()
    }

    /// Calls a tool with request id `id` and returns the raw answer body.
    pub async fn call(&self, id: u64, tool: &str, args: Value) -> String {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool, "arguments": args}});
        self.post(body).await.text().await.unwrap()
    }

    pub async fn cancel(&self, id: u64) {
        self.post(
            json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": id, "reason": "test"}}),
        )
        .await;
    }
}

/// Whether the tests run as root (needed for `unshare --pid`).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Records that the running test checks less than its name says, because
/// `reason` (a tool or privilege missing on this machine). In CI
/// (`CI=true`) that fails the test: CI provides everything the tests need.
/// Elsewhere the skip is printed and appended to the file `$TEST_SKIP_LOG`,
/// which `scripts/test.sh` counts and prints before nextest's summary.
pub fn skip(reason: &str) {
    let test = format!(
        "{}::{}",
        env!("CARGO_CRATE_NAME"),
        std::thread::current().name().unwrap_or("?")
    );
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
        "{test} cannot run in CI: {reason}"
    );
    eprintln!("SKIPPED {test}: {reason}");
    if let Some(log) = std::env::var_os("TEST_SKIP_LOG") {
        use std::io::Write;
        let line = format!("{test}: {reason}\n");
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .expect("TEST_SKIP_LOG is writable");
    }
}
