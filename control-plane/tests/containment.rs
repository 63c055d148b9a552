//! A local sandbox as a boundary against a hostile tenant, tried from inside
//! through the real API: its own network (no host loopback, no control
//! plane, no other sandbox, no LAN), its own host user, cgroup limits on
//! processes and memory, and clients reaching it only through the control
//! plane. Every attack here is bounded in count and time, and its traffic
//! goes only to this machine's loopback or to a network namespace the test
//! makes itself.
//!
//! Where a protection cannot work on this machine (not root, no
//! slirp4netns), the test says so and checks that `--isolation on` refuses
//! to start instead.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use common::{Options, Server, eventually};
use serde_json::{Value, json};

/// The protections `/health` reports, or `None` (after checking the
/// refusal of `--isolation on`) when `needed` do not all hold here.
async fn protections_or_refusal(s: &Server, needed: &[&str]) -> Option<Value> {
    let (_, health) = s.get("/health").await;
    let p = health["protections"].clone();
    let missing: Vec<&&str> = needed.iter().filter(|n| p[**n] != true).collect();
    if missing.is_empty() {
        return Some(p);
    }
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_control-plane"))
        .args(["serve", "--port", "0", "--isolation", "on", "--data-dir"])
        .arg(data.path())
        .arg("--mcp-tools-bin")
        .arg(common::mcp_tools_bin())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "--isolation on started without {missing:?}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("protections do not hold"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{missing:?} do not hold here: checked that --isolation on refuses to start");
    None
}

/// A throwaway HTTP server on this machine's loopback, answering "host".
fn host_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.0 200 OK\r\ncontent-length: 4\r\n\r\nhost");
        }
    });
    port
}

/// A shell line that tries a TCP connection from inside a sandbox and
/// prints `CONNECTED` or `REFUSED`, within 3 seconds.
fn try_connect(host: &str, port: u16) -> String {
    format!(
        "python3 -c 'import socket\ntry:\n    socket.create_connection((\"{host}\", {port}), timeout=3)\n    print(\"CONNECTED\")\nexcept OSError as e:\n    print(\"REFUSED\", e)'"
    )
}

fn stdout(r: &Value) -> &str {
    r["stdout"].as_str().unwrap_or("")
}

/// A network namespace with one end of a veth pair, standing for a machine
/// on the LAN; removed on drop.
struct LanNamespace {
    name: String,
    server: std::process::Child,
    peer: String,
}

impl LanNamespace {
    /// Makes it with a listener on `10.231.<n>.2:8080` (n from our pid), or
    /// `None` when this machine does not let us (not root).
    fn make() -> Option<LanNamespace> {
        let n = std::process::id() % 250 + 1;
        let name = format!("cp-test-lan-{}", std::process::id());
        let host_end = format!("cpt{}h", std::process::id() % 100_000);
        let peer = format!("10.231.{n}.2");
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        if !ip(&["netns", "add", &name]) {
            return None;
        }
        let ok = ip(&[
            "link", "add", &host_end, "type", "veth", "peer", "name", "lan0", "netns", &name,
        ]) && ip(&["addr", "add", &format!("10.231.{n}.1/30"), "dev", &host_end])
            && ip(&["link", "set", &host_end, "up"])
            && ip(&[
                "-n",
                &name,
                "addr",
                "add",
                &format!("{peer}/30"),
                "dev",
                "lan0",
            ])
            && ip(&["-n", &name, "link", "set", "lan0", "up"])
            && ip(&["-n", &name, "link", "set", "lo", "up"]);
        if !ok {
            let _ = ip(&["netns", "delete", &name]);
            return None;
        }
        let server = Command::new("ip")
            .args([
                "netns",
                "exec",
                &name,
                "python3",
                "-m",
                "http.server",
                "8080",
            ])
            .args(["--bind", &peer])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        Some(LanNamespace { name, server, peer })
    }
}

impl Drop for LanNamespace {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        // Deleting the namespace removes its veth end, and with it ours.
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_reaches_neither_this_machine_nor_its_lan_nor_other_sandboxes() {
    let s = Server::start();
    if protections_or_refusal(&s, &["network", "internet_via_user_mode_network"])
        .await
        .is_none()
    {
        return;
    }
    let api_port: u16 = s.url.rsplit_once(':').unwrap().1.parse().unwrap();
    let host_port = host_server();
    let a = s.create("tenant-a").await;
    let b = s.create("tenant-b").await;

    // Its own interfaces: loopback, and slirp4netns's tap0 for the internet.
    let r = s.run(&a, "ip -br addr").await;
    assert!(stdout(&r).contains("tap0"), "{r}");

    // B serves on its own loopback; it does not appear on the host's.
    let taken_before = listening_on_host_loopback(8000);
    let r = s
        .run(
            &b,
            "cd /tmp && echo b-secret > index.html && \
             (python3 -m http.server 8000 --bind 0.0.0.0 >/dev/null 2>&1 &) && \
             for i in $(seq 50); do python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 8000))' 2>/dev/null && break; sleep 0.1; done; echo up",
        )
        .await;
    assert_eq!(stdout(&r), "up\n", "{r}");
    assert!(
        taken_before || !listening_on_host_loopback(8000),
        "b's listener appeared on the host's loopback"
    );

    // From A: the host's loopback server (directly, and through the
    // gateway slirp4netns offers), the control plane, B's port: all refused.
    for (host, port, what) in [
        ("127.0.0.1", host_port, "the host's loopback server"),
        (
            "10.0.2.2",
            host_port,
            "the host's loopback through the gateway",
        ),
        ("127.0.0.1", api_port, "the control plane"),
        (
            "10.0.2.2",
            api_port,
            "the control plane through the gateway",
        ),
        ("127.0.0.1", 8000, "sandbox b's server"),
    ] {
        let r = s.run(&a, &try_connect(host, port)).await;
        assert!(
            stdout(&r).starts_with("REFUSED"),
            "a reached {what} at {host}:{port}: {r}"
        );
    }
    // The host itself reaches its own server, so the refusals above are the
    // sandbox's boundary, not a dead server.
    assert!(std::net::TcpStream::connect(("127.0.0.1", host_port)).is_ok());

    // A machine on the LAN (a namespace made here, reachable from the host).
    match LanNamespace::make() {
        Some(lan) => {
            let reachable = eventually(Duration::from_secs(10), async || {
                std::net::TcpStream::connect((lan.peer.as_str(), 8080)).is_ok()
            })
            .await;
            assert!(reachable, "the test's LAN server did not come up");
            let r = s.run(&a, &try_connect(&lan.peer, 8080)).await;
            assert!(stdout(&r).starts_with("REFUSED"), "a reached the LAN: {r}");
        }
        None => eprintln!("cannot make a network namespace here: LAN rule not tried"),
    }
    // Link-local (cloud metadata), tried after the LAN: without the
    // firewall the LAN check fails first, so no packet leaves for it.
    let r = s.run(&a, &try_connect("169.254.169.254", 80)).await;
    assert!(
        stdout(&r).starts_with("REFUSED"),
        "a reached link-local metadata: {r}"
    );

    // Without internet access: loopback only.
    let (status, c) = s
        .post(
            "/sandboxes/create",
            json!({ "user_id": "tenant-c", "allow_internet_access": false }),
        )
        .await;
    assert_eq!(status, 200, "{c}");
    let c = c["sandbox_id"].as_str().unwrap();
    let r = s.run(c, "ip -o link show | cut -d: -f2 | tr -d ' '").await;
    assert_eq!(stdout(&r), "lo\n", "{r}");

    let (status, _) = s.get("/health").await;
    assert_eq!(status, 200);
}

/// True when something listens on `port` of the host's loopback (from /proc/net/tcp).
fn listening_on_host_loopback(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    let any = format!("00000000:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp").is_ok_and(|t| {
        t.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.get(3) == Some(&"0A") && (cols[1] == want || cols[1] == any)
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_reach_a_sandbox_only_through_the_control_plane() {
    let s = Server::start();
    if protections_or_refusal(&s, &["network"]).await.is_none() {
        return;
    }
    let (status, created) = s
        .post("/sandboxes/create", json!({ "user_id": "web" }))
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["sandbox_id"].as_str().unwrap();
    let mcp_url = created["mcp_url"].as_str().unwrap();
    assert_eq!(mcp_url, format!("{}/sandboxes/{id}/mcp", s.url));

    // The route needs the sandbox's token: checked before the sandbox sees
    // it (the control plane's JSON error, not mcp-tools' own 401).
    for auth in [None, Some("Bearer wrong")] {
        let mut req = s.http.post(mcp_url).json(&json!({}));
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    }

    // expose-port: a page served inside is reached on its own origin.
    let r = s
        .run(
            id,
            "cd /tmp && echo hello-from-inside > index.html && \
             (python3 -m http.server 8000 >/dev/null 2>&1 &) && \
             for i in $(seq 50); do python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 8000))' 2>/dev/null && break; sleep 0.1; done; echo up",
        )
        .await;
    assert_eq!(stdout(&r), "up\n", "{r}");
    let (status, exposed) = s
        .post(
            "/sandboxes/expose-port",
            json!({ "sandbox_id": id, "port": 8000 }),
        )
        .await;
    assert_eq!(status, 200, "{exposed}");
    let url = exposed["url"].as_str().unwrap();
    let host = url.strip_prefix("http://").unwrap();
    assert!(host.starts_with(&format!("8000-{id}.localhost:")), "{url}");
    // *.localhost is loopback (RFC 6761); resolved by hand for the client.
    let api: std::net::SocketAddr = s.url.strip_prefix("http://").unwrap().parse().unwrap();
    let client = reqwest::Client::builder()
        .resolve(host.split(':').next().unwrap(), api)
        .build()
        .unwrap();
    let page = client
        .get(format!("{url}/index.html"))
        .send()
        .await
        .unwrap();
    let status = page.status();
    let text = page.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert_eq!(text, "hello-from-inside\n");
    // The API does not answer on a sandbox's origin.
    let api_there = client.get(format!("{url}/sandboxes")).send().await.unwrap();
    assert_ne!(api_there.status(), 200);

    // After a pause and a resume the URL still leads to the sandbox.
    let (status, _) = s.post(&format!("/sandboxes/{id}/pause"), json!({})).await;
    assert_eq!(status, 200);
    let (status, resumed) = s.post(&format!("/sandboxes/{id}/resume"), json!({})).await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["mcp_url"], mcp_url);
    assert_eq!(s.run(id, "echo again").await["stdout"], "again\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_runs_as_a_user_of_its_own() {
    let s = Server::start();
    if protections_or_refusal(&s, &["user"]).await.is_none() {
        return;
    }
    // A root-only file outside the hidden folders.
    let secret =
        std::path::PathBuf::from(format!("/var/tmp/cp-test-secret-{}", std::process::id()));
    std::fs::write(&secret, "root only\n").unwrap();
    std::os::unix::fs::chown(&secret, Some(0), Some(0)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();

    let a = s.create("a").await;
    let b = s.create("b").await;
    let uid = |r: Value| stdout(&r).trim().parse::<u32>().unwrap();
    let (ua, ub) = (uid(s.run(&a, "id -u").await), uid(s.run(&b, "id -u").await));
    assert!(ua != 0 && ub != 0 && ua != ub, "uids {ua} and {ub}");
    for path in ["/etc/shadow", secret.to_str().unwrap()] {
        let r = s.run(&a, &format!("head -1 {path}")).await;
        assert_ne!(r["exit_code"], 0, "a read {path}: {r}");
    }
    // Its workspace is its own.
    let r = s.run(&a, "stat -c %u .").await;
    assert_eq!(stdout(&r).trim(), ua.to_string());
    let _ = std::fs::remove_file(&secret);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_stop_fork_floods_and_memory_hogs_and_say_so() {
    let s = Server::start();
    if protections_or_refusal(&s, &["cgroups"]).await.is_none() {
        return;
    }
    let (status, hog) = s
        .post(
            "/sandboxes/create",
            json!({ "user_id": "hog", "memory_mb": 256, "process_limit": 100 }),
        )
        .await;
    assert_eq!(status, 200, "{hog}");
    let hog = hog["sandbox_id"].as_str().unwrap().to_string();
    let other = s.create("other").await;

    // 3,000 short sleeps: the process limit refuses most forks.
    let flood = {
        let s_url = s.url.clone();
        let hog = hog.clone();
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{s_url}/sandboxes/run-command"))
                .json(&json!({
                    "sandbox_id": hog,
                    "command": "for i in $(seq 3000); do sleep 2 & done 2>/dev/null; wait; echo done",
                    "timeout_ms": 60000,
                }))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    // Meanwhile another sandbox answers.
    assert_eq!(s.run(&other, "echo fine").await["stdout"], "fine\n");
    assert_eq!(flood.await.unwrap(), 200);
    let (status, m) = s.get(&format!("/sandboxes/{hog}/metrics")).await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["process_limit"], 100);
    assert!(m["processes_refused"].as_u64().unwrap() > 0, "{m}");

    // 900 MiB under 256 MiB: killed, and said so.
    let r = s
        .run(
            &hog,
            "python3 -c 'b = bytearray(900 * 1024 * 1024); print(len(b))'",
        )
        .await;
    assert_eq!(r["signal"], 9, "{r}");
    assert_eq!(r["oom_killed"], true, "{r}");
    let (_, m) = s.get(&format!("/sandboxes/{hog}/metrics")).await;
    assert!(m["oom_kills"].as_u64().unwrap() >= 1, "{m}");
    assert_eq!(m["mem_total"], 256u64 << 20);
    // Still usable.
    assert_eq!(s.run(&hog, "echo alive").await["stdout"], "alive\n");

    // /tmp holds half the memory limit: filling it is ENOSPC, not an OOM
    // kill of everything in the sandbox (its pages count as memory).
    let r = s
        .run(
            &hog,
            "head -c 200000000 /dev/zero > /tmp/fill; echo rc=$?; rm -f /tmp/fill",
        )
        .await;
    assert_eq!(stdout(&r), "rc=1\n", "{r}");
    assert!(
        r["stderr"].as_str().unwrap().contains("No space left"),
        "{r}"
    );
    assert_eq!(s.run(&hog, "echo alive").await["stdout"], "alive\n");

    // Limits are checked at create.
    let (status, e) = s
        .post(
            "/sandboxes/create",
            json!({ "user_id": "x", "memory_mb": 100_000_000u64 }),
        )
        .await;
    assert_eq!(status, 400, "{e}");
    let (status, _) = s.get("/health").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_that_dies_mid_call_answers_at_once() {
    let s = Server::start_with(Options::default());
    if protections_or_refusal(&s, &["filesystem"]).await.is_none() {
        return;
    }
    let id = s.create("k").await;
    let started = std::time::Instant::now();
    let (status, body) = s
        .post(
            "/sandboxes/run-command",
            json!({ "sandbox_id": id, "command": "sleep 0.5; kill -9 -1" }),
        )
        .await;
    assert_eq!(status, 502, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    // A write larger than the sandbox accepts is refused at once.
    let (status, body) = s
        .post(
            "/sandboxes/write-file",
            json!({ "sandbox_id": s.create("w").await, "path": "big", "content": "x".repeat(5 << 20) }),
        )
        .await;
    assert_eq!(status, 413, "{body}");
}

/// A real MCP client on the host, connected through a sandbox's `mcp_url`.
async fn mcp_client(created: &Value) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
    use rmcp::ServiceExt;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let url = created["mcp_url"].as_str().unwrap();
    let auth = created["mcp_headers"]["Authorization"].as_str().unwrap();
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_string())
            .auth_header(auth.strip_prefix("Bearer ").unwrap()),
    );
    ().serve(transport).await.expect("MCP session")
}

/// The structured answer of tool `name`, asserting it succeeded.
async fn call_tool(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ()>,
    name: &str,
    args: Value,
) -> Value {
    let Value::Object(args) = args else {
        panic!("tool arguments must be an object")
    };
    let result = client
        .call_tool(rmcp::model::CallToolRequestParams::new(name.to_owned()).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_ne!(result.is_error, Some(true), "{name}: {result:?}");
    result.structured_content.expect("structured content")
}

/// Starts `command` on a terminal in the sandbox and waits until its
/// output matches `regex`; returns the job's id and its output so far.
async fn on_terminal(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ()>,
    command: &str,
    regex: &str,
) -> (String, String) {
    let started = call_tool(
        client,
        "run_command",
        json!({ "command": command, "background": true, "pty": true }),
    )
    .await;
    let id = started["id"].as_str().unwrap().to_string();
    let waited = call_tool(
        client,
        "process_wait",
        json!({ "id": id, "until_regex": regex, "timeout_ms": 20000 }),
    )
    .await;
    assert_eq!(waited["reason"], "matched", "{waited}");
    (id, waited["tail"].as_str().unwrap_or("").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_has_terminals_of_its_own() {
    let s = Server::start();
    if protections_or_refusal(&s, &["filesystem"]).await.is_none() {
        return;
    }
    let mut created = Vec::new();
    for user in ["term-a", "term-b"] {
        let (status, c) = s
            .post("/sandboxes/create", json!({ "user_id": user }))
            .await;
        assert_eq!(status, 200, "{c}");
        created.push(c);
    }
    let (a, b) = (mcp_client(&created[0]).await, mcp_client(&created[1]).await);

    // B holds a terminal open.
    let (b_job, b_out) = on_terminal(&b, "tty; sleep 60", r"^/dev/pts/\d+").await;
    assert!(b_out.contains("/dev/pts/0"), "{b_out}");

    // A gets a terminal too, and sees only its own: the same first number
    // as B's (a devpts instance of its own), nothing of B's or the host's.
    let (_, a_out) = on_terminal(
        &a,
        "tty; echo \"ptys:$(ls /dev/pts | tr '\\n' ,)end\"",
        "end$",
    )
    .await;
    assert!(a_out.contains("/dev/pts/0"), "{a_out}");
    assert!(a_out.contains("ptys:0,ptmx,end"), "{a_out}");

    // The terminal is a real one: a program on it sees a tty.
    let (_, py) = on_terminal(
        &a,
        "python3 -c 'import os, sys; print(\"isatty\", os.isatty(0), os.ttyname(0))'",
        "^isatty",
    )
    .await;
    assert!(py.contains("isatty True /dev/pts/"), "{py}");

    call_tool(&b, "process_kill", json!({ "id": b_job })).await;
    let _ = a.cancel().await;
    let _ = b.cancel().await;
}

/// Behind a proxy or a name, `--public-url` gives the URLs clients are
/// handed: `mcp_url` on it, exposed ports under its domain, and both lead
/// to the sandbox when that name leads to the control plane.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_handed_out_use_the_public_url() {
    let s = Server::start_with(Options {
        extra_args: vec!["--public-url".into(), "http://CP.example.test/".into()],
        ..Options::default()
    });
    if protections_or_refusal(&s, &["network"]).await.is_none() {
        return;
    }
    let (status, created) = s
        .post("/sandboxes/create", json!({ "user_id": "public" }))
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["sandbox_id"].as_str().unwrap();
    let mcp_url = created["mcp_url"].as_str().unwrap();
    assert_eq!(
        mcp_url,
        format!("http://cp.example.test/sandboxes/{id}/mcp")
    );

    // The names lead to the control plane here, as DNS would elsewhere.
    let api: std::net::SocketAddr = s.url.strip_prefix("http://").unwrap().parse().unwrap();
    let port_host = format!("8000-{id}.cp.example.test");
    let client = reqwest::Client::builder()
        .resolve("cp.example.test", api)
        .resolve(&port_host, api)
        .build()
        .unwrap();
    let init = client
        .post(mcp_url)
        .header(
            "authorization",
            created["mcp_headers"]["Authorization"].as_str().unwrap(),
        )
        .header("accept", "application/json, text/event-stream")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}}}),
        )
        .send()
        .await
        .unwrap();
    let status = init.status();
    let text = init.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"serverInfo\""), "{text}");

    let r = s
        .run(
            id,
            "cd /tmp && echo public-page > index.html && \
             (python3 -m http.server 8000 >/dev/null 2>&1 &) && \
             for i in $(seq 50); do python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 8000))' 2>/dev/null && break; sleep 0.1; done; echo up",
        )
        .await;
    assert_eq!(stdout(&r), "up\n", "{r}");
    let (status, exposed) = s
        .post(
            "/sandboxes/expose-port",
            json!({ "sandbox_id": id, "port": 8000 }),
        )
        .await;
    assert_eq!(status, 200, "{exposed}");
    assert_eq!(exposed["url"], format!("http://{port_host}"));
    let page = client
        .get(format!("http://{port_host}/index.html"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.text().await.unwrap(), "public-page\n");

    // A public URL that is not one stops the start, saying why.
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_control-plane"))
        .args([
            "serve",
            "--port",
            "0",
            "--public-url",
            "ftp://cp.example.test",
            "--data-dir",
        ])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("http or https"), "{err}");
}

/// True when a file system is mounted at `path` (from /proc/self/mountinfo).
fn mounted_at(path: &std::path::Path) -> bool {
    let want = path.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_quota_stops_writes_and_spares_the_host() {
    let mut s = Server::start();
    if protections_or_refusal(&s, &["quota"]).await.is_none() {
        return;
    }
    let (status, a) = s
        .post(
            "/sandboxes/create",
            json!({ "user_id": "filler", "disk_size_mb": 64 }),
        )
        .await;
    assert_eq!(status, 200, "{a}");
    let a = a["sandbox_id"].as_str().unwrap().to_string();
    let b = s.create("neighbour").await;
    let dir = s.data_dir().join("sandboxes").join(&a);
    let workspace = dir.join("workspace");
    assert!(mounted_at(&workspace), "no file system of its own");

    // 100 MiB into a 64 MiB quota: ENOSPC inside, bounded.
    s.run(&a, "echo kept > kept.txt").await;
    let r = s
        .run(
            &a,
            "dd if=/dev/zero of=big bs=1M count=100 2>&1; echo rc=$?",
        )
        .await;
    let out = stdout(&r);
    assert!(out.contains("No space left on device"), "{r}");
    assert!(!out.contains("rc=0"), "{r}");
    let (_, m) = s.get(&format!("/sandboxes/{a}/metrics")).await;
    assert_eq!(m["disk_total"], 64u64 << 20, "{m}");
    let used = m["disk_used"].as_u64().unwrap();
    assert!((32u64 << 20..=64 << 20).contains(&used), "{m}");
    // The host holds no more of it than the quota: the image, sparse.
    use std::os::unix::fs::MetadataExt;
    let image = std::fs::metadata(dir.join("disk.img")).unwrap();
    assert!(
        image.blocks() * 512 <= 64 << 20,
        "{} bytes",
        image.blocks() * 512
    );

    // The neighbour still writes; the filler does once it makes room.
    let r = s
        .run(&b, "head -c 1000000 /dev/zero > f && wc -c < f")
        .await;
    assert_eq!(stdout(&r), "1000000\n", "{r}");
    // Its quota is the default one (its image made ahead, as a spare).
    let (_, m) = s.get(&format!("/sandboxes/{b}/metrics")).await;
    assert_eq!(m["disk_total"], 10240u64 << 20, "{m}");
    assert!(mounted_at(
        &s.data_dir().join("sandboxes").join(&b).join("workspace")
    ));
    let r = s
        .run(&a, "rm big && echo again > again.txt && cat again.txt")
        .await;
    assert_eq!(stdout(&r), "again\n", "{r}");

    // Pause unmounts it; resume mounts it again with the files and the quota.
    let (status, _) = s.post(&format!("/sandboxes/{a}/pause"), json!({})).await;
    assert_eq!(status, 200);
    assert!(!mounted_at(&workspace), "still mounted while paused");
    let (status, e) = s.post(&format!("/sandboxes/{a}/resume"), json!({})).await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(s.run(&a, "cat kept.txt").await["stdout"], "kept\n");
    let r = s
        .run(
            &a,
            "dd if=/dev/zero of=big bs=1M count=100 2>&1; echo rc=$?",
        )
        .await;
    assert!(stdout(&r).contains("No space left on device"), "{r}");

    // A control plane killed and started again adopts it, mounted.
    s.kill_and_restart();
    assert!(mounted_at(&workspace));
    let (status, m) = s.get(&format!("/sandboxes/{a}/metrics")).await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["disk_total"], 64u64 << 20, "{m}");

    // Delete unmounts it and removes the image.
    let (status, _) = s.delete(&format!("/sandboxes/{a}")).await;
    assert_eq!(status, 200);
    assert!(!mounted_at(&workspace));
    assert!(!dir.exists());

    // A quota too small to hold a file system is refused.
    let (status, e) = s
        .post(
            "/sandboxes/create",
            json!({ "user_id": "tiny", "disk_size_mb": 1 }),
        )
        .await;
    assert_eq!(status, 400, "{e}");
}
