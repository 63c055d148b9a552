//! Durable sandbox records in SQLite.
//!
//! Every change is one statement in autocommit mode with the WAL journal, so a
//! SIGKILL at any point leaves either the old or the new row, never half.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::{Error, Result};
use crate::ids::{ProviderId, SandboxId};
use crate::model::{SandboxInfo, SandboxState};
use crate::provider::{Endpoint, Running, SandboxRef};

/// Schema migrations, applied in order; the index + 1 is the schema version.
const MIGRATIONS: &[&str] = &[include_str!("../migrations/0001_sandboxes.sql")];

/// One sandbox as the control plane remembers it.
#[derive(Debug, Clone)]
pub struct SandboxRecord {
    /// The control plane's id.
    pub id: SandboxId,
    /// The owner.
    pub user_id: String,
    /// Name of the provider that made it (`local`, `e2b`).
    pub provider: String,
    /// The provider's id; `None` until its create answered.
    pub provider_id: Option<ProviderId>,
    /// The template it was made from, if one was named.
    pub template_id: Option<String>,
    /// Where it is in its life.
    pub state: SandboxState,
    /// Where its MCP server answers (or answered, while paused); `None`
    /// while it is created and once it is gone.
    pub endpoint: Option<Endpoint>,
    /// mcp-tools' bearer token. Never logged.
    pub token: String,
    /// What the provider keeps with the record.
    pub provider_data: serde_json::Value,
    /// The client's labels.
    pub metadata: BTreeMap<String, String>,
    /// Inactivity timeout in seconds.
    pub timeout_secs: u64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; activity pushes it forward.
    pub expires_at: i64,
}

impl SandboxRecord {
    /// The part of the record its provider works with.
    pub fn provider_ref(&self) -> SandboxRef<'_> {
        SandboxRef {
            id: &self.id,
            provider_id: self.provider_id.as_ref(),
            state: self.state,
            token: &self.token,
            timeout_secs: self.timeout_secs,
            provider_data: &self.provider_data,
        }
    }

    /// Records what the provider reported of the sandbox it now runs.
    pub fn set_running(&mut self, running: Running) {
        self.provider_id = Some(running.provider_id);
        self.endpoint = Some(running.endpoint);
        self.provider_data = running.provider_data;
        self.state = SandboxState::Running;
    }

    /// The public view, given the URL of the editor port.
    pub fn info(&self, vscode_url: String) -> SandboxInfo {
        let endpoint = self.endpoint.clone().unwrap_or_default();
        let mut headers = endpoint.headers;
        headers.insert("Authorization".into(), format!("Bearer {}", self.token));
        SandboxInfo {
            sandbox_id: self.id.to_string(),
            user_id: self.user_id.clone(),
            provider: self.provider.clone(),
            template_id: self.template_id.clone(),
            status: self.state,
            mcp_url: endpoint.url,
            mcp_headers: headers,
            vscode_url: (!vscode_url.is_empty()).then_some(vscode_url),
            metadata: self.metadata.clone(),
            timeout_secs: self.timeout_secs,
            created_at: self.created_at,
            expires_at: self.expires_at,
        }
    }
}

/// Filters of `GET /sandboxes`.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    /// Only this user's sandboxes.
    pub user_id: Option<String>,
    /// Only sandboxes in this state.
    pub state: Option<SandboxState>,
    /// Only sandboxes whose metadata has all these pairs.
    pub metadata: Vec<(String, String)>,
    /// Rows strictly after this (created_at, id) position.
    pub after: Option<(i64, String)>,
    /// At most this many rows (`usize::MAX`: all).
    pub limit: usize,
}

/// The database handle. Calls are short, so one connection behind a mutex is enough.
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (or creates) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self
            .conn
            .lock()
            .map_err(|_| Error::Internal("database lock poisoned".into()))?;
        Ok(f(&conn)?)
    }

    /// Adds a record (its id must be new).
    pub fn insert(&self, r: &SandboxRecord) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO sandboxes (id, user_id, provider, provider_id, template_id, state,
                   mcp_url, token, mcp_headers, provider_data, metadata, timeout_secs,
                   created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                params![
                    r.id.as_str(),
                    r.user_id,
                    r.provider,
                    provider_id_column(r),
                    r.template_id,
                    r.state.as_str(),
                    mcp_url_column(r),
                    r.token,
                    mcp_headers_column(r),
                    r.provider_data.to_string(),
                    to_json(&r.metadata),
                    r.timeout_secs as i64,
                    r.created_at,
                    r.expires_at
                ],
            )
            .map(|_| ())
        })
    }

    /// Rewrites the mutable fields of a record.
    pub fn update(&self, r: &SandboxRecord) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE sandboxes SET provider_id = ?2, state = ?3, mcp_url = ?4, token = ?5,
                   mcp_headers = ?6, provider_data = ?7, timeout_secs = ?8, expires_at = ?9
                 WHERE id = ?1",
                params![
                    r.id.as_str(),
                    provider_id_column(r),
                    r.state.as_str(),
                    mcp_url_column(r),
                    r.token,
                    mcp_headers_column(r),
                    r.provider_data.to_string(),
                    r.timeout_secs as i64,
                    r.expires_at
                ],
            )
            .map(|_| ())
        })
    }

    /// Pushes the expiry of a sandbox to `expires_at` if that is later.
    pub fn extend(&self, id: &SandboxId, expires_at: i64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE sandboxes SET expires_at = max(expires_at, ?2) WHERE id = ?1",
                params![id.as_str(), expires_at],
            )
            .map(|_| ())
        })
    }

    /// The record of sandbox `id`, if there is one.
    pub fn get(&self, id: &SandboxId) -> Result<Option<SandboxRecord>> {
        self.with(|c| {
            c.query_row(
                "SELECT * FROM sandboxes WHERE id = ?1",
                [id.as_str()],
                from_row,
            )
            .optional()
        })
    }

    /// Removes a record; false if there was none.
    pub fn delete(&self, id: &SandboxId) -> Result<bool> {
        self.with(|c| {
            c.execute("DELETE FROM sandboxes WHERE id = ?1", [id.as_str()])
                .map(|n| n > 0)
        })
    }

    /// Every record, oldest first.
    pub fn all(&self) -> Result<Vec<SandboxRecord>> {
        self.list(&ListFilter {
            limit: usize::MAX,
            ..ListFilter::default()
        })
    }

    /// The records `f` selects, oldest first, at most `f.limit`.
    pub fn list(&self, f: &ListFilter) -> Result<Vec<SandboxRecord>> {
        let mut sql = String::from("SELECT * FROM sandboxes WHERE 1 = 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(user) = &f.user_id {
            args.push(user.clone().into());
            sql.push_str(&format!(" AND user_id = ?{}", args.len()));
        }
        if let Some(state) = f.state {
            args.push(state.as_str().to_string().into());
            sql.push_str(&format!(" AND state = ?{}", args.len()));
        }
        for (k, v) in &f.metadata {
            args.push(k.clone().into());
            args.push(v.clone().into());
            let (a, b) = (args.len() - 1, args.len());
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM json_each(metadata) WHERE key = ?{a} AND value = ?{b})"
            ));
        }
        if let Some((created, id)) = &f.after {
            args.push((*created).into());
            args.push(id.clone().into());
            let (a, b) = (args.len() - 1, args.len());
            sql.push_str(&format!(" AND (created_at, id) > (?{a}, ?{b})"));
        }
        sql.push_str(" ORDER BY created_at, id");
        if f.limit != usize::MAX {
            sql.push_str(&format!(" LIMIT {}", f.limit));
        }
        self.with(|c| {
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), from_row)?;
            rows.collect()
        })
    }

    /// Sandboxes in `state` whose expiry is at or before `now`.
    pub fn expired(&self, state: SandboxState, now: i64) -> Result<Vec<SandboxRecord>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT * FROM sandboxes WHERE state = ?1 AND expires_at <= ?2 ORDER BY expires_at",
            )?;
            let rows = stmt.query_map(params![state.as_str(), now], from_row)?;
            rows.collect()
        })
    }

    /// How many sandboxes are in `state`.
    pub fn count_in_state(&self, state: SandboxState) -> Result<usize> {
        self.with(|c| {
            c.query_row(
                "SELECT count(*) FROM sandboxes WHERE state = ?1",
                [state.as_str()],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as usize)
        })
    }
}

fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let current: i64 = conn.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_version",
        [],
        |r| r.get(0),
    )?;
    if current as usize > MIGRATIONS.len() {
        return Err(Error::Internal(format!(
            "the database has schema version {current}, newer than this control-plane knows ({}); use a newer binary",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i64 + 1;
        // Each migration and its version bump commit together or not at all.
        conn.execute_batch(&format!(
            "BEGIN; {sql}; INSERT INTO schema_version (version) VALUES ({version}); COMMIT;"
        ))
        .map_err(|e| Error::Internal(format!("database migration {version} failed: {e}")))?;
    }
    Ok(())
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

/// The `provider_id` column: empty while the create has not answered.
fn provider_id_column(r: &SandboxRecord) -> &str {
    r.provider_id.as_ref().map_or("", ProviderId::as_str)
}

/// The `mcp_url` column: empty when there is no endpoint.
fn mcp_url_column(r: &SandboxRecord) -> &str {
    r.endpoint.as_ref().map_or("", |e| e.url.as_str())
}

/// The `mcp_headers` column: a JSON object.
fn mcp_headers_column(r: &SandboxRecord) -> String {
    r.endpoint
        .as_ref()
        .map_or_else(|| "{}".to_string(), |e| to_json(&e.headers))
}

/// An id column that does not parse: only a hand-edited database has one.
fn bad_id(column: &'static str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("{column} {value:?} is not a valid id").into(),
    )
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<SandboxRecord> {
    let state: String = row.get("state")?;
    let json_col = |name: &str| -> rusqlite::Result<String> { row.get(name) };
    let id: String = row.get("id")?;
    let provider_id: String = row.get("provider_id")?;
    let mcp_url: String = row.get("mcp_url")?;
    Ok(SandboxRecord {
        id: SandboxId::parse(&id).ok_or_else(|| bad_id("id", &id))?,
        user_id: row.get("user_id")?,
        provider: row.get("provider")?,
        provider_id: match provider_id.as_str() {
            "" => None,
            p => Some(ProviderId::parse(p).ok_or_else(|| bad_id("provider_id", p))?),
        },
        template_id: row.get("template_id")?,
        // An unknown state can only come from a newer binary; treat it as paused,
        // the state from which every operation is safe.
        state: SandboxState::parse(&state).unwrap_or(SandboxState::Paused),
        endpoint: (!mcp_url.is_empty())
            .then(|| -> rusqlite::Result<Endpoint> {
                Ok(Endpoint {
                    url: mcp_url,
                    headers: serde_json::from_str(&json_col("mcp_headers")?).unwrap_or_default(),
                })
            })
            .transpose()?,
        token: row.get("token")?,
        provider_data: serde_json::from_str(&json_col("provider_data")?)
            .unwrap_or(serde_json::Value::Null),
        metadata: serde_json::from_str(&json_col("metadata")?).unwrap_or_default(),
        timeout_secs: row.get::<_, i64>("timeout_secs")?.max(0) as u64,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
    })
}
