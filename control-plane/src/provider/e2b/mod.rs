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
//! upload) are retried with backoff and jitter on 5xx and transport faults
//! ([`api::Retry`]). A create is repeated only when it surely never reached
//! E2B; one that may have happened is looked up by its metadata and killed
//! instead, so no VM is left running unknown.
//!
//! - [`api`]: the HTTP calls, the retry policy, E2B's errors;
//! - [`wire`]: E2B's JSON;
//! - [`envd`]: the token upload and the readiness check inside a sandbox.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;

mod api;
mod envd;
mod wire;

use api::E2bApi;

use super::{
    Capabilities, CreateSpec, Endpoint, Inspection, Listed, Metrics, Provider, Running, SandboxRef,
};
use crate::config::E2bConfig;
use crate::error::{Error, ProviderError, Result, StartError};
use crate::ids::{ProviderId, SandboxId};
use crate::model::SandboxState;

/// Header that carries the sandbox's traffic token to any of its ports.
pub const TRAFFIC_HEADER: &str = "e2b-traffic-access-token";
/// Metadata keys the control plane puts on every sandbox it creates, so E2B's
/// own list can be filtered by them.
/// Says which program made the sandbox: `managed_by=control-plane`.
pub const META_MANAGED_BY: &str = "managed_by";
/// The control plane's id of the sandbox.
pub const META_SANDBOX_ID: &str = "control_plane_sandbox_id";
/// The owner, as the control plane knows it.
pub const META_USER_ID: &str = "control_plane_user_id";
const MANAGED_BY: &str = "control-plane";
/// How far back metrics are asked for: E2B samples every few seconds, so
/// the latest sample is in it without the whole life of the sandbox.
const METRICS_WINDOW_SECS: i64 = 60;

/// Runs each sandbox as a microVM in E2B's cloud (or an engine that speaks
/// E2B's API).
pub struct E2bProvider {
    api: E2bApi,
    template_id: Option<String>,
    domain: String,
    debug: bool,
    mcp_port: u16,
    envd_port: u16,
    token_file: String,
    auto_pause: bool,
    code_server: bool,
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
        let api = E2bApi::new(api_key, api_url, request_timeout)?;
        Ok(E2bProvider {
            api,
            template_id: args.e2b_template_id.clone().filter(|t| !t.is_empty()),
            domain,
            debug: args.e2b_debug,
            mcp_port: args.e2b_mcp_port,
            envd_port: args.e2b_envd_port,
            token_file: args.e2b_token_file.clone(),
            auto_pause: args.e2b_auto_pause,
            code_server: args.e2b_code_server,
            max_timeout_secs: max_timeout_secs.max(1),
        })
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

    /// E2B sandboxes made for control-plane sandbox `id` (normally one).
    async fn find_by_our_id(&self, id: &SandboxId) -> Result<Vec<wire::ListedSandbox>> {
        let found = self
            .api
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

    /// After a create that may have happened without an answer: kill what it
    /// made, so no VM runs (and costs) unknown.
    async fn clean_up_create(&self, id: &SandboxId) {
        match self.find_by_our_id(id).await {
            Ok(found) => {
                for s in found {
                    if let Err(e) = self.api.kill(&s.sandbox_id).await {
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
        let envd = self.host_url(provider_id, &domain, self.envd_port);
        envd::upload_token(
            &self.api,
            provider_id,
            &envd,
            data.envd_access_token.as_deref(),
            &self.token_file,
            token,
        )
        .await
    }

    /// The part of a create after E2B answered: token, readiness.
    async fn finish_create(&self, spec: &CreateSpec, created: wire::Sandbox) -> Result<Running> {
        let data = Data {
            domain: created.domain.unwrap_or_default(),
            envd_access_token: created.envd_access_token,
            traffic_access_token: created.traffic_access_token,
        };
        self.upload_token(&created.sandbox_id, &data, &spec.token)
            .await?;
        let running = self.running(&created.sandbox_id, data);
        envd::wait_ready(&self.api, &running).await?;
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
            self.api.base()
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
        let limits = &spec.settings;
        if limits.memory_mb.is_some()
            || limits.cpu_count.is_some()
            || limits.process_limit.is_some()
            || limits.disk_size_mb.is_some()
        {
            return Err(Error::Invalid(
                "E2B sets memory, CPUs and disk per template (e2b.toml's memory_mb and \
                 cpu_count, the team's disk size): build a template with the size you need \
                 instead of asking at create"
                    .into(),
            ));
        }
        let mut metadata = spec.metadata.clone();
        metadata.insert(META_MANAGED_BY.into(), MANAGED_BY.into());
        metadata.insert(META_SANDBOX_ID.into(), spec.sandbox_id.to_string());
        metadata.insert(META_USER_ID.into(), spec.user_id.clone());
        let body = wire::NewSandbox {
            template_id: &template,
            timeout: self.timeout_for_e2b(spec.timeout_secs),
            auto_pause: self.auto_pause,
            secure: true,
            network: wire::Network {
                allow_public_traffic: false,
            },
            metadata: &metadata,
            env_vars: BTreeMap::from([
                ("CONTROL_PLANE_SANDBOX_ID", spec.sandbox_id.as_str()),
                ("CONTROL_PLANE_USER_ID", spec.user_id.as_str()),
            ]),
            allow_internet_access: spec.settings.allow_internet_access,
        };
        let answer = match self.api.create(&body).await {
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
                    self.api.message(&answer)
                ))
                .into());
            }
            s => {
                // A 5xx may come after the VM was made.
                if s.is_server_error() {
                    self.clean_up_create(&spec.sandbox_id).await;
                }
                return Err(self.api.error("create", &answer));
            }
        }
        let created: wire::Sandbox = match serde_json::from_slice(&answer.body) {
            Ok(c) => c,
            Err(e) => {
                self.clean_up_create(&spec.sandbox_id).await;
                return Err(api::malformed("answer to create", e));
            }
        };
        let provider_id = created.sandbox_id.clone();
        match self.finish_create(spec, created).await {
            Ok(started) => Ok(started),
            Err(e) => {
                if let Err(k) = self.api.kill(&provider_id).await {
                    tracing::warn!(sandbox = %spec.sandbox_id, "cannot kill E2B sandbox {provider_id} after a failed create: {k}");
                }
                Err(e)
            }
        }
    }

    async fn resume(&self, sandbox: SandboxRef<'_>) -> Result<Running> {
        let provider_id = created_id(sandbox)?;
        // Connect is idempotent: running stays running, paused is resumed once.
        let connected = self
            .api
            .connect(provider_id, self.timeout_for_e2b(sandbox.timeout_secs))
            .await?;
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
        envd::wait_ready(&self.api, &running).await?;
        Ok(running)
    }

    async fn pause(&self, sandbox: SandboxRef<'_>) -> Result<()> {
        let provider_id = created_id(sandbox)?;
        let a = self.api.pause(provider_id).await?;
        match a.status {
            s if s.is_success() => Ok(()),
            // Not running: fine if that is because it is paused already
            // (E2B pauses sandboxes itself when their timeout passes).
            StatusCode::CONFLICT => match self.api.detail(provider_id).await? {
                Some(d) if d.is_paused() => Ok(()),
                _ => Err(self.api.error("pause", &a)),
            },
            _ => Err(self.api.error("pause", &a)),
        }
    }

    async fn delete(&self, sandbox: SandboxRef<'_>) -> Result<()> {
        match sandbox.provider_id {
            Some(provider_id) => self.api.kill(provider_id).await,
            None => {
                // A create that never answered: find what it made by our metadata.
                for s in self.find_by_our_id(sandbox.id).await? {
                    self.api.kill(&s.sandbox_id).await?;
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
                    Some(p) => self.api.detail(p).await?.is_some(),
                };
                return Ok(if found {
                    Inspection::Stopped
                } else {
                    Inspection::Gone
                });
            }
        };
        match self.api.detail(provider_id).await? {
            None => Ok(Inspection::Gone),
            Some(d) if d.is_running() => Ok(Inspection::Running(
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

    fn has_editor(&self, _sandbox: SandboxRef<'_>) -> bool {
        self.code_server
    }

    async fn port_answers(&self, sandbox: SandboxRef<'_>, port: u16, path: &str) -> bool {
        let Ok(base) = self.port_url(sandbox, port) else {
            return false;
        };
        let mut req = self
            .api
            .http()
            .get(format!("{base}{path}"))
            .timeout(Duration::from_secs(5));
        // E2B's proxy answers 403 to every port without the traffic token.
        if let Some(t) = Self::data(sandbox).traffic_access_token {
            req = req.header(TRAFFIC_HEADER, t);
        }
        req.send().await.is_ok_and(|r| r.status().is_success())
    }

    async fn set_timeout(&self, sandbox: SandboxRef<'_>, timeout_secs: u64) -> Result<()> {
        // E2B's timeout counts for running sandboxes; connect sets it anew.
        let (SandboxState::Running, Some(provider_id)) = (sandbox.state, sandbox.provider_id)
        else {
            return Ok(());
        };
        self.api
            .set_timeout(provider_id, self.timeout_for_e2b(timeout_secs))
            .await
    }

    async fn metrics(&self, sandbox: SandboxRef<'_>) -> Result<Metrics> {
        let provider_id = created_id(sandbox)?;
        let since = chrono::Utc::now().timestamp() - METRICS_WINDOW_SECS;
        let samples = self.api.metrics(provider_id, since).await?;
        latest_metrics(&samples).ok_or_else(|| {
            ProviderError::failed(format!(
                "E2B has no metrics of sandbox {} from the last {METRICS_WINDOW_SECS} s yet \
                 (it samples every few seconds); ask again shortly",
                sandbox.id
            ))
            .into()
        })
    }

    async fn list_managed(&self) -> Result<Option<HashMap<ProviderId, Listed>>> {
        let listed = self.api.list(&[(META_MANAGED_BY, MANAGED_BY)]).await?;
        Ok(Some(
            listed
                .into_iter()
                .map(|s| {
                    let listed = Listed {
                        running: s.is_running(),
                        ends_at: s.ends_at(),
                    };
                    (s.sandbox_id, listed)
                })
                .collect(),
        ))
    }
}

/// The latest of E2B's samples in our shape: E2B tells CPU use as a
/// percentage and disk use of the whole VM, and no process counts.
fn latest_metrics(samples: &[wire::SandboxMetric]) -> Option<Metrics> {
    let m = samples.iter().max_by_key(|m| m.timestamp_unix)?;
    Some(Metrics {
        cpu_usec: None,
        cpu_used_pct: Some(m.cpu_used_pct),
        cpu_count: Some(m.cpu_count),
        memory_bytes: m.mem_used,
        memory_limit_bytes: Some(m.mem_total),
        processes: None,
        process_limit: None,
        processes_refused: None,
        disk_bytes: m.disk_used,
        disk_limit_bytes: Some(m.disk_total),
        oom_kills: None,
    })
}

/// The provider id of a sandbox whose create answered.
fn created_id(sandbox: SandboxRef<'_>) -> Result<&ProviderId> {
    sandbox.provider_id.ok_or_else(|| Error::WrongState {
        id: sandbox.id.clone(),
        is: SandboxState::Creating,
        wanted: SandboxState::Running,
    })
}

#[cfg(test)]
mod tests;
