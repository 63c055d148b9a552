//! `control-plane serve`: opens the data folder and the database, builds the
//! provider, re-adopts the sandboxes of the previous run, and serves the API
//! until SIGTERM or Ctrl-C, with the reaper running beside it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::ServeConfig;
use crate::error::StartError;
use crate::public_url::PublicUrl;
use crate::sandboxes::Sandboxes;
use crate::store::Store;
use crate::{api, provider};

/// How long requests in flight may finish after SIGTERM or Ctrl-C.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the service until SIGTERM or Ctrl-C.
///
/// Errors: a [`StartError`] when it cannot start (bad settings, the address
/// or the data folder taken); once it listens, only a failure of the server
/// itself.
pub async fn serve(config: ServeConfig) -> Result<(), StartError> {
    let keys = config.load_api_keys()?;
    if keys.is_empty() && !config.host.is_loopback() {
        return Err(StartError::Config(format!(
            "refusing to listen on {} without API keys: set CONTROL_PLANE_API_KEYS \
             (or --api-keys-file), or listen on 127.0.0.1",
            config.host
        )));
    }
    let open_files = http_serve::raise_open_files_limit().unwrap_or_else(|e| {
        tracing::warn!("cannot read or raise the open-files limit: {e}");
        1024
    });
    let limits = config.connections.limits(open_files);
    tracing::info!(
        open_files,
        max_connections = limits.max_connections,
        "open-files limit"
    );
    create_private_dir(&config.data_dir)?;
    let _lock = lock_data_dir(&config.data_dir)?;
    let store = Store::open(&config.data_dir.join("control-plane.db"))?;
    // Bound before the provider is built: local sandboxes are reached
    // through this address.
    let listen_error = |source| StartError::Listen {
        addr: SocketAddr::from((config.host, config.port)).to_string(),
        source,
    };
    let listener = tokio::net::TcpListener::bind((config.host, config.port))
        .await
        .map_err(listen_error)?;
    let addr: SocketAddr = listener.local_addr().map_err(listen_error)?;
    let public_url = Arc::new(
        config
            .public_url
            .clone()
            .unwrap_or_else(|| PublicUrl::of_listener(addr)),
    );
    if public_url.ports_only_local() {
        tracing::warn!(
            "--public-url {} names an address, which has no subdomains: exposed ports \
             are served at PORT-ID.localhost and reached from this machine only",
            public_url.base()
        );
    }
    let provider = provider::build(&config, &public_url).await?;
    tracing::info!("{}", provider.describe());
    let environment = provider.environment();
    if !environment.is_empty() {
        tracing::info!("sandbox environment: {environment}");
    }
    let sandboxes = Arc::new(Sandboxes::new(&config, store, provider));
    sandboxes.recover().await?;

    if keys.is_empty() {
        tracing::warn!(
            "no API keys configured: anyone on this machine can use the API at http://{addr}"
        );
    } else {
        tracing::info!(keys = keys.len(), "API keys required");
    }
    tracing::info!(
        data_dir = %config.data_dir.display(),
        "control plane listening on http://{addr}"
    );
    if let Some(path) = &config.addr_file {
        std::fs::write(path, addr.to_string()).map_err(|source| StartError::Io {
            what: "cannot write",
            path: path.clone(),
            source,
        })?;
    }

    let reaper = tokio::spawn(reap_forever(
        sandboxes.clone(),
        Duration::from_secs(config.reaper_interval_secs.max(1)),
    ));

    let app = api::router(api::AppState {
        sandboxes: sandboxes.clone(),
        keys: Arc::new(keys),
        public_url,
    });
    // After the signal, requests in flight (a long command) get a grace period,
    // then the server stops regardless so that sandboxes are paused in time.
    let stopping = Arc::new(tokio::sync::Notify::new());
    let signal = {
        let stopping = stopping.clone();
        async move {
            shutdown_signal().await;
            stopping.notify_waiters();
        }
    };
    let notified = stopping.notified();
    let server = http_serve::serve(listener, app, limits, signal);
    tokio::select! {
        result = server => result.map_err(StartError::Server)?,
        _ = async { notified.await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::warn!("requests still running after {}s; stopping anyway", SHUTDOWN_GRACE.as_secs());
        }
    }

    reaper.abort();
    tracing::info!("shutting down");
    sandboxes.shutdown().await;
    Ok(())
}

/// Every `every`: notice sandboxes that died, then stop expired ones.
async fn reap_forever(sandboxes: Arc<Sandboxes>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // The provider's own timeouts are kept one tick past the expiry.
        if let Err(e) = sandboxes.reconcile(every.as_secs()).await {
            tracing::warn!("reconcile: {e}");
        }
        if let Err(e) = sandboxes.reap().await {
            tracing::warn!("reaper: {e}");
        }
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Holds an exclusive lock on the data folder for as long as the file is open
/// (the kernel drops it even on SIGKILL): two control planes on one folder
/// would each think they own the same sandboxes.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, StartError> {
    use std::os::fd::AsRawFd;
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StartError::Io {
            what: "cannot open",
            path: path.clone(),
            source,
        })?;
    // A control plane killed while starting a sandbox can leave the lock
    // with that child for the moment between its fork and its exec: retry
    // briefly before concluding another control plane holds it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        // SAFETY: flock(2) on a descriptor we own; no memory is shared.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(file);
        }
        if std::time::Instant::now() >= deadline {
            return Err(StartError::DataDirInUse(dir.to_path_buf()));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The data folder holds tokens: a new one is made readable by this user
/// only; an existing one is left as it is, with a warning if others can read it.
fn create_private_dir(dir: &std::path::Path) -> Result<(), StartError> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |source| StartError::Io {
        what: "cannot use data folder",
        path: dir.to_path_buf(),
        source,
    };
    if dir.exists() {
        let mode = std::fs::metadata(dir).map_err(fail)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                "data folder {} is open to other users (mode {:o}); it holds sandbox tokens: chmod 700 it",
                dir.display(),
                mode & 0o777
            );
        }
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(fail)
}
