//! Commands leave nothing behind unseen: what a foreground `cmd &` leaves
//! running is tracked as a job, listed, killable and ended at shutdown; and
//! commands without a terminal are told not to print colour.

mod common;

use std::time::Duration;

use common::{Server, alive, call, eventually, ok, text};
use serde_json::json;

/// Starts `sleep` in the background of a foreground command; returns the
/// result's job id and the sleep's pid.
async fn leave_a_sleeper(client: &common::Client) -> (String, i32) {
    let result = call(
        client,
        "run_command",
        json!({"command": "sleep 300 & echo $!"}),
    )
    .await;
    let out = ok(&result);
    let pid: i32 = out["stdout"].as_str().unwrap().trim().parse().unwrap();
    let id = out["id"]
        .as_str()
        .expect("a job id for what was left")
        .to_owned();
    let shown = text(&result);
    assert!(
        shown.contains(&format!("tracked as {id}")),
        "the result names the job: {shown}"
    );
    assert!(alive(pid));
    (id, pid)
}

#[tokio::test]
async fn leftovers_are_listed_and_killable() {
    let server = Server::start();
    let client = server.client().await;
    let (id, pid) = leave_a_sleeper(&client).await;

    let out = ok(&call(&client, "process_list", json!({})).await);
    let listed = out["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id.as_str())
        .cloned()
        .expect("process_list shows the leftover");
    assert_eq!(listed["running"], true);
    assert_eq!(listed["command"], "sleep 300 & echo $!");

    ok(&call(&client, "process_kill", json!({"id": id})).await);
    assert!(
        eventually(Duration::from_secs(10), || !alive(pid)),
        "process_kill did not reach the leftover"
    );
    let result = call(
        &client,
        "process_wait",
        json!({"id": id, "timeout_ms": 10_000}),
    )
    .await;
    assert_eq!(ok(&result)["running"], false, "{}", text(&result));
}

/// Output printed by a leftover after the command returned is kept in its job.
#[tokio::test]
async fn leftover_output_reaches_its_job() {
    let server = Server::start();
    let client = server.client().await;
    let out = ok(&call(
        &client,
        "run_command",
        json!({"command": "(sleep 2; echo late-line; sleep 300) & echo early"}),
    )
    .await);
    assert_eq!(out["stdout"], "early\n");
    let id = out["id"].as_str().unwrap().to_owned();
    let result = call(
        &client,
        "process_wait",
        json!({"id": id, "until_regex": "late-line", "timeout_ms": 20_000}),
    )
    .await;
    assert_eq!(ok(&result)["reason"], "matched", "{}", text(&result));
    ok(&call(&client, "process_kill", json!({"id": id, "signal": "KILL"})).await);
}

#[tokio::test]
async fn leftovers_end_with_the_server() {
    let mut server = Server::start();
    let client = server.client().await;
    let (_id, pid) = leave_a_sleeper(&client).await;
    drop(client);
    server.stop();
    assert!(
        eventually(Duration::from_secs(10), || !alive(pid)),
        "the leftover outlived the server's SIGTERM"
    );
}

/// A command that leaves nothing running gets no job.
#[tokio::test]
async fn a_clean_command_gets_no_job() {
    let server = Server::start();
    let client = server.client().await;
    let out = ok(&call(&client, "run_command", json!({"command": "echo hi"})).await);
    assert!(out.get("id").is_none(), "{out}");
    let out = ok(&call(&client, "process_list", json!({})).await);
    assert_eq!(out["processes"], json!([]));
}

#[tokio::test]
async fn commands_without_a_terminal_get_no_colour() {
    let server = Server::start();
    let client = server.client().await;
    let command = json!({"command": "echo \"$NO_COLOR $TERM\""});
    let out = ok(&call(&client, "run_command", command).await);
    assert_eq!(out["stdout"], "1 dumb\n");
    let out = ok(&call(
        &client,
        "run_command",
        json!({"command": "echo \"$NO_COLOR $TERM\"", "env": {"TERM": "xterm-256color"}}),
    )
    .await);
    assert_eq!(out["stdout"], "1 xterm-256color\n");
    let out = ok(&call(
        &client,
        "run_command",
        json!({"command": "echo \"$NO_COLOR $TERM\"", "background": true}),
    )
    .await);
    let id = out["id"].as_str().unwrap();
    let out = ok(&call(&client, "process_wait", json!({"id": id})).await);
    assert_eq!(out["tail"], "1 dumb");
}
