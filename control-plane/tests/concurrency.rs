//! Many sandboxes at once: all usable, all deleted, no process left behind.

mod common;

use common::Server;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_sandboxes_created_concurrently_are_isolated_and_cleaned_up() {
    let s = std::sync::Arc::new(Server::start());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let s = s.clone();
        tasks.spawn(async move {
            let id = s.create(&format!("user{i}")).await;
            // Each sandbox gets its own workspace: write a marker, read it back.
            let (status, w) = s
                .post(
                    "/sandboxes/write-file",
                    json!({ "sandbox_id": id, "path": "me.txt", "content": format!("{i}") }),
                )
                .await;
            assert_eq!(status, 200, "{w}");
            let r = s.run(&id, "cat me.txt; echo; ls | wc -l").await;
            assert_eq!(r["stdout"], format!("{i}\n1\n"), "{r}");
            id
        });
    }
    let mut ids = Vec::new();
    while let Some(r) = tasks.join_next().await {
        ids.push(r.expect("a sandbox task failed"));
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20);
    assert_eq!(s.sandbox_servers().len(), 20, "one mcp-tools per sandbox");
    let (_, list) = s.get("/sandboxes?limit=100").await;
    assert_eq!(list["sandboxes"].as_array().unwrap().len(), 20);

    let mut tasks = tokio::task::JoinSet::new();
    for id in ids {
        let s = s.clone();
        tasks.spawn(async move {
            let (status, body) = s.delete(&format!("/sandboxes/{id}")).await;
            assert_eq!(status, 200, "{body}");
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("a delete failed");
    }
    let (_, list) = s.get("/sandboxes").await;
    assert_eq!(list["sandboxes"].as_array().unwrap().len(), 0);
    assert!(
        s.sandbox_processes().is_empty(),
        "processes left: {:?}",
        s.sandbox_processes()
    );
    let left: Vec<_> = std::fs::read_dir(s.data_dir().join("sandboxes"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "workspaces left behind");
}

/// SIGKILL the control plane while sandboxes are being created: after the
/// restart every record is usable or resumable, and no process runs that the
/// control plane does not know about.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_creates_loses_and_leaks_nothing() {
    let mut s = Server::start();
    let shared = std::sync::Arc::new(reqwest::Client::new());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10 {
        let http = shared.clone();
        let url = format!("{}/sandboxes/create", s.url);
        tasks.spawn(async move {
            // Some of these are cut off by the kill; that is the point.
            http.post(url)
                .json(&json!({ "user_id": format!("u{i}") }))
                .send()
                .await
                .is_ok()
        });
    }
    // Kill while a create is under way: its record exists, its answer not.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, list) = s.get("/sandboxes").await;
        let creating = list["sandboxes"]
            .as_array()
            .is_some_and(|l| l.iter().any(|sb| sb["status"] == "creating"));
        if creating {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no create was ever seen under way: {list}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    s.kill_and_restart();
    let mut cut = 0;
    while let Some(answered) = tasks.join_next().await {
        if !answered.unwrap() {
            cut += 1;
        }
    }
    assert!(
        cut > 0,
        "no create was cut by the kill; the test proves nothing"
    );

    let (status, list) = s.get("/sandboxes").await;
    assert_eq!(status, 200);
    let list = list["sandboxes"].as_array().unwrap().clone();
    let mut running = 0;
    for sb in &list {
        let id = sb["sandbox_id"].as_str().unwrap();
        match sb["status"].as_str().unwrap() {
            "running" => {
                running += 1;
                assert_eq!(s.run(id, "echo ok").await["stdout"], "ok\n");
            }
            "paused" => {
                let (status, body) = s.post(&format!("/sandboxes/{id}/resume"), json!({})).await;
                assert_eq!(status, 200, "{body}");
                running += 1;
                assert_eq!(s.run(id, "echo ok").await["stdout"], "ok\n");
            }
            other => panic!("sandbox {id} left in state {other}"),
        }
    }
    eprintln!(
        "{cut} of 10 creates were cut; {} records survived",
        list.len()
    );
    // Exactly one server per known sandbox: nothing unknown survived.
    assert_eq!(s.sandbox_servers().len(), running, "{list:?}");
    for sb in &list {
        let id = sb["sandbox_id"].as_str().unwrap();
        let (status, _) = s.delete(&format!("/sandboxes/{id}")).await;
        assert_eq!(status, 200);
    }
    assert!(s.sandbox_processes().is_empty());
}

/// Clients that hang up during create leave no half-made sandbox: every
/// record ends up running with exactly one server, or does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_hanging_up_mid_create_leave_nothing_half_made() {
    use tokio::io::AsyncWriteExt;

    let s = Server::start();
    let addr = s.url.trim_start_matches("http://").to_string();
    let mut cut_mid_create = 0;
    for i in 0..5 {
        let user = format!("u{i}");
        let body = json!({ "user_id": user }).to_string();
        let request = format!(
            "POST /sandboxes/create HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        // Hang up as soon as the create is under way (its record exists).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let state = loop {
            let (_, list) = s.get(&format!("/sandboxes?user_id={user}")).await;
            if let Some(sb) = list["sandboxes"].as_array().and_then(|a| a.first()) {
                break sb["status"].as_str().unwrap().to_string();
            }
            assert!(std::time::Instant::now() < deadline, "create never started");
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        };
        drop(tcp);
        if state == "creating" {
            cut_mid_create += 1;
        }
    }
    assert!(
        cut_mid_create > 0,
        "no create was cut off midway; the test proves nothing"
    );
    let settled = common::eventually(std::time::Duration::from_secs(20), async || {
        let (_, list) = s.get("/sandboxes").await;
        list["sandboxes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|sb| sb["status"] == "running")
    })
    .await;
    assert!(settled, "a create stayed half-done");
    let (_, list) = s.get("/sandboxes").await;
    let list = list["sandboxes"].as_array().unwrap();
    assert_eq!(list.len(), 5, "every create runs to its end");
    assert_eq!(s.sandbox_servers().len(), list.len());
    for sb in list {
        let id = sb["sandbox_id"].as_str().unwrap();
        assert_eq!(s.run(id, "echo ok").await["stdout"], "ok\n");
    }
}
