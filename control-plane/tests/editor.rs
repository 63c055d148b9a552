//! VS Code in the browser: the control plane starts code-server in each
//! sandbox whose system has it, with the sandbox's token as its password,
//! reached through the control plane's route to port 9000, and reports
//! `vscode_url` only once it answers.
//!
//! The sandbox's system here is this machine's, with a stand-in
//! `code-server` (tests/fixtures/code-server) on its PATH; the real editor
//! is checked the same way by sandbox-template/test-editor.sh.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use common::{Options, Server, bwrap_works, eventually, skip};
use serde_json::{Value, json};

/// A folder the sandboxes see (not under the hidden /root, /home, /tmp or
/// /run) holding the stand-in as `code-server`; removed on drop.
struct EditorOnPath(PathBuf);

impl EditorOnPath {
    fn new() -> EditorOnPath {
        let dir = PathBuf::from(format!("/var/tmp/cp-editor-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.join("code-server");
        std::fs::copy(
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/code-server"),
            &bin,
        )
        .unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        EditorOnPath(dir)
    }

    fn path_var(&self) -> String {
        format!(
            "{}:{}",
            self.0.display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }
}

impl Drop for EditorOnPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The sandbox's token, from the `Authorization` of its `mcp_headers`.
fn token_of(sandbox: &Value) -> String {
    sandbox["mcp_headers"]["Authorization"]
        .as_str()
        .and_then(|a| a.strip_prefix("Bearer "))
        .expect("a bearer token in mcp_headers")
        .to_string()
}

/// `vscode_url` once `GET /sandboxes/{id}/status` reports one (within 60 s).
async fn vscode_url_once_it_answers(s: &Server, id: &str) -> String {
    let mut url = String::new();
    let found = eventually(Duration::from_secs(60), async || {
        let (_, body) = s.get(&format!("/sandboxes/{id}/status")).await;
        match body["vscode_url"].as_str() {
            Some(u) => {
                url = u.to_string();
                true
            }
            None => false,
        }
    })
    .await;
    assert!(found, "vscode_url never appeared for {id}");
    url
}

/// code-server's login form with `password` (letters and digits only).
fn login(browser: &reqwest::Client, url: &str, password: &str) -> reqwest::RequestBuilder {
    browser
        .post(format!("{url}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("password={password}"))
}

/// `(status, Location, Set-Cookie)` of `req`, redirects not followed.
async fn fetch(req: reqwest::RequestBuilder) -> (u16, String, String) {
    let resp = req.send().await.unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    (
        resp.status().as_u16(),
        header("location"),
        header("set-cookie"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_editor_answers_through_its_route_only_with_the_sandbox_token() {
    if !bwrap_works() {
        skip("bubblewrap does not work here: sandboxes have no network of their own");
        return;
    }
    let editor = EditorOnPath::new();
    let s = Server::start_with(Options {
        env: vec![("PATH".into(), editor.path_var())],
        ..Options::default()
    });
    let (status, created) = s
        .post("/sandboxes/create", json!({ "user_id": "alice" }))
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["sandbox_id"].as_str().unwrap().to_string();
    // Started, but not yet seen to answer.
    assert!(created["vscode_url"].is_null(), "{created}");
    let token = token_of(&created);

    let url = vscode_url_once_it_answers(&s, &id).await;
    let api: SocketAddr = s.url.strip_prefix("http://").unwrap().parse().unwrap();
    assert_eq!(url, format!("http://9000-{id}.localhost:{}", api.port()));
    // *.localhost is loopback (RFC 6761); resolved by hand for the client.
    let browser = reqwest::Client::builder()
        .resolve(&format!("9000-{id}.localhost"), api)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // Without a login: sent to the login page, never the editor.
    let (status, location, _) = fetch(browser.get(format!("{url}/"))).await;
    assert_eq!((status, location.as_str()), (302, "./login"));
    // A wrong password gets no session.
    let (status, _, cookie) = fetch(login(&browser, &url, "wrong")).await;
    assert_eq!((status, cookie.as_str()), (200, ""));
    // The sandbox's token is the password.
    let (status, location, cookie) = fetch(login(&browser, &url, &token)).await;
    assert_eq!((status, location.as_str()), (302, "./"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_string();
    assert!(session.starts_with("code-server-session="), "{cookie}");
    let (status, _, _) = fetch(browser.get(format!("{url}/")).header("cookie", &session)).await;
    assert_eq!(status, 200);

    // The editor's WebSocket: an upgrade passes the route both ways.
    let mut ws = TcpStream::connect(api).unwrap();
    ws.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        ws,
        "GET /socket HTTP/1.1\r\nHost: 9000-{id}.localhost:{}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nCookie: {session}\r\n\r\n",
        api.port()
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(ws.read(&mut byte).unwrap(), 1, "closed after {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    ws.write_all(b"ping through the route").unwrap();
    let mut echo = [0u8; 22];
    ws.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"ping through the route");
    drop(ws);

    // The password is on no command line of the sandbox.
    let processes = s.sandbox_processes();
    assert!(!processes.is_empty());
    for pid in processes {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(&token),
            "the token is on the command line of {pid}"
        );
    }
    // The list reports it too.
    let (_, listed) = s.get("/sandboxes").await;
    assert_eq!(listed["sandboxes"][0]["vscode_url"], url.as_str());

    // Paused, it has no editor; resumed, the editor is started again.
    let (status, paused) = s.post(&format!("/sandboxes/{id}/pause"), json!({})).await;
    assert_eq!(status, 200, "{paused}");
    assert!(paused["vscode_url"].is_null(), "{paused}");
    let (status, resumed) = s.post(&format!("/sandboxes/{id}/resume"), json!({})).await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(vscode_url_once_it_answers(&s, &id).await, url);
    let (status, _, _) = fetch(login(&browser, &url, &token)).await;
    assert_eq!(status, 302);

    let (status, _) = s.delete(&format!("/sandboxes/{id}")).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_editor_vscode_url_stays_null() {
    if !bwrap_works() {
        skip("bubblewrap does not work here: sandboxes have no network of their own");
        return;
    }
    let s = Server::start();
    let id = s.create("alice").await;
    // Something does answer on port 9000, but the system has no editor.
    let r = s
        .run(
            &id,
            "cd /tmp && (python3 -m http.server --bind 127.0.0.1 9000 >/dev/null 2>&1 &) && \
             for i in $(seq 50); do python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 9000))' 2>/dev/null && break; sleep 0.1; done; echo up",
        )
        .await;
    assert_eq!(r["stdout"], "up\n", "{r}");
    let (status, body) = s.get(&format!("/sandboxes/{id}/status")).await;
    assert_eq!(status, 200);
    assert!(body["vscode_url"].is_null(), "{body}");
}
