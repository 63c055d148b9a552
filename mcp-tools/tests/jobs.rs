//! Background jobs over time: how many finished jobs are kept (and their
//! logs deleted with them), the cap on a job's log file, a wait whose match
//! arrives in pieces, and cancelling a wait for output.

mod common;

use std::time::{Duration, Instant};

use common::{Options, RawSession, Server, call, err, eventually, ok};
use serde_json::json;

/// Finished jobs kept for process_output and process_list.
const KEEP_FINISHED: usize = 64;
/// Bytes of a job's output its log file keeps.
const LOG_CAP: u64 = 64 * 1024 * 1024;

async fn start(client: &common::Client, command: &str) -> serde_json::Value {
    ok(&call(
        client,
        "run_command",
        json!({"command": command, "background": true}),
    )
    .await)
}

async fn wait_exit(client: &common::Client, id: &str) {
    let out = ok(&call(
        client,
        "process_wait",
        json!({"id": id, "timeout_ms": 60000}),
    )
    .await);
    assert_eq!(out["reason"], "exited", "{out}");
}

/// Beyond 64 finished jobs the oldest finished one is forgotten and its log
/// deleted; a job still running is never pruned, however old.
#[tokio::test]
async fn only_the_newest_64_finished_jobs_are_kept() {
    let server = Server::start();
    let client = server.client().await;
    let runner = start(&client, "sleep 300").await;
    let mut finished = Vec::new();
    for _ in 0..=KEEP_FINISHED {
        let job = start(&client, "echo done").await;
        wait_exit(&client, job["id"].as_str().unwrap()).await;
        finished.push(job);
    }
    // The next start prunes: 65 finished jobs are one too many.
    start(&client, "true").await;

    let oldest = &finished[0];
    let msg = err(&call(&client, "process_output", json!({"id": oldest["id"]})).await);
    assert!(msg.contains(oldest["id"].as_str().unwrap()), "{msg}");
    let oldest_log = oldest["log_path"].as_str().unwrap();
    assert!(
        !std::path::Path::new(oldest_log).exists(),
        "{oldest_log} was kept"
    );
    for kept in &finished[1..] {
        let out = ok(&call(&client, "process_output", json!({"id": kept["id"]})).await);
        assert_eq!(out["output"], "done\n", "{out}");
        assert!(std::path::Path::new(kept["log_path"].as_str().unwrap()).exists());
    }
    let out = ok(&call(&client, "process_output", json!({"id": runner["id"]})).await);
    assert_eq!(out["running"], true, "{out}");
    ok(&call(
        &client,
        "process_kill",
        json!({"id": runner["id"], "signal": "KILL"}),
    )
    .await);
}

/// A job's log file stops growing at 64 MiB; its output stays readable from
/// memory, and the job is not slowed or stopped by the cap.
#[tokio::test]
async fn a_job_log_stops_at_64_mib() {
    let server = Server::start();
    let client = server.client().await;
    let total = LOG_CAP + 3 * 1024 * 1024;
    let job = start(&client, &format!("yes abcdefg | head -c {total}; echo END")).await;
    let id = job["id"].as_str().unwrap();
    wait_exit(&client, id).await;
    let log = std::path::Path::new(job["log_path"].as_str().unwrap());
    let size = std::fs::metadata(log).unwrap().len();
    assert!(
        (LOG_CAP..LOG_CAP + 200).contains(&size),
        "log of {size} bytes for {} bytes of output",
        total + 4
    );
    // The log holds the output's start, exactly.
    let mut head = vec![0; 16];
    use std::io::Read;
    std::fs::File::open(log)
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    assert_eq!(head, b"abcdefg\nabcdefg\n");
    let out = ok(&call(&client, "process_output", json!({"id": id, "since": total})).await);
    assert_eq!(out["output"], "END\n", "{out}");
}

/// process_wait finds a match that the job printed in pieces, each in its
/// own chunk of output, while the wait was already scanning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_matches_text_that_arrives_in_pieces() {
    let server = Server::start();
    let client = server.client().await;
    // Twelve writes, 100 ms apart; the wait starts long before the last.
    let job = start(
        &client,
        "for piece in Li st en in g' 'o n' 'p or t' '80 80; do printf %s \"$piece\"; \
         sleep 0.1; done; echo; sleep 300",
    )
    .await;
    let id = job["id"].as_str().unwrap();
    let started = Instant::now();
    let out = ok(&call(
        &client,
        "process_wait",
        json!({"id": id, "until_regex": "Listening on port \\d+\n", "timeout_ms": 30000}),
    )
    .await);
    assert_eq!(out["reason"], "matched", "{out}");
    assert_eq!(out["matched"], "Listening on port 8080\n", "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the match was found only at the timeout"
    );
    ok(&call(&client, "process_kill", json!({"id": id, "signal": "KILL"})).await);
}

/// A cancelled process_output wait (wait_ms) ends at once instead of
/// running to its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_output_wait_stops() {
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
            raw.call(2, "process_output", json!({"id": "p1", "wait_ms": 120000}))
                .await
        })
    };
    let ended = || {
        server
            .logs()
            .lines()
            .any(|l| l.contains("tool=process_output") && l.contains("tool call"))
    };
    // A cancel that arrives before the request is registered is ignored:
    // cancel again until the wait ends.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        raw.cancel(2).await;
        if eventually(Duration::from_millis(200), ended) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cancelled wait did not end; logs:\n{}",
            server.logs()
        );
    }
    waiting.abort();
}
