//! Filesystem isolation of local sandboxes with bubblewrap: the arguments
//! that confine one sandbox, and the check that bwrap works on this machine.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

/// Arguments that make bwrap show the sandbox the machine read-only, hide
/// home folders and the data folder (other sandboxes, the database, the pid
/// files), give it its workspace and state folders, and take every capability
/// away, so that even as root it cannot remount its way out.
pub fn bwrap_args(sandboxes_dir: &Path, dir: &Path, mcp_tools: &Path) -> Vec<OsString> {
    let data_dir = sandboxes_dir.parent().unwrap_or(sandboxes_dir);
    let workspace = dir.join("workspace");
    let state = dir.join("state");
    let mut args: Vec<OsString> = Vec::new();
    let mut add = |flag: &str, paths: &[&Path]| {
        args.push(flag.into());
        args.extend(paths.iter().map(|p| p.as_os_str().to_os_string()));
    };
    add("--ro-bind", &[Path::new("/"), Path::new("/")]);
    add("--dev", &[Path::new("/dev")]);
    add("--proc", &[Path::new("/proc")]);
    for hidden in [
        Path::new("/tmp"),
        Path::new("/root"),
        Path::new("/home"),
        data_dir,
    ] {
        add("--tmpfs", &[hidden]);
    }
    add("--bind", &[&workspace, &workspace]);
    add("--bind", &[&state, &state]);
    // The binary may live in a hidden folder (e.g. ~/.cargo/bin); keep it visible.
    add("--ro-bind", &[mcp_tools, mcp_tools]);
    // Its own pid namespace: it cannot see or signal other sandboxes' processes.
    // The network stays shared: mcp-tools must be reachable on loopback.
    for flag in [
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--cap-drop",
        "ALL",
        "--",
    ] {
        args.push(flag.into());
    }
    args
}

/// bwrap on PATH that can actually create its namespaces here.
pub async fn find_working_bwrap() -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    let bwrap = std::env::split_paths(&paths)
        .map(|d| d.join("bwrap"))
        .find(|p| p.is_file())?;
    let ok = Command::new(&bwrap)
        .args([
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--unshare-pid",
            "--cap-drop",
            "ALL",
            "--",
            "true",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false);
    ok.then_some(bwrap)
}
