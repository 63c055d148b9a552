//! What the benchmarks share: starting mcp-tools, and a thin MCP client.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const TOKEN: &str = "bench-token";

/// Starts the mcp-tools binary of this build on a free loopback port.
pub fn start_mcp_tools(workspace: &Path, scratch: &Path) -> (Child, String) {
    let addr_file = scratch.join("mcp-tools.addr");
    let child = Command::new(env!("CARGO_BIN_EXE_mcp-tools"))
        .args([
            "--port",
            "0",
            "--host",
            "127.0.0.1",
            "--token",
            TOKEN,
            "--log-level",
            "warn",
        ])
        .arg("--workspace")
        .arg(workspace)
        .arg("--state-dir")
        .arg(scratch.join("state"))
        .arg("--addr-file")
        .arg(&addr_file)
        .stdout(Stdio::null())
        .spawn()
        .expect("start mcp-tools");
    let addr = wait_for(&addr_file);
    (child, addr)
}

/// Kills the servers a benchmark started when it ends.
pub struct Kill(pub Vec<Child>);
impl Drop for Kill {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn wait_for(path: &std::path::Path) -> String {
    let start = Instant::now();
    loop {
        if let Ok(addr) = std::fs::read_to_string(path) {
            return addr;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The longest any one request of a benchmark may take, connecting
/// included: the calls benchmarked take milliseconds, and a server that
/// stops accepting or answering must show as errors, not as a hang.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// An HTTP client whose every request gives up after [`REQUEST_TIMEOUT`].
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .connect_timeout(REQUEST_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap()
}

/// A raw MCP session over HTTP: a thin client, so that the figures are the
/// server's, not a client library's.
pub struct Session {
    http: reqwest::Client,
    url: Arc<str>,
    session_id: String,
}

impl Session {
    pub async fn open(url: &Arc<str>) -> Session {
        Session::try_open(url).await.expect("initialize")
    }

    /// Opens a session; `None` when the server refuses or fails, or does
    /// not answer within [`REQUEST_TIMEOUT`] (every request of the session
    /// has that limit, so a server that stops answering cannot hang a
    /// benchmark).
    pub async fn try_open(url: &Arc<str>) -> Option<Session> {
        let http = client();
        let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"load","version":"1"}}}"#;
        let resp = Self::try_post(&http, url, None, init).await?;
        let session_id = resp
            .headers()
            .get("mcp-session-id")?
            .to_str()
            .ok()?
            .to_owned();
        resp.bytes().await.ok()?;
        let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
        Self::try_post(&http, url, Some(&session_id), initialized)
            .await?
            .bytes()
            .await
            .ok()?;
        Some(Session {
            http,
            url: url.clone(),
            session_id,
        })
    }

    /// The session's Mcp-Session-Id.
    pub fn id(&self) -> &str {
        &self.session_id
    }

    async fn post(
        http: &reqwest::Client,
        url: &str,
        session: Option<&str>,
        body: &str,
    ) -> reqwest::Response {
        Self::try_post(http, url, session, body)
            .await
            .expect("request failed")
    }

    async fn try_post(
        http: &reqwest::Client,
        url: &str,
        session: Option<&str>,
        body: &str,
    ) -> Option<reqwest::Response> {
        let mut req = http
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("mcp-protocol-version", "2025-06-18")
            .body(body.to_owned());
        if let Some(id) = session {
            req = req.header("mcp-session-id", id);
        }
        let resp = req.send().await.ok()?;
        resp.status().is_success().then_some(resp)
    }

    /// Calls `tool` with `arguments` (a JSON object) and returns the answer's body.
    pub async fn call(&self, id: u64, tool: &str, arguments: &str) -> String {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{arguments}}}}}"#
        );
        let resp = Self::post(&self.http, &self.url, Some(&self.session_id), &body).await;
        resp.text().await.unwrap()
    }

    /// Calls `tool`; `None` when the request fails at the HTTP level.
    pub async fn try_call(&self, id: u64, tool: &str, arguments: &str) -> Option<String> {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{arguments}}}}}"#
        );
        let resp = Self::try_post(&self.http, &self.url, Some(&self.session_id), &body).await?;
        resp.text().await.ok()
    }

    pub async fn read_file(&self, id: u64) {
        let text = self.call(id, "read_file", r#"{"path":"hello.txt"}"#).await;
        assert!(
            text.contains("hello, world") && !text.contains("\"isError\":true"),
            "bad answer: {text}"
        );
    }
}
