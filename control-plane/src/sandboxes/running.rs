//! Reaching into a running sandbox: where its tool calls go, the route
//! clients are forwarded through (its token and connections), tool calls that notice when the
//! sandbox dies, and what the sandbox uses (metrics, OOM kills).

use std::time::Duration;

use serde_json::Value;

use super::{Caller, Sandboxes, now};
use crate::error::{Error, ProviderError, Result};
use crate::ids::SandboxId;
use crate::mcp::{Target, ToolOutput};
use crate::model::SandboxState;
use crate::provider::{Metrics, Route, RouteStream};
use crate::store::SandboxRecord;

impl Sandboxes {
    /// Where to call a tool in a running sandbox. A call is activity, so this
    /// also pushes the sandbox's expiry forward by its timeout.
    ///
    /// Errors: `NotFound`, `Gone`, or `WrongState` when it is not running.
    pub fn call_target(&self, caller: &Caller, id: &SandboxId) -> Result<Target> {
        let record = self.visible(caller, id)?;
        self.check_provider(&record)?;
        match (self.target(&record), record.state) {
            (Some(target), _) => {
                self.store.extend(id, now() + record.timeout_secs as i64)?;
                Ok(target)
            }
            (None, SandboxState::Gone) => Err(Error::Gone { id: id.clone() }),
            (None, is) => Err(Error::WrongState {
                id: id.clone(),
                is,
                wanted: SandboxState::Running,
            }),
        }
    }

    /// Where to call a tool in `record`'s sandbox, if it is running.
    pub(super) fn target(&self, record: &SandboxRecord) -> Option<Target> {
        match (&record.state, &record.endpoint) {
            (SandboxState::Running, Some(endpoint)) => Some(Target {
                socket: self.provider.mcp_socket(record.provider_ref()),
                sandbox_id: record.id.clone(),
                url: endpoint.url.clone(),
                token: record.token.clone(),
                headers: endpoint.headers.clone(),
            }),
            _ => None,
        }
    }

    /// The token a client must present to reach running sandbox `id`
    /// through the control plane's route (`api::forward`). No API key is
    /// asked there: MCP clients carry only the sandbox's token.
    ///
    /// Errors: `NotFound` (also for an id that does not parse), `Gone`, or
    /// `WrongState` when it is not running.
    pub fn route_token(&self, id: &str) -> Result<String> {
        Ok(self.routed(id)?.token)
    }

    /// A connection to `route` in running sandbox `id`; MCP traffic counts
    /// as activity, pushing its expiry forward.
    pub async fn open_route(&self, id: &str, route: Route) -> Result<RouteStream> {
        let record = self.routed(id)?;
        if route == Route::Mcp {
            self.store
                .extend(&record.id, now() + record.timeout_secs as i64)?;
        }
        self.provider.open_route(record.provider_ref(), route).await
    }

    fn routed(&self, id: &str) -> Result<SandboxRecord> {
        let not_found = || Error::NotFound { id: id.to_string() };
        let id = SandboxId::parse(id).ok_or_else(not_found)?;
        let record = self.store.get(&id)?.ok_or_else(not_found)?;
        self.check_provider(&record)?;
        match record.state {
            SandboxState::Running => Ok(record),
            SandboxState::Gone => Err(Error::Gone { id }),
            is => Err(Error::WrongState {
                id,
                is,
                wanted: SandboxState::Running,
            }),
        }
    }

    /// What running sandbox `id` uses now.
    ///
    /// Errors: `NotFound`, `Gone`, `WrongState` when it is not running, or
    /// the provider's (`Unsupported` when it cannot tell).
    pub async fn metrics(&self, caller: &Caller, id: &SandboxId) -> Result<Metrics> {
        let record = self.visible(caller, id)?;
        self.check_provider(&record)?;
        match record.state {
            SandboxState::Running => self.provider.metrics(record.provider_ref()).await,
            SandboxState::Gone => Err(Error::Gone { id: id.clone() }),
            is => Err(Error::WrongState {
                id: id.clone(),
                is,
                wanted: SandboxState::Running,
            }),
        }
    }

    /// Calls `tool` in the sandbox at `target` (see [`McpPool::call`]). A
    /// sandbox whose MCP server stops meanwhile (killed, out of memory)
    /// answers at once with a provider error instead of at `timeout`.
    pub async fn call_tool(
        &self,
        target: &Target,
        tool: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<ToolOutput> {
        let died = async {
            loop {
                tokio::time::sleep(DEATH_WATCH).await;
                let record = match self.store.get(&target.sandbox_id) {
                    Ok(Some(record)) => record,
                    _ => return,
                };
                if self.provider.is_alive(record.provider_ref()) == Some(false) {
                    return;
                }
            }
        };
        tokio::select! {
            result = self.pool.call(target, tool, args, timeout) => result,
            () = died => {
                self.pool.forget(&target.sandbox_id).await;
                Err(ProviderError::failed(format!(
                    "sandbox {} stopped during the {tool} call",
                    target.sandbox_id
                ))
                .into())
            }
        }
    }

    /// OOM kills in sandbox `id` so far, when the provider counts them.
    pub fn oom_kills(&self, id: &SandboxId) -> Option<u64> {
        let record = self.store.get(id).ok()??;
        self.provider.oom_kills(record.provider_ref())
    }
}

/// How often a tool call looks whether its sandbox is still there.
const DEATH_WATCH: Duration = Duration::from_millis(250);
