//! `control-plane serve --provider e2b` against a stand-in that keeps to
//! E2B's API contract (tests/common/e2b_contract.rs), with a real mcp-tools
//! in every sandbox: the same life of a sandbox as the local provider goes
//! through, the headers and the token upload E2B needs, faults, and
//! reconciliation with what E2B reports.

mod common;
#[path = "common/e2b_contract.rs"]
mod e2b_contract;

use std::time::Duration;

use common::{Options, Server, eventually, mcp_tools_bin};
use e2b_contract::Contract;
use reqwest::Method;
use serde_json::json;

fn start(contract: &Contract, extra: &[&str]) -> Server {
    let mut args = contract.serve_args();
    args.extend(extra.iter().map(|s| s.to_string()));
    Server::start_with(Options {
        extra_args: args,
        env: contract.env(),
        ..Options::default()
    })
}

/// The E2B id of control-plane sandbox `id`, from E2B's side.
fn e2b_id(contract: &Contract, id: &str) -> String {
    contract
        .sandbox_ids()
        .into_iter()
        .find(|e| {
            contract.sandbox(e).is_some_and(|v| {
                v.metadata
                    .get("control_plane_sandbox_id")
                    .map(String::as_str)
                    == Some(id)
            })
        })
        .unwrap_or_else(|| panic!("E2B has no sandbox for {id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_life_of_an_e2b_sandbox_across_restarts() {
    let contract = Contract::start(mcp_tools_bin());
    let mut s = start(&contract, &[]);
    let (status, health) = s.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["provider"], "e2b");
    assert_eq!(health["isolated"], true);

    let (status, created) = s
        .post(
            "/sandboxes/create",
            json!({ "user_id": "alice", "metadata": { "project": "demo" }, "timeout_secs": 600 }),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["sandbox_id"].as_str().unwrap().to_string();
    assert_eq!(created["provider"], "e2b");
    assert_eq!(created["status"], "running");
    let eid = e2b_id(&contract, &id);
    let vm = contract.sandbox(&eid).unwrap();

    // What E2B was asked for: the spec's field names, our ids in metadata,
    // ports closed to the public, envd secured.
    let bodies = contract.create_bodies();
    assert_eq!(bodies.len(), 1);
    let body = &bodies[0];
    assert_eq!(body["templateID"], e2b_contract::TEMPLATE);
    assert_eq!(body["timeout"], 600);
    assert_eq!(body["secure"], true);
    assert_eq!(body["autoPause"], true);
    assert_eq!(body["network"]["allowPublicTraffic"], false);
    assert_eq!(body["metadata"]["control_plane_sandbox_id"], id.as_str());
    assert_eq!(body["metadata"]["control_plane_user_id"], "alice");
    assert_eq!(body["metadata"]["project"], "demo");
    assert!(body["envVars"].is_object(), "{body}");

    // The MCP URL in debug form, with both locks in the headers.
    let mcp_url = created["mcp_url"].as_str().unwrap().to_string();
    assert_eq!(
        mcp_url,
        format!("http://localhost:{}/mcp", contract.mcp_port)
    );
    let traffic = created["mcp_headers"]["e2b-traffic-access-token"]
        .as_str()
        .expect("traffic token header");
    assert_eq!(Some(traffic), vm.traffic_token.as_deref());
    let auth = created["mcp_headers"]["Authorization"].as_str().unwrap();
    let token = auth.strip_prefix("Bearer ").unwrap();
    assert!(token.len() >= 32);
    // No code-server unless configured.
    assert!(created["vscode_url"].is_null(), "{created}");

    // The token went to mcp-tools' token file through envd, as `user`.
    let uploads = contract.uploads();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert_eq!(uploads[0].sandbox_id, eid);
    assert_eq!(uploads[0].path, "/var/lib/mcp-tools/token");
    assert_eq!(uploads[0].username, "user");
    assert_eq!(uploads[0].content, token.as_bytes());
    assert_eq!(
        std::fs::read_to_string(vm.root.join("var/lib/mcp-tools/token")).unwrap(),
        token
    );

    // Both locks hold: no traffic token, E2B's proxy refuses; no bearer
    // token, mcp-tools does.
    let bare = s.http.post(&mcp_url).json(&json!({})).send().await.unwrap();
    assert_eq!(bare.status().as_u16(), 403);
    let no_bearer = s
        .http
        .post(&mcp_url)
        .header("e2b-traffic-access-token", traffic)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_bearer.status().as_u16(), 401);

    // run-command, write-file, read-file through E2B's proxy.
    let before = contract.traffic_to(&eid);
    let r = s.run(&id, "echo out; echo err >&2; exit 3").await;
    assert_eq!(r["exit_code"], 3, "{r}");
    assert_eq!(r["stdout"], "out\n");
    assert_eq!(r["stderr"], "err\n");
    assert!(
        contract.traffic_to(&eid) > before,
        "the MCP call did not go through E2B's proxy with the traffic token"
    );
    let (status, w) = s
        .post(
            "/sandboxes/write-file",
            json!({ "sandbox_id": id, "path": "notes/hello.txt", "content": "héllo\nworld\n" }),
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
    assert_eq!(
        std::fs::read_to_string(vm.root.join("home/user/notes/hello.txt")).unwrap(),
        "héllo\nworld\n"
    );
    // Commands run in the VM's home folder (here: the stand-in's folder for it).
    let pwd = s.run(&id, "pwd -P").await["stdout"]
        .as_str()
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(
        std::path::PathBuf::from(pwd),
        vm.root.join("home/user").canonicalize().unwrap()
    );

    // expose-port: the debug form of https://{port}-{id}.{domain}.
    let (status, port) = s
        .post(
            "/sandboxes/expose-port",
            json!({ "sandbox_id": id, "port": 3000 }),
        )
        .await;
    assert_eq!(status, 200, "{port}");
    assert_eq!(port["url"], "http://localhost:3000");

    // SIGKILL the control plane: the VM runs on and is found again.
    s.kill_and_restart();
    let (status, st) = s.get(&format!("/sandboxes/{id}/status")).await;
    assert_eq!(status, 200, "{st}");
    assert_eq!(st["status"], "running");
    assert_eq!(st["mcp_url"], mcp_url.as_str());
    assert_eq!(
        s.run(&id, "cat notes/hello.txt").await["stdout"],
        "héllo\nworld\n"
    );

    // Pause through E2B: its mcp-tools stops, commands answer 409.
    let (status, p) = s.post(&format!("/sandboxes/{id}/pause"), json!({})).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["status"], "paused");
    assert!(!contract.sandbox(&eid).unwrap().running);
    assert_eq!(
        contract.count(&Method::POST, &format!("/sandboxes/{eid}/pause")),
        1
    );
    let (status, e) = s
        .post(
            "/sandboxes/run-command",
            json!({ "sandbox_id": id, "command": "true" }),
        )
        .await;
    assert_eq!(status, 409, "{e}");

    // A graceful restart leaves it as it is.
    s.restart();
    let (_, st) = s.get(&format!("/sandboxes/{id}/status")).await;
    assert_eq!(st["status"], "paused");

    // Resume is E2B's connect (201: resumed); the files are still there and
    // the token is written again.
    let (status, r) = s.post(&format!("/sandboxes/{id}/resume"), json!({})).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["status"], "running");
    assert!(contract.sandbox(&eid).unwrap().running);
    assert_eq!(
        contract
            .calls()
            .iter()
            .filter(|c| c.path == format!("/sandboxes/{eid}/connect") && c.status == 201)
            .count(),
        1
    );
    assert_eq!(contract.uploads().len(), 2);
    assert_eq!(
        s.run(&id, "cat notes/hello.txt").await["stdout"],
        "héllo\nworld\n"
    );

    // Unlike local sandboxes, a graceful stop does not pause E2B's VMs.
    s.restart();
    let (_, st) = s.get(&format!("/sandboxes/{id}/status")).await;
    assert_eq!(st["status"], "running", "{st}");
    assert!(contract.sandbox(&eid).unwrap().running);

    // connect on a running sandbox: E2B answers 200.
    let (status, c) = s
        .post("/sandboxes/connect", json!({ "sandbox_id": id }))
        .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(
        (c["success"].as_bool(), c["status"].as_str()),
        (Some(true), Some("running"))
    );
    assert_eq!(s.run(&id, "echo again").await["stdout"], "again\n");

    // The timeout reaches E2B too.
    let (status, t) = s
        .post(
            &format!("/sandboxes/{id}/timeout"),
            json!({ "timeout_secs": 7200 }),
        )
        .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["timeout_secs"], 7200);
    let vm = contract.sandbox(&eid).unwrap();
    // Reconciliation may add its margin on top.
    assert!((7200..7300).contains(&vm.timeout), "{}", vm.timeout);

    // Delete kills the VM; a second delete is 404.
    let (status, d) = s.delete(&format!("/sandboxes/{id}")).await;
    assert_eq!(status, 200, "{d}");
    assert!(
        contract.sandbox(&eid).is_none(),
        "E2B still has the sandbox"
    );
    assert!(!vm.root.exists());
    let (status, _) = s.delete(&format!("/sandboxes/{id}")).await;
    assert_eq!(status, 404);
    s.kill_and_restart();
    let (_, list) = s.get("/sandboxes").await;
    assert_eq!(list["sandboxes"].as_array().unwrap().len(), 0, "{list}");
    assert!(contract.sandbox_ids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2b_faults_are_retried_when_safe_and_said_plainly() {
    let contract = Contract::start(mcp_tools_bin());
    let s = start(&contract, &[]);
    let id = s.create("bob").await;
    let eid = e2b_id(&contract, &id);

    // A 500 on a read is retried, and the status answers.
    let path = format!("/sandboxes/{eid}");
    contract.fail_next(Method::GET, &path, 500, 1);
    let (status, st) = s.get(&format!("/sandboxes/{id}/status")).await;
    assert_eq!(status, 200, "{st}");
    assert_eq!(st["status"], "running");
    let gets: Vec<u16> = contract
        .calls()
        .iter()
        .filter(|c| c.method == Method::GET && c.path == path)
        .map(|c| c.status)
        .collect();
    assert_eq!(gets, vec![500, 200]);

    // So are two on a timeout.
    let tpath = format!("/sandboxes/{eid}/timeout");
    contract.fail_next(Method::POST, &tpath, 503, 2);
    let (status, t) = s
        .post(
            &format!("/sandboxes/{id}/timeout"),
            json!({ "timeout_secs": 900 }),
        )
        .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(contract.count(&Method::POST, &tpath), 3);
    assert_eq!(contract.sandbox(&eid).unwrap().timeout, 900);

    // A create is never repeated: it may have happened.
    contract.fail_next(Method::POST, "/sandboxes", 500, 1);
    let (status, e) = s
        .post("/sandboxes/create", json!({ "user_id": "bob" }))
        .await;
    assert_eq!(status, 502, "{e}");
    assert_eq!(e["error"]["code"], "upstream_error");
    assert_eq!(
        contract.count(&Method::POST, "/sandboxes"),
        2,
        "the failed create was repeated"
    );

    // The concurrency limit (429) is said plainly, as a state error.
    contract.set_max_running(1);
    let (status, e) = s
        .post("/sandboxes/create", json!({ "user_id": "bob" }))
        .await;
    assert_eq!(status, 409, "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("concurrent sandboxes"), "{msg}");
    contract.set_max_running(20);

    // A template E2B does not have is the client's mistake.
    let (status, e) = s
        .post(
            "/sandboxes/create",
            json!({ "user_id": "bob", "template_id": "nope" }),
        )
        .await;
    assert_eq!(status, 400, "{e}");

    // Nothing half-made was kept.
    let (_, list) = s.get("/sandboxes").await;
    assert_eq!(list["sandboxes"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(contract.sandbox_ids().len(), 1);

    // 409 from pause when E2B already paused it by itself is no error.
    contract.pause_behind_back(&eid);
    let (status, p) = s.post(&format!("/sandboxes/{id}/pause"), json!({})).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!(p["status"], "paused");
    let pauses: Vec<u16> = contract
        .calls()
        .iter()
        .filter(|c| c.path == format!("/sandboxes/{eid}/pause"))
        .map(|c| c.status)
        .collect();
    assert_eq!(pauses, vec![409]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandboxes_e2b_lost_or_paused_are_reconciled() {
    let contract = Contract::start(mcp_tools_bin());
    // Small pages, so that reconciliation must follow X-Next-Token.
    contract.set_page_size(2);
    let s = start(&contract, &["--reaper-interval-secs", "1"]);
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(s.create("carol").await);
    }
    let lost = ids[0].clone();
    let napping = ids[1].clone();
    contract.vanish(&e2b_id(&contract, &lost));
    contract.pause_behind_back(&e2b_id(&contract, &napping));

    // The lost one is marked gone (no stale URL), the paused one paused;
    // nobody had to ask about them.
    assert!(
        eventually(Duration::from_secs(10), async || {
            let (_, list) = s.get("/sandboxes").await;
            let state = |id: &str| {
                list["sandboxes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|x| x["sandbox_id"] == id)
                    .map(|x| x["status"].clone())
            };
            state(&lost) == Some(json!("gone")) && state(&napping) == Some(json!("paused"))
        })
        .await,
        "reconciliation did not notice"
    );
    assert!(
        contract
            .calls()
            .iter()
            .any(|c| c.path == "/v2/sandboxes" && c.query.contains("nextToken=")),
        "the list was not followed past its first page"
    );
    let (_, st) = s.get(&format!("/sandboxes/{lost}/status")).await;
    assert_eq!(st["mcp_url"], "", "{st}");
    for id in &ids[2..] {
        let (_, st) = s.get(&format!("/sandboxes/{id}/status")).await;
        assert_eq!(st["status"], "running", "{st}");
    }

    // A gone sandbox cannot be used or resumed, only deleted.
    let (status, e) = s
        .post(
            "/sandboxes/run-command",
            json!({ "sandbox_id": lost, "command": "true" }),
        )
        .await;
    assert_eq!(status, 410, "{e}");
    let (status, e) = s
        .post("/sandboxes/connect", json!({ "sandbox_id": lost }))
        .await;
    assert_eq!(status, 410, "{e}");
    let (status, _) = s.delete(&format!("/sandboxes/{lost}")).await;
    assert_eq!(status, 200);

    // The paused one comes back with connect.
    let (status, c) = s
        .post("/sandboxes/connect", json!({ "sandbox_id": napping }))
        .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(s.run(&napping, "echo back").await["stdout"], "back\n");
}

/// Activity pushes E2B's own timeout forward, so a sandbox in use is not
/// paused under the agent by E2B; once idle, it is paused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2b_timeouts_follow_activity() {
    let contract = Contract::start(mcp_tools_bin());
    let s = start(&contract, &["--reaper-interval-secs", "1"]);
    let (status, c) = s
        .post(
            "/sandboxes/create",
            json!({ "user_id": "dan", "timeout_secs": 4 }),
        )
        .await;
    assert_eq!(status, 200, "{c}");
    let id = c["sandbox_id"].as_str().unwrap().to_string();
    let eid = e2b_id(&contract, &id);
    // Twice the timeout, with activity every 400 ms: each call has over 3 s
    // of slack before the sandbox could count as idle, however loaded the
    // machine.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(s.run(&id, "echo alive").await["stdout"], "alive\n");
    }
    // Well past E2B's first timeout, it still runs: its timeout was pushed.
    assert!(contract.sandbox(&eid).unwrap().running);
    assert!(contract.count(&Method::POST, &format!("/sandboxes/{eid}/timeout")) > 0);
    assert!(
        eventually(Duration::from_secs(10), async || {
            s.get(&format!("/sandboxes/{id}/status")).await.1["status"] == "paused"
        })
        .await,
        "an idle sandbox was not paused"
    );
}

/// A control plane killed while E2B was still making a sandbox leaves no VM
/// running unknown: at the next start the half-made sandbox is found by its
/// metadata and killed, and no record of it remains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_cut_short_by_sigkill_leaves_no_vm_behind() {
    let contract = Contract::start(mcp_tools_bin());
    let mut s = start(&contract, &[]);
    let kept = s.create("frank").await;
    contract.set_create_delay(Duration::from_secs(30));
    let url = s.url.clone();
    let http = s.http.clone();
    let pending = tokio::spawn(async move {
        http.post(format!("{url}/sandboxes/create"))
            .json(&json!({ "user_id": "frank" }))
            .send()
            .await
    });
    assert!(
        eventually(Duration::from_secs(10), async || contract
            .sandbox_ids()
            .len()
            == 2)
        .await,
        "the second create never reached E2B"
    );
    s.kill_and_restart();
    let _ = pending.await;
    contract.set_create_delay(Duration::ZERO);
    let (_, list) = s.get("/sandboxes").await;
    let listed: Vec<&str> = list["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["sandbox_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec![kept.as_str()], "{list}");
    let left = contract.sandbox_ids();
    assert_eq!(
        left,
        vec![e2b_id(&contract, &kept)],
        "the half-made VM is still there"
    );
    assert_eq!(s.run(&kept, "echo fine").await["stdout"], "fine\n");
}

/// E2B's API key is in no answer and no log line, even when E2B refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_never_shows() {
    let contract = Contract::start(mcp_tools_bin());
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut args = contract.serve_args();
    args.extend(["--reaper-interval-secs".to_string(), "1".to_string()]);
    let wrong = "e2b_wrongwrongwrongwrongwrongwrong0123";
    let s = Server::start_with(Options {
        extra_args: args,
        env: vec![
            ("E2B_API_KEY".into(), wrong.into()),
            ("CONTROL_PLANE_LOG".into(), "debug".into()),
        ],
        log_file: Some(log.path().to_path_buf()),
        ..Options::default()
    });
    let (status, e) = s
        .post("/sandboxes/create", json!({ "user_id": "eve" }))
        .await;
    assert_eq!(status, 502, "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("E2B_API_KEY"), "{msg}");
    assert!(!msg.contains(wrong), "{msg}");
    // Let a reconciliation fail as well: it calls E2B with the key too.
    assert!(
        eventually(Duration::from_secs(20), async || {
            std::fs::read_to_string(log.path()).is_ok_and(|t| t.contains("reconcile"))
        })
        .await,
        "no reconciliation ran"
    );
    drop(s);
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(text.contains("E2B"), "the log says nothing of E2B:\n{text}");
    assert!(
        !text.contains(wrong),
        "the API key reached the log:\n{text}"
    );

    // Nor does the right one, through a whole life at debug level.
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut env = contract.env();
    env.push(("CONTROL_PLANE_LOG".into(), "debug".into()));
    let s = Server::start_with(Options {
        extra_args: contract.serve_args(),
        env,
        log_file: Some(log.path().to_path_buf()),
        ..Options::default()
    });
    let id = s.create("eve").await;
    contract.fail_next(Method::GET, "/sandboxes/*", 500, 1);
    for call in [
        s.get(&format!("/sandboxes/{id}/status")).await,
        s.post(&format!("/sandboxes/{id}/pause"), json!({})).await,
        s.post(&format!("/sandboxes/{id}/resume"), json!({})).await,
        s.delete(&format!("/sandboxes/{id}")).await,
    ] {
        assert_eq!(call.0, 200, "{}", call.1);
        assert!(!call.1.to_string().contains(&contract.api_key));
    }
    drop(s);
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        text.contains("DEBUG"),
        "nothing logged at debug level:\n{text}"
    );
    assert!(
        !text.contains(&contract.api_key),
        "the API key reached the log:\n{text}"
    );
}

/// `GET /sandboxes/{id}/metrics` maps E2B's latest `SandboxMetric` into the
/// control plane's shape: what E2B tells is there, what it does not is null.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2b_metrics_come_from_e2b_in_our_shape() {
    let contract = Contract::start(mcp_tools_bin());
    let s = start(&contract, &[]);
    let id = s.create("metered").await;
    let (status, _) = s
        .post(
            "/sandboxes/write-file",
            json!({ "sandbox_id": id, "path": "data.bin", "content": "x".repeat(300_000) }),
        )
        .await;
    assert_eq!(status, 200);

    let (status, m) = s.get(&format!("/sandboxes/{id}/metrics")).await;
    assert_eq!(status, 200, "{m}");
    // The latest sample, not the older one.
    assert_eq!(m["cpu_used_pct"], e2b_contract::METRICS_CPU_PCT, "{m}");
    assert_eq!(m["cpu_count"], e2b_contract::METRICS_CPU_COUNT);
    assert_eq!(m["mem_total"], e2b_contract::METRICS_MEM_TOTAL);
    assert_eq!(m["disk_total"], e2b_contract::METRICS_DISK_TOTAL);
    assert!(m["disk_used"].as_u64().unwrap() >= 300_000, "{m}");
    // The sandbox's mcp-tools takes some memory.
    assert!(m["mem_used"].as_u64().unwrap() > 1 << 20, "{m}");
    for unknown in [
        "cpu_used_secs",
        "processes",
        "processes_refused",
        "oom_kills",
    ] {
        assert!(m[unknown].is_null(), "{unknown} in {m}");
    }
    // Asked for the recent samples only (`start`, Unix seconds).
    let call = contract
        .calls()
        .into_iter()
        .find(|c| c.path.ends_with("/metrics"))
        .unwrap();
    let start: i64 = call.query.strip_prefix("start=").unwrap().parse().unwrap();
    let now = chrono_now();
    assert!(
        (now - 70..=now).contains(&start),
        "start={start}, now={now}"
    );

    // The stats command shows them.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_control-plane"))
        .args(["stats", &id, "--url", &s.url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("12.5% in use"), "{text}");

    // E2B sizes sandboxes per template: asking at create is refused.
    for (field, value) in [
        ("memory_mb", 1024),
        ("cpu_count", 2),
        ("disk_size_mb", 2048),
    ] {
        let (status, e) = s
            .post(
                "/sandboxes/create",
                json!({ "user_id": "sized", field: value }),
            )
            .await;
        assert_eq!(status, 400, "{field}: {e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("per template"),
            "{e}"
        );
    }

    // A sandbox E2B lost answers as lost, not as zeros.
    contract.vanish(&e2b_id(&contract, &id));
    let (status, e) = s.get(&format!("/sandboxes/{id}/metrics")).await;
    assert_ne!(status, 200, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no longer has"),
        "{e}"
    );
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
