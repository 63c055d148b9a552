//! MCP sessions: how many may be open, when an idle one is closed, and the
//! refusal of a request id already in progress in its session.
//!
//! rmcp's session manager keeps every session until it has seen no message
//! for its keep-alive (five minutes by default), with no cap; and it counts
//! a tool call in progress as silence, so a shorter keep-alive would cut
//! ten-minute commands. This layer keeps its own account instead: a session
//! is idle when no request of it is in progress (a response stream counts
//! until it ends) and none has arrived for [`Sessions::idle`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use rmcp::transport::common::http_header::HEADER_SESSION_ID;
use rmcp::transport::streamable_http_server::session::local::{LocalSessionManager, SessionConfig};
use rmcp::transport::streamable_http_server::session::{SessionId, SessionManager};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::jsonrpc::{self, Parsed};

/// A session idle at least this long may be closed to make room for a new
/// one when the cap is reached.
const MIN_IDLE_TO_REPLACE: Duration = Duration::from_secs(10);
/// How long a finished response stays cached for a client that resumes its
/// stream (`Last-Event-ID`); rmcp's default is 60 s.
const COMPLETED_CACHE_TTL: Duration = Duration::from_secs(10);
/// rmcp's own expiry, a backstop behind this layer's: longer than any
/// single tool call (600 s), which rmcp counts as silence.
const RMCP_KEEP_ALIVE: Duration = Duration::from_secs(30 * 60);

/// The open sessions' activity, and their limits.
pub struct Sessions {
    manager: Arc<LocalSessionManager>,
    max: usize,
    idle: Duration,
    table: Mutex<HashMap<SessionId, Activity>>,
    /// Held while an initialize request runs, so the cap is exact.
    opening: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct Activity {
    last_seen: Instant,
    /// Requests (and GET streams) whose response has not ended.
    open: usize,
    /// JSON-RPC ids of the requests in progress, as JSON text.
    ids: HashSet<String>,
}

impl Sessions {
    /// At most `max` sessions; one closes after `idle` without activity.
    pub fn new(max: usize, idle: Duration) -> Arc<Self> {
        let mut manager = LocalSessionManager::default();
        let mut config = SessionConfig::default();
        config.keep_alive = Some(RMCP_KEEP_ALIVE.max(idle));
        config.completed_cache_ttl = COMPLETED_CACHE_TTL;
        manager.session_config = config;
        Arc::new(Sessions {
            manager: Arc::new(manager),
            max: max.max(1),
            idle,
            table: Mutex::new(HashMap::new()),
            opening: tokio::sync::Mutex::new(()),
        })
    }

    /// The session manager to give rmcp's `StreamableHttpService`.
    pub fn manager(&self) -> Arc<LocalSessionManager> {
        self.manager.clone()
    }

    /// How long a session may stay idle.
    pub fn idle(&self) -> Duration {
        self.idle
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<SessionId, Activity>> {
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Closes the sessions idle for longer than [`Sessions::idle`], and
    /// forgets those rmcp has closed itself.
    pub async fn expire_idle(&self) {
        let live: HashSet<SessionId> = self.manager.sessions.read().await.keys().cloned().collect();
        let expired: Vec<SessionId> = {
            let mut table = self.lock();
            table.retain(|id, _| live.contains(id));
            table
                .iter()
                .filter(|(_, a)| a.open == 0 && a.last_seen.elapsed() > self.idle)
                .map(|(id, _)| id.clone())
                .collect()
        };
        for id in expired {
            tracing::debug!(session = %id, "closing idle session");
            self.close(&id).await;
        }
    }

    /// Runs [`Sessions::expire_idle`] a few times per idle period until
    /// `stop` fires.
    pub fn spawn_expiry(self: &Arc<Self>, stop: CancellationToken) {
        let sessions = self.clone();
        let every = (self.idle / 4).clamp(Duration::from_millis(250), Duration::from_secs(15));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => sessions.expire_idle().await,
                    () = stop.cancelled() => return,
                }
            }
        });
    }

    async fn close(&self, id: &SessionId) {
        self.lock().remove(id);
        if let Err(e) = self.manager.close_session(id).await {
            tracing::debug!(session = %id, "closing session: {e}");
        }
    }

    /// True when a new session fits: under the cap, or after closing the
    /// session idle the longest (at least [`MIN_IDLE_TO_REPLACE`]).
    async fn make_room(&self) -> bool {
        if self.manager.sessions.read().await.len() < self.max {
            return true;
        }
        let oldest = self
            .lock()
            .iter()
            .filter(|(_, a)| a.open == 0 && a.last_seen.elapsed() >= MIN_IDLE_TO_REPLACE)
            .min_by_key(|(_, a)| a.last_seen)
            .map(|(id, _)| id.clone());
        match oldest {
            Some(id) => {
                tracing::debug!(session = %id, "closing the longest-idle session to make room");
                self.close(&id).await;
                self.manager.sessions.read().await.len() < self.max
            }
            None => false,
        }
    }

    /// Counts a request of session `id` in progress, with JSON-RPC id
    /// `request_id`; `None` when that id is already in progress there.
    /// Sessions this layer does not know (unknown ids) are left to rmcp.
    fn begin(self: &Arc<Self>, id: &SessionId, request_id: Option<String>) -> Option<InProgress> {
        let mut table = self.lock();
        let Some(activity) = table.get_mut(id) else {
            return Some(InProgress {
                sessions: None,
                id: id.clone(),
                request_id: None,
            });
        };
        if let Some(rid) = &request_id
            && !activity.ids.insert(rid.clone())
        {
            return None;
        }
        activity.open += 1;
        activity.last_seen = Instant::now();
        Some(InProgress {
            sessions: Some(self.clone()),
            id: id.clone(),
            request_id,
        })
    }
}

/// A request of a session in progress, until its response ends.
struct InProgress {
    sessions: Option<Arc<Sessions>>,
    id: SessionId,
    request_id: Option<String>,
}

impl Drop for InProgress {
    fn drop(&mut self) {
        let Some(sessions) = &self.sessions else {
            return;
        };
        if let Some(activity) = sessions.lock().get_mut(&self.id) {
            activity.open = activity.open.saturating_sub(1);
            activity.last_seen = Instant::now();
            if let Some(rid) = &self.request_id {
                activity.ids.remove(rid);
            }
        }
    }
}

/// Axum middleware for /mcp, inside [`jsonrpc::reject_malformed`] (whose
/// [`Parsed`] it reads): caps sessions, tracks their activity, and answers
/// a request whose id is already in progress in its session with a
/// JSON-RPC error (MCP: "The request ID MUST NOT have been previously used
/// by the requestor within the same session").
pub async fn track(
    State(sessions): State<Arc<Sessions>>,
    request: Request,
    next: Next,
) -> Response {
    let session: Option<SessionId> = request
        .headers()
        .get(HEADER_SESSION_ID)
        .and_then(|v| v.to_str().ok())
        .map(Into::into);
    let parsed = request.extensions().get::<Parsed>().cloned();
    let Some(session) = session else {
        let initialize = parsed
            .as_ref()
            .is_some_and(|p| p.method.as_deref() == Some("initialize"));
        if !initialize {
            return next.run(request).await;
        }
        let _opening = sessions.opening.lock().await;
        if !sessions.make_room().await {
            return too_many_sessions(&sessions, parsed.map_or(Value::Null, |p| p.id));
        }
        let response = next.run(request).await;
        if let Some(id) = response
            .headers()
            .get(HEADER_SESSION_ID)
            .and_then(|v| v.to_str().ok())
        {
            sessions.lock().insert(
                id.into(),
                Activity {
                    last_seen: Instant::now(),
                    open: 0,
                    ids: HashSet::new(),
                },
            );
        }
        return response;
    };
    if request.method() == Method::DELETE {
        let response = next.run(request).await;
        sessions.lock().remove(&session);
        return response;
    }
    // Only requests have ids to collide; responses the client sends back
    // carry the server's ids.
    let request_id = parsed
        .as_ref()
        .filter(|p| p.method.is_some() && !p.id.is_null())
        .map(|p| p.id.to_string());
    let Some(in_progress) = sessions.begin(&session, request_id) else {
        let id = parsed.map_or(Value::Null, |p| p.id);
        return jsonrpc::error(
            StatusCode::BAD_REQUEST,
            id.clone(),
            -32600,
            format!(
                "Invalid Request: id {id} is already used by a request in progress in this \
                 session; give each request its own id"
            ),
        );
    };
    let response = next.run(request).await;
    http_serve::Guarded::wrap(response, in_progress)
}

fn too_many_sessions(sessions: &Sessions, id: Value) -> Response {
    let mut response = jsonrpc::error(
        StatusCode::SERVICE_UNAVAILABLE,
        id,
        -32000,
        format!(
            "too many MCP sessions open ({} is the limit, --max-sessions): close unused ones \
             (HTTP DELETE /mcp with their Mcp-Session-Id) or retry once one has been idle \
             for {} s",
            sessions.max,
            MIN_IDLE_TO_REPLACE.as_secs()
        ),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
    response
}
