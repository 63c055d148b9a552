//! API keys, per-user visibility, and the error answers (400/401/403/404/409).

mod common;

use common::{KEY_ADMIN, KEY_ALICE, KEY_BOB, Options, Server, send};
use serde_json::{Value, json};

fn keyed() -> Server {
    Server::start_with(Options {
        api_keys: Some(format!("{KEY_ADMIN}, {KEY_ALICE}:alice,{KEY_BOB}:bob")),
        ..Options::default()
    })
}

async fn as_key(
    s: &Server,
    key: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = s
        .http
        .request(method, format!("{}{path}", s.url))
        .bearer_auth(key);
    if let Some(b) = body {
        r = r.json(&b);
    }
    send(r).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_guard_everything_but_health_and_bind_users() {
    let s = keyed();

    // Health and the API description stay open for probes.
    let (status, _) = send(s.http.get(format!("{}/health", s.url))).await;
    assert_eq!(status, 200);

    // No key, a wrong key, a wrong scheme: 401 with the JSON error body.
    let (status, body) = send(s.http.get(format!("{}/sandboxes", s.url))).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = as_key(&s, "not-a-key-at-all-nope", "GET", "/sandboxes", None).await;
    assert_eq!(status, 401);
    let (status, _) = send(
        s.http
            .get(format!("{}/sandboxes", s.url))
            .header("Authorization", format!("Basic {KEY_ADMIN}")),
    )
    .await;
    assert_eq!(status, 401);
    // X-API-Key works as well as Bearer.
    let (status, _) = send(
        s.http
            .get(format!("{}/sandboxes", s.url))
            .header("X-API-Key", KEY_ADMIN),
    )
    .await;
    assert_eq!(status, 200);

    // A key bound to alice creates for alice without saying so, not for bob.
    let (status, a) = as_key(&s, KEY_ALICE, "POST", "/sandboxes/create", Some(json!({}))).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["user_id"], "alice");
    let alice_id = a["sandbox_id"].as_str().unwrap().to_string();
    let (status, e) = as_key(
        &s,
        KEY_ALICE,
        "POST",
        "/sandboxes/create",
        Some(json!({ "user_id": "bob" })),
    )
    .await;
    assert_eq!(status, 403, "{e}");
    let bob_id = {
        let (status, b) = as_key(&s, KEY_BOB, "POST", "/sandboxes/create", Some(json!({}))).await;
        assert_eq!(status, 200, "{b}");
        b["sandbox_id"].as_str().unwrap().to_string()
    };

    // Bob cannot see or touch alice's sandbox: 404, as if it did not exist.
    for (method, path, body) in [
        ("GET", format!("/sandboxes/{alice_id}/status"), None),
        ("DELETE", format!("/sandboxes/{alice_id}"), None),
        (
            "POST",
            format!("/sandboxes/{alice_id}/pause"),
            Some(json!({})),
        ),
        (
            "POST",
            "/sandboxes/run-command".to_string(),
            Some(json!({ "sandbox_id": alice_id, "command": "true" })),
        ),
        (
            "POST",
            "/sandboxes/read-file".to_string(),
            Some(json!({ "sandbox_id": alice_id, "path": "x" })),
        ),
    ] {
        let (status, e) = as_key(&s, KEY_BOB, method, &path, body).await;
        assert_eq!(status, 404, "{method} {path}: {e}");
    }
    // Lists are filtered to the key's user, whatever the query asks.
    let (_, list) = as_key(&s, KEY_BOB, "GET", "/sandboxes", None).await;
    let ids: Vec<&str> = list["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["sandbox_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![bob_id.as_str()]);
    let (_, list) = as_key(&s, KEY_BOB, "GET", "/sandboxes?user_id=alice", None).await;
    assert_eq!(list["sandboxes"].as_array().unwrap().len(), 0);
    // The unbound key sees both.
    let (_, list) = as_key(&s, KEY_ADMIN, "GET", "/sandboxes", None).await;
    assert_eq!(list["sandboxes"].as_array().unwrap().len(), 2);

    // Alice's own key works on it.
    let (status, r) = as_key(
        &s,
        KEY_ALICE,
        "POST",
        "/sandboxes/run-command",
        Some(json!({ "sandbox_id": alice_id, "command": "echo mine" })),
    )
    .await;
    assert_eq!((status, r["stdout"].as_str()), (200, Some("mine\n")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_4xx_answers() {
    let s = Server::start();
    let id = s.create("carol").await;

    let cases: Vec<(&str, &str, Value, u16)> = vec![
        ("POST", "/sandboxes/create", json!({}), 400), // no user_id
        ("POST", "/sandboxes/create", json!({ "user_id": "" }), 400),
        (
            "POST",
            "/sandboxes/create",
            json!({ "user_id": "u", "timeout_secs": 0 }),
            400,
        ),
        (
            "POST",
            "/sandboxes/create",
            json!({ "user_id": "u", "timeout_secs": 999999999 }),
            400,
        ),
        ("POST", "/sandboxes/create", json!({ "user_id": 5 }), 400),
        (
            "POST",
            "/sandboxes/create",
            json!({ "user_id": "u", "template_id": "nope" }),
            400,
        ),
        (
            "POST",
            "/sandboxes/run-command",
            json!({ "sandbox_id": id }),
            400,
        ), // no command
        (
            "POST",
            "/sandboxes/run-command",
            json!({ "sandbox_id": id, "command": "  " }),
            400,
        ),
        (
            "POST",
            "/sandboxes/run-command",
            json!({ "sandbox_id": "sb-nope", "command": "true" }),
            404,
        ),
        (
            "POST",
            "/sandboxes/write-file",
            json!({ "sandbox_id": id, "path": "a" }),
            400,
        ), // no content
        (
            "POST",
            "/sandboxes/read-file",
            json!({ "sandbox_id": id, "path": "missing.txt" }),
            400,
        ),
        (
            "POST",
            "/sandboxes/read-file",
            json!({ "sandbox_id": id, "path": "../../etc/passwd" }),
            400,
        ),
        (
            "POST",
            "/sandboxes/expose-port",
            json!({ "sandbox_id": id, "port": 0 }),
            400,
        ),
        (
            "POST",
            "/sandboxes/expose-port",
            json!({ "sandbox_id": id, "port": 70000 }),
            400,
        ),
        (
            "POST",
            "/sandboxes/connect",
            json!({ "sandbox_id": "sb-nope" }),
            404,
        ),
        ("GET", "/sandboxes?limit=0", Value::Null, 400),
        ("GET", "/sandboxes?cursor=garbage", Value::Null, 400),
        ("GET", "/sandboxes?bogus=1", Value::Null, 400),
        ("GET", "/sandboxes/sb-nope/status", Value::Null, 404),
        ("DELETE", "/sandboxes/sb-nope", Value::Null, 404),
        ("POST", "/sandboxes/sb-nope/resume", json!({}), 404),
        ("GET", "/no/such/endpoint", Value::Null, 404),
    ];
    for (method, path, body, want) in cases {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut r = s.http.request(m, format!("{}{path}", s.url));
        if !body.is_null() {
            r = r.json(&body);
        }
        let (status, e) = send(r).await;
        assert_eq!(status, want, "{method} {path} {body}: {e}");
        assert!(
            e["error"]["code"].is_string() && e["error"]["message"].is_string(),
            "{method} {path}: error body missing: {e}"
        );
    }

    // A body that is not JSON at all.
    let (status, e) = send(
        s.http
            .post(format!("{}/sandboxes/create", s.url))
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );

    // A tool failure is a 400 with the tool's own message.
    let (_, e) = s
        .post(
            "/sandboxes/read-file",
            json!({ "sandbox_id": id, "path": "missing.txt" }),
        )
        .await;
    assert_eq!(e["error"]["code"], "tool_error");

    // Everything above left the sandbox working.
    assert_eq!(s.run(&id, "echo fine").await["stdout"], "fine\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_by_metadata_and_pages() {
    let s = Server::start();
    for i in 0..5 {
        let team = if i % 2 == 0 { "red" } else { "blue" };
        let (status, b) = s
            .post(
                "/sandboxes/create",
                json!({ "user_id": format!("u{}", i % 2), "metadata": { "team": team, "n": i.to_string() } }),
            )
            .await;
        assert_eq!(status, 200, "{b}");
    }
    let (_, red) = s.get("/sandboxes?metadata.team=red").await;
    assert_eq!(red["sandboxes"].as_array().unwrap().len(), 3);
    let (_, one) = s.get("/sandboxes?metadata.team=red&metadata.n=2").await;
    assert_eq!(one["sandboxes"].as_array().unwrap().len(), 1);
    assert_eq!(one["sandboxes"][0]["metadata"]["n"], "2");
    let (_, u1) = s.get("/sandboxes?user_id=u1").await;
    assert_eq!(u1["sandboxes"].as_array().unwrap().len(), 2);

    // Pages of 2 cover all 5 exactly once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/sandboxes?limit=2&cursor={c}"),
            None => "/sandboxes?limit=2".to_string(),
        };
        let (status, page) = s.get(&path).await;
        assert_eq!(status, 200, "{page}");
        for sb in page["sandboxes"].as_array().unwrap() {
            seen.push(sb["sandbox_id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (5, 5), "{seen:?}");
}

#[test]
fn refuses_a_public_address_without_api_keys() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_control-plane"))
        .args(["serve", "--host", "0.0.0.0", "--port", "0", "--data-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .env_remove("CONTROL_PLANE_API_KEYS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without API keys"), "{err}");
}

#[test]
fn api_keys_never_reach_the_log() {
    let data = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_control-plane"))
        .args(["serve", "--port", "0", "--log-level", "debug", "--data-dir"])
        .arg(data.path().join("d"))
        .arg("--addr-file")
        .arg(data.path().join("addr"))
        .arg("--mcp-tools-bin")
        .arg(common::mcp_tools_bin())
        .env("CONTROL_PLANE_API_KEYS", format!("{KEY_ALICE}:alice"))
        .env("CONTROL_PLANE_DEFAULT_TEMPLATE", "none")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !data.path().join("addr").exists() && start.elapsed().as_secs() < 20 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let addr = std::fs::read_to_string(data.path().join("addr")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let r = http
            .post(format!("http://{addr}/sandboxes/create"))
            .bearer_auth(KEY_ALICE)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        let id = body["sandbox_id"].as_str().unwrap().to_string();
        let r = http
            .delete(format!("http://{addr}/sandboxes/{id}"))
            .bearer_auth(KEY_ALICE)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    });
    // SAFETY: kill(2) with a pid this test started or found; no memory is involved.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("created"), "expected a debug log: {log}");
    assert!(!log.contains(KEY_ALICE), "an API key leaked into the log");
    assert!(!log.contains("Bearer "), "a token leaked into the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_control_plane_on_the_same_data_folder_refuses_to_start() {
    let s = Server::start();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_control-plane"))
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(s.data_dir())
        .arg("--mcp-tools-bin")
        .arg(common::mcp_tools_bin())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already using"), "{err}");
    // The first one is unaffected.
    assert_eq!(s.get("/health").await.0, 200);
}
