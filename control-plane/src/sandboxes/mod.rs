//! The sandbox lifecycle: what every API call and the reaper do to
//! sandboxes, independent of HTTP. Records live in the [`Store`]; the
//! [`Provider`] starts and stops sandboxes; tool calls go through the
//! [`McpPool`] (see [`crate::tools`]); `running.rs` reaches into a running
//! sandbox (forwarded routes, tool calls, metrics); [`upkeep`] holds what
//! runs without a request (recovery at start, the reaper, reconciliation,
//! shutdown).
//!
//! States and the operations that move between them:
//!
//! ```text
//! create ─► creating ─► running ◄─► paused      (pause / resume, connect)
//!                          │           │
//!                          └──► gone ◄─┘        (the provider lost it)
//! delete: from any state but creating; the record goes.
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use crate::config::{ExpiryAction, ServeConfig};
use crate::error::{Error, Result};
use crate::ids::SandboxId;
use crate::mcp::McpPool;
use crate::model::*;
use crate::provider::{CreateSpec, Inspection, Provider, Settings, VSCODE_PORT};
use crate::store::{ListFilter, SandboxRecord, Store};

pub mod editor;
mod locks;
mod running;
pub mod upkeep;

use locks::{SandboxLock, SandboxLocks};

const MAX_METADATA_ENTRIES: usize = 32;
const MAX_LIST_LIMIT: usize = 1000;

/// Who is calling: the user an API key is bound to, or `None` for a key (or
/// an open server) that may touch every sandbox.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The only user whose sandboxes this caller may see, if it is bound to one.
    pub user: Option<String>,
}

/// `GET /sandboxes` parameters, already parsed.
#[derive(Debug, Default)]
pub struct ListQuery {
    /// Only this user's sandboxes.
    pub user_id: Option<String>,
    /// Only sandboxes in this state.
    pub state: Option<SandboxState>,
    /// Only sandboxes whose metadata has all these pairs.
    pub metadata: Vec<(String, String)>,
    /// Page size (default 100, at most 1000).
    pub limit: Option<usize>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Every sandbox of this control plane: creates them through the provider,
/// keeps their records, and moves them between states one change at a time.
pub struct Sandboxes {
    store: Store,
    provider: Arc<dyn Provider>,
    pool: McpPool,
    default_timeout_secs: u64,
    max_timeout_secs: u64,
    on_expire: ExpiryAction,
    max_running: usize,
    locks: SandboxLocks,
    /// Serialises the "is there room?" checks.
    admission: tokio::sync::Mutex<()>,
    /// Sandboxes being resumed, which their records do not count yet.
    starting: AtomicUsize,
    /// Which sandboxes' editors answer.
    editors: editor::Editors,
}

impl Sandboxes {
    /// Sandboxes kept in `store` and run by `provider`, with the limits and
    /// timeouts of `config`.
    pub fn new(config: &ServeConfig, store: Store, provider: Arc<dyn Provider>) -> Self {
        Sandboxes {
            store,
            provider,
            pool: McpPool::default(),
            default_timeout_secs: config.default_timeout_secs.min(config.max_timeout_secs),
            max_timeout_secs: config.max_timeout_secs,
            on_expire: config.on_expire,
            max_running: config.max_running,
            locks: SandboxLocks::default(),
            admission: tokio::sync::Mutex::new(()),
            starting: AtomicUsize::new(0),
            editors: editor::Editors::default(),
        }
    }

    /// The provider that runs the sandboxes.
    pub fn provider(&self) -> &dyn Provider {
        self.provider.as_ref()
    }

    /// The MCP sessions to running sandboxes.
    pub fn pool(&self) -> &McpPool {
        &self.pool
    }

    /// The sandbox's lock, and its record read once under that lock.
    async fn locked(
        &self,
        caller: &Caller,
        id: &SandboxId,
    ) -> Result<(SandboxLock<'_>, SandboxRecord)> {
        let lock = self.locks.lock(id).await;
        let record = self.visible(caller, id)?;
        self.check_provider(&record)?;
        Ok((lock, record))
    }

    /// Records made under another provider (the data folder was reused with
    /// a different --provider) cannot be driven by this one.
    fn check_provider(&self, record: &SandboxRecord) -> Result<()> {
        if record.provider != self.provider.name() {
            return Err(Error::Conflict(format!(
                "sandbox {} belongs to the {} provider, but this control plane runs {}",
                record.id,
                record.provider,
                self.provider.name()
            )));
        }
        Ok(())
    }

    /// The public view; `vscode_url` only while its editor is known to answer.
    fn info(&self, r: &SandboxRecord) -> SandboxInfo {
        let vscode_url = match r.state {
            SandboxState::Running if self.editors.answers(&r.id) => self
                .provider
                .port_url(r.provider_ref(), VSCODE_PORT)
                .unwrap_or_default(),
            _ => String::new(),
        };
        r.info(vscode_url)
    }

    /// The record if it exists and the caller may see it; 404 otherwise, so a
    /// key cannot even learn that another user's sandbox exists.
    fn visible(&self, caller: &Caller, id: &SandboxId) -> Result<SandboxRecord> {
        match self.store.get(id)? {
            Some(r) if caller.user.as_ref().is_none_or(|u| *u == r.user_id) => Ok(r),
            _ => Err(Error::NotFound { id: id.to_string() }),
        }
    }

    fn timeout(&self, asked: Option<u64>) -> Result<u64> {
        match asked {
            None => Ok(self.default_timeout_secs),
            Some(0) => Err(Error::Invalid("timeout_secs must be at least 1".into())),
            Some(t) if t > self.max_timeout_secs => Err(Error::Invalid(format!(
                "timeout_secs may be at most {}",
                self.max_timeout_secs
            ))),
            Some(t) => Ok(t),
        }
    }

    /// Takes a place among the at most `max_running` sandboxes that run or
    /// are starting. The place is held until the returned [`Slot`] drops, by
    /// which time the record itself says "running" or "creating".
    async fn admit(&self) -> Result<Slot<'_>> {
        let _serial = self.admission.lock().await;
        let busy = self.store.count_in_state(SandboxState::Running)?
            + self.store.count_in_state(SandboxState::Creating)?
            + self.starting.load(Ordering::SeqCst);
        if busy >= self.max_running {
            return Err(Error::Conflict(format!(
                "{busy} sandboxes are running, the configured maximum; pause or delete one first"
            )));
        }
        self.starting.fetch_add(1, Ordering::SeqCst);
        Ok(Slot(&self.starting))
    }

    /// Creates a sandbox for the caller (or the user the request names) and
    /// waits until it runs.
    ///
    /// Errors: `Invalid` for a bad name, metadata or timeout; `Forbidden`
    /// when a key bound to one user names another; `Conflict` when
    /// `max_running` sandboxes run; the provider's error when it fails (the
    /// record is then removed again).
    pub async fn create(&self, caller: &Caller, req: CreateSandboxRequest) -> Result<SandboxInfo> {
        let user_id = match (&caller.user, req.user_id) {
            (Some(bound), None) => bound.clone(),
            (Some(bound), Some(asked)) if *bound == asked => asked,
            (Some(bound), Some(_)) => {
                return Err(Error::Forbidden {
                    action: "create",
                    user: bound.clone(),
                });
            }
            (None, Some(asked)) => asked,
            (None, None) => return Err(Error::Invalid("user_id is required".into())),
        };
        check_name("user_id", &user_id, 128)?;
        if let Some(t) = &req.template_id {
            check_name("template_id", t, 128)?;
        }
        check_metadata(&req.metadata)?;
        let timeout_secs = self.timeout(req.timeout_secs)?;

        let no_randomness = |e| Error::Internal(format!("no randomness available: {e}"));
        let now = now();
        let record = SandboxRecord {
            id: SandboxId::generate().map_err(no_randomness)?,
            user_id: user_id.clone(),
            provider: self.provider.name().to_string(),
            provider_id: None,
            template_id: req.template_id.clone(),
            state: SandboxState::Creating,
            endpoint: None,
            token: crate::random::hex(32).map_err(no_randomness)?,
            provider_data: Value::Null,
            metadata: req.metadata.clone(),
            timeout_secs,
            created_at: now,
            expires_at: now + timeout_secs as i64,
        };
        // Locked before it is visible, so no delete can slip in mid-create.
        let _lock = self.locks.lock(&record.id).await;
        {
            let _room = self.admit().await?;
            // The record exists before the sandbox does, so a crash mid-create
            // leaves a row that the next start resolves, never an unknown sandbox.
            self.store.insert(&record)?;
        }
        let spec = CreateSpec {
            sandbox_id: record.id.clone(),
            user_id,
            template_id: req.template_id,
            timeout_secs,
            metadata: req.metadata,
            token: record.token.clone(),
            settings: Settings {
                allow_internet_access: req.allow_internet_access,
                memory_mb: req.memory_mb,
                cpu_count: req.cpu_count,
                process_limit: req.process_limit,
                disk_size_mb: req.disk_size_mb,
            },
        };
        match self.provider.create(&spec).await {
            Ok(running) => {
                let mut record = record;
                record.set_running(running);
                self.store.update(&record)?;
                tracing::info!(sandbox = %record.id, user = %record.user_id, "created");
                self.start_editor(&record).await;
                Ok(self.info(&record))
            }
            Err(e) => {
                self.store.delete(&record.id)?;
                tracing::warn!(sandbox = %record.id, "create failed: {e}");
                Err(e)
            }
        }
    }

    /// The sandbox as it is now: a record that says "running" is checked with
    /// the provider first, so status never shows a dead URL as live.
    pub async fn status(&self, caller: &Caller, id: &SandboxId) -> Result<SandboxInfo> {
        let lock = self.locks.lock(id).await;
        let mut record = self.visible(caller, id)?;
        if record.state == SandboxState::Running && self.check_provider(&record).is_ok() {
            self.refresh(&mut record).await?;
            self.probe_editor(&record).await;
        }
        drop(lock);
        Ok(self.info(&record))
    }

    /// Brings a running record in line with what the provider sees.
    async fn refresh(&self, record: &mut SandboxRecord) -> Result<()> {
        match self.provider.inspect(record.provider_ref()).await? {
            Inspection::Running(running) => {
                if Some(&running.endpoint) != record.endpoint.as_ref() {
                    record.set_running(running);
                    self.store.update(record)?;
                }
            }
            Inspection::Stopped => {
                tracing::warn!(sandbox = %record.id, "found stopped; marking it paused");
                self.mark(record, SandboxState::Paused).await?;
            }
            Inspection::Gone => {
                tracing::warn!(sandbox = %record.id, "its provider no longer has it; marking it gone");
                self.mark(record, SandboxState::Gone).await?;
            }
        }
        Ok(())
    }

    /// Records a state the provider reached by itself. A gone sandbox keeps
    /// no URL, so nobody is sent to an address that leads nowhere.
    async fn mark(&self, record: &mut SandboxRecord, state: SandboxState) -> Result<()> {
        record.state = state;
        if state == SandboxState::Gone {
            record.endpoint = None;
        }
        self.store.update(record)?;
        self.pool.forget(&record.id).await;
        self.editors.forget(&record.id);
        Ok(())
    }

    /// Passes a provider's error on, first marking the sandbox gone when the
    /// provider says it no longer has it.
    async fn note_gone<T>(&self, record: &mut SandboxRecord, result: Result<T>) -> Result<T> {
        if let Err(e) = &result
            && e.is_lost()
        {
            tracing::warn!(sandbox = %record.id, "its provider no longer has it; marking it gone");
            self.mark(record, SandboxState::Gone).await?;
        }
        result
    }

    /// One page of the sandboxes the caller may see, oldest first.
    ///
    /// Errors: `Invalid` for a limit out of 1..=1000 or a foreign cursor.
    pub async fn list(&self, caller: &Caller, q: ListQuery) -> Result<ListResponse> {
        let user_id = match (&caller.user, q.user_id) {
            (Some(bound), Some(asked)) if *bound != asked => {
                return Ok(ListResponse {
                    sandboxes: vec![],
                    next_cursor: None,
                });
            }
            (Some(bound), _) => Some(bound.clone()),
            (None, asked) => asked,
        };
        let limit = q.limit.unwrap_or(100);
        if limit == 0 || limit > MAX_LIST_LIMIT {
            return Err(Error::Invalid(format!(
                "limit must be between 1 and {MAX_LIST_LIMIT}"
            )));
        }
        let after = match q.cursor {
            None => None,
            Some(c) => Some(parse_cursor(&c)?),
        };
        // One extra row tells whether there is a next page.
        let mut rows = self.store.list(&ListFilter {
            user_id,
            state: q.state,
            metadata: q.metadata,
            after,
            limit: limit + 1,
        })?;
        let next_cursor = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|r| format!("{}.{}", r.created_at, r.id))
        } else {
            None
        };
        Ok(ListResponse {
            sandboxes: rows.iter().map(|r| self.info(r)).collect(),
            next_cursor,
        })
    }

    /// Resumes a paused sandbox or, if running, pushes its expiry forward.
    pub async fn connect(&self, caller: &Caller, id: &SandboxId) -> Result<SandboxInfo> {
        let (_lock, mut record) = self.locked(caller, id).await?;
        match record.state {
            SandboxState::Creating => return Err(wrong_state(&record, SandboxState::Running)),
            SandboxState::Gone => return Err(Error::Gone { id: id.clone() }),
            SandboxState::Paused => self.resume_locked(&mut record).await?,
            SandboxState::Running => {
                self.refresh(&mut record).await?;
                if record.state == SandboxState::Gone {
                    return Err(Error::Gone { id: id.clone() });
                } else if record.state == SandboxState::Paused {
                    self.resume_locked(&mut record).await?;
                } else {
                    record.expires_at = now() + record.timeout_secs as i64;
                    self.store.update(&record)?;
                }
            }
        }
        Ok(self.info(&record))
    }

    /// Stops a running sandbox, keeping its files.
    pub async fn pause(&self, caller: &Caller, id: &SandboxId) -> Result<SandboxInfo> {
        let (_lock, mut record) = self.locked(caller, id).await?;
        match record.state {
            SandboxState::Running => self.pause_locked(&mut record).await?,
            SandboxState::Gone => return Err(Error::Gone { id: id.clone() }),
            _ => return Err(wrong_state(&record, SandboxState::Running)),
        }
        Ok(self.info(&record))
    }

    async fn pause_locked(&self, record: &mut SandboxRecord) -> Result<()> {
        if !self.provider.capabilities().pause {
            return Err(self.provider.unsupported("pause"));
        }
        self.pool.forget(&record.id).await;
        self.editors.forget(&record.id);
        let paused = self.provider.pause(record.provider_ref()).await;
        self.note_gone(record, paused).await?;
        record.state = SandboxState::Paused;
        self.store.update(record)?;
        tracing::info!(sandbox = %record.id, "paused");
        Ok(())
    }

    /// Starts a paused sandbox again with its files as they were.
    pub async fn resume(&self, caller: &Caller, id: &SandboxId) -> Result<SandboxInfo> {
        let (_lock, mut record) = self.locked(caller, id).await?;
        match record.state {
            SandboxState::Paused => self.resume_locked(&mut record).await?,
            SandboxState::Gone => return Err(Error::Gone { id: id.clone() }),
            _ => return Err(wrong_state(&record, SandboxState::Paused)),
        }
        Ok(self.info(&record))
    }

    async fn resume_locked(&self, record: &mut SandboxRecord) -> Result<()> {
        let _room = self.admit().await?;
        let resumed = self.provider.resume(record.provider_ref()).await;
        let running = self.note_gone(record, resumed).await?;
        record.set_running(running);
        record.expires_at = now() + record.timeout_secs as i64;
        self.store.update(record)?;
        tracing::info!(sandbox = %record.id, "resumed");
        self.start_editor(record).await;
        Ok(())
    }

    /// Removes a sandbox, its files and its record.
    pub async fn delete(&self, caller: &Caller, id: &SandboxId) -> Result<()> {
        let (_lock, record) = self.locked(caller, id).await?;
        self.delete_locked(&record).await
    }

    async fn delete_locked(&self, record: &SandboxRecord) -> Result<()> {
        self.pool.forget(&record.id).await;
        self.editors.forget(&record.id);
        self.provider.delete(record.provider_ref()).await?;
        self.store.delete(&record.id)?;
        tracing::info!(sandbox = %record.id, "deleted");
        Ok(())
    }

    /// Sets the inactivity timeout to `secs` from now.
    pub async fn set_timeout(
        &self,
        caller: &Caller,
        id: &SandboxId,
        secs: u64,
    ) -> Result<SandboxInfo> {
        let secs = self.timeout(Some(secs))?;
        let (_lock, mut record) = self.locked(caller, id).await?;
        let set = self.provider.set_timeout(record.provider_ref(), secs).await;
        self.note_gone(&mut record, set).await?;
        record.timeout_secs = secs;
        record.expires_at = now() + secs as i64;
        self.store.update(&record)?;
        Ok(self.info(&record))
    }

    /// The URL at which `port` inside the sandbox is reachable.
    pub fn expose_port(&self, caller: &Caller, id: &SandboxId, port: u16) -> Result<String> {
        if port == 0 {
            return Err(Error::Invalid("port must be between 1 and 65535".into()));
        }
        let record = self.visible(caller, id)?;
        if !self.provider.capabilities().expose_port {
            return Err(self.provider.unsupported("expose-port"));
        }
        self.provider.port_url(record.provider_ref(), port)
    }
}

/// A place taken by [`Sandboxes::admit`]; given back on drop.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn wrong_state(record: &SandboxRecord, wanted: SandboxState) -> Error {
    Error::WrongState {
        id: record.id.clone(),
        is: record.state,
        wanted,
    }
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn check_name(field: &str, value: &str, max: usize) -> Result<()> {
    if value.is_empty() || value.len() > max || value.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "{field} must be 1 to {max} bytes without control characters"
        )));
    }
    Ok(())
}

fn check_metadata(m: &BTreeMap<String, String>) -> Result<()> {
    if m.len() > MAX_METADATA_ENTRIES {
        return Err(Error::Invalid(format!(
            "metadata may have at most {MAX_METADATA_ENTRIES} entries"
        )));
    }
    for (k, v) in m {
        check_name("a metadata key", k, 64)?;
        if v.len() > 512 {
            return Err(Error::Invalid(format!(
                "metadata value of {k:?} is longer than 512 bytes"
            )));
        }
    }
    Ok(())
}

fn parse_cursor(c: &str) -> Result<(i64, String)> {
    c.split_once('.')
        .and_then(|(t, id)| Some((t.parse().ok()?, id.to_string())))
        .ok_or_else(|| Error::Invalid("cursor is not one this server gave out".into()))
}

#[cfg(test)]
mod tests;
