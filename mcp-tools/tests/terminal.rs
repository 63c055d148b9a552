//! Background processes on a pseudo-terminal, through the real binary:
//! REPLs, prompts, keys, resizing, Ctrl-C, and the screen a person sees.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// Starts `command` on a terminal and returns its id and pid.
async fn start(client: &Client, command: &str, extra: Value) -> (String, i32) {
    let mut args = json!({"command": command, "background": true, "pty": true,
                          "env": {"PYTHONSTARTUP": ""}});
    for (k, v) in extra.as_object().unwrap() {
        args[k] = v.clone();
    }
    let out = ok(&call(client, "run_command", args).await);
    (
        out["id"].as_str().unwrap().to_owned(),
        out["pid"].as_i64().unwrap() as i32,
    )
}

/// Waits until the screen matches `regex`; panics with the screen if not.
async fn wait_screen(client: &Client, id: &str, regex: &str) -> Value {
    let result = call(
        client,
        "process_wait",
        json!({"id": id, "until_regex": regex, "screen": true, "timeout_ms": 20000}),
    )
    .await;
    let out = ok(&result);
    if out["reason"] != "matched" {
        let screen = call(client, "process_screen", json!({"id": id})).await;
        panic!("screen never matched {regex:?}: {}", text(&screen));
    }
    out
}

async fn screen(client: &Client, id: &str) -> Value {
    ok(&call(client, "process_screen", json!({"id": id})).await)
}

async fn input(client: &Client, id: &str, data: &str, keys: &[&str]) {
    ok(&call(
        client,
        "process_input",
        json!({"id": id, "data": data, "keys": keys}),
    )
    .await);
}

#[tokio::test]
async fn python_repl_answers_on_the_screen() {
    let server = Server::start();
    let client = server.client().await;
    let (id, _) = start(&client, "python3 -q -i", json!({})).await;
    wait_screen(&client, &id, "^>>>$").await;
    input(&client, &id, "1+1\n", &[]).await;
    wait_screen(&client, &id, r">>> 1\+1\n2\n>>>").await;
    // The raw stream ends lines with \r\n; `$` matches there too.
    let raw = ok(&call(
        &client,
        "process_wait",
        json!({"id": id, "until_regex": "^2$", "timeout_ms": 20000}),
    )
    .await);
    assert_eq!(raw["reason"], "matched", "{raw}");
    let out = screen(&client, &id).await;
    let rows: Vec<&str> = out["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    let at = rows
        .iter()
        .position(|r| *r == ">>> 1+1")
        .expect("the typed line");
    assert_eq!(rows[at + 1], "2", "{rows:?}");
    assert_eq!(out["cols"], 120);
    assert_eq!(out["height"], 40);
    assert_eq!(rows.len(), 40);
    // The cursor sits after the new prompt.
    assert_eq!(out["cursor_row"].as_u64(), Some(at as u64 + 3));
    assert_eq!(out["cursor_col"], 5);
    // The raw stream is still there, escapes and all, and can be stripped.
    let raw = ok(&call(
        &client,
        "process_output",
        json!({"id": id, "strip_ansi": true}),
    )
    .await);
    assert!(
        raw["output"].as_str().unwrap().contains(">>> 1+1\n2\n"),
        "{raw}"
    );
    input(&client, &id, "", &["C-d"]).await;
    let done = ok(&call(
        &client,
        "process_wait",
        json!({"id": id, "timeout_ms": 20000}),
    )
    .await);
    assert_eq!(done["reason"], "exited", "{done}");
}

#[tokio::test]
async fn a_read_prompt_is_answered_and_keys_are_not_text() {
    let server = Server::start();
    let client = server.client().await;
    let (id, _) = start(
        &client,
        r#"read -p "Name? " n; echo "Hello, $n"; sleep 30"#,
        json!({}),
    )
    .await;
    wait_screen(&client, &id, r"Name\?$").await;
    // A literal "<Enter>" in data is typed as text; the key ends the line.
    input(&client, &id, "Ada <Enter>", &["Enter"]).await;
    wait_screen(&client, &id, "Hello, Ada <Enter>").await;

    let msg = err(&call(
        &client,
        "process_input",
        json!({"id": id, "keys": ["Enterr"]}),
    )
    .await);
    assert!(
        msg.contains("unknown key") && msg.contains("Enterr"),
        "{msg}"
    );
    // Keys are for terminals; a plain background process refuses them.
    let plain = ok(&call(
        &client,
        "run_command",
        json!({"command": "cat", "background": true}),
    )
    .await);
    let msg = err(&call(
        &client,
        "process_input",
        json!({"id": plain["id"], "data": "x", "keys": ["Enter"]}),
    )
    .await);
    assert!(msg.contains("terminal"), "{msg}");
}

#[tokio::test]
async fn resizing_changes_what_programs_see() {
    let server = Server::start();
    let client = server.client().await;
    let (id, _) = start(
        &client,
        "bash --norc --noprofile -i",
        json!({"cols": 100, "rows": 30}),
    )
    .await;
    wait_screen(&client, &id, r"[$#]$").await;
    input(
        &client,
        &id,
        "echo cols=$(tput cols) lines=$(tput lines) term=$TERM\n",
        &[],
    )
    .await;
    wait_screen(&client, &id, "cols=100 lines=30 term=xterm-256color").await;
    let out = ok(&call(
        &client,
        "process_resize",
        json!({"id": id, "cols": 80, "rows": 24}),
    )
    .await);
    assert_eq!(
        (out["cols"].as_u64(), out["rows"].as_u64()),
        (Some(80), Some(24))
    );
    input(&client, &id, "echo now=$(tput cols)x$(tput lines)\n", &[]).await;
    wait_screen(&client, &id, "now=80x24").await;
    assert_eq!(screen(&client, &id).await["cols"], 80);

    let msg = err(&call(
        &client,
        "process_resize",
        json!({"id": id, "cols": 0, "rows": 24}),
    )
    .await);
    assert!(msg.contains("columns"), "{msg}");
    // Plain commands keep a dumb terminal.
    let plain = ok(&call(&client, "run_command", json!({"command": "echo $TERM"})).await);
    assert_eq!(plain["stdout"], "dumb\n");
}

/// Pids of `name` processes in session `sid`.
fn in_session(sid: i32, name: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some((head, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let comm = head.split_once('(').map_or("", |(_, c)| c);
            let fields: Vec<&str> = rest.split_whitespace().collect();
            comm == name && fields.get(3) == Some(&sid.to_string().as_str()) && fields[0] != "Z"
        })
        .collect()
}

#[tokio::test]
async fn ctrl_c_interrupts_the_foreground_command_of_an_interactive_shell() {
    let server = Server::start();
    let client = server.client().await;
    let (id, pid) = start(&client, "bash --norc --noprofile -i", json!({})).await;
    wait_screen(&client, &id, r"[$#]$").await;
    input(&client, &id, "sleep 100\n", &[]).await;
    assert!(
        eventually(Duration::from_secs(10), || !in_session(pid, "sleep")
            .is_empty()),
        "sleep did not start"
    );
    input(&client, &id, "", &["C-c"]).await;
    assert!(
        eventually(Duration::from_secs(10), || in_session(pid, "sleep")
            .is_empty()),
        "Ctrl-C did not stop sleep"
    );
    input(&client, &id, "echo alive-$((40+2))\n", &[]).await;
    wait_screen(&client, &id, "\nalive-42").await;

    // process_kill reaches every process of the terminal's session, even a
    // job the shell put in a process group of its own.
    input(&client, &id, "sleep 200 &\n", &[]).await;
    assert!(eventually(Duration::from_secs(10), || !in_session(
        pid, "sleep"
    )
    .is_empty()));
    ok(&call(&client, "process_kill", json!({"id": id, "signal": "KILL"})).await);
    assert!(
        eventually(Duration::from_secs(10), || in_session(pid, "sleep")
            .is_empty()),
        "the background job outlived process_kill"
    );
    let listed = ok(&call(&client, "process_list", json!({})).await);
    let me = listed["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap()
        .clone();
    assert_eq!(me["running"], false, "{me}");
}

#[tokio::test]
async fn pty_needs_background_and_screen_needs_a_terminal() {
    let server = Server::start();
    let client = server.client().await;
    let msg = err(&call(
        &client,
        "run_command",
        json!({"command": "true", "pty": true}),
    )
    .await);
    assert!(msg.contains("background"), "{msg}");
    let msg = err(&call(
        &client,
        "run_command",
        json!({"command": "true", "background": true, "pty": true, "cols": 5000}),
    )
    .await);
    assert!(msg.contains("columns"), "{msg}");
    let plain = ok(&call(
        &client,
        "run_command",
        json!({"command": "sleep 30", "background": true}),
    )
    .await);
    let msg = err(&call(&client, "process_screen", json!({"id": plain["id"]})).await);
    assert!(msg.contains("no terminal"), "{msg}");
    let msg = err(&call(
        &client,
        "process_wait",
        json!({"id": plain["id"], "until_regex": "x", "screen": true}),
    )
    .await);
    assert!(msg.contains("pty"), "{msg}");
}

#[tokio::test]
async fn shutdown_ends_terminal_sessions() {
    let mut server = Server::start();
    let client = server.client().await;
    let (id, pid) = start(&client, "bash --norc --noprofile -i", json!({})).await;
    wait_screen(&client, &id, r"[$#]$").await;
    input(&client, &id, "sleep 300 &\n", &[]).await;
    assert!(eventually(Duration::from_secs(10), || !in_session(
        pid, "sleep"
    )
    .is_empty()));
    drop(client);
    assert!(server.stop().success());
    assert!(
        eventually(Duration::from_secs(10), || in_session(pid, "sleep")
            .is_empty()),
        "a terminal's job outlived the server"
    );
}
