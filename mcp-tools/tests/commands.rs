//! run_command through MCP: results, timeouts, output caps, background jobs,
//! and process hygiene.

mod common;

use std::time::{Duration, Instant};

use common::{Server, alive, call, err, eventually, ok, text};
use serde_json::json;

#[tokio::test]
async fn foreground_command_reports_exit_code_stdout_and_stderr() {
    let server = Server::start();
    let client = server.client().await;

    let result = call(
        &client,
        "run_command",
        json!({"command": "echo out; echo err >&2; exit 3"}),
    )
    .await;
    // A failing command is a normal result, not a tool error.
    let out = ok(&result);
    assert_eq!(out["exit_code"], 3);
    assert_eq!(out["stdout"], "out\n");
    assert_eq!(out["stderr"], "err\n");
    assert_eq!(out["timed_out"], false);
    let shown = text(&result);
    assert!(
        shown.contains("out\n[stderr]\nerr\n[exit code 3"),
        "{shown}"
    );

    // It runs in the workspace, with stdin empty, with extra env and cwd.
    std::fs::create_dir(server.path("sub")).unwrap();
    let out = ok(&call(
        &client,
        "run_command",
        json!({"command": "pwd; cat; echo \"$GREETING\"", "cwd": "sub", "env": {"GREETING": "hi"}}),
    )
    .await);
    let expected = format!(
        "{}\nhi\n",
        server.path("sub").canonicalize().unwrap().display()
    );
    assert_eq!(out["stdout"], expected);

    let out = ok(&call(&client, "run_command", json!({"command": "kill -9 $$"})).await);
    assert_eq!(out["signal"], 9);

    let msg = err(&call(
        &client,
        "run_command",
        json!({"command": "true", "cwd": "../.."}),
    )
    .await);
    assert!(msg.contains("outside the workspace"), "{msg}");
    let msg = err(&call(
        &client,
        "run_command",
        json!({"command": "true", "timeout_ms": 600001}),
    )
    .await);
    assert!(msg.contains("timeout_ms"), "{msg}");
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let server = Server::start();
    let client = server.client().await;
    let started = Instant::now();
    let result = call(
        &client,
        "run_command",
        json!({"command": "sh -c 'sleep 300 & echo $! > grandchild.pid; sleep 300'", "timeout_ms": 1000}),
    )
    .await;
    let out = ok(&result);
    assert_eq!(out["timed_out"], true);
    assert!(text(&result).contains("timed out after 1000 ms"));
    assert!(started.elapsed() < Duration::from_secs(10));
    let pid: i32 = std::fs::read_to_string(server.path("grandchild.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || !alive(pid)),
        "grandchild {pid} survived the timeout"
    );
}

#[tokio::test]
async fn huge_output_keeps_head_and_tail() {
    let server = Server::start();
    let client = server.client().await;
    let result = call(
        &client,
        "run_command",
        json!({"command": "echo START; head -c 5000000 /dev/zero | tr '\\0' x; echo; echo END"}),
    )
    .await;
    let out = ok(&result);
    let stdout = out["stdout"].as_str().unwrap();
    assert!(stdout.starts_with("START\n"));
    assert!(stdout.ends_with("\nEND\n"));
    assert!(
        stdout.len() < 31_000,
        "stdout not capped: {} bytes",
        stdout.len()
    );
    assert!(stdout.contains("bytes cut from the middle"));
    let cut = out["output_cut_bytes"].as_u64().unwrap();
    assert_eq!(cut, 5_000_000 + 11 - 30_000);
    assert!(text(&result).len() < 32_000);
}

#[tokio::test]
async fn background_command_outlives_its_call_and_dies_with_the_server() {
    let mut server = Server::start();
    let client = server.client().await;
    let started = Instant::now();
    let out = ok(&call(
        &client,
        "run_command",
        json!({"command": "echo started; sleep 300", "background": true}),
    )
    .await);
    assert!(started.elapsed() < Duration::from_secs(5));
    let pid = out["pid"].as_i64().unwrap() as i32;
    assert!(out["id"].as_str().unwrap().starts_with('p'));
    let log = std::path::PathBuf::from(out["log_path"].as_str().unwrap());
    assert!(
        log.starts_with(&server.state_dir),
        "log outside the state folder: {log:?}"
    );
    assert!(!log.starts_with(&server.workspace));

    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(pid), "background process died with its call");
    assert!(eventually(Duration::from_secs(5), || {
        std::fs::read_to_string(&log).is_ok_and(|s| s.contains("started"))
    }));

    drop(client);
    let status = server.stop();
    assert!(status.success(), "server exit: {status:?}");
    assert!(
        eventually(Duration::from_secs(5), || !alive(pid)),
        "background process survived the server's shutdown"
    );
}

/// Children of the server that have exited must be reaped.
#[tokio::test]
async fn commands_leave_no_zombies() {
    let server = Server::start();
    let client = server.client().await;
    for _ in 0..5 {
        ok(&call(&client, "run_command", json!({"command": "true"})).await);
        ok(&call(
            &client,
            "run_command",
            json!({"command": "true", "background": true}),
        )
        .await);
    }
    let server_pid = server.child.id() as i32;
    let zombies = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
            .filter(|stat| {
                let after = stat.rsplit(')').next().unwrap_or("");
                let mut fields = after.split_whitespace();
                let state = fields.next();
                let ppid: i32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                ppid == server_pid && state == Some("Z")
            })
            .count()
    };
    assert!(
        eventually(Duration::from_secs(5), || zombies() == 0),
        "{} zombie children of the server",
        zombies()
    );
}

/// A token given in the environment guards the server but is not handed
/// to the commands it runs.
#[tokio::test]
async fn commands_do_not_see_the_servers_token() {
    let mut server = Server::start_with(common::Options {
        env: vec![("MCP_AUTH_TOKEN", "env-secret-token")],
        ..common::Options::default()
    });
    server.token = Some("env-secret-token".to_owned());
    let client = server.client().await;
    let out = ok(&call(
        &client,
        "run_command",
        json!({"command": "echo ${MCP_AUTH_TOKEN:-unset}"}),
    )
    .await);
    assert_eq!(out["stdout"], "unset\n");
    let out = ok(&call(
        &client,
        "run_command",
        json!({"command": "env", "background": true}),
    )
    .await);
    let id = out["id"].as_str().unwrap();
    ok(&call(
        &client,
        "process_wait",
        json!({"id": id, "timeout_ms": 10000}),
    )
    .await);
    let env = ok(&call(&client, "process_output", json!({"id": id})).await);
    assert!(!env["output"].as_str().unwrap().contains("env-secret-token"));
}
