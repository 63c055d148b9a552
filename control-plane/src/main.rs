//! `control-plane`: the sandbox service (`serve`) and its command-line client.

use std::io::IsTerminal;

use clap::Parser;
use control_plane::cli::{Cli, Command};

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

fn main() {
    // SAFETY: a plain option setter of the linked allocator, called before
    // any other thread exists.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match cli.command {
        Command::Serve(config) => {
            init_logging(&config.log_level);
            match runtime.block_on(control_plane::serve(*config)) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e}");
                    1
                }
            }
        }
        _ => runtime.block_on(control_plane::cli::run_client(cli)),
    };
    // Dropping the runtime would wait for stray blocking tasks (stdin reads).
    runtime.shutdown_background();
    std::process::exit(code);
}

fn init_logging(filter: &str) {
    // rmcp logs every session at info; only its problems matter here.
    let filter = tracing_subscriber::EnvFilter::try_new(format!("rmcp=warn,{filter}"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
