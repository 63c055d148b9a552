//! Filesystem isolation of local sandboxes with bubblewrap, where it works.

mod common;

use std::process::Command;

use common::{Options, Server};
use serde_json::json;

fn with_isolation(mode: &str) -> Options {
    Options {
        extra_args: vec!["--isolation".into(), mode.into()],
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_off_is_reported() {
    let s = Server::start_with(with_isolation("off"));
    let (_, health) = s.get("/health").await;
    assert_eq!(health["isolated"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_sandboxes_cannot_see_each_other_or_the_database() {
    if !common::bwrap_works() {
        // Then asking for isolation must fail loudly instead of running unisolated.
        let data = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_control-plane"))
            .args(["serve", "--port", "0", "--isolation", "on", "--data-dir"])
            .arg(data.path())
            .arg("--mcp-tools-bin")
            .arg(common::mcp_tools_bin())
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("bubblewrap"));
        common::skip("bubblewrap does not work here; checked only that --isolation on refuses");
        return;
    }
    let s = Server::start_with(with_isolation("on"));
    let (_, health) = s.get("/health").await;
    assert_eq!(health["isolated"], true);
    let a = s.create("a").await;
    let b = s.create("b").await;
    assert_eq!(
        s.run(&a, "echo secret > mine.txt && cat mine.txt").await["stdout"],
        "secret\n"
    );

    let sandboxes = s.data_dir().join("sandboxes").canonicalize().unwrap();
    let a_file = sandboxes.join(&a).join("workspace/mine.txt");
    let db = s
        .data_dir()
        .canonicalize()
        .unwrap()
        .join("control-plane.db");
    let r = s.run(&b, &format!("cat {}", a_file.display())).await;
    assert_ne!(r["exit_code"], 0, "b read a's file: {r}");
    let r = s.run(&b, &format!("ls {}", db.display())).await;
    assert_ne!(r["exit_code"], 0, "b sees the database: {r}");
    // The rest of the machine is read-only; the workspace is writable.
    let r = s.run(&b, "touch /usr/sandbox-was-here").await;
    assert_ne!(r["exit_code"], 0, "b wrote outside its folder: {r}");
    // No capabilities, even as root: no remounting the read-only view away.
    let r = s.run(&b, "grep CapEff /proc/self/status").await;
    assert!(
        r["stdout"]
            .as_str()
            .unwrap()
            .ends_with(":\t0000000000000000\n"),
        "{r}"
    );
    let r = s.run(&b, "mount -o remount,rw / 2>&1").await;
    assert_ne!(r["exit_code"], 0, "b could remount /: {r}");
    // Each sandbox sees only its own processes.
    let r = s.run(&b, "ls /proc | grep -c '^[0-9]'").await;
    let visible: u32 = r["stdout"].as_str().unwrap().trim().parse().unwrap();
    assert!(visible < 10, "b sees {visible} processes");

    // Pausing kills everything in the sandbox, including strays left by commands.
    let r = s
        .post(
            "/sandboxes/run-command",
            json!({ "sandbox_id": b, "command": "sleep 300 &" }),
        )
        .await;
    assert_eq!(r.0, 200);
    let (status, _) = s.post(&format!("/sandboxes/{b}/pause"), json!({})).await;
    assert_eq!(status, 200);
    let (status, _) = s.post(&format!("/sandboxes/{a}/pause"), json!({})).await;
    assert_eq!(status, 200);
    assert!(
        s.sandbox_processes().is_empty(),
        "left: {:?}",
        s.sandbox_processes()
    );

    // Resumed under isolation, the workspace is still there.
    let (status, _) = s.post(&format!("/sandboxes/{a}/resume"), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(s.run(&a, "cat mine.txt").await["stdout"], "secret\n");
}
