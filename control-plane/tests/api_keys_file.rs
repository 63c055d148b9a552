//! `--api-keys-file`: one `KEY` or `KEY:USER` a line, `#` comments and blank
//! lines skipped; a missing or bad file stops the start; the file is read
//! at start, so a change takes effect at the next start.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{KEY_ADMIN, KEY_ALICE, KEY_BOB, Options, Server, send};

async fn status_as(s: &Server, key: &str, path: &str) -> (u16, serde_json::Value) {
    send(s.http.get(format!("{}{path}", s.url)).bearer_auth(key)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_come_from_the_file_with_users_and_comments() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    std::fs::write(
        &file,
        format!("# keys\n\n  {KEY_ADMIN}  \n{KEY_ALICE}:alice\n# {KEY_BOB}:bob\n"),
    )
    .unwrap();
    let mut s = Server::start_with(Options {
        extra_args: vec!["--api-keys-file".into(), file.display().to_string()],
        ..Options::default()
    });
    s.key = Some(KEY_ADMIN.to_string());
    let bobs = s.create("bob").await;

    assert_eq!(status_as(&s, KEY_ADMIN, "/sandboxes").await.0, 200);
    let (status, list) = status_as(&s, KEY_ALICE, "/sandboxes").await;
    assert_eq!(status, 200);
    assert_eq!(list["sandboxes"].as_array().unwrap().len(), 0, "{list}");
    let (status, _) = status_as(&s, KEY_ALICE, &format!("/sandboxes/{bobs}/status")).await;
    assert_eq!(status, 404, "alice sees bob's sandbox");
    // A commented-out key is no key.
    assert_eq!(status_as(&s, KEY_BOB, "/sandboxes").await.0, 401);

    // Read at start: a key added later works after a restart, not before.
    std::fs::write(
        &file,
        format!("{KEY_ADMIN}\n{KEY_ALICE}:alice\n{KEY_BOB}:bob\n"),
    )
    .unwrap();
    assert_eq!(status_as(&s, KEY_BOB, "/sandboxes").await.0, 401);
    s.restart();
    let (status, list) = status_as(&s, KEY_BOB, "/sandboxes").await;
    assert_eq!(status, 200);
    assert_eq!(list["sandboxes"][0]["sandbox_id"], bobs.as_str(), "{list}");
}

#[test]
fn a_missing_or_bad_key_file_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, "# fine\nshort-key\n").unwrap();
    let cases = [
        (dir.path().join("absent"), "absent"),
        (short, "16 characters"),
    ];
    for (file, expected) in cases {
        let mut child = Command::new(env!("CARGO_BIN_EXE_control-plane"))
            .args(["serve", "--port", "0", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--mcp-tools-bin")
            .arg(common::mcp_tools_bin())
            .arg("--api-keys-file")
            .arg(&file)
            .env_remove("CONTROL_PLANE_API_KEYS")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{file:?} was accepted: the control plane started");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{file:?} was accepted");
        assert!(stderr.contains(expected), "{file:?}: {stderr}");
    }
}
