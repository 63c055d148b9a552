//! `--user`: a server started as root serves as the account it is given;
//! an unknown account, or a switch without root, stops it before it serves.
//! The tests run as root (CI does) and use the host's `nobody` account.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Child, Command, Stdio};

use common::{call, ok, wait_for_addr};
use mcp_tools::account::Account;
use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::json;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn assert_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "these tests start mcp-tools as root");
}

#[tokio::test]
async fn started_as_root_it_serves_as_the_account() {
    assert_root();
    let nobody = Account::lookup("nobody").expect("the host has a nobody account");
    assert_ne!(nobody.uid, 0);

    // Folders the account can reach: the workspace is its own.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let workspace = tmp.path().join("workspace");
    let state = tmp.path().join("state");
    for dir in [&workspace, &state] {
        std::fs::create_dir(dir).unwrap();
        std::os::unix::fs::chown(dir, Some(nobody.uid), Some(nobody.gid)).unwrap();
    }
    let addr_file = state.join("addr");
    let token = "account-test-token";
    let child = Command::new(env!("CARGO_BIN_EXE_mcp-tools"))
        .args(["--user", "nobody", "--port", "0", "--token", token])
        .arg("--workspace")
        .arg(&workspace)
        .arg("--state-dir")
        .arg(state.join("jobs"))
        .arg("--addr-file")
        .arg(&addr_file)
        .env("HOME", "/root")
        .env("USER", "root")
        .env_remove("MCP_AUTH_TOKEN")
        .env("MCP_LOG_LEVEL", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start mcp-tools");
    let server = Running(child);
    let addr = wait_for_addr(&addr_file);

    // Every id of the process is the account's, root among none of them.
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.0.id())).unwrap();
    let ids = |key: &str| -> Vec<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in status"))
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect()
    };
    assert_eq!(ids("Uid:"), [nobody.uid; 4], "{status}");
    assert_eq!(ids("Gid:"), [nobody.gid; 4], "{status}");
    assert!(!ids("Groups:").contains(&0), "root's group kept: {status}");

    let config = StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp"))
        .auth_header(token.to_owned());
    let client =
        ().serve(StreamableHttpClientTransport::from_config(config))
            .await
            .expect("MCP initialize");
    let out = ok(&call(
        &client,
        "run_command",
        json!({"command": "id -u; id -g; echo \"$HOME $USER $LOGNAME\"; echo hi > made-here"}),
    )
    .await);
    assert_eq!(out["exit_code"], 0, "{out}");
    assert_eq!(
        out["stdout"],
        format!(
            "{}\n{}\n{} nobody nobody\n",
            nobody.uid,
            nobody.gid,
            nobody.home.display()
        ),
        "{out}"
    );
    let made = std::fs::metadata(workspace.join("made-here")).unwrap();
    assert_eq!((made.uid(), made.gid()), (nobody.uid, nobody.gid));
    drop(server);
}

#[test]
fn an_unknown_account_stops_it_before_it_serves() {
    assert_root();
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-tools"))
        .args(["--user", "no-such-account-here", "--port", "0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no account named \"no-such-account-here\""),
        "{stderr}"
    );
    assert!(!stderr.contains("listening"), "{stderr}");
}

/// Only root can switch: `nobody` asking to run as root is refused before
/// it serves, and `nobody` asking to run as `nobody` serves.
#[test]
fn without_root_only_the_same_account_is_accepted() {
    assert_root();
    let nobody = Account::lookup("nobody").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = tmp.path().join("nobody");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(nobody.uid), Some(nobody.gid)).unwrap();
    let as_nobody = |user: &str| {
        let mut command = Command::new("setpriv");
        command
            .arg(format!("--reuid={}", nobody.uid))
            .arg(format!("--regid={}", nobody.gid))
            .arg("--clear-groups")
            .arg(env!("CARGO_BIN_EXE_mcp-tools"))
            .args(["--user", user, "--port", "0"])
            .arg("--workspace")
            .arg(&dir)
            .arg("--state-dir")
            .arg(dir.join("jobs"))
            .arg("--addr-file")
            .arg(dir.join("addr"))
            .stdin(Stdio::null());
        command
    };
    // Bounded: a server that does not refuse would serve forever.
    let mut refused = Running(
        as_nobody("root")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("setpriv (util-linux)"),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let status = loop {
        if let Some(status) = refused.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "mcp-tools run by nobody with --user root did not stop"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut refused.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("only root can switch accounts"), "{stderr}");
    assert!(!dir.join("addr").exists(), "it served after refusing");

    let same = Running(
        as_nobody("nobody")
            .stdout(Stdio::null())
            .spawn()
            .expect("setpriv (util-linux)"),
    );
    wait_for_addr(&dir.join("addr"));
    drop(same);
}
