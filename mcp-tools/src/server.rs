//! The HTTP server: MCP at /mcp, a health check at /health.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;

use crate::auth::{TokenSource, require_bearer};
use crate::config::ServeConfig;
use crate::process::Jobs;
use crate::sessions::Sessions;
use crate::tools::{ToolContext, Tools};
use crate::workspace::Workspace;

/// Loopback names rmcp accepts in the Host header by default.
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A server bound to its port or socket, ready to run.
pub struct Server {
    listener: Bound,
    router: Router,
    ctx: Arc<ToolContext>,
    sessions: Arc<Sessions>,
    limits: http_serve::Limits,
    shutdown: CancellationToken,
}

impl Server {
    /// Opens the workspace and binds the port, so that errors in the
    /// configuration show before anything is served. Raises the soft
    /// open-files limit to the hard one, and fits the connection budget to it.
    pub async fn bind(config: &ServeConfig) -> anyhow::Result<Self> {
        let open_files = match http_serve::raise_open_files_limit() {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("cannot read or raise the open-files limit: {e}");
                1024
            }
        };
        let limits = config.limits.http(open_files);
        tracing::info!(
            open_files,
            max_connections = limits.max_connections,
            "open-files limit"
        );
        let workspace = Workspace::open(&config.workspace).with_context(|| {
            format!(
                "cannot open the workspace folder {} (set --workspace or WORKSPACE_DIR to an existing folder)",
                config.workspace.display()
            )
        })?;
        let state_dir = config.state_dir();
        if let Ok(real) = std::fs::canonicalize(&state_dir) {
            anyhow::ensure!(
                !real.starts_with(workspace.root()),
                "the state folder {} lies inside the workspace; choose one outside it with --state-dir",
                state_dir.display()
            );
        }
        let jobs = Jobs::new(state_dir.join("jobs"), config.limits.max_jobs)
            .with_context(|| format!("cannot create the state folder {}", state_dir.display()))?;
        let ctx = Arc::new(ToolContext {
            workspace,
            jobs,
            max_read_bytes: config.max_read_bytes,
            image_limits: crate::tools::ImageLimits {
                max_bytes: config.max_image_bytes,
                max_side: config.image_max_side,
            },
            file_writes: std::sync::Mutex::new(()),
        });

        let shutdown = CancellationToken::new();
        let listener = match &config.unix_socket {
            Some(path) => Bound::Unix(bind_unix(path)?, path.clone()),
            None => {
                let addr = SocketAddr::new(config.bind_host(), config.port);
                Bound::Tcp(
                    TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("cannot listen on {addr}"))?,
                )
            }
        };
        let bound = match &listener {
            Bound::Tcp(l) => Some(l.local_addr()?),
            Bound::Unix(..) => None,
        };
        let sessions = Sessions::new(
            usize::try_from(config.limits.max_sessions).unwrap_or(usize::MAX),
            Duration::from_secs(config.limits.session_idle_secs),
        );
        let router = router(
            config,
            bound,
            ctx.clone(),
            sessions.clone(),
            shutdown.child_token(),
        );
        Ok(Server {
            listener,
            router,
            ctx,
            sessions,
            limits,
            shutdown,
        })
    }

    /// Where the server listens.
    pub fn listen_address(&self) -> std::io::Result<ListenAddress> {
        Ok(match &self.listener {
            Bound::Tcp(l) => ListenAddress::Tcp(l.local_addr()?),
            Bound::Unix(_, path) => ListenAddress::Unix(path.clone()),
        })
    }

    /// Serves until `stop` resolves, then kills the background jobs.
    pub async fn run(self, stop: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Server {
            listener,
            router,
            ctx,
            sessions,
            limits,
            shutdown,
        } = self;
        sessions.spawn_expiry(shutdown.child_token());
        let signal = shutdown.clone();
        let stop = async move {
            stop.await;
            signal.cancel();
        };
        // The same timeouts and connection budget on a Unix socket: whatever
        // reaches it (a forwarding supervisor, or anything it forwards) must
        // not be able to exhaust the server's descriptors either.
        match listener {
            Bound::Tcp(listener) => http_serve::serve(listener, router, limits, stop).await,
            Bound::Unix(listener, _) => http_serve::serve(listener, router, limits, stop).await,
        }
        .context("server failed")?;
        ctx.jobs.shutdown(Duration::from_secs(2)).await;
        Ok(())
    }
}

/// A bound listener.
enum Bound {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// Where a [`Server`] listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddress {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket's path.
    Unix(PathBuf),
}

impl std::fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddress::Tcp(addr) => write!(f, "{addr}"),
            ListenAddress::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Listens on a Unix socket at `path`, replacing a socket left by an earlier
/// run (never another kind of file), connectable by this user only.
fn bind_unix(path: &Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.file_type().is_socket()
    {
        let _ = std::fs::remove_file(path);
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))?;
    Ok(listener)
}

/// The routes: `/mcp` behind the token check when one is set, `/health` open.
/// `bound` is the TCP address the server listens on (`None` on a Unix
/// socket): bound to loopback, pages served from the server's own loopback
/// origin may call it.
pub fn router(
    config: &ServeConfig,
    bound: Option<SocketAddr>,
    ctx: Arc<ToolContext>,
    sessions: Arc<Sessions>,
    shutdown: CancellationToken,
) -> Router {
    let mut origins = config.allowed_origins.clone();
    if let Some(bound) = bound.filter(|b| b.ip().is_loopback()) {
        // The server's own origin: a DNS-rebinding page has a foreign
        // origin, never this one.
        let port = bound.port();
        origins.extend(
            ["localhost", "127.0.0.1", "[::1]"].map(|host| format!("http://{host}:{port}")),
        );
    }
    let mut mcp_config = StreamableHttpServerConfig::default()
        .with_cancellation_token(shutdown)
        .with_allowed_origins(origins)
        .enforce_origin_validation();
    mcp_config = if config.has_token() && config.allowed_hosts.is_empty() {
        // Sandbox URLs (6060-<id>.e2b.app) are not known in advance; the
        // token is what guards the server.
        mcp_config.disable_allowed_hosts()
    } else {
        let mut hosts: Vec<String> = LOOPBACK_HOSTS.iter().map(|h| (*h).to_owned()).collect();
        hosts.extend(config.allowed_hosts.iter().cloned());
        mcp_config.with_allowed_hosts(hosts)
    };

    let tools = Tools::new(ctx);
    let mcp = StreamableHttpService::new(move || Ok(tools.clone()), sessions.manager(), mcp_config);
    let mut mcp_routes = Router::new()
        .nest_service("/mcp", mcp)
        .layer(axum::middleware::from_fn_with_state(
            sessions,
            crate::sessions::track,
        ))
        .layer(axum::middleware::from_fn(crate::jsonrpc::reject_malformed))
        .layer(axum::middleware::from_fn(session_deleted_ok));
    let token = match (&config.token, &config.token_file) {
        (Some(token), _) => Some(TokenSource::Fixed(token.clone())),
        (None, Some(path)) => Some(TokenSource::file(path.clone())),
        (None, None) => None,
    };
    if let Some(token) = token {
        // A route layer: paths that are not routes (OAuth discovery such as
        // /.well-known/oauth-protected-resource) answer 404, not 401, so a
        // client reports a bad token instead of starting an OAuth flow.
        mcp_routes = mcp_routes.route_layer(axum::middleware::from_fn_with_state(
            Arc::new(token),
            require_bearer,
        ));
    }
    Router::new()
        .route("/health", get(health))
        .merge(mcp_routes)
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// Answers a session DELETE that rmcp accepted (202) with 204 No Content:
/// the session is gone once the answer is sent, and clients such as the
/// Python SDK expect 200 or 204 there (MCP streamable HTTP, "Session
/// Management").
async fn session_deleted_ok(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let delete = request.method() == axum::http::Method::DELETE;
    let mut response = next.run(request).await;
    if delete && response.status() == axum::http::StatusCode::ACCEPTED {
        *response.status_mut() = axum::http::StatusCode::NO_CONTENT;
        *response.body_mut() = axum::body::Body::empty();
    }
    response
}
