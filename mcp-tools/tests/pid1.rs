//! As PID 1 (a container's entry point) the server reaps the orphans that
//! commands leave behind, and still stops cleanly on SIGTERM.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{call, ok};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_are_reaped_when_the_server_is_pid_1() {
    if !common::is_root() {
        common::skip("needs root: a new PID namespace (unshare --pid) makes the server PID 1");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let workspace = tmp.path().join("ws");
    std::fs::create_dir(&workspace).unwrap();
    let addr_file = tmp.path().join("addr");
    // A new PID namespace makes the server PID 1 in it.
    let mut child = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(env!("CARGO_BIN_EXE_mcp-tools"))
        .args(["--port", "0", "--log-level", "warn"])
        .arg("--workspace")
        .arg(&workspace)
        .arg("--state-dir")
        .arg(tmp.path().join("state"))
        .arg("--addr-file")
        .arg(&addr_file)
        .stdin(Stdio::null())
        .spawn()
        .expect("unshare (util-linux) is needed for this test");
    let guard = Namespace(child.id());
    let addr = common::wait_for_addr(&addr_file);
    let url = format!("http://{addr}/mcp");
    let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(url);
    let client = rmcp::ServiceExt::serve((), transport).await.unwrap();

    // Each command orphans a short-lived grandchild, which PID 1 inherits;
    // the command prints the orphan's pid (in the namespace).
    let mut orphans = Vec::new();
    for _ in 0..5 {
        let out = ok(&call(
            &client,
            "run_command",
            json!({"command": "sh -c 'sleep 0.1 & echo $!'"}),
        )
        .await);
        let pid: u32 = out["stdout"].as_str().unwrap().trim().parse().unwrap();
        orphans.push(pid);
    }
    let table = || async {
        let out = ok(&call(
            &client,
            "run_command",
            json!({"command": "ps -eo pid=,stat="}),
        )
        .await);
        out["stdout"].as_str().unwrap().to_owned()
    };
    let state_of = |table: &str, pid: u32| {
        table.lines().find_map(|l| {
            let mut cols = l.split_whitespace();
            (cols.next()? == pid.to_string()).then(|| cols.next().unwrap_or("").to_owned())
        })
    };
    // Each orphan must go away entirely: one that exits and is not reaped
    // stays a zombie for good.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let table = table().await;
        assert!(
            table.lines().any(|l| l.trim_start().starts_with("1 ")),
            "{table}"
        );
        let left: Vec<_> = orphans
            .iter()
            .filter_map(|&pid| Some((pid, state_of(&table, pid)?)))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "orphans (pid, state) {left:?} were not reaped:\n{table}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    drop(client);
    // SIGTERM the namespace's PID 1 (unshare's child): it forwards the
    // signal to the server and exits with the server's status.
    // SAFETY: kill(2) with a pid this test started or found; no memory is involved.
    unsafe { libc::kill(guard.init().expect("namespace init"), libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "server as PID 1 did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills the namespace's processes if the test ends early.
struct Namespace(u32);

impl Namespace {
    /// Host pid of the namespace's PID 1: unshare's child.
    fn init(&self) -> Option<i32> {
        let children = format!("/proc/{0}/task/{0}/children", self.0);
        std::fs::read_to_string(children).ok()?.trim().parse().ok()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        // Killing PID 1 of a PID namespace kills every process in it.
        if let Some(init) = self.init() {
            // SAFETY: kill(2) with a pid this test started or found; no memory is involved.
            unsafe { libc::kill(init, libc::SIGKILL) };
        }
    }
}
