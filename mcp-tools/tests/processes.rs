//! Background processes through MCP: output paging, waiting, stdin, kill,
//! list, memory caps and cancellation.

mod common;

use std::time::{Duration, Instant};

use common::{Options, RawSession, Server, alive, call, err, eventually, ok, text};
use serde_json::json;

async fn start(client: &common::Client, command: &str) -> (String, i32) {
    let out = ok(&call(
        client,
        "run_command",
        json!({"command": command, "background": true}),
    )
    .await);
    (
        out["id"].as_str().unwrap().to_owned(),
        out["pid"].as_i64().unwrap() as i32,
    )
}

#[tokio::test]
async fn output_pages_from_an_offset_and_reports_exit() {
    let server = Server::start();
    let client = server.client().await;
    let (id, _) = start(
        &client,
        "printf 'one\\ntwo\\n'; sleep 0.3; echo three >&2; exit 4",
    )
    .await;

    let out = ok(&call(
        &client,
        "process_wait",
        json!({"id": id, "timeout_ms": 10000}),
    )
    .await);
    assert_eq!(out["reason"], "exited");
    assert_eq!(out["exit_code"], 4);

    let first = ok(&call(&client, "process_output", json!({"id": id, "max_chars": 4})).await);
    assert_eq!(first["output"], "one\n");
    assert_eq!(first["more"], true);
    let rest = ok(&call(
        &client,
        "process_output",
        json!({"id": id, "since": first["next_offset"]}),
    )
    .await);
    assert_eq!(rest["output"], "two\nthree\n");
    assert_eq!(rest["running"], false);
    let none = ok(&call(
        &client,
        "process_output",
        json!({"id": id, "since": rest["next_offset"]}),
    )
    .await);
    assert_eq!(none["output"], "");
}

#[tokio::test]
async fn output_waits_for_something_new() {
    let server = Server::start();
    let client = server.client().await;
    let (id, _) = start(&client, "sleep 0.5; echo late; sleep 30").await;
    let started = Instant::now();
    let out = ok(&call(
        &client,
        "process_output",
        json!({"id": id, "wait_ms": 10000}),
    )
    .await);
    assert_eq!(out["output"], "late\n");
    assert_eq!(out["running"], true);
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[tokio::test]
async fn wait_until_regex_then_kill_the_group() {
    let server = Server::start();
    let client = server.client().await;
    let (id, pid) = start(
        &client,
        "sh -c 'sleep 300' & echo $! > child.pid; sleep 0.3; echo 'Listening on port 8080'; sleep 300",
    )
    .await;
    let out = ok(&call(
        &client,
        "process_wait",
        json!({"id": id, "until_regex": "Listening on port \\d+", "timeout_ms": 20000}),
    )
    .await);
    assert_eq!(out["reason"], "matched");
    assert_eq!(out["matched"], "Listening on port 8080");
    assert_eq!(out["running"], true);

    let out = ok(&call(
        &client,
        "process_wait",
        json!({"id": id, "until_regex": "never", "timeout_ms": 300}),
    )
    .await);
    assert_eq!(out["reason"], "timeout");

    let child: i32 = std::fs::read_to_string(server.path("child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let out = ok(&call(&client, "process_kill", json!({"id": id})).await);
    assert!(eventually(Duration::from_secs(5), || !alive(pid) && !alive(child)));
    let status = if out["running"] == false {
        out
    } else {
        ok(&call(
            &client,
            "process_wait",
            json!({"id": id, "timeout_ms": 5000}),
        )
        .await)
    };
    assert_eq!(status["signal"], 15);

    let msg = err(&call(
        &client,
        "process_kill",
        json!({"id": id, "signal": "BOGUS"}),
    )
    .await);
    assert!(msg.contains("unknown signal"), "{msg}");
}

#[tokio::test]
async fn stdin_round_trip() {
    let server = Server::start();
    let client = server.client().await;
    let (id, _) = start(
        &client,
        "while read line; do echo \"got:$line\"; done; echo eof",
    )
    .await;
    ok(&call(
        &client,
        "process_input",
        json!({"id": id, "data": "hello\n"}),
    )
    .await);
    let out = ok(&call(
        &client,
        "process_wait",
        json!({"id": id, "until_regex": "got:hello", "timeout_ms": 10000}),
    )
    .await);
    assert_eq!(out["reason"], "matched");

    ok(&call(
        &client,
        "process_input",
        json!({"id": id, "data": "bye\n", "close_stdin": true}),
    )
    .await);
    let out = ok(&call(
        &client,
        "process_wait",
        json!({"id": id, "timeout_ms": 10000}),
    )
    .await);
    assert_eq!(out["reason"], "exited");
    assert_eq!(out["exit_code"], 0);
    let all = ok(&call(&client, "process_output", json!({"id": id})).await);
    assert_eq!(all["output"], "got:hello\ngot:bye\neof\n");

    let msg = err(&call(
        &client,
        "process_input",
        json!({"id": id, "data": "late\n"}),
    )
    .await);
    assert!(msg.contains("exited"), "{msg}");
}

#[tokio::test]
async fn list_and_unknown_ids() {
    let server = Server::start();
    let client = server.client().await;
    let (a, _) = start(&client, "sleep 30").await;
    let (b, _) = start(&client, "true").await;
    ok(&call(
        &client,
        "process_wait",
        json!({"id": b, "timeout_ms": 10000}),
    )
    .await);
    let result = call(&client, "process_list", json!({})).await;
    let out = ok(&result);
    let procs = out["processes"].as_array().unwrap();
    let find = |id: &str| procs.iter().find(|p| p["id"] == id).cloned().unwrap();
    assert_eq!(find(&a)["running"], true);
    assert_eq!(find(&b)["running"], false);
    assert_eq!(find(&b)["exit_code"], 0);
    assert!(text(&result).contains("sleep 30"));

    for tool in [
        "process_output",
        "process_wait",
        "process_input",
        "process_kill",
    ] {
        let msg = err(&call(&client, tool, json!({"id": "p999"})).await);
        assert!(msg.contains("no process"), "{tool}: {msg}");
    }
}

/// A process that prints far more than the in-memory buffer keeps: memory
/// stays capped, the newest output is kept, the log file has it all.
#[tokio::test]
async fn endless_output_is_capped_in_memory() {
    let server = Server::start();
    let client = server.client().await;
    let (id, _) = start(
        &client,
        "head -c 5000000 /dev/zero | tr '\\0' 'z'; echo; echo END",
    )
    .await;
    ok(&call(
        &client,
        "process_wait",
        json!({"id": id, "timeout_ms": 20000}),
    )
    .await);
    let out = ok(&call(
        &client,
        "process_output",
        json!({"id": id, "since": 0, "max_chars": 100}),
    )
    .await);
    assert!(out["dropped"].as_u64().unwrap() > 3_000_000, "{out}");
    assert_eq!(out["output_bytes"], 5_000_005);
    let tail = ok(&call(
        &client,
        "process_output",
        json!({"id": id, "since": 5_000_000}),
    )
    .await);
    assert_eq!(tail["output"], "\nEND\n");
    let log = std::fs::metadata(out["log_path"].as_str().unwrap()).unwrap();
    assert_eq!(log.len(), 5_000_005);
}

/// A cancelled process_wait stops waiting at once instead of running to
/// its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_wait_stops() {
    let server = Server::start_with(Options {
        log_level: Some("info"),
        ..Options::default()
    });
    let raw = std::sync::Arc::new(RawSession::open(&server).await);
    let started = raw
        .call(
            1,
            "run_command",
            json!({"command": "sleep 300", "background": true}),
        )
        .await;
    assert!(started.contains("\"p1\""), "{started}");
    let waiting = {
        let raw = raw.clone();
        tokio::spawn(async move {
            raw.call(
                2,
                "process_wait",
                json!({"id": "p1", "until_regex": "never", "timeout_ms": 120000}),
            )
            .await
        })
    };
    let ended = || {
        server
            .logs()
            .lines()
            .any(|l| l.contains("tool=process_wait") && l.contains("tool call"))
    };
    // A cancel that arrives before the server has registered the request is
    // ignored, as the protocol allows, so cancel again until the wait ends:
    // this waits on the event, not on a guess of how long registering takes.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        raw.cancel(2).await;
        if eventually(Duration::from_millis(200), ended) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cancelled wait did not end; logs:\n{}",
            server.logs()
        );
    }
    waiting.abort();
}

/// A cancelled foreground command has its process group killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_foreground_command_is_killed() {
    let server = Server::start();
    let raw = std::sync::Arc::new(RawSession::open(&server).await);
    let running = {
        let raw = raw.clone();
        tokio::spawn(async move {
            raw.call(
                5,
                "run_command",
                json!({"command": "echo $$ > shell.pid; sleep 300"}),
            )
            .await
        })
    };
    let pid_file = server.path("shell.pid");
    assert!(eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n'))
    }));
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(pid));
    raw.cancel(5).await;
    assert!(
        eventually(Duration::from_secs(10), || !alive(pid)),
        "cancelled command still runs"
    );
    running.abort();
}

/// What a job's shell left running in its group can still be killed after
/// the shell itself has exited.
#[tokio::test]
async fn kill_reaches_what_an_exited_job_left_behind() {
    let server = Server::start();
    let client = server.client().await;
    let (id, _) = start(&client, "sleep 300 & echo $! > left.pid").await;
    let out = ok(&call(
        &client,
        "process_wait",
        json!({"id": id, "timeout_ms": 10000}),
    )
    .await);
    assert_eq!(out["reason"], "exited");
    let left: i32 = std::fs::read_to_string(server.path("left.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(left));
    ok(&call(&client, "process_kill", json!({"id": id, "signal": "KILL"})).await);
    assert!(
        eventually(Duration::from_secs(5), || !alive(left)),
        "left-behind process survived"
    );
    // Once it is reaped, the group is empty.
    let proc_dir = format!("/proc/{left}");
    assert!(eventually(Duration::from_secs(10), || {
        !std::path::Path::new(&proc_dir).exists()
    }));
    let result = call(&client, "process_kill", json!({"id": id})).await;
    assert!(
        text(&result).contains("no processes left"),
        "{}",
        text(&result)
    );
}

/// A process that never reads its stdin cannot make process_input hang.
#[tokio::test]
async fn input_to_a_process_that_does_not_read_times_out() {
    let server = Server::start();
    let client = server.client().await;
    let (id, _) = start(&client, "sleep 300").await;
    let started = Instant::now();
    let msg = err(&call(
        &client,
        "process_input",
        json!({"id": id, "data": "x".repeat(300_000)}),
    )
    .await);
    assert!(msg.contains("did not read its input"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(30));
    // The process is still there and can be stopped.
    let out = ok(&call(&client, "process_kill", json!({"id": id})).await);
    assert_eq!(out["running"], false);
}

#[tokio::test]
async fn running_jobs_over_the_cap_are_refused_with_a_clear_message() {
    let server = Server::start_with(Options {
        extra_args: vec!["--max-jobs".into(), "3".into()],
        ..Options::default()
    });
    let client = server.client().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(start(&client, "sleep 30").await.0);
    }
    let msg = err(&call(
        &client,
        "run_command",
        json!({"command": "sleep 30", "background": true}),
    )
    .await);
    assert!(
        msg.contains("3 background processes are already running"),
        "{msg}"
    );
    assert!(msg.contains("--max-jobs"), "{msg}");
    // Foreground commands are not jobs.
    ok(&call(&client, "run_command", json!({"command": "true"})).await);

    ok(&call(
        &client,
        "process_kill",
        json!({"id": ids[0], "signal": "KILL"}),
    )
    .await);
    // Its place frees once its exit has been seen.
    let mut started = false;
    for _ in 0..50 {
        let result = call(
            &client,
            "run_command",
            json!({"command": "sleep 30", "background": true}),
        )
        .await;
        if result.is_error != Some(true) {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(started, "no job could start after one was killed");
}

#[tokio::test]
async fn process_list_pages_and_filters() {
    let server = Server::start();
    let client = server.client().await;
    let mut running = Vec::new();
    for _ in 0..3 {
        running.push(start(&client, "sleep 30").await.0);
    }
    let (done, _) = start(&client, "true").await;
    ok(&call(
        &client,
        "process_wait",
        json!({"id": done, "timeout_ms": 10000}),
    )
    .await);

    let page = ok(&call(&client, "process_list", json!({"limit": 2})).await);
    assert_eq!(page["total"], 4);
    assert_eq!(page["processes"].as_array().unwrap().len(), 2);
    assert_eq!(page["processes"][0]["id"], running[0].as_str());
    assert_eq!(page["next_offset"], 2);
    let last = ok(&call(&client, "process_list", json!({"limit": 2, "offset": 2})).await);
    assert_eq!(last["processes"].as_array().unwrap().len(), 2);
    assert!(last.get("next_offset").is_none(), "{last}");

    let only_running = ok(&call(&client, "process_list", json!({"status": "running"})).await);
    let ids: Vec<&str> = only_running["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, running.iter().map(String::as_str).collect::<Vec<_>>());
    let finished = ok(&call(&client, "process_list", json!({"status": "finished"})).await);
    assert_eq!(finished["total"], 1);
    assert_eq!(finished["processes"][0]["id"], done.as_str());

    let msg = err(&call(&client, "process_list", json!({"limit": 1000})).await);
    assert!(msg.contains("limit"), "{msg}");
}

#[tokio::test]
async fn a_running_job_holds_few_descriptors() {
    let server = Server::start();
    let client = server.client().await;
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", server.child.id()))
            .unwrap()
            .count()
    };
    start(&client, "sleep 30").await;
    let before = fds();
    for _ in 0..20 {
        start(&client, "sleep 30").await;
    }
    let added = fds().saturating_sub(before);
    // stdin, the merged output, and the pidfd each (five before: separate
    // stdout and stderr, and the log file held open), and a few to spare for
    // what the server opens meanwhile.
    assert!(added <= 3 * 20 + 5, "{added} descriptors for 20 jobs");
}
