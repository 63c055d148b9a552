//! A stand-in for E2B that keeps to E2B's published contract (the OpenAPI
//! spec of e2b-dev/infra, `spec/openapi.yml`) for the calls the `e2b`
//! provider makes, so the provider is tested without the cloud:
//!
//! - the control API: `X-API-Key` checked, request bodies checked field by
//!   field (names and types), answers with the spec's status codes and bodies
//!   (`{code, message}` errors), `X-Next-Token` paging, sandboxes that time out
//!   (auto-paused or killed, as E2B does), and faults on demand (any status,
//!   e.g. a 500 that succeeds on retry, or the 429 of the concurrency limit);
//! - for every sandbox a real `mcp-tools`, started as the template starts it
//!   (`--token-file`), in a folder that stands for the VM's disk;
//! - E2B's proxy to sandbox ports, on one loopback port: it finds the sandbox
//!   by its `e2b-traffic-access-token` header and refuses requests without
//!   one (403), as E2B does for sandboxes created with
//!   `allowPublicTraffic: false`;
//! - envd's `POST /files` on another port, found by `X-Access-Token`, which
//!   writes into the sandbox's folder.
//!
//! The control plane reaches the last two through its E2B debug setting
//! (`http://localhost:{port}`), with the MCP and envd ports pointed here.
//! Everything runs on a runtime of its own, so a test that blocks its own
//! threads cannot stall it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

pub const TEMPLATE: &str = "mcp-sandbox";

/// One request the API received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub query: String,
    /// The status it was answered with.
    pub status: u16,
}

/// A file written through envd.
#[derive(Debug, Clone)]
pub struct Upload {
    pub sandbox_id: String,
    pub path: String,
    pub username: String,
    pub content: Vec<u8>,
}

/// A sandbox as the test sees it.
#[derive(Debug, Clone)]
pub struct View {
    pub sandbox_id: String,
    pub running: bool,
    pub end_at_ms: u64,
    pub timeout: u64,
    pub auto_pause: bool,
    pub metadata: BTreeMap<String, String>,
    pub env_vars: BTreeMap<String, String>,
    pub envd_token: String,
    pub traffic_token: Option<String>,
    /// Stands for the VM's root folder.
    pub root: PathBuf,
}

struct Sandbox {
    view: View,
    seq: u64,
    started_at_ms: u64,
    child: Option<Child>,
    mcp_addr: Option<SocketAddr>,
}

struct Fault {
    method: Method,
    path: String,
    status: u16,
    times: usize,
}

#[derive(Default)]
struct Inner {
    sandboxes: HashMap<String, Sandbox>,
    seq: u64,
    calls: Vec<Call>,
    faults: Vec<Fault>,
    uploads: Vec<Upload>,
    create_bodies: Vec<Value>,
    /// Requests through the port proxy, per sandbox id.
    traffic: HashMap<String, usize>,
    /// Requests the port proxy refused for a missing or unknown token.
    traffic_refused: usize,
    max_running: usize,
    page_size: usize,
    /// How long a create takes to answer once its sandbox exists.
    create_delay: Duration,
}

struct Shared {
    api_key: String,
    mcp_tools: PathBuf,
    root: PathBuf,
    inner: Mutex<Inner>,
    http: reqwest::Client,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The running stand-in. Dropping it stops everything it started.
pub struct Contract {
    pub api_url: String,
    /// Port of the proxy to the sandboxes' MCP port (6060 at E2B).
    pub mcp_port: u16,
    /// Port of envd (49983 at E2B).
    pub envd_port: u16,
    pub api_key: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Contract {
    pub fn start(mcp_tools: PathBuf) -> Contract {
        let dir = tempfile::tempdir().expect("temp dir");
        let api_key = format!("e2b_{}", random_alnum(40));
        let shared = Arc::new(Shared {
            api_key: api_key.clone(),
            mcp_tools,
            root: dir.path().to_path_buf(),
            inner: Mutex::new(Inner {
                max_running: 20,
                page_size: 100,
                ..Inner::default()
            }),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
        });
        let bind = || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.set_nonblocking(true).unwrap();
            l
        };
        let (api, mcp, envd) = (bind(), bind(), bind());
        let api_url = format!("http://{}", api.local_addr().unwrap());
        let mcp_port = mcp.local_addr().unwrap().port();
        let envd_port = envd.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let serve = |l: std::net::TcpListener, app: Router| {
                    let l = tokio::net::TcpListener::from_std(l).unwrap();
                    tokio::spawn(async move {
                        let _ = axum::serve(l, app).await;
                    })
                };
                serve(api, api_router(s.clone()));
                serve(mcp, proxy_router(s.clone()));
                serve(envd, envd_router(s.clone()));
                tokio::spawn(enforce_timeouts(s.clone()));
                let _ = stopped.await;
            });
            rt.shutdown_background();
        });
        Contract {
            api_url,
            mcp_port,
            envd_port,
            api_key,
            shared,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// `control-plane serve` flags that point the e2b provider here (the
    /// API key goes in the environment, see [`Contract::env`]).
    pub fn serve_args(&self) -> Vec<String> {
        [
            "--provider",
            "e2b",
            "--e2b-api-url",
            &self.api_url,
            "--e2b-template-id",
            TEMPLATE,
            "--e2b-debug",
            "--e2b-mcp-port",
            &self.mcp_port.to_string(),
            "--e2b-envd-port",
            &self.envd_port.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Environment of the control plane: the API key.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("E2B_API_KEY".into(), self.api_key.clone())]
    }

    /// The next `times` requests of `method` to `path` (or, when it ends
    /// with `*`, to any path starting with the rest) answer `status` with
    /// E2B's error body.
    pub fn fail_next(&self, method: Method, path: &str, status: u16, times: usize) {
        self.shared.lock().faults.push(Fault {
            method,
            path: path.into(),
            status,
            times,
        });
    }

    /// At most this many running sandboxes; creates beyond answer 429.
    pub fn set_max_running(&self, n: usize) {
        self.shared.lock().max_running = n;
    }

    /// Creates answer only this long after their sandbox exists (and is listed).
    pub fn set_create_delay(&self, delay: Duration) {
        self.shared.lock().create_delay = delay;
    }

    /// Largest page the list answers (E2B may give fewer than asked).
    pub fn set_page_size(&self, n: usize) {
        self.shared.lock().page_size = n.max(1);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    /// How many requests of `method` to `path` (a trailing `*` matches
    /// any rest) came.
    pub fn count(&self, method: &Method, path: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.method == *method && path_matches(path, &c.path))
            .count()
    }

    pub fn create_bodies(&self) -> Vec<Value> {
        self.shared.lock().create_bodies.clone()
    }

    pub fn uploads(&self) -> Vec<Upload> {
        self.shared.lock().uploads.clone()
    }

    /// Requests the port proxy passed on to `sandbox_id`.
    pub fn traffic_to(&self, sandbox_id: &str) -> usize {
        *self.shared.lock().traffic.get(sandbox_id).unwrap_or(&0)
    }

    pub fn traffic_refused(&self) -> usize {
        self.shared.lock().traffic_refused
    }

    pub fn sandbox(&self, sandbox_id: &str) -> Option<View> {
        self.shared
            .lock()
            .sandboxes
            .get(sandbox_id)
            .map(|s| s.view.clone())
    }

    pub fn sandbox_ids(&self) -> Vec<String> {
        self.shared.lock().sandboxes.keys().cloned().collect()
    }

    /// E2B loses a sandbox (as when its host fails): it is simply gone.
    pub fn vanish(&self, sandbox_id: &str) {
        let gone = self.shared.lock().sandboxes.remove(sandbox_id);
        if let Some(mut s) = gone {
            stop_child(&mut s);
            let _ = std::fs::remove_dir_all(&s.view.root);
        }
    }

    /// E2B pauses a sandbox by itself (as at the end of its timeout with autoPause).
    pub fn pause_behind_back(&self, sandbox_id: &str) {
        let child = {
            let mut inner = self.shared.lock();
            inner.sandboxes.get_mut(sandbox_id).and_then(|s| {
                s.view.running = false;
                s.mcp_addr = None;
                s.child.take()
            })
        };
        if let Some(c) = child {
            stop(c);
        }
    }

    /// Pids of the mcp-tools processes of running sandboxes.
    pub fn servers(&self) -> Vec<u32> {
        self.shared
            .lock()
            .sandboxes
            .values()
            .filter_map(|s| s.child.as_ref().map(|c| c.id()))
            .collect()
    }
}

impl Drop for Contract {
    fn drop(&mut self) {
        let all: Vec<Sandbox> = self
            .shared
            .lock()
            .sandboxes
            .drain()
            .map(|(_, s)| s)
            .collect();
        for mut s in all {
            stop_child(&mut s);
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------- control API

fn api_router(s: Arc<Shared>) -> Router {
    Router::new()
        .route("/sandboxes", post(create))
        .route("/v2/sandboxes", get(list))
        .route("/sandboxes/{id}", get(detail).delete(kill))
        .route("/sandboxes/{id}/timeout", post(set_timeout))
        .route("/sandboxes/{id}/pause", post(pause))
        .route("/sandboxes/{id}/connect", post(connect))
        .route("/sandboxes/{id}/metrics", get(metrics))
        .fallback(|| async { error(404, "no such endpoint") })
        .layer(axum::middleware::from_fn_with_state(s.clone(), gate))
        .with_state(s)
}

/// E2B's error body.
fn error(code: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap();
    (
        status,
        axum::Json(json!({ "code": code, "message": message })),
    )
        .into_response()
}

/// Checks the API key, serves injected faults, and records every call.
async fn gate(
    State(s): State<Arc<Shared>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let key_ok = req
        .headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|k| k == s.api_key);
    let fault = {
        let mut inner = s.lock();
        let hit = inner
            .faults
            .iter_mut()
            .find(|f| f.times > 0 && f.method == method && path_matches(&f.path, &path));
        hit.map(|f| {
            f.times -= 1;
            f.status
        })
    };
    let resp = if !key_ok {
        error(
            401,
            "Invalid API key, please visit https://e2b.dev/docs to get your API key",
        )
    } else if let Some(status) = fault {
        match status {
            429 => error(
                429,
                "You have reached the maximum number of concurrent E2B sandboxes (20). \
                 If you need more, please contact us",
            ),
            s => error(s, "injected fault"),
        }
    } else {
        next.run(req).await
    };
    s.lock().calls.push(Call {
        method,
        path,
        query,
        status: resp.status().as_u16(),
    });
    resp
}

/// A 400 in E2B's error format, small enough to pass around.
struct Refusal(String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(400, &self.0)
    }
}

fn bad(message: &str) -> Refusal {
    Refusal(message.to_string())
}

/// Parses a JSON object body, or answers 400 as E2B does.
fn object(body: &Bytes) -> Result<serde_json::Map<String, Value>, Refusal> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(bad("request body must be a JSON object")),
        Err(e) => Err(bad(&format!("invalid JSON body: {e}"))),
    }
}

fn check_int(
    m: &serde_json::Map<String, Value>,
    key: &str,
    required: bool,
) -> Result<Option<u64>, Refusal> {
    match m.get(key) {
        None if required => Err(bad(&format!("{key} is required"))),
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n <= i32::MAX as u64 => Ok(Some(n)),
            _ => Err(bad(&format!("{key} must be an int32 >= 0, not {v}"))),
        },
    }
}

fn check_bool(m: &serde_json::Map<String, Value>, key: &str) -> Result<Option<bool>, Refusal> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(bad(&format!("{key} must be a boolean, not {v}"))),
    }
}

fn check_string_map(
    m: &serde_json::Map<String, Value>,
    key: &str,
) -> Result<BTreeMap<String, String>, Refusal> {
    match m.get(key) {
        None => Ok(BTreeMap::new()),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(bad(&format!("{key}.{k} must be a string"))),
            })
            .collect(),
        Some(v) => Err(bad(&format!("{key} must be an object of strings, not {v}"))),
    }
}

/// `NewSandbox`, checked against the spec.
async fn create(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let m = match object(&body) {
        Ok(m) => m,
        Err(r) => return r.into_response(),
    };
    const FIELDS: [&str; 11] = [
        "templateID",
        "timeout",
        "autoPause",
        "autoResume",
        "secure",
        "allow_internet_access",
        "network",
        "metadata",
        "envVars",
        "mcp",
        "volumeMounts",
    ];
    // The spec lists these; a name outside it is a typo the real server
    // would silently ignore, so this one refuses it.
    if let Some(k) = m.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return error(400, &format!("unknown field {k:?} in NewSandbox"));
    }
    let template = match m.get("templateID") {
        Some(Value::String(t)) if !t.is_empty() => t.clone(),
        _ => return error(400, "templateID is required and must be a string"),
    };
    let parsed = (|| {
        let timeout = check_int(&m, "timeout", false)?.unwrap_or(15);
        let auto_pause = check_bool(&m, "autoPause")?.unwrap_or(false);
        let secure = check_bool(&m, "secure")?.unwrap_or(false);
        check_bool(&m, "allow_internet_access")?;
        let public = match m.get("network") {
            None => true,
            Some(Value::Object(n)) => {
                for k in n.keys() {
                    if ![
                        "allowPublicTraffic",
                        "allowOut",
                        "denyOut",
                        "maskRequestHost",
                        "rules",
                    ]
                    .contains(&k.as_str())
                    {
                        return Err(bad(&format!("unknown field {k:?} in network")));
                    }
                }
                for list in ["allowOut", "denyOut"] {
                    if let Some(v) = n.get(list)
                        && !v.as_array().is_some_and(|a| a.iter().all(Value::is_string))
                    {
                        return Err(bad(&format!("network.{list} must be an array of strings")));
                    }
                }
                check_bool(n, "allowPublicTraffic")?.unwrap_or(true)
            }
            Some(v) => return Err(bad(&format!("network must be an object, not {v}"))),
        };
        let metadata = check_string_map(&m, "metadata")?;
        let env_vars = check_string_map(&m, "envVars")?;
        Ok((timeout, auto_pause, secure, public, metadata, env_vars))
    })();
    let (timeout, auto_pause, secure, public, metadata, env_vars) = match parsed {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    if template != TEMPLATE {
        return error(404, &format!("template '{template}' not found"));
    }
    s.lock().create_bodies.push(Value::Object(m.clone()));
    {
        let inner = s.lock();
        let running = inner.sandboxes.values().filter(|x| x.view.running).count();
        if running >= inner.max_running {
            return error(
                429,
                &format!(
                    "You have reached the maximum number of concurrent E2B sandboxes ({}). \
                     If you need more, please contact us",
                    inner.max_running
                ),
            );
        }
    }
    let id = random_alnum(20).to_lowercase();
    let root = s.root.join(&id);
    for d in ["home/user", "var/lib/mcp-tools"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let now = now_ms();
    let mut sandbox = Sandbox {
        view: View {
            sandbox_id: id.clone(),
            running: true,
            end_at_ms: now + timeout * 1000,
            timeout,
            auto_pause,
            metadata,
            env_vars,
            envd_token: random_alnum(32),
            traffic_token: (!public).then(|| random_alnum(32)),
            root,
        },
        seq: 0,
        started_at_ms: now,
        child: None,
        mcp_addr: None,
    };
    match start_child(&s, &sandbox.view.root).await {
        Ok((child, addr)) => {
            sandbox.child = Some(child);
            sandbox.mcp_addr = Some(addr);
        }
        Err(e) => return error(500, &format!("sandbox failed to start: {e}")),
    }
    let answer = sandbox_json(&sandbox, secure);
    {
        let mut inner = s.lock();
        inner.seq += 1;
        sandbox.seq = inner.seq;
        inner.sandboxes.insert(id, sandbox);
    }
    let delay = s.lock().create_delay;
    tokio::time::sleep(delay).await;
    (StatusCode::CREATED, axum::Json(answer)).into_response()
}

/// `Sandbox`.
fn sandbox_json(s: &Sandbox, secure: bool) -> Value {
    json!({
        "templateID": TEMPLATE,
        "sandboxID": s.view.sandbox_id,
        "alias": TEMPLATE,
        "clientID": "6532622b",
        "envdVersion": "0.2.0",
        "envdAccessToken": if secure { Some(&s.view.envd_token) } else { None },
        "trafficAccessToken": s.view.traffic_token,
        "domain": null,
    })
}

/// `SandboxDetail` / `ListedSandbox`.
fn listed_json(s: &Sandbox) -> Value {
    json!({
        "templateID": TEMPLATE,
        "alias": TEMPLATE,
        "sandboxID": s.view.sandbox_id,
        "clientID": "6532622b",
        "startedAt": rfc3339(s.started_at_ms),
        "endAt": rfc3339(s.view.end_at_ms),
        "cpuCount": 2,
        "memoryMB": 2048,
        "diskSizeMB": 10240,
        "metadata": s.view.metadata,
        "state": if s.view.running { "running" } else { "paused" },
        "envdVersion": "0.2.0",
    })
}

async fn list(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let query = req.uri().query().unwrap_or("");
    let mut metadata = None;
    let mut states: Option<Vec<String>> = None;
    let mut limit = 100usize;
    let mut next: Option<u64> = None;
    for (k, v) in form_pairs(query) {
        match k.as_str() {
            "metadata" => metadata = Some(form_pairs(&v)),
            "state" => {
                let list: Vec<String> = v.split(',').map(str::to_string).collect();
                if list.iter().any(|x| x != "running" && x != "paused") {
                    return error(400, &format!("invalid state {v:?}"));
                }
                states = Some(list);
            }
            "limit" => match v.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => limit = n,
                _ => return error(400, "limit must be an integer between 1 and 100"),
            },
            "nextToken" => match v.parse::<u64>() {
                Ok(n) => next = Some(n),
                Err(_) => return error(400, "invalid nextToken"),
            },
            _ => return error(400, &format!("unknown query parameter {k:?}")),
        }
    }
    let inner = s.lock();
    let mut matching: Vec<&Sandbox> = inner
        .sandboxes
        .values()
        .filter(|x| {
            metadata.as_ref().is_none_or(|want| {
                want.iter()
                    .all(|(k, v)| x.view.metadata.get(k).is_some_and(|have| have == v))
            })
        })
        .filter(|x| {
            let state = if x.view.running { "running" } else { "paused" };
            states
                .as_ref()
                .is_none_or(|st| st.iter().any(|w| w == state))
        })
        .filter(|x| next.is_none_or(|n| x.seq >= n))
        .collect();
    matching.sort_by_key(|x| x.seq);
    let page = limit.min(inner.page_size);
    let more = matching.get(page).map(|x| x.seq);
    matching.truncate(page);
    let body: Vec<Value> = matching.iter().map(|x| listed_json(x)).collect();
    let mut resp = axum::Json(body).into_response();
    if let Some(n) = more {
        resp.headers_mut().insert(
            "x-next-token",
            HeaderValue::from_str(&n.to_string()).unwrap(),
        );
    }
    resp
}

fn not_found(id: &str) -> Response {
    error(
        404,
        &format!("sandbox \"{id}\" doesn't exist or you don't have access to it"),
    )
}

async fn detail(State(s): State<Arc<Shared>>, UrlPath(id): UrlPath<String>) -> Response {
    match s.lock().sandboxes.get(&id) {
        Some(x) => axum::Json(listed_json(x)).into_response(),
        None => not_found(&id),
    }
}

/// The VM the stand-in reports in metrics: E2B's default sizes.
pub const METRICS_CPU_COUNT: u32 = 2;
pub const METRICS_MEM_TOTAL: u64 = 512 << 20;
pub const METRICS_DISK_TOTAL: u64 = 10 << 30;
/// The CPU use of the latest sample (an older sample says 1.0).
pub const METRICS_CPU_PCT: f64 = 12.5;

/// `GET /sandboxes/{sandboxID}/metrics?start&end`: `SandboxMetric`s of the
/// interval (Unix seconds, both optional, `minimum: 0`). The stand-in has two
/// samples, two seconds apart: the latest tells the sandbox's folder's real
/// size as `diskUsed` and its mcp-tools' resident memory as `memUsed`; the
/// older one says a tenth of each. A paused sandbox has none.
async fn metrics(
    State(s): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    req: Request,
) -> Response {
    let mut bounds = [None, None];
    for (k, v) in form_pairs(req.uri().query().unwrap_or("")) {
        let slot = match k.as_str() {
            "start" => 0,
            "end" => 1,
            _ => return error(400, &format!("unknown parameter {k}")),
        };
        match v.parse::<i64>() {
            Ok(n) if n >= 0 => bounds[slot] = Some(n),
            _ => return error(400, &format!("{k} must be an integer >= 0")),
        }
    }
    let (root, pid) = match s.lock().sandboxes.get(&id) {
        Some(x) if x.view.running => (x.view.root.clone(), x.child.as_ref().map(|c| c.id())),
        Some(_) => return axum::Json(json!([])).into_response(),
        None => return not_found(&id),
    };
    let disk = folder_bytes(&root);
    let rss = pid
        .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
        .and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("VmRSS:"))?.to_string();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024);
    let now = (now_ms() / 1000) as i64;
    let sample = |ts: i64, pct: f64, mem: u64, disk: u64| {
        json!({
            "timestamp": rfc3339(ts as u64 * 1000),
            "timestampUnix": ts,
            "cpuCount": METRICS_CPU_COUNT,
            "cpuUsedPct": pct,
            "memUsed": mem,
            "memTotal": METRICS_MEM_TOTAL,
            "memCache": 0,
            "diskUsed": disk,
            "diskTotal": METRICS_DISK_TOTAL,
        })
    };
    let samples: Vec<Value> = [
        sample(now - 2, 1.0, rss / 10, disk / 10),
        sample(now, METRICS_CPU_PCT, rss, disk),
    ]
    .into_iter()
    .filter(|m| {
        let ts = m["timestampUnix"].as_i64().unwrap_or(0);
        bounds[0].is_none_or(|b| ts >= b) && bounds[1].is_none_or(|b| ts <= b)
    })
    .collect();
    axum::Json(samples).into_response()
}

/// Bytes of the regular files under `dir`.
fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => folder_bytes(&e.path()),
                Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
                _ => 0,
            })
            .sum()
    })
}

async fn kill(State(s): State<Arc<Shared>>, UrlPath(id): UrlPath<String>) -> Response {
    let gone = s.lock().sandboxes.remove(&id);
    match gone {
        Some(mut x) => {
            stop_child(&mut x);
            let _ = std::fs::remove_dir_all(&x.view.root);
            StatusCode::NO_CONTENT.into_response()
        }
        None => not_found(&id),
    }
}

async fn set_timeout(
    State(s): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Response {
    let timeout = match object(&body).and_then(|m| check_int(&m, "timeout", true)) {
        Ok(t) => t.unwrap_or(0),
        Err(r) => return r.into_response(),
    };
    let mut inner = s.lock();
    match inner.sandboxes.get_mut(&id) {
        Some(x) => {
            x.view.end_at_ms = now_ms() + timeout * 1000;
            x.view.timeout = timeout;
            StatusCode::NO_CONTENT.into_response()
        }
        None => not_found(&id),
    }
}

async fn pause(State(s): State<Arc<Shared>>, UrlPath(id): UrlPath<String>) -> Response {
    let child = {
        let mut inner = s.lock();
        match inner.sandboxes.get_mut(&id) {
            Some(x) if !x.view.running => {
                return error(409, &format!("Sandbox {id} is already paused"));
            }
            Some(x) => {
                x.view.running = false;
                x.mcp_addr = None;
                x.child.take()
            }
            None => return not_found(&id),
        }
    };
    if let Some(c) = child {
        stop(c);
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn connect(
    State(s): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Response {
    let timeout = match object(&body).and_then(|m| check_int(&m, "timeout", true)) {
        Ok(t) => t.unwrap_or(0),
        Err(r) => return r.into_response(),
    };
    let end = now_ms() + timeout * 1000;
    let root = {
        let mut inner = s.lock();
        let Some(x) = inner.sandboxes.get_mut(&id) else {
            return not_found(&id);
        };
        if x.view.running {
            // TTL is only extended.
            x.view.end_at_ms = x.view.end_at_ms.max(end);
            return (StatusCode::OK, axum::Json(sandbox_json(x, true))).into_response();
        }
        x.view.root.clone()
    };
    let started = start_child(&s, &root).await;
    let mut inner = s.lock();
    let Some(x) = inner.sandboxes.get_mut(&id) else {
        if let Ok((child, _)) = started {
            stop(child);
        }
        return not_found(&id);
    };
    match started {
        Ok((child, addr)) => {
            x.child = Some(child);
            x.mcp_addr = Some(addr);
            x.view.running = true;
            x.view.end_at_ms = end;
            (StatusCode::CREATED, axum::Json(sandbox_json(x, true))).into_response()
        }
        Err(e) => error(500, &format!("resume failed: {e}")),
    }
}

/// E2B's own timeouts: a running sandbox past its end is paused (autoPause)
/// or killed.
async fn enforce_timeouts(s: Arc<Shared>) {
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = now_ms();
        let mut stopping = Vec::new();
        {
            let mut inner = s.lock();
            let due: Vec<String> = inner
                .sandboxes
                .values()
                .filter(|x| x.view.running && x.view.end_at_ms <= now)
                .map(|x| x.view.sandbox_id.clone())
                .collect();
            for id in due {
                if inner.sandboxes[&id].view.auto_pause {
                    let x = inner.sandboxes.get_mut(&id).unwrap();
                    x.view.running = false;
                    x.mcp_addr = None;
                    stopping.extend(x.child.take());
                } else if let Some(mut x) = inner.sandboxes.remove(&id) {
                    stopping.extend(x.child.take());
                    let _ = std::fs::remove_dir_all(&x.view.root);
                }
            }
        }
        for c in stopping {
            stop(c);
        }
    }
}

// ------------------------------------------------------------- the sandboxes

/// Starts the sandbox's mcp-tools the way the template does, with paths
/// inside its folder, and waits until it listens.
async fn start_child(s: &Shared, root: &Path) -> Result<(Child, SocketAddr), String> {
    let addr_file = root.join("addr");
    let _ = std::fs::remove_file(&addr_file);
    let log = std::fs::File::create(root.join("mcp-tools.log")).map_err(|e| e.to_string())?;
    let mut child = Command::new(&s.mcp_tools)
        .arg("--host")
        .arg("127.0.0.1")
        .arg("--port")
        .arg("0")
        .arg("--workspace")
        .arg(root.join("home/user"))
        .arg("--token-file")
        .arg(root.join("var/lib/mcp-tools/token"))
        .arg("--state-dir")
        .arg(root.join("var/lib/mcp-tools"))
        .arg("--addr-file")
        .arg(&addr_file)
        .arg("--log-level")
        .arg("warn")
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .env("HOME", root.join("home/user"))
        .current_dir(root.join("home/user"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", s.mcp_tools.display()))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = loop {
        if let Some(a) = std::fs::read_to_string(&addr_file)
            .ok()
            .and_then(|t| t.trim().parse::<SocketAddr>().ok())
        {
            break a;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("mcp-tools exited at start: {status}"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("mcp-tools did not start".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    Ok((child, addr))
}

/// Stops the sandbox's mcp-tools (a VM that stops runs nothing).
fn stop_child(x: &mut Sandbox) {
    x.mcp_addr = None;
    if let Some(child) = x.child.take() {
        stop(child);
    }
}

/// SIGTERM (mcp-tools then stops its jobs), SIGKILL after a grace period.
fn stop(mut child: Child) {
    // SAFETY: kill(2) with a pid this test started or found; no memory is involved.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

// ------------------------------------------------ E2B's proxy to sandbox ports

fn proxy_router(s: Arc<Shared>) -> Router {
    Router::new().fallback(proxy).with_state(s)
}

async fn proxy(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let token = req
        .headers()
        .get("e2b-traffic-access-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let target = {
        let mut inner = s.lock();
        let found = token.as_ref().and_then(|t| {
            inner
                .sandboxes
                .values()
                .find(|x| x.view.traffic_token.as_deref() == Some(t.as_str()))
                .map(|x| (x.view.sandbox_id.clone(), x.mcp_addr))
        });
        match found {
            None => {
                inner.traffic_refused += 1;
                None
            }
            Some((id, addr)) => {
                *inner.traffic.entry(id.clone()).or_default() += 1;
                Some((id, addr))
            }
        }
    };
    let Some((id, addr)) = target else {
        return (
            StatusCode::FORBIDDEN,
            "missing or invalid e2b-traffic-access-token header\n",
        )
            .into_response();
    };
    let Some(addr) = addr else {
        return (
            StatusCode::BAD_GATEWAY,
            format!("sandbox {id} is not running\n"),
        )
            .into_response();
    };
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 64 * 1024 * 1024).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut out = s
        .http
        .request(parts.method.clone(), format!("http://{addr}{path}"))
        .body(body);
    for (k, v) in &parts.headers {
        if !is_hop_header(k.as_str()) && k != "host" && k != "e2b-traffic-access-token" {
            out = out.header(k, v);
        }
    }
    let mut upstream = match out.send().await {
        Ok(r) => r,
        Err(e) => {
            return (StatusCode::BAD_GATEWAY, format!("sandbox {id}: {e}\n")).into_response();
        }
    };
    let mut headers = HeaderMap::new();
    for (k, v) in upstream.headers() {
        if !is_hop_header(k.as_str()) && k != "content-length" {
            headers.append(k.clone(), v.clone());
        }
    }
    let status = upstream.status();
    // Stream the body through: MCP answers may be event streams.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        loop {
            let chunk = tokio::select! {
                // The client hung up: let go of the sandbox's stream too.
                _ = tx.closed() => return,
                c = upstream.chunk() => c,
            };
            match chunk {
                Ok(Some(c)) => {
                    if tx.send(Ok(c)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e))).await;
                    return;
                }
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(ChannelStream(rx)));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

fn is_hop_header(name: &str) -> bool {
    matches!(
        name,
        "connection" | "keep-alive" | "transfer-encoding" | "upgrade" | "te" | "trailer"
    )
}

struct ChannelStream(tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl futures_core::Stream for ChannelStream {
    type Item = Result<Bytes, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

// ----------------------------------------------------------------------- envd

fn envd_router(s: Arc<Shared>) -> Router {
    Router::new()
        .route("/files", post(envd_upload))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(s)
}

/// envd's `POST /files?path=…&username=…`: multipart (field `file`) or
/// octet-stream; needs `X-Access-Token` of a secure sandbox.
async fn envd_upload(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let envd_error = |code: u16, message: &str| error(code, message);
    let token = req
        .headers()
        .get("x-access-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let found = token.as_ref().and_then(|t| {
        s.lock()
            .sandboxes
            .values()
            .find(|x| x.view.envd_token == *t)
            .map(|x| {
                (
                    x.view.sandbox_id.clone(),
                    x.view.root.clone(),
                    x.view.running,
                )
            })
    });
    let Some((id, root, running)) = found else {
        return envd_error(401, "missing or invalid X-Access-Token");
    };
    if !running {
        return (
            StatusCode::BAD_GATEWAY,
            format!("sandbox {id} is not running\n"),
        )
            .into_response();
    }
    let params = form_pairs(req.uri().query().unwrap_or(""));
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let (Some(path), Some(username)) = (param("path"), param("username")) else {
        return envd_error(400, "path and username are required");
    };
    if username != "user" && username != "root" {
        return envd_error(401, &format!("invalid user {username:?}"));
    }
    if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
        return envd_error(400, &format!("invalid path {path:?}"));
    }
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let Ok(body) = axum::body::to_bytes(req.into_body(), 64 * 1024 * 1024).await else {
        return envd_error(400, "cannot read the body");
    };
    let content = if content_type.starts_with("application/octet-stream") {
        body.to_vec()
    } else if let Some(boundary) = content_type
        .strip_prefix("multipart/form-data")
        .and_then(|r| r.split("boundary=").nth(1))
    {
        match multipart_field(&body, boundary.trim_matches('"'), "file") {
            Some(c) => c,
            None => return envd_error(400, "multipart body without a `file` field"),
        }
    } else {
        return envd_error(400, &format!("unsupported content type {content_type:?}"));
    };
    let file = root.join(path.trim_start_matches('/'));
    if let Some(parent) = file.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    if let Err(e) = std::fs::write(&file, &content) {
        return envd_error(500, &format!("cannot write: {e}"));
    }
    s.lock().uploads.push(Upload {
        sandbox_id: id,
        path: path.clone(),
        username,
        content,
    });
    let name = Path::new(&path)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    axum::Json(json!([{ "name": name, "type": "file", "path": path }])).into_response()
}

/// The content of form field `name` in a multipart body.
fn multipart_field(body: &[u8], boundary: &str, name: &str) -> Option<Vec<u8>> {
    let delimiter = format!("--{boundary}");
    let text = body;
    let mut parts = Vec::new();
    let mut start = 0;
    while let Some(pos) = find(&text[start..], delimiter.as_bytes()) {
        parts.push(start + pos);
        start += pos + delimiter.len();
    }
    for w in parts.windows(2) {
        let part = &text[w[0] + delimiter.len()..w[1]];
        let part = part.strip_prefix(b"\r\n")?;
        let head_end = find(part, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&part[..head_end]).to_lowercase();
        if head.contains(&format!("name=\"{name}\"")) {
            let content = &part[head_end + 4..];
            return Some(content.strip_suffix(b"\r\n").unwrap_or(content).to_vec());
        }
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// -------------------------------------------------------------------- helpers

fn path_matches(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => path == pattern,
    }
}

/// Decoded `k=v&k2=v2` pairs.
fn form_pairs(query: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{query}"))
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn random_alnum(n: usize) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).unwrap();
    buf.iter()
        .map(|b| CHARS[*b as usize % CHARS.len()] as char)
        .collect()
}

/// `2025-03-01T12:00:00Z` for unix milliseconds (whole seconds).
pub fn rfc3339(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
