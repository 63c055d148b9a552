//! Typed client of the control plane's HTTP API: the Rust counterpart of the
//! original Python `SandboxClient`, and what the CLI uses.
//!
//! `examples/client.rs` walks through it (create, run a command, write and
//! read a file, delete); the tests run it against a real control plane:
//!
//! ```sh
//! cargo run -p control-plane --example client   # with `control-plane serve` running
//! ```

use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::model::*;

/// What a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body.
    #[error("{message} (HTTP {status}, {code})")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The stable `error.code` (see `model::ErrorBody`).
        code: String,
        /// What happened and, where there is something to do, what.
        message: String,
    },
    /// The server could not be reached or answered something unreadable.
    #[error("{0}")]
    Http(String),
}

impl ClientError {
    /// The HTTP status for [`ClientError::Api`].
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            ClientError::Http(_) => None,
        }
    }
}

/// A handle on one control plane. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    base: String,
    api_key: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client for the server at `base_url`, e.g. `http://127.0.0.1:8080`.
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // Longer than the longest foreground command (10 minutes) plus slack.
            .timeout(Duration::from_secs(15 * 60))
            .build()
            .map_err(|e| ClientError::Http(format!("cannot build HTTP client: {e}")))?;
        Ok(Client {
            base: base_url.trim_end_matches('/').to_string(),
            api_key: None,
            http,
        })
    }

    /// Sends `key` as `Authorization: Bearer` with every request.
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ClientError::Http(format!("cannot reach {url}: {e}")))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Http(format!("reading the answer of {url}: {e}")))?;
        if !status.is_success() {
            return Err(api_error(status.as_u16(), &bytes));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Http(format!("unexpected answer from {url}: {e}")))
    }

    /// `GET /health`.
    pub async fn health(&self) -> Result<HealthResponse, ClientError> {
        self.call(Method::GET, "/health", None::<&()>).await
    }

    /// Creates a sandbox and waits until it runs.
    pub async fn create(&self, req: &CreateSandboxRequest) -> Result<SandboxInfo, ClientError> {
        self.call(Method::POST, "/sandboxes/create", Some(req))
            .await
    }

    /// Lists sandboxes; `query` pairs are `user_id`, `state`, `metadata.KEY`, `limit`, `cursor`.
    pub async fn list(&self, query: &[(&str, &str)]) -> Result<ListResponse, ClientError> {
        let qs: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        let path = if qs.is_empty() {
            "/sandboxes".to_string()
        } else {
            format!("/sandboxes?{}", qs.join("&"))
        };
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// Status and details of one sandbox.
    pub async fn status(&self, id: &str) -> Result<SandboxInfo, ClientError> {
        self.call(
            Method::GET,
            &format!("/sandboxes/{}/status", encode(id)),
            None::<&()>,
        )
        .await
    }

    /// What a running sandbox uses now (`GET /sandboxes/{id}/metrics`).
    pub async fn metrics(&self, id: &str) -> Result<MetricsResponse, ClientError> {
        self.call(
            Method::GET,
            &format!("/sandboxes/{}/metrics", encode(id)),
            None::<&()>,
        )
        .await
    }

    /// Resumes a paused sandbox or pushes a running one's expiry forward.
    pub async fn connect(&self, id: &str) -> Result<LifecycleResponse, ClientError> {
        let body = SandboxIdRequest {
            sandbox_id: id.into(),
        };
        self.call(Method::POST, "/sandboxes/connect", Some(&body))
            .await
    }

    /// Runs a shell command; see [`Client::run`] for all options.
    pub async fn run_command(
        &self,
        id: &str,
        command: &str,
        background: bool,
    ) -> Result<RunCommandResponse, ClientError> {
        self.run(&RunCommandRequest {
            sandbox_id: id.into(),
            command: command.into(),
            background,
            timeout_ms: None,
            cwd: None,
            env: Default::default(),
        })
        .await
    }

    /// Runs a command with every option of the API.
    pub async fn run(&self, req: &RunCommandRequest) -> Result<RunCommandResponse, ClientError> {
        self.call(Method::POST, "/sandboxes/run-command", Some(req))
            .await
    }

    /// URL of `port` inside the sandbox.
    pub async fn expose_port(&self, id: &str, port: u16) -> Result<String, ClientError> {
        let body = ExposePortRequest {
            sandbox_id: id.into(),
            port,
        };
        let r: ExposePortResponse = self
            .call(Method::POST, "/sandboxes/expose-port", Some(&body))
            .await?;
        Ok(r.url)
    }

    /// Writes (creates or replaces) a text file in the workspace.
    pub async fn write_file(&self, id: &str, path: &str, content: &str) -> Result<(), ClientError> {
        let body = FileOperationRequest {
            sandbox_id: id.into(),
            path: path.into(),
            content: Some(content.into()),
        };
        let _: FileOperationResponse = self
            .call(Method::POST, "/sandboxes/write-file", Some(&body))
            .await?;
        Ok(())
    }

    /// Reads a whole text file from the workspace.
    pub async fn read_file(&self, id: &str, path: &str) -> Result<String, ClientError> {
        let body = FileOperationRequest {
            sandbox_id: id.into(),
            path: path.into(),
            content: None,
        };
        let r: FileOperationResponse = self
            .call(Method::POST, "/sandboxes/read-file", Some(&body))
            .await?;
        Ok(r.content.unwrap_or_default())
    }

    /// Stops a sandbox, keeping its files.
    pub async fn pause(&self, id: &str) -> Result<LifecycleResponse, ClientError> {
        self.call(
            Method::POST,
            &format!("/sandboxes/{}/pause", encode(id)),
            None::<&()>,
        )
        .await
    }

    /// Starts a paused sandbox again.
    pub async fn resume(&self, id: &str) -> Result<LifecycleResponse, ClientError> {
        self.call(
            Method::POST,
            &format!("/sandboxes/{}/resume", encode(id)),
            None::<&()>,
        )
        .await
    }

    /// Sets the inactivity timeout, counted from now.
    pub async fn set_timeout(
        &self,
        id: &str,
        timeout_secs: u64,
    ) -> Result<SandboxInfo, ClientError> {
        let body = SetTimeoutRequest { timeout_secs };
        self.call(
            Method::POST,
            &format!("/sandboxes/{}/timeout", encode(id)),
            Some(&body),
        )
        .await
    }

    /// Deletes a sandbox and its files.
    pub async fn delete(&self, id: &str) -> Result<(), ClientError> {
        let _: DeleteResponse = self
            .call(
                Method::DELETE,
                &format!("/sandboxes/{}", encode(id)),
                None::<&()>,
            )
            .await?;
        Ok(())
    }

    /// The local templates built on the server (`GET /templates`).
    pub async fn templates(&self) -> Result<TemplateList, ClientError> {
        self.call(Method::GET, "/templates", None::<&()>).await
    }

    /// Builds a template (`POST /templates`), calling `on_log` with each line
    /// of the build's output as it comes, and answers the new template.
    /// Fails with the server's error when the build fails (nothing is left
    /// of it then), or when the key is bound to a user (403).
    pub async fn build_template(
        &self,
        req: &BuildTemplateRequest,
        mut on_log: impl FnMut(&str),
    ) -> Result<TemplateInfo, ClientError> {
        let url = format!("{}/templates", self.base);
        let mut http = self.http.post(&url).json(req);
        if let Some(key) = &self.api_key {
            http = http.bearer_auth(key);
        }
        let mut resp = http
            .send()
            .await
            .map_err(|e| ClientError::Http(format!("cannot reach {url}: {e}")))?;
        let status = resp.status();
        let broken =
            |e: reqwest::Error| ClientError::Http(format!("the build's answer broke: {e}"));
        if !status.is_success() {
            let bytes = resp.bytes().await.map_err(broken)?;
            return Err(api_error(status.as_u16(), &bytes));
        }
        let mut pending = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(broken)? {
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let event: BuildEvent = serde_json::from_slice(&line).map_err(|e| {
                    ClientError::Http(format!("unexpected line in the build's answer: {e}"))
                })?;
                match event {
                    BuildEvent::Log(text) => on_log(&text),
                    BuildEvent::Template(info) => return Ok(info),
                    BuildEvent::Error(e) => {
                        return Err(ClientError::Api {
                            status: status.as_u16(),
                            code: e.code,
                            message: e.message,
                        });
                    }
                }
            }
        }
        Err(ClientError::Http(
            "the build's answer ended before the build did (the server stopped?)".into(),
        ))
    }

    /// Deletes a template (`DELETE /templates/{name}`). Refused (409) while
    /// a sandbox uses it, and (403) for keys bound to a user.
    pub async fn delete_template(&self, name: &str) -> Result<(), ClientError> {
        let _: DeleteResponse = self
            .call(
                Method::DELETE,
                &format!("/templates/{}", encode(name)),
                None::<&()>,
            )
            .await?;
        Ok(())
    }
}

/// The [`ClientError`] of an error answer with `status` and body `bytes`.
fn api_error(status: u16, bytes: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorResponse>(bytes) {
        Ok(e) => ClientError::Api {
            status,
            code: e.error.code,
            message: e.error.message,
        },
        Err(_) => ClientError::Api {
            status,
            code: "http".into(),
            message: String::from_utf8_lossy(bytes).chars().take(500).collect(),
        },
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
