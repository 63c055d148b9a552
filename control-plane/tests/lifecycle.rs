//! The whole life of a sandbox through the HTTP API, with control-plane
//! restarts (graceful and SIGKILL) between the steps.

mod common;

use std::time::Duration;

use common::{Options, Server, eventually, wipe_sandbox_dir};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_run_files_pause_resume_delete_across_restarts() {
    let mut s = Server::start();
    let (status, health) = s.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["provider"], "local");

    // Create: the seed's fields, plus what a client needs for MCP.
    let (status, created) = s
        .post(
            "/sandboxes/create",
            json!({ "user_id": "alice", "metadata": { "project": "demo" }, "timeout_secs": 600 }),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["sandbox_id"].as_str().unwrap().to_string();
    let mcp_url = created["mcp_url"].as_str().unwrap().to_string();
    assert!(mcp_url.starts_with("http://127.0.0.1:") && mcp_url.ends_with("/mcp"));
    // Nothing serves an editor in a local sandbox.
    assert!(created["vscode_url"].is_null(), "{created}");
    let auth = created["mcp_headers"]["Authorization"].as_str().unwrap();
    assert!(auth.starts_with("Bearer ") && auth.len() > 40);
    assert_eq!(created["status"], "running");
    assert_eq!(created["metadata"]["project"], "demo");

    // The MCP endpoint is guarded by the sandbox's token.
    let no_token = s.http.post(&mcp_url).json(&json!({})).send().await.unwrap();
    assert_eq!(no_token.status().as_u16(), 401);

    // run-command: output as in the seed, plus exit code and separate streams.
    let r = s.run(&id, "echo out; echo err >&2; exit 3").await;
    assert_eq!(r["exit_code"], 3);
    assert_eq!(r["stdout"], "out\n");
    assert_eq!(r["stderr"], "err\n");
    assert!(r["output"].as_str().unwrap().contains("out\n"));
    assert!(r["output"].as_str().unwrap().contains("err\n"));
    assert_eq!(r["timed_out"], false);

    // Background commands return at once with a job id.
    let (status, bg) = s
        .post(
            "/sandboxes/run-command",
            json!({ "sandbox_id": id, "command": "sleep 30", "background": true }),
        )
        .await;
    assert_eq!(status, 200, "{bg}");
    assert!(bg["job_id"].is_string(), "{bg}");

    // write-file / read-file, including an empty file.
    let (status, w) = s
        .post(
            "/sandboxes/write-file",
            json!({ "sandbox_id": id, "path": "notes/hello.txt", "content": "héllo\nworld\n" }),
        )
        .await;
    assert_eq!((status, w["success"].as_bool()), (200, Some(true)), "{w}");
    let (status, w) = s
        .post(
            "/sandboxes/write-file",
            json!({ "sandbox_id": id, "path": "empty.txt", "content": "" }),
        )
        .await;
    assert_eq!(status, 200, "{w}");
    let (status, r) = s
        .post(
            "/sandboxes/read-file",
            json!({ "sandbox_id": id, "path": "notes/hello.txt" }),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["content"], "héllo\nworld\n");
    assert_eq!(r["success"], true);
    let (_, r) = s
        .post(
            "/sandboxes/read-file",
            json!({ "sandbox_id": id, "path": "empty.txt" }),
        )
        .await;
    assert_eq!(r["content"], "");
    // A command sees what write-file wrote: one workspace, one data path.
    assert_eq!(
        s.run(&id, "cat notes/hello.txt").await["stdout"],
        "héllo\nworld\n"
    );

    // status, expose-port.
    let (status, st) = s.get(&format!("/sandboxes/{id}/status")).await;
    assert_eq!(status, 200);
    assert_eq!(
        (st["status"].as_str(), st["sandbox_id"].as_str()),
        (Some("running"), Some(id.as_str()))
    );
    let (status, port) = s
        .post(
            "/sandboxes/expose-port",
            json!({ "sandbox_id": id, "port": 3000 }),
        )
        .await;
    assert_eq!(status, 200);
    // An isolated sandbox has its own network: reached through the control
    // plane, on an origin of its own; an unisolated one shares this machine's.
    let (_, health) = s.get("/health").await;
    let expected = if health["isolated"] == true {
        let api_port = s.url.rsplit_once(':').unwrap().1;
        format!("http://3000-{id}.localhost:{api_port}")
    } else {
        "http://127.0.0.1:3000".to_string()
    };
    assert_eq!(port["url"], expected.as_str());

    // SIGKILL the control plane: the sandbox keeps running and is re-adopted.
    s.kill_and_restart();
    let (status, st) = s.get(&format!("/sandboxes/{id}/status")).await;
    assert_eq!(status, 200, "{st}");
    assert_eq!(st["status"], "running");
    assert_eq!(st["mcp_url"], mcp_url.as_str());
    assert_eq!(
        s.run(&id, "cat notes/hello.txt").await["stdout"],
        "héllo\nworld\n"
    );

    // Pause: the process stops, commands answer 409, the files stay.
    let (status, p) = s.post(&format!("/sandboxes/{id}/pause"), json!({})).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["status"], "paused");
    assert!(
        s.sandbox_processes().is_empty(),
        "paused sandbox still has processes"
    );
    let (status, e) = s
        .post(
            "/sandboxes/run-command",
            json!({ "sandbox_id": id, "command": "true" }),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(e["error"]["code"], "conflict");
    let (status, _) = s.post(&format!("/sandboxes/{id}/pause"), json!({})).await;
    assert_eq!(status, 409, "pausing twice is a state error");

    // Graceful restart while paused: still there, still paused.
    s.restart();
    let (status, list) = s.get("/sandboxes").await;
    assert_eq!(status, 200);
    let all = list["sandboxes"].as_array().unwrap();
    assert_eq!(all.len(), 1, "nothing lost, nothing duplicated: {list}");
    assert_eq!(all[0]["status"], "paused");

    // Resume: same workspace, same port when it is free.
    let (status, r) = s.post(&format!("/sandboxes/{id}/resume"), json!({})).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["status"], "running");
    assert_eq!(
        s.run(&id, "cat notes/hello.txt").await["stdout"],
        "héllo\nworld\n"
    );
    let (status, _) = s.post(&format!("/sandboxes/{id}/resume"), json!({})).await;
    assert_eq!(status, 409, "resuming a running sandbox is a state error");

    // A graceful stop pauses running sandboxes (no orphans); connect resumes.
    s.restart();
    let (_, st) = s.get(&format!("/sandboxes/{id}/status")).await;
    assert_eq!(st["status"], "paused");
    let (status, c) = s
        .post("/sandboxes/connect", json!({ "sandbox_id": id }))
        .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(
        (c["success"].as_bool(), c["status"].as_str()),
        (Some(true), Some("running"))
    );
    assert_eq!(
        s.run(&id, "cat notes/hello.txt").await["stdout"],
        "héllo\nworld\n"
    );

    // Timeout extension.
    let (status, t) = s
        .post(
            &format!("/sandboxes/{id}/timeout"),
            json!({ "timeout_secs": 7200 }),
        )
        .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["timeout_secs"], 7200);
    let left = t["expires_at"].as_i64().unwrap() - t["created_at"].as_i64().unwrap();
    assert!(left >= 7200, "expiry not pushed forward: {t}");

    // Delete, then delete again: 404, never 500. Read-only folders left by a
    // command do not stop it.
    let r = s
        .run(
            &id,
            "mkdir -p ro/sub && touch ro/sub/f && chmod 555 ro/sub ro",
        )
        .await;
    assert_eq!(r["exit_code"], 0, "{r}");
    let (status, d) = s.delete(&format!("/sandboxes/{id}")).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["success"], true);
    let (status, d) = s.delete(&format!("/sandboxes/{id}")).await;
    assert_eq!(status, 404, "{d}");
    assert_eq!(d["error"]["code"], "not_found");
    let (status, _) = s.get(&format!("/sandboxes/{id}/status")).await;
    assert_eq!(status, 404);
    assert!(
        s.sandbox_processes().is_empty(),
        "deleted sandbox left processes"
    );
    assert!(
        !s.data_dir().join("sandboxes").join(&id).exists(),
        "workspace not removed"
    );

    // And after a restart it stays deleted.
    s.kill_and_restart();
    let (_, list) = s.get("/sandboxes").await;
    assert_eq!(list["sandboxes"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_whose_process_died_is_paused_and_can_be_deleted() {
    let s = Server::start();
    let id = s.create("bob").await;
    let pids = s.sandbox_servers();
    assert_eq!(pids.len(), 1, "one mcp-tools per sandbox: {pids:?}");
    assert_eq!(s.run(&id, "echo up").await["stdout"], "up\n");
    // SAFETY: kill(2) with a pid this test started or found; no memory is involved.
    unsafe {
        libc::kill(pids[0] as i32, libc::SIGKILL);
    }
    assert!(
        eventually(Duration::from_secs(5), async || s
            .sandbox_servers()
            .is_empty())
        .await,
        "mcp-tools survived SIGKILL"
    );
    // The pooled session now leads nowhere: a gateway error, not a hang or a 500.
    let (status, e) = s
        .post(
            "/sandboxes/run-command",
            json!({ "sandbox_id": id, "command": "true" }),
        )
        .await;
    assert_eq!(status, 502, "{e}");
    assert_eq!(e["error"]["code"], "upstream_error");
    assert!(
        eventually(Duration::from_secs(10), async || {
            s.get(&format!("/sandboxes/{id}/status")).await.1["status"] == "paused"
        })
        .await,
        "a dead sandbox should be reported paused"
    );
    // Its workspace disappears too: delete must still work.
    wipe_sandbox_dir(&s, &id);
    let (status, body) = s.delete(&format!("/sandboxes/{id}")).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reaper_pauses_or_deletes_expired_sandboxes() {
    let pausing = Server::start_with(Options {
        extra_args: vec!["--reaper-interval-secs".into(), "1".into()],
        ..Options::default()
    });
    let deleting = Server::start_with(Options {
        extra_args: vec![
            "--reaper-interval-secs".into(),
            "1".into(),
            "--on-expire".into(),
            "delete".into(),
        ],
        ..Options::default()
    });
    let short = json!({ "user_id": "u", "timeout_secs": 1 });
    let (_, a) = pausing.post("/sandboxes/create", short.clone()).await;
    let (_, keep) = pausing
        .post(
            "/sandboxes/create",
            json!({ "user_id": "u", "timeout_secs": 600 }),
        )
        .await;
    let (_, b) = deleting.post("/sandboxes/create", short).await;
    let (a, keep, b) = (
        a["sandbox_id"].as_str().unwrap().to_string(),
        keep["sandbox_id"].as_str().unwrap().to_string(),
        b["sandbox_id"].as_str().unwrap().to_string(),
    );
    assert!(
        eventually(Duration::from_secs(15), async || {
            pausing.get(&format!("/sandboxes/{a}/status")).await.1["status"] == "paused"
        })
        .await,
        "expired sandbox not paused"
    );
    assert!(
        eventually(Duration::from_secs(15), async || {
            deleting.get(&format!("/sandboxes/{b}/status")).await.0 == 404
        })
        .await,
        "expired sandbox not deleted"
    );
    let (_, st) = pausing.get(&format!("/sandboxes/{keep}/status")).await;
    assert_eq!(
        st["status"], "running",
        "a sandbox within its timeout was touched"
    );

    // The timeout counts inactivity: a sandbox in use outlives it.
    let (_, busy) = pausing
        .post(
            "/sandboxes/create",
            json!({ "user_id": "u", "timeout_secs": 4 }),
        )
        .await;
    let busy = busy["sandbox_id"].as_str().unwrap().to_string();
    // Twice the timeout, with activity every 400 ms: each call has over 3 s
    // of slack before the sandbox could count as idle, however loaded the
    // machine.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(pausing.run(&busy, "echo alive").await["stdout"], "alive\n");
    }
    assert!(deleting.sandbox_processes().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_lists_the_endpoints() {
    let s = Server::start();
    let (status, doc) = s.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/sandboxes/create",
        "/sandboxes/run-command",
        "/sandboxes/read-file",
        "/sandboxes/{id}/status",
        "/sandboxes/{id}/pause",
        "/sandboxes",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from /openapi.json"
        );
    }
    assert!(
        doc["components"]["schemas"]["RunCommandResponse"]["properties"]["exit_code"].is_object()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_time_out_and_running_sandboxes_are_capped() {
    let s = Server::start_with(Options {
        extra_args: vec!["--max-running".into(), "2".into()],
        ..Options::default()
    });
    let a = s.create("u").await;
    let b = s.create("u").await;

    let (status, r) = s
        .post(
            "/sandboxes/run-command",
            json!({ "sandbox_id": a, "command": "sleep 5", "timeout_ms": 300 }),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["timed_out"], true, "{r}");
    assert!(r["exit_code"].is_null(), "{r}");

    // cwd and env reach the command.
    let (status, w) = s
        .post(
            "/sandboxes/write-file",
            json!({ "sandbox_id": a, "path": "sub/x", "content": "" }),
        )
        .await;
    assert_eq!(status, 200, "{w}");
    let (status, r) = s
        .post(
            "/sandboxes/run-command",
            json!({ "sandbox_id": a, "command": "basename \"$PWD\"; echo $GREETING",
                    "cwd": "sub", "env": { "GREETING": "hello" } }),
        )
        .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["stdout"], "sub\nhello\n");

    // A third running sandbox is over the limit.
    let (status, e) = s.post("/sandboxes/create", json!({ "user_id": "u" })).await;
    assert_eq!(status, 409, "{e}");
    // Pausing one makes room; resuming it while the room is taken does not fit.
    let (status, _) = s.post(&format!("/sandboxes/{b}/pause"), json!({})).await;
    assert_eq!(status, 200);
    let c = s.create("u").await;
    let (status, e) = s.post(&format!("/sandboxes/{b}/resume"), json!({})).await;
    assert_eq!(status, 409, "{e}");
    let (status, _) = s.delete(&format!("/sandboxes/{c}")).await;
    assert_eq!(status, 200);
    let (status, e) = s.post(&format!("/sandboxes/{b}/resume"), json!({})).await;
    assert_eq!(status, 200, "{e}");
}

/// What create returns is enough for an outside MCP client (as Claude Code
/// would use it): the URL plus the headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_client_connects_with_the_returned_url_and_headers() {
    use rmcp::ServiceExt;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

    let s = Server::start();
    let (status, created) = s
        .post("/sandboxes/create", json!({ "user_id": "claude" }))
        .await;
    assert_eq!(status, 200, "{created}");
    let url = created["mcp_url"].as_str().unwrap();
    let auth = created["mcp_headers"]["Authorization"].as_str().unwrap();
    let token = auth.strip_prefix("Bearer ").unwrap();

    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.to_string()).auth_header(token),
    );
    let client = ().serve(transport).await.expect("MCP session");
    let tools = client.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for want in ["read_file", "write_file", "run_command", "search_files"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let _ = client.cancel().await;
}

/// Without anyone asking, the control plane notices a sandbox that died and
/// lists it as paused (resumable), not as running with a dead URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_that_dies_is_noticed_without_being_asked() {
    let s = Server::start_with(Options {
        extra_args: vec!["--reaper-interval-secs".into(), "1".into()],
        ..Options::default()
    });
    let id = s.create("dana").await;
    s.run(&id, "echo keep > kept.txt").await;
    for pid in s.sandbox_servers() {
        // SAFETY: kill(2) with a pid this test started or found; no memory is involved.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
    // The list does not probe sandboxes itself: only the background check can flip it.
    assert!(
        eventually(Duration::from_secs(15), async || {
            s.get("/sandboxes").await.1["sandboxes"][0]["status"] == "paused"
        })
        .await,
        "the dead sandbox is still listed as running"
    );
    let (status, body) = s.post(&format!("/sandboxes/{id}/resume"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.run(&id, "cat kept.txt").await["stdout"], "keep\n");
}

/// The file mcp-tools writes its address to lies in a folder the sandbox can
/// write. A sandbox that turns it into a link to /dev/zero or into a FIFO
/// must not make the control plane read without end or wait: status, the
/// list and the reaper keep answering, and its URL stays what was started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_cannot_jam_the_control_plane_through_its_address_file() {
    let s = Server::start_with(Options {
        extra_args: vec!["--reaper-interval-secs".into(), "1".into()],
        ..Options::default()
    });
    let zero = s.create("eve").await;
    let fifo = s.create("eve").await;
    let url_of = async |id: &str| {
        let (status, body) = tokio::time::timeout(
            Duration::from_secs(10),
            s.get(&format!("/sandboxes/{id}/status")),
        )
        .await
        .expect("status did not answer");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "running", "{body}");
        body["mcp_url"].as_str().unwrap().to_string()
    };
    let (zero_url, fifo_url) = (url_of(&zero).await, url_of(&fifo).await);

    let r = s
        .run(
            &zero,
            r#"ln -sf /dev/zero "$HOME/../state/addr" && test -L "$HOME/../state/addr""#,
        )
        .await;
    assert_eq!(r["exit_code"], 0, "{r}");
    let r = s
        .run(
            &fifo,
            r#"rm -f "$HOME/../state/addr" && mkfifo "$HOME/../state/addr" && test -p "$HOME/../state/addr""#,
        )
        .await;
    assert_eq!(r["exit_code"], 0, "{r}");

    // The reaper looks at both every second; meanwhile one expires and is paused.
    let (_, short) = s
        .post(
            "/sandboxes/create",
            json!({ "user_id": "u", "timeout_secs": 1 }),
        )
        .await;
    let short = short["sandbox_id"].as_str().unwrap().to_string();
    assert!(
        eventually(Duration::from_secs(20), async || {
            let (_, st) = tokio::time::timeout(
                Duration::from_secs(10),
                s.get(&format!("/sandboxes/{short}/status")),
            )
            .await
            .expect("status did not answer");
            st["status"] == "paused"
        })
        .await,
        "the reaper stopped working"
    );
    for _ in 0..3 {
        assert_eq!(url_of(&zero).await, zero_url);
        assert_eq!(url_of(&fifo).await, fifo_url);
        let (status, list) = tokio::time::timeout(Duration::from_secs(10), s.get("/sandboxes"))
            .await
            .expect("the list did not answer");
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["sandboxes"].as_array().unwrap().len(), 3, "{list}");
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert_eq!(s.run(&zero, "echo ok").await["stdout"], "ok\n");
    assert_eq!(s.run(&fifo, "echo ok").await["stdout"], "ok\n");

    // And after a SIGKILLed control plane they are adopted again, as they were.
    let mut s = s;
    s.kill_and_restart();
    let (status, body) = s.get(&format!("/sandboxes/{zero}/status")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "running", "{body}");
    assert_eq!(body["mcp_url"], zero_url.as_str());
    let (_, body) = s.get(&format!("/sandboxes/{fifo}/status")).await;
    assert_eq!(body["mcp_url"], fifo_url.as_str());
    for id in [&zero, &fifo, &short] {
        let (status, body) = s.delete(&format!("/sandboxes/{id}")).await;
        assert_eq!(status, 200, "{body}");
    }
}

/// Commands may leave processes behind: a background command, or a daemon a
/// foreground command started. Pausing or deleting a sandbox ends them all,
/// with bubblewrap (its own pid namespace) and without (its session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_delete_end_every_process_a_sandbox_started() {
    for isolation in ["off", "on"] {
        if isolation == "on" && !common::bwrap_works() {
            common::skip("bubblewrap does not work here; checked only without isolation");
            continue;
        }
        let s = Server::start_with(Options {
            extra_args: vec!["--isolation".into(), isolation.into()],
            ..Options::default()
        });
        let id = s.create("u").await;
        // A copy of sleep in the workspace: its command line names the
        // sandbox's folder, so the test can find it from outside.
        let r = s
            .run(&id, r#"cp "$(command -v sleep)" "$PWD/lingering""#)
            .await;
        assert_eq!(r["exit_code"], 0, "{r}");
        let leave_behind = async || {
            let (status, body) = s
                .post(
                    "/sandboxes/run-command",
                    json!({
                        "sandbox_id": id,
                        "command": r#"sh -c '"$PWD/lingering" 301 & echo $! > bg.pid; wait'"#,
                        "background": true,
                    }),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            let r = s
                .run(
                    &id,
                    r#"nohup "$PWD/lingering" 302 >/dev/null 2>&1 & echo $! > daemon.pid"#,
                )
                .await;
            assert_eq!(r["exit_code"], 0, "{r}");
            assert!(
                eventually(Duration::from_secs(10), async || {
                    let found = lingering(&s);
                    found.iter().any(|a| a == "301") && found.iter().any(|a| a == "302")
                })
                .await,
                "isolation {isolation}: the commands did not start: {:?}",
                lingering(&s)
            );
        };

        leave_behind().await;
        let (status, body) = s.post(&format!("/sandboxes/{id}/pause"), json!({})).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            eventually(Duration::from_secs(5), async || lingering(&s).is_empty()).await,
            "isolation {isolation}: pausing left {:?}",
            lingering(&s)
        );

        let (status, body) = s.post(&format!("/sandboxes/{id}/resume"), json!({})).await;
        assert_eq!(status, 200, "{body}");
        leave_behind().await;
        let (status, body) = s.delete(&format!("/sandboxes/{id}")).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            eventually(Duration::from_secs(5), async || lingering(&s).is_empty()).await,
            "isolation {isolation}: deleting left {:?}",
            lingering(&s)
        );
    }
}

/// The arguments of the live `lingering` processes of `s`'s sandboxes.
fn lingering(s: &Server) -> Vec<String> {
    s.sandbox_processes()
        .into_iter()
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            args.first()?
                .ends_with("/lingering")
                .then(|| args.get(1).cloned().unwrap_or_default())
        })
        .collect()
}

/// read-file answers with a file's content or not at all: a file that is not
/// UTF-8 text is refused (400) instead of returned with its bytes replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_file_refuses_what_it_cannot_return_as_is() {
    let s = Server::start();
    let id = s.create("u").await;
    let r = s.run(&id, r"printf 'caf\351' > latin1.txt").await;
    assert_eq!(r["exit_code"], 0, "{r}");
    let (status, body) = s
        .post(
            "/sandboxes/read-file",
            json!({ "sandbox_id": id, "path": "latin1.txt" }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("not valid UTF-8"), "{body}");
    assert!(message.contains("run-command"), "{body}");
    // The file is intact, and a command reads it.
    assert_eq!(
        s.run(&id, "od -An -c latin1.txt | tr -s ' '").await["stdout"],
        " c a f 351\n"
    );

    // UTF-16 with a BOM (what PowerShell's `>` writes) is text: it comes
    // back decoded, its encoding named.
    let r = s
        .run(&id, r"printf '\377\376h\000i\000\n\000' > utf16.txt")
        .await;
    assert_eq!(r["exit_code"], 0, "{r}");
    let (status, body) = s
        .post(
            "/sandboxes/read-file",
            json!({ "sandbox_id": id, "path": "utf16.txt" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["content"], "hi\n", "{body}");
    assert_eq!(body["encoding"], "utf-16le", "{body}");

    // An image is binary: a clear 400, not a failure of the sandbox.
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    let r = s
        .run(&id, &format!("echo {png} | base64 -d > dot.png"))
        .await;
    assert_eq!(r["exit_code"], 0, "{r}");
    let (status, body) = s
        .post(
            "/sandboxes/read-file",
            json!({ "sandbox_id": id, "path": "dot.png" }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("binary (image/png)"), "{body}");
    // A notebook comes back as the file it is, not rendered for a model.
    let notebook = r#"{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}"#;
    let (status, body) = s
        .post(
            "/sandboxes/write-file",
            json!({ "sandbox_id": id, "path": "nb.ipynb", "content": notebook }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = s
        .post(
            "/sandboxes/read-file",
            json!({ "sandbox_id": id, "path": "nb.ipynb" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["content"], notebook, "{body}");
}
