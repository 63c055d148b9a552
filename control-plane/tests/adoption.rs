//! Local sandboxes found again after a SIGKILLed control plane: through the
//! pid file, through the process itself when the pid file was never
//! written, and never through a pid file that names someone else's process
//! (the pid reused after the sandbox died).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Server, eventually};
use serde_json::json;

/// A process of the test's own, unrelated to any sandbox, killed on drop.
struct Bystander(Child);

impl Bystander {
    fn start() -> Bystander {
        Bystander(
            Command::new("sleep")
                .arg("300")
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn alive(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pid_file(s: &Server, id: &str) -> std::path::PathBuf {
    s.data_dir().join("sandboxes").join(id).join("pid")
}

/// A control plane killed after starting a sandbox's process but before
/// writing its pid file: at the next start the process is found by its
/// command line and adopted, not duplicated, and pausing still stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_without_its_pid_file_is_adopted() {
    let mut s = Server::start();
    let id = s.create("u").await;
    assert_eq!(s.run(&id, "echo kept > f.txt").await["exit_code"], 0);
    let (_, before) = s.get(&format!("/sandboxes/{id}/status")).await;
    let server_pids = s.sandbox_servers();
    assert_eq!(server_pids.len(), 1);

    std::fs::remove_file(pid_file(&s, &id)).unwrap();
    s.kill_and_restart();

    let (status, after) = s.get(&format!("/sandboxes/{id}/status")).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["status"], "running", "{after}");
    assert_eq!(after["mcp_url"], before["mcp_url"]);
    assert_eq!(s.run(&id, "cat f.txt").await["stdout"], "kept\n");
    assert_eq!(s.sandbox_servers(), server_pids, "a second server started");

    let (status, body) = s.post(&format!("/sandboxes/{id}/pause"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        eventually(Duration::from_secs(10), async || s
            .sandbox_processes()
            .is_empty())
        .await,
        "pausing left {:?}",
        s.sandbox_processes()
    );
}

/// A sandbox whose process died while the control plane was down, and
/// whose pid now belongs to an unrelated process: the control plane shows
/// it stopped, and neither adopts nor signals the stranger when the sandbox
/// is paused, resumed or deleted. A live sandbox whose pid file names a
/// stranger is still found through its own process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_pid_is_never_taken_for_the_sandbox() {
    let mut s = Server::start();
    let dead = s.create("u").await;
    let live = s.create("u").await;
    let mut stranger = Bystander::start();

    // `dead`'s server dies; its pid file now names the stranger.
    let dead_dir = s.data_dir().join("sandboxes").join(&dead);
    let dead_server: Vec<u32> = s
        .sandbox_servers()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let needle = dead_dir.as_os_str().as_encoded_bytes();
                c.windows(needle.len()).any(|w| w == needle)
            })
        })
        .collect();
    assert_eq!(dead_server.len(), 1);
    let gone_pid = dead_server[0];
    // SAFETY: kill(2) with a pid this test started or found; no memory is involved.
    unsafe { libc::kill(gone_pid as i32, libc::SIGKILL) };
    assert!(
        eventually(Duration::from_secs(10), async || !s
            .sandbox_servers()
            .contains(&gone_pid))
        .await,
        "the sandbox's server did not die"
    );
    for id in [&dead, &live] {
        std::fs::write(pid_file(&s, id), stranger.pid().to_string()).unwrap();
    }
    s.kill_and_restart();

    let (_, st) = s.get(&format!("/sandboxes/{dead}/status")).await;
    assert_eq!(st["status"], "paused", "{st}");
    let (_, st) = s.get(&format!("/sandboxes/{live}/status")).await;
    assert_eq!(st["status"], "running", "{st}");
    assert_eq!(s.run(&live, "echo up").await["stdout"], "up\n");
    assert!(stranger.alive(), "the stranger was signalled at start");

    let (status, body) = s.post(&format!("/sandboxes/{live}/pause"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = s
        .post(&format!("/sandboxes/{dead}/resume"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.run(&dead, "echo back").await["stdout"], "back\n");
    for id in [&dead, &live] {
        let (status, body) = s.delete(&format!("/sandboxes/{id}")).await;
        assert_eq!(status, 200, "{body}");
    }
    assert!(s.sandbox_processes().is_empty());
    assert!(stranger.alive(), "the stranger was signalled");
}
