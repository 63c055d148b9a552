//! The HTTP surface: health, auth, Origin and Host checks, malformed
//! JSON-RPC, and many clients at once.

mod common;

use std::time::Duration;

use common::{Options, Server, call, ok};
use serde_json::{Value, json};

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

fn post(server: &Server, body: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(server.url())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_owned())
}

#[tokio::test]
async fn health_answers_without_auth() {
    let server = Server::with_token("s3cret");
    let resp = reqwest::get(format!("http://{}/health", server.addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn mcp_requires_the_bearer_token() {
    let server = Server::with_token("s3cret");
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer s3cret2"),
        Some("Basic s3cret"),
    ] {
        let mut req = post(&server, INITIALIZE);
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "auth {auth:?}");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    }
    let resp = post(&server, INITIALIZE)
        .header("authorization", "Bearer s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // And a real client with the token works end to end.
    let client = server.client().await;
    ok(&call(&client, "list_directory", json!({})).await);
}

#[tokio::test]
async fn token_file_is_reread_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    let server = Server::start_with(Options {
        token_file: Some(token_file.clone()),
        ..Options::default()
    });
    let status = |token: &'static str| {
        let req = post(&server, INITIALIZE).header("authorization", format!("Bearer {token}"));
        async move { req.send().await.unwrap().status().as_u16() }
    };
    // No file yet: nothing gets in.
    assert_eq!(status("first").await, 401);
    std::fs::write(&token_file, "first\n").unwrap();
    assert_eq!(status("first").await, 200);
    std::fs::write(&token_file, "second-token").unwrap();
    assert_eq!(status("first").await, 401);
    assert_eq!(status("second-token").await, 200);
}

#[tokio::test]
async fn foreign_origin_is_forbidden() {
    let server = Server::with_token("s3cret");
    let resp = post(&server, INITIALIZE)
        .header("authorization", "Bearer s3cret")
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    let open = Server::start();
    let resp = post(&open, INITIALIZE)
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    let allowed = Server::start_with(Options {
        extra_args: vec!["--allowed-origins".into(), "https://app.example:443".into()],
        ..Options::default()
    });
    let resp = post(&allowed, INITIALIZE)
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn sandbox_host_names_pass_with_a_token_and_not_without() {
    let server = Server::with_token("s3cret");
    let resp = post(&server, INITIALIZE)
        .header("authorization", "Bearer s3cret")
        .header("host", "6060-abc123.e2b.app")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let open = Server::start();
    let resp = post(&open, INITIALIZE)
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        403,
        "DNS rebinding guard off without a token"
    );
}

#[tokio::test]
async fn malformed_json_rpc_gets_an_error_and_the_server_keeps_serving() {
    let server = Server::start();
    for body in ["{not json", r#"{"jsonrpc":"2.0","id":1}"#, "[]", ""] {
        let resp = post(&server, body).send().await.unwrap();
        assert!(
            resp.status().is_client_error(),
            "{body:?} answered {}",
            resp.status()
        );
    }
    let resp = post(&server, "{not json").send().await.unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32700, "{body}");
    let resp = post(&server, r#"{"jsonrpc":"2.0","id":7}"#)
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32600, "{body}");
    assert_eq!(body["id"], 7, "{body}");
    let client = server.client().await;
    ok(&call(&client, "list_directory", json!({})).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_clients_making_fifty_calls_each() {
    let server = Server::with_token("s3cret");
    common::write(&server.path("hello.txt"), "hello\n");
    let server = std::sync::Arc::new(server);
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            let client = server.client().await;
            for i in 0..50 {
                let result = if i % 10 == 9 {
                    call(&client, "list_directory", json!({})).await
                } else {
                    call(&client, "read_file", json!({"path": "hello.txt"})).await
                };
                ok(&result);
            }
            client.cancel().await.ok();
        }));
    }
    let all = tokio::time::timeout(Duration::from_secs(120), futures_join(tasks)).await;
    assert!(all.is_ok(), "clients did not finish in time");
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        task.await.expect("client task failed");
    }
}
