//! The `e2b` provider: each sandbox is a Firecracker microVM in E2B's cloud,
//! built from the template in `sandbox-template/`, driven through E2B's REST
//! API (`https://api.{domain}`, header `X-API-Key`).
//!
//! mcp-tools in the template was started when the template was built and the
//! VM snapshotted, so nothing given at create time reaches its environment.
//! Each new sandbox gets its bearer token as a file instead, written through
//! envd's file API (port 49983, `X-Access-Token`); mcp-tools re-reads that
//! file. Sandboxes are created with `network.allowPublicTraffic: false`, so
//! every request to one of their ports must carry
//! `e2b-traffic-access-token`, which the control plane hands out with the MCP
//! URL.
//!
//! Calls that are safe to repeat (reads, delete, timeout, connect, the token
//! upload) are retried with backoff and jitter on 5xx and transport faults.
//! A create is repeated only when it surely never reached E2B; one that may
//! have happened is looked up by its metadata and killed instead, so no VM is
//! left running unknown. The API key is sent as a header only: it is in no
//! URL, log line or error message.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Capabilities, CreateSpec, Endpoint, Inspection, Listed, Provider, Running, SandboxRef,
};
use crate::config::E2bConfig;
use crate::error::{Error, ProviderError, Result, StartError};
use crate::ids::{ProviderId, SandboxId};
use crate::model::SandboxState;

/// Header that carries the sandbox's traffic token to any of its ports.
pub const TRAFFIC_HEADER: &str = "e2b-traffic-access-token";
/// Metadata keys the control plane puts on every sandbox it creates, so E2B's
/// own list can be filtered by them.
pub const META_MANAGED_BY: &str = "managed_by";
pub const META_SANDBOX_ID: &str = "control_plane_sandbox_id";
pub const META_USER_ID: &str = "control_plane_user_id";
const MANAGED_BY: &str = "control-plane";
/// Port of code-server in the template, when it is built with it.
const CODE_SERVER_PORT: u16 = 9000;
/// The user that owns mcp-tools' token folder in the template.
const SANDBOX_USER: &str = "user";
/// Attempts of a call that is safe to repeat.
const ATTEMPTS: u32 = 4;
/// First retry delay; it doubles each time, with jitter.
const BACKOFF: Duration = Duration::from_millis(150);
/// How long a new or resumed sandbox's mcp-tools may take to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest page E2B's list gives.
const PAGE_LIMIT: u32 = 100;

/// Runs each sandbox as a microVM in E2B's cloud (or an engine that speaks
/// E2B's API).
pub struct E2bProvider {
    http: reqwest::Client,
    api_key: String,
    api_url: Url,
    template_id: Option<String>,
    domain: String,
    debug: bool,
    mcp_port: u16,
    envd_port: u16,
    token_file: String,
    auto_pause: bool,
    code_server: bool,
    request_timeout: Duration,
    max_timeout_secs: u64,
}

/// What this provider keeps with each record.
#[derive(Debug, Default, Clone, serde::Serialize, Deserialize)]
struct Data {
    domain: String,
    #[serde(default)]
    envd_access_token: Option<String>,
    #[serde(default)]
    traffic_access_token: Option<String>,
}

/// `Sandbox`, E2B's answer to create and connect.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiSandbox {
    #[serde(rename = "sandboxID")]
    sandbox_id: ProviderId,
    #[serde(default)]
    envd_access_token: Option<String>,
    #[serde(default)]
    traffic_access_token: Option<String>,
    #[serde(default)]
    domain: Option<String>,
}

/// The fields of `SandboxDetail` and `ListedSandbox` used here.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiListed {
    #[serde(rename = "sandboxID")]
    sandbox_id: ProviderId,
    state: String,
    #[serde(default)]
    end_at: Option<String>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
}

/// `Error`: `{code, message}`.
#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    message: Option<String>,
}

/// Whether a call may be sent again after a failure.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Repeating it does no harm: retry on 5xx and transport faults.
    Safe,
    /// It must happen at most once: retry only when it surely never left.
    Never,
}

/// An answer of any status.
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

/// A call that got no answer: whether it may have reached the server.
struct NoAnswer {
    error: Error,
    maybe_sent: bool,
}

impl E2bProvider {
    /// A provider for E2B's API as `args` describe it; sandbox timeouts sent
    /// to E2B are capped at `max_timeout_secs`.
    ///
    /// Errors: a missing API key, a bad domain, API URL or token file path.
    pub fn new(args: &E2bConfig, max_timeout_secs: u64) -> Result<Self, StartError> {
        let api_key = args
            .e2b_api_key
            .clone()
            .filter(|k| !k.trim().is_empty())
            .ok_or_else(|| {
                StartError::Config(
                    "the e2b provider needs an API key: set E2B_API_KEY (or --e2b-api-key)".into(),
                )
            })?;
        if reqwest::header::HeaderValue::from_str(&api_key).is_err() {
            return Err(StartError::Config(
                "E2B_API_KEY has characters a header cannot carry".into(),
            ));
        }
        let domain = args.e2b_domain.trim().trim_end_matches('/').to_string();
        if domain.is_empty() || domain.contains('/') {
            return Err(StartError::Config(format!(
                "E2B_DOMAIN must be a domain name like e2b.app, not {domain:?}"
            )));
        }
        let api_url = args
            .e2b_api_url
            .clone()
            .unwrap_or_else(|| format!("https://api.{domain}"));
        let api_url = Url::parse(api_url.trim_end_matches('/'))
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                StartError::Config(format!("E2B_API_URL {api_url:?} is not an http(s) URL"))
            })?;
        // Every call carries the API key: in clear only to a local stand-in.
        if api_url.scheme() != "https" && !args.e2b_debug {
            return Err(StartError::Config(format!(
                "E2B_API_URL {:?} is not https: the API key would travel in clear \
                 (plain http is accepted only with E2B_DEBUG, for a local stand-in)",
                api_url.as_str()
            )));
        }
        if !args.e2b_token_file.starts_with('/') {
            return Err(StartError::Config(format!(
                "--e2b-token-file must be an absolute path inside the sandbox, not {:?}",
                args.e2b_token_file
            )));
        }
        let request_timeout = Duration::from_secs(args.e2b_request_timeout_secs.max(1));
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(request_timeout)
            .user_agent(concat!("control-plane/", env!("CARGO_PKG_VERSION")))
            // A redirect would carry X-API-Key to wherever it points (reqwest
            // drops only its own credential headers on another host), and
            // E2B's API does not redirect: a 3xx is an error like any other.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| StartError::Config(format!("http client: {e}")))?;
        Ok(E2bProvider {
            http,
            api_key,
            api_url,
            template_id: args.e2b_template_id.clone().filter(|t| !t.is_empty()),
            domain,
            debug: args.e2b_debug,
            mcp_port: args.e2b_mcp_port,
            envd_port: args.e2b_envd_port,
            token_file: args.e2b_token_file.clone(),
            auto_pause: args.e2b_auto_pause,
            code_server: args.e2b_code_server,
            request_timeout,
            max_timeout_secs: max_timeout_secs.max(1),
        })
    }

    fn api(&self, path: &str) -> Url {
        let mut url = self.api_url.clone();
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}{path}"));
        url
    }

    /// `/sandboxes/{id}{tail}`: a [`ProviderId`] cannot change the path.
    fn sandbox_path(id: &ProviderId, tail: &str) -> String {
        format!("/sandboxes/{id}{tail}")
    }

    /// Base URL of `port` of a sandbox: `https://{port}-{id}.{domain}`, or
    /// `http://localhost:{port}` in debug mode (as E2B's SDKs do).
    fn host_url(&self, provider_id: &ProviderId, domain: &str, port: u16) -> String {
        if self.debug {
            format!("http://localhost:{port}")
        } else {
            format!("https://{port}-{provider_id}.{domain}")
        }
    }

    fn data(sandbox: SandboxRef<'_>) -> Data {
        serde_json::from_value(sandbox.provider_data.clone()).unwrap_or_default()
    }

    fn domain_of(&self, data: &Data) -> String {
        if data.domain.is_empty() {
            self.domain.clone()
        } else {
            data.domain.clone()
        }
    }

    fn running(&self, provider_id: &ProviderId, data: Data) -> Running {
        let domain = self.domain_of(&data);
        let mut headers = BTreeMap::new();
        if let Some(t) = &data.traffic_access_token {
            headers.insert(TRAFFIC_HEADER.to_string(), t.clone());
        }
        Running {
            provider_id: provider_id.clone(),
            endpoint: Endpoint {
                url: format!("{}/mcp", self.host_url(provider_id, &domain, self.mcp_port)),
                headers,
            },
            provider_data: serde_json::to_value(&data).unwrap_or(Value::Null),
        }
    }

    /// Sends one request to E2B's API, repeating it as `retry` allows.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        retry: Retry,
        timeout: Duration,
        what: &str,
    ) -> Result<Answer> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .header("X-API-Key", &self.api_key)
                .timeout(timeout);
            if let Some(b) = body {
                req = req.json(b);
            }
            let outcome = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    match resp.bytes().await {
                        Ok(body) => Ok(Answer {
                            status,
                            headers,
                            body: body.to_vec(),
                        }),
                        Err(e) => Err(NoAnswer {
                            error: self.transport_error(what, &e),
                            maybe_sent: true,
                        }),
                    }
                }
                Err(e) => Err(NoAnswer {
                    error: self.transport_error(what, &e),
                    // A refused connection never carried the request.
                    maybe_sent: !e.is_connect(),
                }),
            };
            let again = attempt < ATTEMPTS
                && match &outcome {
                    Ok(a) => retry == Retry::Safe && a.status.is_server_error(),
                    Err(f) => retry == Retry::Safe || !f.maybe_sent,
                };
            if !again {
                return match outcome {
                    Ok(a) => Ok(a),
                    Err(f) => Err(f.error),
                };
            }
            match &outcome {
                Ok(a) => tracing::debug!(status = a.status.as_u16(), "E2B {what}: retrying"),
                Err(f) => tracing::debug!("E2B {what}: retrying after: {}", f.error),
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    /// Like [`send`](Self::send), but a create that failed in a way that may
    /// have made a sandbox reports whether it did.
    async fn send_create(&self, body: &Value) -> std::result::Result<Answer, NoAnswer> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let req = self
                .http
                .post(self.api("/sandboxes"))
                .header("X-API-Key", &self.api_key)
                // Creating a VM takes longer than other calls.
                .timeout(self.request_timeout * 2)
                .json(body);
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    return match resp.bytes().await {
                        Ok(b) => Ok(Answer {
                            status,
                            headers,
                            body: b.to_vec(),
                        }),
                        Err(e) => Err(NoAnswer {
                            error: self.transport_error("create", &e),
                            maybe_sent: true,
                        }),
                    };
                }
                Err(e) if e.is_connect() && attempt < ATTEMPTS => {
                    tracing::debug!(
                        "E2B create: retrying: {}",
                        self.transport_error("create", &e)
                    );
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => {
                    return Err(NoAnswer {
                        error: self.transport_error("create", &e),
                        maybe_sent: !e.is_connect(),
                    });
                }
            }
        }
    }

    fn transport_error(&self, what: &str, e: &reqwest::Error) -> Error {
        // The URL is left out: it says nothing the reader needs, and a
        // sandbox's address is no business of a log line.
        if e.is_timeout() {
            return ProviderError::timeout(format!("E2B did not answer {what} in time")).into();
        }
        let kind = if e.is_connect() {
            "cannot connect"
        } else {
            "the connection failed"
        };
        let detail = std::error::Error::source(e)
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        ProviderError::failed(self.scrub(format!("E2B {what}: {kind}{detail}"))).into()
    }

    /// Never let the key through, whatever a message quotes.
    fn scrub(&self, text: String) -> String {
        if self.api_key.len() >= 4 && text.contains(&self.api_key) {
            text.replace(&self.api_key, "<redacted>")
        } else {
            text
        }
    }

    /// The `message` of E2B's error body (or the start of whatever came).
    fn api_message(&self, a: &Answer) -> String {
        let message = serde_json::from_slice::<ApiError>(&a.body)
            .ok()
            .and_then(|e| e.message)
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(&a.body);
                text.chars().take(200).collect()
            });
        self.scrub(message)
    }

    /// Turns a non-success answer into the control plane's error.
    fn api_error(&self, what: &str, a: &Answer) -> Error {
        let message = self.api_message(a);
        let status = a.status.as_u16();
        match status {
            400 => ProviderError::refused(format!("E2B refused {what}: {message}")),
            401 | 403 => ProviderError::failed(format!(
                "E2B refused the API key for {what} ({status}): check E2B_API_KEY ({message})"
            )),
            404 => ProviderError::lost(format!(
                "E2B no longer has this sandbox ({what}: {message}); it was killed or \
                 its timeout passed: delete it and create a new one"
            )),
            409 => ProviderError::busy(format!("E2B refused {what}: {message}")),
            429 => ProviderError::busy(format!(
                "E2B refused {what}: the E2B team's limit of concurrent sandboxes (or of \
                 creates per second) is reached; pause or delete sandboxes, or ask E2B for \
                 a higher limit ({message})"
            )),
            _ if a.status.is_server_error() => {
                ProviderError::failed(format!("E2B failed {what} ({status}): {message}"))
            }
            _ => ProviderError::failed(format!(
                "E2B answered {what} with an unexpected {status}: {message}"
            )),
        }
        .into()
    }

    /// One sandbox's details; `None` when E2B has no such sandbox.
    async fn detail(&self, provider_id: &ProviderId) -> Result<Option<ApiListed>> {
        let url = self.api(&Self::sandbox_path(provider_id, ""));
        let a = self
            .send(
                Method::GET,
                url,
                None,
                Retry::Safe,
                self.request_timeout,
                "get sandbox",
            )
            .await?;
        match a.status {
            StatusCode::OK => serde_json::from_slice(&a.body)
                .map(Some)
                .map_err(|e| malformed("sandbox detail", e)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.api_error("get sandbox", &a)),
        }
    }

    /// Every running or paused sandbox whose metadata has all of `filter`,
    /// following `X-Next-Token` to the last page.
    async fn list(&self, filter: &[(&str, &str)]) -> Result<Vec<ApiListed>> {
        let metadata = {
            let mut q = Url::parse("http://x/").expect("static URL");
            {
                let mut pairs = q.query_pairs_mut();
                for (k, v) in filter {
                    pairs.append_pair(k, v);
                }
            }
            q.query().unwrap_or("").to_string()
        };
        let mut all = Vec::new();
        let mut next: Option<String> = None;
        // A server that kept handing out tokens would keep us here forever.
        for _ in 0..10_000 {
            let mut url = self.api("/v2/sandboxes");
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("metadata", &metadata);
                q.append_pair("state", "running,paused");
                q.append_pair("limit", &PAGE_LIMIT.to_string());
                if let Some(t) = &next {
                    q.append_pair("nextToken", t);
                }
            }
            let a = self
                .send(
                    Method::GET,
                    url,
                    None,
                    Retry::Safe,
                    self.request_timeout,
                    "list sandboxes",
                )
                .await?;
            if a.status != StatusCode::OK {
                return Err(self.api_error("list sandboxes", &a));
            }
            let page: Vec<ApiListed> =
                serde_json::from_slice(&a.body).map_err(|e| malformed("sandbox list", e))?;
            all.extend(page);
            next = a
                .headers
                .get("x-next-token")
                .and_then(|v| v.to_str().ok())
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if next.is_none() {
                return Ok(all);
            }
        }
        Err(ProviderError::failed("E2B's sandbox list did not end after 10000 pages").into())
    }

    /// E2B sandboxes made for control-plane sandbox `id` (normally one).
    async fn find_by_our_id(&self, id: &SandboxId) -> Result<Vec<ApiListed>> {
        let found = self
            .list(&[
                (META_MANAGED_BY, MANAGED_BY),
                (META_SANDBOX_ID, id.as_str()),
            ])
            .await?;
        // Keep only exact matches, whatever the server's filter did.
        Ok(found
            .into_iter()
            .filter(|s| {
                s.metadata
                    .as_ref()
                    .and_then(|m| m.get(META_SANDBOX_ID))
                    .is_some_and(|v| v == id.as_str())
            })
            .collect())
    }

    async fn kill(&self, provider_id: &ProviderId) -> Result<()> {
        let url = self.api(&Self::sandbox_path(provider_id, ""));
        let a = self
            .send(
                Method::DELETE,
                url,
                None,
                Retry::Safe,
                self.request_timeout,
                "delete sandbox",
            )
            .await?;
        match a.status {
            // Already gone is what delete wants.
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            _ => Err(self.api_error("delete sandbox", &a)),
        }
    }

    /// After a create that may have happened without an answer: kill what it
    /// made, so no VM runs (and costs) unknown.
    async fn clean_up_create(&self, id: &SandboxId) {
        match self.find_by_our_id(id).await {
            Ok(found) => {
                for s in found {
                    if let Err(e) = self.kill(&s.sandbox_id).await {
                        tracing::warn!(sandbox = %id, "cannot kill the E2B sandbox of a failed create: {e}");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(sandbox = %id, "cannot look for the E2B sandbox of a failed create: {e}")
            }
        }
    }

    /// Writes mcp-tools' token file through envd's file API, as the template's user.
    async fn upload_token(&self, provider_id: &ProviderId, data: &Data, token: &str) -> Result<()> {
        let domain = self.domain_of(data);
        let mut url = Url::parse(&format!(
            "{}/files",
            self.host_url(provider_id, &domain, self.envd_port)
        ))
        .map_err(|e| Error::Internal(format!("envd URL: {e}")))?;
        url.query_pairs_mut()
            .append_pair("path", &self.token_file)
            .append_pair("username", SANDBOX_USER);
        // A multipart form with the field `file`: what every envd version takes.
        let boundary = format!(
            "control-plane-{}",
            crate::random::hex(12).unwrap_or_else(|_| "boundary".into())
        );
        let mut body = Vec::with_capacity(token.len() + 256);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"token\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(token.as_bytes());
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());

        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self
                .http
                .post(url.clone())
                .header(
                    reqwest::header::CONTENT_TYPE,
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(body.clone());
            if let Some(t) = &data.envd_access_token {
                req = req.header("X-Access-Token", t);
            }
            let failure = match req.send().await {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) => {
                    let status = resp.status();
                    let text: String = resp
                        .text()
                        .await
                        .unwrap_or_default()
                        .chars()
                        .take(200)
                        .collect();
                    // Writing the same file again is harmless, so any fault of
                    // a VM that has just started is worth another try.
                    let error: Error = ProviderError::failed(format!(
                        "envd of sandbox {provider_id} refused the token upload ({status}): {}",
                        text.trim()
                    ))
                    .into();
                    if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
                        return Err(error);
                    }
                    error
                }
                Err(e) => self.transport_error("token upload to envd", &e),
            };
            if attempt >= ATTEMPTS + 2 {
                return Err(failure);
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    /// Waits until the sandbox's mcp-tools answers `/health` through E2B's proxy.
    async fn wait_ready(&self, started: &Running) -> Result<()> {
        let health = format!("{}/health", started.endpoint.url.trim_end_matches("/mcp"));
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last: String;
        loop {
            let mut req = self.http.get(&health).timeout(Duration::from_secs(5));
            for (k, v) in &started.endpoint.headers {
                req = req.header(k, v);
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = format!("status {}", r.status().as_u16()),
                Err(e) => last = self.transport_error("health check", &e).to_string(),
            }
            if Instant::now() > deadline {
                return Err(ProviderError::timeout(format!(
                    "mcp-tools in E2B sandbox {} did not answer within {}s ({last}); \
                     is the template built from sandbox-template/?",
                    started.provider_id,
                    READY_TIMEOUT.as_secs()
                ))
                .into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The part of a create after E2B answered: token, readiness.
    async fn finish_create(&self, spec: &CreateSpec, created: ApiSandbox) -> Result<Running> {
        let data = Data {
            domain: created.domain.unwrap_or_default(),
            envd_access_token: created.envd_access_token,
            traffic_access_token: created.traffic_access_token,
        };
        self.upload_token(&created.sandbox_id, &data, &spec.token)
            .await?;
        let running = self.running(&created.sandbox_id, data);
        self.wait_ready(&running).await?;
        Ok(running)
    }

    fn timeout_for_e2b(&self, secs: u64) -> u64 {
        secs.clamp(1, self.max_timeout_secs)
    }
}

#[async_trait]
impl Provider for E2bProvider {
    fn name(&self) -> &'static str {
        "e2b"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            pause: true,
            expose_port: true,
            isolated: true,
            // E2B enforces each sandbox's timeout itself; a restart of the
            // control plane must not pause everyone's VMs.
            pause_on_shutdown: false,
        }
    }

    fn describe(&self) -> String {
        let ports = if self.debug {
            "http://localhost:{port} (E2B_DEBUG)".to_string()
        } else {
            format!("https://{{port}}-{{id}}.{}", self.domain)
        };
        format!(
            "e2b sandboxes are Firecracker microVMs (isolated) from template {} via {}; \
             ports at {ports}, guarded by E2B's traffic token and mcp-tools' bearer token",
            self.template_id.as_deref().unwrap_or("<given at create>"),
            self.api_url
        )
    }

    async fn create(&self, spec: &CreateSpec) -> Result<Running> {
        let template = spec
            .template_id
            .clone()
            .or_else(|| self.template_id.clone())
            .ok_or_else(|| {
                Error::Invalid(
                    "no template: set E2B_TEMPLATE_ID (a template built from sandbox-template/) \
                     or give template_id"
                        .into(),
                )
            })?;
        let mut metadata = spec.metadata.clone();
        metadata.insert(META_MANAGED_BY.into(), MANAGED_BY.into());
        metadata.insert(META_SANDBOX_ID.into(), spec.sandbox_id.to_string());
        metadata.insert(META_USER_ID.into(), spec.user_id.clone());
        let body = json!({
            "templateID": template,
            "timeout": self.timeout_for_e2b(spec.timeout_secs),
            "autoPause": self.auto_pause,
            "secure": true,
            "network": { "allowPublicTraffic": false },
            "metadata": metadata,
            "envVars": {
                "CONTROL_PLANE_SANDBOX_ID": spec.sandbox_id.as_str(),
                "CONTROL_PLANE_USER_ID": spec.user_id,
            },
        });
        let answer = match self.send_create(&body).await {
            Ok(a) => a,
            Err(f) => {
                if f.maybe_sent {
                    self.clean_up_create(&spec.sandbox_id).await;
                }
                return Err(f.error);
            }
        };
        match answer.status {
            StatusCode::CREATED | StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return Err(ProviderError::refused(format!(
                    "E2B has no template {template:?} for this API key ({})",
                    self.api_message(&answer)
                ))
                .into());
            }
            s => {
                // A 5xx may come after the VM was made.
                if s.is_server_error() {
                    self.clean_up_create(&spec.sandbox_id).await;
                }
                return Err(self.api_error("create", &answer));
            }
        }
        let created: ApiSandbox = match serde_json::from_slice(&answer.body) {
            Ok(c) => c,
            Err(e) => {
                self.clean_up_create(&spec.sandbox_id).await;
                return Err(malformed("answer to create", e));
            }
        };
        let provider_id = created.sandbox_id.clone();
        match self.finish_create(spec, created).await {
            Ok(started) => Ok(started),
            Err(e) => {
                if let Err(k) = self.kill(&provider_id).await {
                    tracing::warn!(sandbox = %spec.sandbox_id, "cannot kill E2B sandbox {provider_id} after a failed create: {k}");
                }
                Err(e)
            }
        }
    }

    async fn resume(&self, sandbox: SandboxRef<'_>) -> Result<Running> {
        let provider_id = created_id(sandbox)?;
        let path = Self::sandbox_path(provider_id, "/connect");
        let body = json!({ "timeout": self.timeout_for_e2b(sandbox.timeout_secs) });
        // Connect is idempotent: running stays running, paused is resumed once.
        let a = self
            .send(
                Method::POST,
                self.api(&path),
                Some(&body),
                Retry::Safe,
                self.request_timeout * 2,
                "connect",
            )
            .await?;
        if !matches!(a.status, StatusCode::OK | StatusCode::CREATED) {
            return Err(self.api_error("connect", &a));
        }
        let connected: ApiSandbox =
            serde_json::from_slice(&a.body).map_err(|e| malformed("answer to connect", e))?;
        let old = Self::data(sandbox);
        let data = Data {
            domain: connected.domain.unwrap_or(old.domain),
            envd_access_token: connected.envd_access_token.or(old.envd_access_token),
            traffic_access_token: connected.traffic_access_token.or(old.traffic_access_token),
        };
        // The file survives a pause; writing it again also repairs a token
        // file someone deleted meanwhile.
        self.upload_token(provider_id, &data, sandbox.token).await?;
        let running = self.running(provider_id, data);
        self.wait_ready(&running).await?;
        Ok(running)
    }

    async fn pause(&self, sandbox: SandboxRef<'_>) -> Result<()> {
        let provider_id = created_id(sandbox)?;
        let path = Self::sandbox_path(provider_id, "/pause");
        let a = self
            .send(
                Method::POST,
                self.api(&path),
                None,
                Retry::Never,
                self.request_timeout * 2,
                "pause",
            )
            .await?;
        match a.status {
            s if s.is_success() => Ok(()),
            // Not running: fine if that is because it is paused already
            // (E2B pauses sandboxes itself when their timeout passes).
            StatusCode::CONFLICT => match self.detail(provider_id).await? {
                Some(d) if d.state == "paused" => Ok(()),
                _ => Err(self.api_error("pause", &a)),
            },
            _ => Err(self.api_error("pause", &a)),
        }
    }

    async fn delete(&self, sandbox: SandboxRef<'_>) -> Result<()> {
        match sandbox.provider_id {
            Some(provider_id) => self.kill(provider_id).await,
            None => {
                // A create that never answered: find what it made by our metadata.
                for s in self.find_by_our_id(sandbox.id).await? {
                    self.kill(&s.sandbox_id).await?;
                }
                Ok(())
            }
        }
    }

    async fn inspect(&self, sandbox: SandboxRef<'_>) -> Result<Inspection> {
        let provider_id = match sandbox.provider_id {
            Some(p) if sandbox.state != SandboxState::Creating => p,
            // Its create never finished: what it made (if anything) is not
            // known to work, so report it stopped for the caller to remove.
            unfinished => {
                let found = match unfinished {
                    None => !self.find_by_our_id(sandbox.id).await?.is_empty(),
                    Some(p) => self.detail(p).await?.is_some(),
                };
                return Ok(if found {
                    Inspection::Stopped
                } else {
                    Inspection::Gone
                });
            }
        };
        match self.detail(provider_id).await? {
            None => Ok(Inspection::Gone),
            Some(d) if d.state == "running" => Ok(Inspection::Running(
                self.running(provider_id, Self::data(sandbox)),
            )),
            Some(_) => Ok(Inspection::Stopped),
        }
    }

    fn port_url(&self, sandbox: SandboxRef<'_>, port: u16) -> Result<String> {
        let provider_id = created_id(sandbox)?;
        let domain = self.domain_of(&Self::data(sandbox));
        Ok(self.host_url(provider_id, &domain, port))
    }

    fn vscode_url(&self, sandbox: SandboxRef<'_>) -> String {
        if self.code_server {
            self.port_url(sandbox, CODE_SERVER_PORT).unwrap_or_default()
        } else {
            String::new()
        }
    }

    async fn set_timeout(&self, sandbox: SandboxRef<'_>, timeout_secs: u64) -> Result<()> {
        // E2B's timeout counts for running sandboxes; connect sets it anew.
        let (SandboxState::Running, Some(provider_id)) = (sandbox.state, sandbox.provider_id)
        else {
            return Ok(());
        };
        let path = Self::sandbox_path(provider_id, "/timeout");
        let body = json!({ "timeout": self.timeout_for_e2b(timeout_secs) });
        let a = self
            .send(
                Method::POST,
                self.api(&path),
                Some(&body),
                Retry::Safe,
                self.request_timeout,
                "set timeout",
            )
            .await?;
        if a.status.is_success() {
            Ok(())
        } else {
            Err(self.api_error("set timeout", &a))
        }
    }

    async fn list_managed(&self) -> Result<Option<HashMap<ProviderId, Listed>>> {
        let listed = self.list(&[(META_MANAGED_BY, MANAGED_BY)]).await?;
        Ok(Some(
            listed
                .into_iter()
                .map(|s| {
                    let listed = Listed {
                        running: s.state == "running",
                        ends_at: s.end_at.as_deref().and_then(parse_rfc3339),
                    };
                    (s.sandbox_id, listed)
                })
                .collect(),
        ))
    }
}

/// Delay before retry `attempt` (1-based): doubling, with full jitter in its
/// upper half so that many clients do not retry in step.
fn backoff(attempt: u32) -> Duration {
    let base = BACKOFF * 2u32.saturating_pow(attempt.saturating_sub(1).min(6));
    base.mul_f64(0.5 + crate::random::fraction() / 2.0)
}

/// The error for an answer of E2B that does not parse.
fn malformed(what: &str, e: serde_json::Error) -> Error {
    ProviderError::failed(format!("E2B's {what} is malformed: {e}")).into()
}

/// The provider id of a sandbox whose create answered.
fn created_id(sandbox: SandboxRef<'_>) -> Result<&ProviderId> {
    sandbox.provider_id.ok_or_else(|| Error::WrongState {
        id: sandbox.id.clone(),
        is: SandboxState::Creating,
        wanted: SandboxState::Running,
    })
}

/// Unix seconds of an RFC 3339 time such as `2025-03-01T12:00:00.123Z` or
/// `...+02:00`; `None` if it is not one.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = s.split_once(['T', 't', ' '])?;
    let mut d = date.splitn(3, '-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: u32 = d.next()?.parse().ok()?;
    let day: u32 = d.next()?.parse().ok()?;
    // Split off the zone: Z, or ±hh:mm.
    let (time, offset_secs) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, 0)
    } else {
        let pos = rest.rfind(['+', '-'])?;
        let (t, zone) = rest.split_at(pos);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (h, m) = zone[1..].split_once(':')?;
        let secs = h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60;
        (t, sign * secs)
    };
    let mut t = time.splitn(3, ':');
    let hour: i64 = t.next()?.parse().ok()?;
    let minute: i64 = t.next()?.parse().ok()?;
    let second: i64 = t.next()?.split('.').next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    Some(
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
            - offset_secs,
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = (if y >= 0 { y } else { y - 399 }) / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServeConfig;
    use clap::Parser;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        config: ServeConfig,
    }

    /// Parses `serve` flags as the binary would, but with every environment
    /// fallback removed: a developer's `E2B_API_KEY` (or any other variable)
    /// cannot change what these tests see, so they never need to skip.
    fn parse(args: &[&str]) -> ServeConfig {
        use clap::{CommandFactory, FromArgMatches};
        let mut argv = vec!["serve"];
        argv.extend_from_slice(args);
        let matches = Serve::command()
            .mut_args(|a| a.env(None))
            .try_get_matches_from(argv)
            .unwrap();
        Serve::from_arg_matches(&matches).unwrap().config
    }

    fn provider(args: &[&str]) -> Result<E2bProvider, StartError> {
        let mut argv = vec!["--provider", "e2b"];
        argv.extend_from_slice(args);
        let config = parse(&argv);
        E2bProvider::new(&config.e2b, config.max_timeout_secs)
    }

    /// What a record gives the provider.
    struct Record {
        id: SandboxId,
        provider_id: ProviderId,
        data: Value,
    }

    impl Record {
        fn sandbox(&self) -> SandboxRef<'_> {
            SandboxRef {
                id: &self.id,
                provider_id: Some(&self.provider_id),
                state: SandboxState::Running,
                token: "t",
                timeout_secs: 60,
                provider_data: &self.data,
            }
        }
    }

    fn record(provider_id: &str, data: Value) -> Record {
        Record {
            id: SandboxId::parse("sb-1").unwrap(),
            provider_id: ProviderId::parse(provider_id).unwrap(),
            data,
        }
    }

    fn status(e: &Error) -> axum::http::StatusCode {
        crate::api::error::status_and_code(e).0
    }

    #[test]
    fn sandbox_ports_are_reached_through_e2b_domains() {
        let p = provider(&["--e2b-api-key", "e2b_k"]).unwrap();
        assert_eq!(
            p.api("/sandboxes").as_str(),
            "https://api.e2b.app/sandboxes"
        );
        let data = Data {
            domain: String::new(),
            envd_access_token: Some("envd".into()),
            traffic_access_token: Some("traffic".into()),
        };
        let started = p.running(&ProviderId::parse("isb1").unwrap(), data);
        assert_eq!(started.endpoint.url, "https://6060-isb1.e2b.app/mcp");
        assert_eq!(started.endpoint.headers[TRAFFIC_HEADER], "traffic");
        let r = record("isb1", started.provider_data.clone());
        assert_eq!(
            p.port_url(r.sandbox(), 3000).unwrap(),
            "https://3000-isb1.e2b.app"
        );
        // No code-server unless configured.
        assert_eq!(p.vscode_url(r.sandbox()), "");

        // The domain E2B answers with wins over the configured one.
        let r = record("isb2", json!({ "domain": "eu.e2b.dev" }));
        assert_eq!(
            p.port_url(r.sandbox(), 6060).unwrap(),
            "https://6060-isb2.eu.e2b.dev"
        );

        let p = provider(&[
            "--e2b-api-key",
            "k",
            "--e2b-domain",
            "e2b.dev",
            "--e2b-code-server",
        ])
        .unwrap();
        assert_eq!(
            p.api("/v2/sandboxes").as_str(),
            "https://api.e2b.dev/v2/sandboxes"
        );
        assert_eq!(
            p.vscode_url(record("x1", Value::Null).sandbox()),
            "https://9000-x1.e2b.dev"
        );

        let p = provider(&["--e2b-api-key", "k", "--e2b-debug"]).unwrap();
        assert_eq!(
            p.port_url(record("x1", Value::Null).sandbox(), 8080)
                .unwrap(),
            "http://localhost:8080"
        );
    }

    #[test]
    fn bad_settings_are_refused_at_start() {
        let message = |args: &[&str]| match provider(args) {
            Ok(_) => panic!("{args:?} was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(message(&[]).contains("E2B_API_KEY"));
        assert!(
            message(&["--e2b-api-key", "k", "--e2b-api-url", "ftp://x"]).contains("E2B_API_URL")
        );
        assert!(message(&["--e2b-api-key", "k", "--e2b-token-file", "rel"]).contains("absolute"));
        // The key never goes in clear, except to a local stand-in in debug mode.
        assert!(
            message(&["--e2b-api-key", "k", "--e2b-api-url", "http://api.e2b.app"])
                .contains("not https")
        );
        provider(&[
            "--e2b-api-key",
            "k",
            "--e2b-api-url",
            "http://127.0.0.1:3000",
            "--e2b-debug",
        ])
        .unwrap();
        provider(&["--e2b-api-key", "k", "--e2b-api-url", "https://api.e2b.dev"]).unwrap();
        // A key is never part of what the settings print.
        let shown = format!("{:?}", parse(&["--e2b-api-key", "e2b_secret_value"]));
        assert!(!shown.contains("e2b_secret_value"), "{shown}");
    }

    #[test]
    fn e2b_errors_become_plain_answers() {
        let p = provider(&["--e2b-api-key", "e2b_secret_value"]).unwrap();
        let answer = |status: u16, body: &str| Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: Default::default(),
            body: body.as_bytes().to_vec(),
        };
        let e = p.api_error("create", &answer(429, r#"{"code":429,"message":"limit"}"#));
        assert_eq!(status(&e), axum::http::StatusCode::CONFLICT);
        assert!(e.to_string().contains("concurrent sandboxes"), "{e}");
        let e = p.api_error(
            "create",
            &answer(401, r#"{"code":401,"message":"bad key e2b_secret_value"}"#),
        );
        assert_eq!(status(&e), axum::http::StatusCode::BAD_GATEWAY);
        assert!(e.to_string().contains("E2B_API_KEY"), "{e}");
        assert!(!e.to_string().contains("e2b_secret_value"), "{e}");
        let e = p.api_error("pause", &answer(404, r#"{"code":404,"message":"nope"}"#));
        assert_eq!(status(&e), axum::http::StatusCode::GONE);
        let e = p.api_error("pause", &answer(409, r#"{"code":409,"message":"busy"}"#));
        assert_eq!(status(&e), axum::http::StatusCode::CONFLICT);
        let e = p.api_error("list", &answer(503, "upstream down"));
        assert_eq!(status(&e), axum::http::StatusCode::BAD_GATEWAY);
        assert!(e.to_string().contains("upstream down"), "{e}");
    }

    /// A redirect from the API is not followed, so the key does not go with
    /// it to another host: the call fails instead.
    #[tokio::test]
    async fn the_api_key_does_not_follow_a_redirect() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        async fn listen(app: axum::Router) -> std::net::SocketAddr {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(l, app).await });
            addr
        }
        let reached = Arc::new(AtomicUsize::new(0));
        let r = reached.clone();
        let elsewhere = listen(axum::Router::new().fallback(move || {
            r.fetch_add(1, Ordering::SeqCst);
            async { "{}" }
        }))
        .await;
        let api = listen(axum::Router::new().fallback(move || async move {
            (
                axum::http::StatusCode::TEMPORARY_REDIRECT,
                [("location", format!("http://{elsewhere}/stolen"))],
            )
        }))
        .await;
        let p = provider(&[
            "--e2b-api-key",
            "e2b_secret_value",
            "--e2b-api-url",
            &format!("http://{api}"),
            "--e2b-debug",
        ])
        .unwrap();
        let Err(e) = p.detail(&ProviderId::parse("isb1").unwrap()).await else {
            panic!("a redirect was taken for an answer");
        };
        assert_eq!(status(&e), axum::http::StatusCode::BAD_GATEWAY, "{e}");
        assert!(e.to_string().contains("307"), "{e}");
        assert_eq!(
            reached.load(Ordering::SeqCst),
            0,
            "the redirect was followed"
        );
    }

    #[test]
    fn rfc3339_times_parse_to_unix_seconds() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2025-03-01T12:00:00Z"), Some(1_740_830_400));
        assert_eq!(
            parse_rfc3339("2025-03-01T12:00:00.987654Z"),
            Some(1_740_830_400)
        );
        assert_eq!(
            parse_rfc3339("2025-03-01T14:00:00+02:00"),
            Some(1_740_830_400)
        );
        assert_eq!(parse_rfc3339("2025-03-01"), None);
        assert_eq!(parse_rfc3339("not a time"), None);
    }

    #[test]
    fn backoff_grows_and_stays_jittered() {
        for attempt in 1..=4 {
            let full = BACKOFF * 2u32.pow(attempt - 1);
            let d = backoff(attempt);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
    }
}
