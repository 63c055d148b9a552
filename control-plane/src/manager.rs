//! The sandbox lifecycle: what every API call and the reaper do, independent
//! of HTTP. State lives in the [`Store`]; the [`Provider`] starts and stops
//! sandboxes; tool calls go through the [`McpPool`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::config::{ExpiryAction, ServeConfig};
use crate::error::{Error, Result};
use crate::mcp::{McpPool, Target};
use crate::model::*;
use crate::provider::{CreateSpec, Observed, Provider, Started};
use crate::store::{ListFilter, SandboxRecord, Store};

/// Tool calls that do not run a command should answer quickly.
const FILE_CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// mcp-tools' own ceiling for a foreground command, and its default.
const MAX_COMMAND_MS: u64 = 600_000;
const DEFAULT_COMMAND_MS: u64 = 120_000;
/// Slack on top of a command's timeout for the round trip.
const COMMAND_SLACK: Duration = Duration::from_secs(30);
const MAX_METADATA_ENTRIES: usize = 32;
const MAX_LIST_LIMIT: usize = 1000;

/// Who is calling: the user an API key is bound to, or `None` for a key (or
/// an open server) that may touch every sandbox.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub user: Option<String>,
}

/// `GET /sandboxes` parameters, already parsed.
#[derive(Debug, Default)]
pub struct ListQuery {
    pub user_id: Option<String>,
    pub state: Option<SandboxState>,
    pub metadata: Vec<(String, String)>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

pub struct Manager {
    store: Store,
    provider: Arc<dyn Provider>,
    pool: McpPool,
    default_timeout_secs: u64,
    max_timeout_secs: u64,
    on_expire: ExpiryAction,
    max_running: usize,
    /// One lock per sandbox so lifecycle changes of one sandbox never interleave.
    locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Serialises the "is there room?" checks.
    admission: tokio::sync::Mutex<()>,
    /// Sandboxes being resumed, which their records do not count yet.
    starting: AtomicUsize,
}

impl Manager {
    pub fn new(config: &ServeConfig, store: Store, provider: Arc<dyn Provider>) -> Self {
        Manager {
            store,
            provider,
            pool: McpPool::default(),
            default_timeout_secs: config.default_timeout_secs.min(config.max_timeout_secs),
            max_timeout_secs: config.max_timeout_secs,
            on_expire: config.on_expire,
            max_running: config.max_running,
            locks: std::sync::Mutex::new(HashMap::new()),
            admission: tokio::sync::Mutex::new(()),
            starting: AtomicUsize::new(0),
        }
    }

    pub fn provider(&self) -> &dyn Provider {
        self.provider.as_ref()
    }

    fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(id.to_string()).or_default().clone()
    }

    fn drop_lock(&self, id: &str) {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.remove(id);
    }

    /// The sandbox's lock and its record as it is under that lock. Unknown ids
    /// answer 404 before any lock is made for them.
    async fn locked(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(tokio::sync::OwnedMutexGuard<()>, SandboxRecord)> {
        self.visible(caller, id)?;
        let guard = self.lock_for(id).lock_owned().await;
        // Read again: it may have changed, or gone, while we waited.
        let record = self.visible(caller, id)?;
        self.check_provider(&record)?;
        Ok((guard, record))
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

    fn info(&self, r: &SandboxRecord) -> SandboxInfo {
        r.info(self.provider.vscode_url(r))
    }

    /// The record if it exists and the caller may see it; 404 otherwise, so a
    /// key cannot even learn that another user's sandbox exists.
    fn visible(&self, caller: &Caller, id: &str) -> Result<SandboxRecord> {
        match self.store.get(id)? {
            Some(r) if caller.user.as_ref().is_none_or(|u| *u == r.user_id) => Ok(r),
            _ => Err(Error::sandbox_not_found(id)),
        }
    }

    fn timeout(&self, asked: Option<u64>) -> Result<u64> {
        match asked {
            None => Ok(self.default_timeout_secs),
            Some(0) => Err(Error::BadRequest("timeout_secs must be at least 1".into())),
            Some(t) if t > self.max_timeout_secs => Err(Error::BadRequest(format!(
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

    pub async fn create(&self, caller: &Caller, req: CreateSandboxRequest) -> Result<SandboxInfo> {
        let user_id = match (&caller.user, req.user_id) {
            (Some(bound), None) => bound.clone(),
            (Some(bound), Some(asked)) if *bound == asked => asked,
            (Some(bound), Some(_)) => {
                return Err(Error::Forbidden(format!(
                    "this API key may only create sandboxes for user {bound:?}"
                )));
            }
            (None, Some(asked)) => asked,
            (None, None) => return Err(Error::BadRequest("user_id is required".into())),
        };
        check_name("user_id", &user_id, 128)?;
        if let Some(t) = &req.template_id {
            check_name("template_id", t, 128)?;
        }
        check_metadata(&req.metadata)?;
        let timeout_secs = self.timeout(req.timeout_secs)?;

        let now = now();
        let record = SandboxRecord {
            id: format!("sb-{}", random_hex(8)?),
            user_id: user_id.clone(),
            provider: self.provider.name().to_string(),
            provider_id: String::new(),
            template_id: req.template_id.clone(),
            state: SandboxState::Creating,
            mcp_url: String::new(),
            token: random_hex(32)?,
            mcp_headers: BTreeMap::new(),
            provider_data: Value::Null,
            metadata: req.metadata.clone(),
            timeout_secs,
            created_at: now,
            expires_at: now + timeout_secs as i64,
        };
        // Locked before it is visible, so no delete can slip in mid-create.
        let lock = self.lock_for(&record.id);
        let _guard = lock.lock().await;
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
        };
        match self.provider.create(&spec).await {
            Ok(started) => {
                let mut record = record;
                apply_started(&mut record, started);
                self.store.update(&record)?;
                tracing::info!(sandbox = %record.id, user = %record.user_id, "created");
                Ok(self.info(&record))
            }
            Err(e) => {
                self.store.delete(&record.id)?;
                self.drop_lock(&record.id);
                tracing::warn!(sandbox = %record.id, "create failed: {e}");
                Err(e)
            }
        }
    }

    pub async fn status(&self, caller: &Caller, id: &str) -> Result<SandboxInfo> {
        let record = self.visible(caller, id)?;
        if record.state != SandboxState::Running || self.check_provider(&record).is_err() {
            return Ok(self.info(&record));
        }
        // Check that a "running" sandbox really is, so status never shows a dead URL.
        let (_guard, mut record) = self.locked(caller, id).await?;
        if record.state == SandboxState::Running {
            self.refresh(&mut record).await?;
        }
        Ok(self.info(&record))
    }

    /// Brings a running record in line with what the provider sees.
    async fn refresh(&self, record: &mut SandboxRecord) -> Result<()> {
        match self.provider.observe(record).await? {
            Observed::Running(started) => {
                if started.mcp_url != record.mcp_url {
                    apply_started(record, started);
                    self.store.update(record)?;
                }
            }
            Observed::Stopped => {
                tracing::warn!(sandbox = %record.id, "found stopped; marking it paused");
                self.mark(record, SandboxState::Paused).await?;
            }
            Observed::Gone => {
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
            record.mcp_url.clear();
            record.mcp_headers.clear();
        }
        self.store.update(record)?;
        self.pool.forget(&record.id).await;
        Ok(())
    }

    /// Passes a provider's error on, first marking the sandbox gone when the
    /// provider says it no longer has it.
    async fn note_gone<T>(&self, record: &mut SandboxRecord, result: Result<T>) -> Result<T> {
        if let Err(Error::Gone(_)) = &result {
            tracing::warn!(sandbox = %record.id, "its provider no longer has it; marking it gone");
            self.mark(record, SandboxState::Gone).await?;
        }
        result
    }

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
            return Err(Error::BadRequest(format!(
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
    pub async fn connect(&self, caller: &Caller, id: &str) -> Result<SandboxInfo> {
        let (_guard, mut record) = self.locked(caller, id).await?;
        match record.state {
            SandboxState::Creating => {
                return Err(Error::Conflict(format!(
                    "sandbox {id} is still being created"
                )));
            }
            SandboxState::Gone => return Err(gone(id)),
            SandboxState::Paused => self.resume_locked(&mut record).await?,
            SandboxState::Running => {
                self.refresh(&mut record).await?;
                if record.state == SandboxState::Gone {
                    return Err(gone(id));
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

    pub async fn pause(&self, caller: &Caller, id: &str) -> Result<SandboxInfo> {
        let (_guard, mut record) = self.locked(caller, id).await?;
        if record.state == SandboxState::Gone {
            return Err(gone(id));
        }
        if record.state != SandboxState::Running {
            return Err(Error::Conflict(format!(
                "sandbox {id} is {}, not running",
                record.state
            )));
        }
        self.pause_locked(&mut record).await?;
        Ok(self.info(&record))
    }

    async fn pause_locked(&self, record: &mut SandboxRecord) -> Result<()> {
        if !self.provider.capabilities().pause {
            return Err(self.provider.unsupported("pause"));
        }
        self.pool.forget(&record.id).await;
        let paused = self.provider.pause(record).await;
        self.note_gone(record, paused).await?;
        record.state = SandboxState::Paused;
        self.store.update(record)?;
        tracing::info!(sandbox = %record.id, "paused");
        Ok(())
    }

    pub async fn resume(&self, caller: &Caller, id: &str) -> Result<SandboxInfo> {
        let (_guard, mut record) = self.locked(caller, id).await?;
        if record.state == SandboxState::Gone {
            return Err(gone(id));
        }
        if record.state != SandboxState::Paused {
            return Err(Error::Conflict(format!(
                "sandbox {id} is {}, not paused",
                record.state
            )));
        }
        self.resume_locked(&mut record).await?;
        Ok(self.info(&record))
    }

    async fn resume_locked(&self, record: &mut SandboxRecord) -> Result<()> {
        let _room = self.admit().await?;
        let started = self.provider.resume(record).await;
        let started = self.note_gone(record, started).await?;
        apply_started(record, started);
        record.expires_at = now() + record.timeout_secs as i64;
        self.store.update(record)?;
        tracing::info!(sandbox = %record.id, "resumed");
        Ok(())
    }

    pub async fn delete(&self, caller: &Caller, id: &str) -> Result<()> {
        let (_guard, record) = self.locked(caller, id).await?;
        self.delete_locked(&record).await
    }

    async fn delete_locked(&self, record: &SandboxRecord) -> Result<()> {
        self.pool.forget(&record.id).await;
        self.provider.delete(record).await?;
        self.store.delete(&record.id)?;
        self.drop_lock(&record.id);
        tracing::info!(sandbox = %record.id, "deleted");
        Ok(())
    }

    pub async fn set_timeout(&self, caller: &Caller, id: &str, secs: u64) -> Result<SandboxInfo> {
        let secs = self.timeout(Some(secs))?;
        let (_guard, mut record) = self.locked(caller, id).await?;
        let set = self.provider.set_timeout(&record, secs).await;
        self.note_gone(&mut record, set).await?;
        record.timeout_secs = secs;
        record.expires_at = now() + secs as i64;
        self.store.update(&record)?;
        Ok(self.info(&record))
    }

    pub fn expose_port(&self, caller: &Caller, id: &str, port: u16) -> Result<String> {
        if port == 0 {
            return Err(Error::BadRequest("port must be between 1 and 65535".into()));
        }
        let record = self.visible(caller, id)?;
        if !self.provider.capabilities().expose_port {
            return Err(self.provider.unsupported("expose-port"));
        }
        self.provider.port_url(&record, port)
    }

    /// A running sandbox to call a tool in; counts as activity.
    fn running(&self, caller: &Caller, id: &str) -> Result<Target> {
        let record = self.visible(caller, id)?;
        self.check_provider(&record)?;
        if record.state == SandboxState::Gone {
            return Err(gone(id));
        }
        if record.state != SandboxState::Running {
            return Err(Error::Conflict(format!(
                "sandbox {id} is {}; resume or connect it first",
                record.state
            )));
        }
        self.store.extend(id, now() + record.timeout_secs as i64)?;
        Ok(Target {
            sandbox_id: record.id,
            url: record.mcp_url,
            token: record.token,
            headers: record.mcp_headers,
        })
    }

    pub async fn run_command(
        &self,
        caller: &Caller,
        req: RunCommandRequest,
    ) -> Result<RunCommandResponse> {
        if req.command.trim().is_empty() {
            return Err(Error::BadRequest("command must not be empty".into()));
        }
        if req.timeout_ms == Some(0) || req.timeout_ms.is_some_and(|t| t > MAX_COMMAND_MS) {
            return Err(Error::BadRequest(format!(
                "timeout_ms must be between 1 and {MAX_COMMAND_MS}"
            )));
        }
        let target = self.running(caller, &req.sandbox_id)?;
        let mut args = json!({ "command": req.command, "background": req.background });
        if let Some(t) = req.timeout_ms {
            args["timeout_ms"] = json!(t);
        }
        if let Some(cwd) = &req.cwd {
            args["cwd"] = json!(cwd);
        }
        if !req.env.is_empty() {
            args["env"] = json!(req.env);
        }
        let wait =
            Duration::from_millis(req.timeout_ms.unwrap_or(DEFAULT_COMMAND_MS)) + COMMAND_SLACK;
        let out = self.pool.call(&target, "run_command", args, wait).await?;
        let s = &out.structured;
        let text = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let stdout = text("stdout");
        let stderr = text("stderr");
        let job_id = s.get("id").and_then(Value::as_str).map(str::to_string);
        let log_path = s
            .get("log_path")
            .and_then(Value::as_str)
            .map(str::to_string);
        let output = if req.background {
            format!(
                "Command started in background (job {}, log {})",
                job_id.as_deref().unwrap_or("?"),
                log_path.as_deref().unwrap_or("?")
            )
        } else if s.is_null() {
            out.text
        } else {
            format!("{stdout}{stderr}")
        };
        Ok(RunCommandResponse {
            output,
            exit_code: s
                .get("exit_code")
                .and_then(Value::as_i64)
                .and_then(|c| i32::try_from(c).ok()),
            stdout,
            stderr,
            signal: s
                .get("signal")
                .and_then(Value::as_i64)
                .and_then(|c| i32::try_from(c).ok()),
            timed_out: s.get("timed_out").and_then(Value::as_bool).unwrap_or(false),
            duration_ms: s.get("duration_ms").and_then(Value::as_u64),
            job_id,
            pid: s
                .get("pid")
                .and_then(Value::as_u64)
                .and_then(|p| u32::try_from(p).ok()),
            log_path,
        })
    }

    pub async fn write_file(&self, caller: &Caller, req: FileOperationRequest) -> Result<()> {
        let Some(content) = req.content else {
            return Err(Error::BadRequest(
                "content is required (it may be empty)".into(),
            ));
        };
        check_path(&req.path)?;
        let target = self.running(caller, &req.sandbox_id)?;
        let args = json!({ "path": req.path, "content": content });
        self.pool
            .call(&target, "write_file", args, FILE_CALL_TIMEOUT)
            .await?;
        Ok(())
    }

    pub async fn read_file(&self, caller: &Caller, req: FileOperationRequest) -> Result<String> {
        check_path(&req.path)?;
        let target = self.running(caller, &req.sandbox_id)?;
        let args = json!({ "path": req.path });
        let out = self
            .pool
            .call(&target, "read_file", args, FILE_CALL_TIMEOUT)
            .await?;
        // The tool shows what it cannot return as is (invalid bytes replaced,
        // long lines cut, a tail left out) and says so; this endpoint answers
        // with the file's content, so such a read is refused, not passed on.
        let flag = |name: &str| out.structured.get(name).and_then(Value::as_bool) == Some(true);
        let cut_lines = out
            .structured
            .get("cut_lines")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if flag("lossy") {
            return Err(Error::BadRequest(format!(
                "{} is not valid UTF-8 text, which read-file returns; \
                 read it with run-command (e.g. base64 {})",
                req.path, req.path
            )));
        }
        if flag("more") || cut_lines > 0 {
            return Err(Error::BadRequest(format!(
                "{} is too large for read-file to return whole{}; \
                 read it with run-command (e.g. head, sed -n or base64)",
                req.path,
                if cut_lines > 0 {
                    format!(" ({cut_lines} lines are too long)")
                } else {
                    String::new()
                }
            )));
        }
        match out.structured.get("content").and_then(Value::as_str) {
            Some(c) => Ok(c.to_string()),
            None => Err(Error::Upstream(format!(
                "sandbox {}'s read_file answered without content",
                req.sandbox_id
            ))),
        }
    }

    /// At startup: re-adopt sandboxes that are still running, mark the rest
    /// paused. Only records of creates that never finished are dropped.
    pub async fn recover(&self) -> Result<()> {
        let (mut adopted, mut paused, mut dropped, mut gone) = (0, 0, 0, 0);
        for mut record in self.store.all()? {
            if matches!(record.state, SandboxState::Paused | SandboxState::Gone)
                || record.provider != self.provider.name()
            {
                continue;
            }
            let seen = match self.provider.observe(&record).await {
                Ok(seen) => seen,
                Err(e) => {
                    tracing::warn!(sandbox = %record.id, "cannot check it: {e}");
                    Observed::Stopped
                }
            };
            match seen {
                Observed::Running(started) => {
                    apply_started(&mut record, started);
                    adopted += 1;
                }
                Observed::Stopped | Observed::Gone if record.state == SandboxState::Creating => {
                    // Its create never answered, so no client knows this id:
                    // clean up what was started rather than keep a half-made sandbox.
                    if let Err(e) = self.provider.delete(&record).await {
                        tracing::warn!(sandbox = %record.id, "cannot clean up an unfinished create: {e}");
                        continue;
                    }
                    self.store.delete(&record.id)?;
                    dropped += 1;
                    continue;
                }
                Observed::Stopped => {
                    record.state = SandboxState::Paused;
                    paused += 1;
                }
                Observed::Gone => {
                    tracing::warn!(sandbox = %record.id, "its provider no longer has it; marking it gone");
                    record.state = SandboxState::Gone;
                    record.mcp_url.clear();
                    record.mcp_headers.clear();
                    gone += 1;
                }
            }
            self.store.update(&record)?;
        }
        if adopted + paused + dropped + gone > 0 {
            tracing::info!(
                adopted,
                paused,
                dropped,
                gone,
                "recovered sandboxes left by the previous start"
            );
        }
        Ok(())
    }

    /// One pass of the reaper: pause or delete sandboxes whose timeout passed.
    pub async fn reap(&self) -> Result<()> {
        let now = now();
        let mut due = self.store.expired(SandboxState::Running, now)?;
        if self.on_expire == ExpiryAction::Delete {
            due.extend(self.store.expired(SandboxState::Paused, now)?);
            due.extend(self.store.expired(SandboxState::Gone, now)?);
        }
        for stale in due {
            let lock = self.lock_for(&stale.id);
            let _guard = lock.lock().await;
            // Re-read: activity may have extended it meanwhile.
            let Some(mut record) = self.store.get(&stale.id)? else {
                continue;
            };
            if record.expires_at > now
                || record.state == SandboxState::Creating
                || self.check_provider(&record).is_err()
            {
                continue;
            }
            let result = match self.on_expire {
                ExpiryAction::Delete => self.delete_locked(&record).await,
                ExpiryAction::Pause if record.state == SandboxState::Running => {
                    self.pause_locked(&mut record).await
                }
                ExpiryAction::Pause => Ok(()),
            };
            match result {
                Ok(()) => tracing::info!(sandbox = %record.id, "timed out"),
                Err(e) => tracing::warn!(sandbox = %record.id, "reaper could not stop it: {e}"),
            }
        }
        Ok(())
    }

    /// Compares the records with the provider's own list of its sandboxes,
    /// for providers that can list them (E2B): a sandbox the provider lost
    /// or killed is marked gone, one it paused by itself paused, and the
    /// provider's own timeout of a running one is pushed forward when
    /// activity here moved its expiry, to `margin_secs` past it, so that the
    /// reaper (not the provider) acts first.
    ///
    /// Providers that cannot list are asked about each running sandbox, so
    /// one that died on its own is shown paused instead of with a dead URL.
    pub async fn reconcile(&self, margin_secs: u64) -> Result<()> {
        let Some(seen) = self.provider.survey().await? else {
            return self.refresh_running().await;
        };
        let (mut gone, mut paused, mut pushed) = (0, 0, 0);
        for listed in self.store.all()? {
            if listed.provider != self.provider.name()
                || !matches!(listed.state, SandboxState::Running | SandboxState::Paused)
            {
                continue;
            }
            let lock = self.lock_for(&listed.id);
            let _guard = lock.lock().await;
            let Some(mut record) = self.store.get(&listed.id)? else {
                continue;
            };
            match (record.state, seen.get(&record.provider_id)) {
                (SandboxState::Running, Some(s)) if s.running => {
                    let want = record.expires_at + margin_secs as i64;
                    if s.ends_at.is_some_and(|end| end < want) {
                        let secs = (want - now()).max(1) as u64;
                        let set = self.provider.set_timeout(&record, secs).await;
                        match self.note_gone(&mut record, set).await {
                            Ok(()) => pushed += 1,
                            Err(e) => {
                                tracing::warn!(sandbox = %record.id, "cannot push its timeout: {e}")
                            }
                        }
                    }
                }
                (SandboxState::Running, _) | (SandboxState::Paused, None) => {
                    // The list may be older than the record (a resume may
                    // have finished since): ask about this one before
                    // changing it.
                    match self.provider.observe(&record).await {
                        Ok(Observed::Gone) => {
                            tracing::warn!(sandbox = %record.id, "its provider no longer has it; marking it gone");
                            self.mark(&mut record, SandboxState::Gone).await?;
                            gone += 1;
                        }
                        Ok(Observed::Stopped) if record.state == SandboxState::Running => {
                            tracing::info!(sandbox = %record.id, "its provider stopped it; marking it paused");
                            self.mark(&mut record, SandboxState::Paused).await?;
                            paused += 1;
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(sandbox = %record.id, "cannot check it: {e}"),
                    }
                }
                _ => {}
            }
        }
        if gone + paused > 0 {
            tracing::info!(gone, paused, "reconciled with the provider");
        }
        if pushed > 0 {
            tracing::debug!(pushed, "pushed the provider's timeouts forward");
        }
        Ok(())
    }

    /// Refreshes every running record from the provider, one by one.
    async fn refresh_running(&self) -> Result<()> {
        let running = self.store.list(&ListFilter {
            state: Some(SandboxState::Running),
            limit: usize::MAX,
            ..ListFilter::default()
        })?;
        for r in running {
            if self.check_provider(&r).is_err() {
                continue;
            }
            let lock = self.lock_for(&r.id);
            let _guard = lock.lock().await;
            let Some(mut record) = self.store.get(&r.id)? else {
                continue;
            };
            if record.state == SandboxState::Running
                && let Err(e) = self.refresh(&mut record).await
            {
                tracing::warn!(sandbox = %record.id, "cannot check it: {e}");
            }
        }
        Ok(())
    }

    /// On shutdown: pause running sandboxes when the provider wants that.
    pub async fn shutdown(self: &Arc<Self>) {
        self.pool.close_all().await;
        if !self.provider.capabilities().pause_on_shutdown {
            return;
        }
        let Ok(running) = self.store.list(&ListFilter {
            state: Some(SandboxState::Running),
            limit: usize::MAX,
            ..ListFilter::default()
        }) else {
            return;
        };
        let mut tasks = tokio::task::JoinSet::new();
        for r in running {
            let me = self.clone();
            tasks.spawn(async move {
                let lock = me.lock_for(&r.id);
                let _guard = lock.lock().await;
                if let Ok(Some(mut record)) = me.store.get(&r.id)
                    && record.state == SandboxState::Running
                    && me.check_provider(&record).is_ok()
                    && let Err(e) = me.pause_locked(&mut record).await
                {
                    tracing::warn!(sandbox = %record.id, "could not pause at shutdown: {e}");
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// A place taken by [`Manager::admit`]; given back on drop.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn apply_started(record: &mut SandboxRecord, s: Started) {
    record.provider_id = s.provider_id;
    record.mcp_url = s.mcp_url;
    record.mcp_headers = s.mcp_headers;
    record.provider_data = s.provider_data;
    record.state = SandboxState::Running;
}

/// The answer for a sandbox its provider no longer has.
fn gone(id: &str) -> Error {
    Error::Gone(format!(
        "sandbox {id} is gone: its provider no longer has it (it was killed, or its \
         provider's own timeout passed); delete it and create a new one"
    ))
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)
        .map_err(|e| Error::Internal(format!("no randomness available: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn check_name(field: &str, value: &str, max: usize) -> Result<()> {
    if value.is_empty() || value.len() > max || value.chars().any(char::is_control) {
        return Err(Error::BadRequest(format!(
            "{field} must be 1 to {max} bytes without control characters"
        )));
    }
    Ok(())
}

fn check_path(path: &str) -> Result<()> {
    if path.is_empty() || path.contains('\0') {
        return Err(Error::BadRequest(
            "path must be a non-empty file path".into(),
        ));
    }
    Ok(())
}

fn check_metadata(m: &BTreeMap<String, String>) -> Result<()> {
    if m.len() > MAX_METADATA_ENTRIES {
        return Err(Error::BadRequest(format!(
            "metadata may have at most {MAX_METADATA_ENTRIES} entries"
        )));
    }
    for (k, v) in m {
        check_name("a metadata key", k, 64)?;
        if v.len() > 512 {
            return Err(Error::BadRequest(format!(
                "metadata value of {k:?} is longer than 512 bytes"
            )));
        }
    }
    Ok(())
}

fn parse_cursor(c: &str) -> Result<(i64, String)> {
    c.split_once('.')
        .and_then(|(t, id)| Some((t.parse().ok()?, id.to_string())))
        .ok_or_else(|| Error::BadRequest("cursor is not one this server gave out".into()))
}
