//! `mcp-tools`: parses the flags and runs the server (or `mcp-tools health`);
//! everything else is in the library.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use mcp_tools::config::{Cli, Command, ServeConfig};
use mcp_tools::server::{ListenAddress, Server};
use tracing_subscriber::EnvFilter;

/// mimalloc hands freed memory back to the system within milliseconds;
/// musl's and glibc's allocators keep a server's peak (a flood of sessions
/// or requests) resident for good.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// mimalloc's own option call (mimalloc.h); the crate does not re-export it.
unsafe extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_purge_delay` in mimalloc.h (v2): how long freed pages wait
/// before they go back to the system, in milliseconds (default 10). Pages
/// are purged only when the allocator is next called after that delay, so
/// a server that falls idle after a flood kept its peak; 0 purges at once.
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

fn main() -> ExitCode {
    // SAFETY: a plain option setter of the linked allocator, called before
    // any other thread exists.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    let cli = Cli::parse();
    if cli.command.is_none() {
        // Before the reaper forks and before any thread starts: both the
        // reaper and the server run as the account.
        if let Some(name) = &cli.serve.user
            && let Err(e) = mcp_tools::account::switch_to(name)
        {
            eprintln!("mcp-tools: {e}");
            return ExitCode::FAILURE;
        }
        mcp_tools::orphan_reaper::reap_orphans_if_pid1();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mcp-tools: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Health { url, timeout_ms }) => {
                mcp_tools::health_check::check(&url, Duration::from_millis(timeout_ms)).await?;
                println!("ok");
                Ok(())
            }
            None => serve(cli.serve).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp-tools: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_level))
        .map_err(|e| anyhow::anyhow!("invalid log level {:?}: {e}", config.log_level))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let server = Server::bind(&config).await?;
    let addr = server.listen_address()?;
    if let ListenAddress::Tcp(tcp) = &addr
        && !config.has_token()
        && !tcp.ip().is_loopback()
    {
        tracing::warn!(
            "NO TOKEN SET and listening on {addr}: anyone who can reach this address can run \
             commands here. Set MCP_AUTH_TOKEN or --token-file."
        );
    }
    tracing::info!(
        workspace = %config.workspace.display(),
        auth = if config.has_token() { "bearer token" } else { "none" },
        "listening on {}",
        match &addr {
            ListenAddress::Tcp(tcp) => format!("http://{tcp}/mcp"),
            ListenAddress::Unix(path) => format!("{} at /mcp", path.display()),
        }
    );
    if let Some(path) = &config.addr_file {
        // Write then rename, so a reader never sees half an address.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, addr.to_string())
            .and_then(|()| std::fs::rename(&tmp, path))
            .with_context(|| format!("cannot write the address file {}", path.display()))?;
    }
    server.run(shutdown_signal()).await
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the server still stops when killed.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down");
}
