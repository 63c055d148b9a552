//! `--on-expire delete`: the reaper removes expired sandboxes in every
//! state that has nothing running, not only running ones.

mod common;

use std::time::Duration;

use common::{Options, Server, eventually, wipe_sandbox_dir};
use serde_json::json;

fn deleting() -> Server {
    Server::start_with(Options {
        extra_args: vec![
            "--reaper-interval-secs".into(),
            "1".into(),
            "--on-expire".into(),
            "delete".into(),
        ],
        ..Options::default()
    })
}

/// Creates a sandbox that does not expire while the test sets it up.
async fn create(s: &Server) -> String {
    let (status, body) = s
        .post(
            "/sandboxes/create",
            json!({ "user_id": "u", "timeout_secs": 600 }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["sandbox_id"].as_str().unwrap().to_string()
}

async fn expire_now(s: &Server, id: &str) {
    let (status, body) = s
        .post(
            &format!("/sandboxes/{id}/timeout"),
            json!({ "timeout_secs": 1 }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn deleted(s: &Server, id: &str) -> bool {
    let folder = s.data_dir().join("sandboxes").join(id);
    eventually(Duration::from_secs(20), async || {
        s.get(&format!("/sandboxes/{id}/status")).await.0 == 404 && !folder.exists()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_paused_sandboxes_are_deleted() {
    let s = deleting();
    let id = create(&s).await;
    let (status, body) = s.post(&format!("/sandboxes/{id}/pause"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    expire_now(&s, &id).await;
    assert!(deleted(&s, &id).await, "an expired paused sandbox was kept");
}

/// A sandbox whose folder vanished while the control plane was down is
/// marked gone at the next start; once expired, its record goes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_gone_sandboxes_are_deleted() {
    let mut s = deleting();
    let id = create(&s).await;
    let keep = create(&s).await;
    for pid in s.sandbox_servers() {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&id) {
            // SAFETY: kill(2) with a pid this test started or found; no memory is involved.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
    wipe_sandbox_dir(&s, &id);
    s.kill_and_restart();
    let (_, st) = s.get(&format!("/sandboxes/{id}/status")).await;
    assert_eq!(st["status"], "gone", "{st}");

    expire_now(&s, &id).await;
    assert!(deleted(&s, &id).await, "an expired gone sandbox was kept");
    let (_, st) = s.get(&format!("/sandboxes/{keep}/status")).await;
    assert_eq!(
        st["status"], "running",
        "a sandbox within its timeout was touched"
    );
}
