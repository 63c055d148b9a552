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
    // No bearer token: the scheme is named. A wrong one: the token is
    // invalid (RFC 6750 §3.1), so clients do not start an OAuth flow.
    let invalid = r#"Bearer error="invalid_token", error_description="the token is not valid for this server""#;
    for (auth, challenge) in [
        (None, "Bearer"),
        (Some("Basic s3cret"), "Bearer"),
        (Some("Bearer wrong"), invalid),
        (Some("Bearer s3cret2"), invalid),
    ] {
        let mut req = post(&server, INITIALIZE);
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "auth {auth:?}");
        assert_eq!(
            resp.headers()["www-authenticate"],
            challenge,
            "auth {auth:?}"
        );
    }
    // OAuth discovery finds nothing to discover.
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let resp = reqwest::Client::new()
            .get(format!("http://{}{path}", server.addr))
            .header("authorization", "Bearer wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 404, "{path}");
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
    // A token of the same length, written in place at once: same size,
    // same inode, and possibly the same modification time.
    std::fs::write(&token_file, "second-TOKEN").unwrap();
    assert_eq!(status("second-token").await, 401);
    assert_eq!(status("second-TOKEN").await, 200);
    // Replaced by rename (a new inode), as a careful writer does.
    std::fs::write(dir.path().join("next"), "third-token!").unwrap();
    std::fs::rename(dir.path().join("next"), &token_file).unwrap();
    assert_eq!(status("second-TOKEN").await, 401);
    assert_eq!(status("third-token!").await, 200);
    // Emptied: nothing gets in, not even with an empty token.
    std::fs::write(&token_file, "").unwrap();
    assert_eq!(status("third-token!").await, 401);
    assert_eq!(status("").await, 401);
    // Back, then deleted: nothing gets in.
    std::fs::write(&token_file, "fourth").unwrap();
    assert_eq!(status("fourth").await, 200);
    std::fs::remove_file(&token_file).unwrap();
    assert_eq!(status("fourth").await, 401);
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

/// A page served from the server's own loopback origin may call it (the
/// conformance suite's dns-rebinding-protection scenario); a DNS-rebinding
/// page never has that origin.
#[tokio::test]
async fn own_loopback_origin_is_accepted() {
    let server = Server::start();
    let port = server.addr.rsplit(':').next().unwrap();
    for host in ["127.0.0.1", "localhost"] {
        let resp = post(&server, INITIALIZE)
            .header("host", format!("{host}:{port}"))
            .header("origin", format!("http://{host}:{port}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{host}");
    }
    let resp = post(&server, INITIALIZE)
        .header("host", "evil.example.com")
        .header("origin", "http://evil.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

/// Ending a session answers 204 (the Python SDK logs "Session termination
/// failed: 202" otherwise), and the session is gone.
#[tokio::test]
async fn session_delete_answers_no_content() {
    let server = Server::start();
    let resp = post(&server, INITIALIZE).send().await.unwrap();
    let session = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    resp.bytes().await.unwrap();
    let delete = || {
        reqwest::Client::new()
            .delete(server.url())
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-06-18")
            .send()
    };
    let resp = delete().await.unwrap();
    assert_eq!(resp.status(), 204);
    assert!(resp.bytes().await.unwrap().is_empty());
    let again = post(
        &server,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}"#,
    )
    .header("mcp-session-id", &session)
    .header("mcp-protocol-version", "2025-06-18")
    .send()
    .await
    .unwrap();
    assert_eq!(again.status(), 404, "the session still answers");
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

/// --allowed-hosts adds names to the Host check: without a token they pass
/// beside the loopback names; with a token they replace "any host".
#[tokio::test]
async fn allowed_hosts_are_the_only_foreign_host_names_accepted() {
    let host = |server: &Server, host: &'static str, token: Option<&'static str>| {
        let mut req = post(server, INITIALIZE).header("host", host);
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let open = Server::start_with(Options {
        extra_args: vec!["--allowed-hosts".into(), "sandbox.test,other.test".into()],
        ..Options::default()
    });
    assert_eq!(host(&open, "sandbox.test", None).await, 200);
    assert_eq!(host(&open, "other.test:6060", None).await, 200);
    assert_eq!(host(&open, "localhost", None).await, 200);
    assert_eq!(host(&open, "attacker.test", None).await, 403);

    let guarded = Server::start_with(Options {
        token: Some("s3cret".into()),
        extra_args: vec!["--allowed-hosts".into(), "sandbox.test".into()],
        ..Options::default()
    });
    assert_eq!(host(&guarded, "sandbox.test", Some("s3cret")).await, 200);
    assert_eq!(host(&guarded, "attacker.test", Some("s3cret")).await, 403);
}

/// A POST body over 4 MiB is refused with 413 and a JSON-RPC error before
/// it is parsed; one just under the limit goes through, and the server
/// keeps serving.
#[tokio::test]
async fn request_bodies_over_four_mib_are_refused_with_413() {
    const LIMIT: usize = 4 * 1024 * 1024;
    let server = Server::start();
    let client = server.client().await;
    let call_with = |content: String| {
        json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
            "params": {"name": "write_file",
                "arguments": {"path": "big.txt", "content": content}}})
        .to_string()
    };
    let overhead = call_with(String::new()).len();

    let over = call_with("x".repeat(LIMIT + 1 - overhead));
    assert_eq!(over.len(), LIMIT + 1);
    let resp = post(&server, &over).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32600, "{body}");
    assert!(!server.path("big.txt").exists());

    // At the limit: through the client's own session, so it reaches the tool.
    let content = "y".repeat(LIMIT - overhead - 200);
    let out = ok(&call(
        &client,
        "write_file",
        json!({"path": "big.txt", "content": content}),
    )
    .await);
    assert_eq!(out["bytes_written"], content.len());
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

/// With --unix-socket the server listens on a socket only its own user may
/// connect to (a supervisor forwards to it), and a real MCP client works
/// through it.
#[tokio::test]
async fn a_unix_socket_serves_mcp_to_its_owner_only() {
    use rmcp::ServiceExt;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    use std::os::unix::fs::PermissionsExt;

    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("mcp.sock");
    let server = Server::start_with(Options {
        token: Some("s3cret".into()),
        extra_args: vec!["--unix-socket".into(), socket.display().to_string()],
        ..Options::default()
    });
    assert_eq!(server.addr, socket.display().to_string());
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the socket is open to others");

    let http = reqwest::Client::builder()
        .unix_socket(socket.clone())
        .build()
        .unwrap();
    let resp = http.get("http://sandbox/health").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = http
        .post("http://sandbox/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(INITIALIZE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "the token is still required");

    let config = StreamableHttpClientTransportConfig::with_uri("http://sandbox/mcp")
        .auth_header("s3cret".to_string());
    let client =
        ().serve(StreamableHttpClientTransport::with_client(http, config))
            .await
            .expect("MCP client over the socket");
    ok(&call(&client, "list_directory", json!({})).await);
}
