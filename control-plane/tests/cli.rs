//! The CLI against a running service: create, exec (exit codes), write/read
//! through stdin, pause/resume, mcp-config, delete.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::{KEY_ALICE, Options, Server};

fn cli(s: &Server, key: Option<&str>, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_control-plane"));
    cmd.arg("--url").arg(&s.url).args(args);
    cmd.env_remove("CONTROL_PLANE_API_KEY");
    if let Some(k) = key {
        cmd.env("CONTROL_PLANE_API_KEY", k);
    }
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_walk_through() {
    let mut s = Server::start_with(Options {
        api_keys: Some(format!("{KEY_ALICE}:alice")),
        ..Options::default()
    });
    s.key = Some(KEY_ALICE.to_string());
    let key = Some(KEY_ALICE);

    // Without the key the CLI fails clearly.
    let o = cli(&s, None, &["list"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("API key"));

    let o = cli(&s, key, &["create", "--metadata", "purpose=test"], None);
    assert!(o.status.success(), "{o:?}");
    let id = stdout(&o).trim().to_string();
    assert!(id.starts_with("sb-"), "{id}");

    // exec prints the output and exits with the command's exit code.
    let o = cli(&s, key, &["exec", &id, "--", "echo hi; exit 7"], None);
    assert_eq!(o.status.code(), Some(7));
    assert_eq!(stdout(&o), "hi\n");
    // Several words are quoted, not re-split by the shell.
    let o = cli(
        &s,
        key,
        &["exec", &id, "--", "printf", "%s|", "a b", "c"],
        None,
    );
    assert!(o.status.success());
    assert_eq!(stdout(&o), "a b|c|");

    // write from stdin, read back.
    let o = cli(
        &s,
        key,
        &["write", &id, "dir/f.txt", "-"],
        Some("from stdin\n"),
    );
    assert!(o.status.success(), "{o:?}");
    let o = cli(&s, key, &["read", &id, "dir/f.txt"], None);
    assert_eq!(stdout(&o), "from stdin\n");

    let o = cli(&s, key, &["list", "--metadata", "purpose=test"], None);
    assert!(stdout(&o).contains(&id), "{}", stdout(&o));

    let o = cli(&s, key, &["pause", &id], None);
    assert!(o.status.success(), "{o:?}");
    let o = cli(&s, key, &["exec", &id, "--", "true"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("paused"));
    let o = cli(&s, key, &["resume", &id], None);
    assert!(o.status.success(), "{o:?}");
    let o = cli(&s, key, &["read", &id, "dir/f.txt"], None);
    assert_eq!(stdout(&o), "from stdin\n");

    // mcp-config gives a working `claude mcp add` line and a .mcp.json snippet.
    let (_, st) = s.get(&format!("/sandboxes/{id}/status")).await;
    let o = cli(&s, key, &["mcp-config", &id], None);
    let line = stdout(&o);
    assert!(
        line.starts_with("claude mcp add --transport http sandbox "),
        "{line}"
    );
    assert!(line.contains(st["mcp_url"].as_str().unwrap()));
    assert!(line.contains(st["mcp_headers"]["Authorization"].as_str().unwrap()));
    let o = cli(&s, key, &["mcp-config", &id, "--format", "json"], None);
    let snippet: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(snippet["mcpServers"]["sandbox"]["url"], st["mcp_url"]);

    let o = cli(&s, key, &["delete", &id], None);
    assert!(o.status.success(), "{o:?}");
    let o = cli(&s, key, &["status", &id], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("404"));
}

/// `connect` resumes a paused sandbox, `timeout` sets when it expires (and
/// the reaper then acts on it), `expose-port` prints a port's URL; bad
/// input fails with exit code 1 and a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_connect_timeout_and_expose_port() {
    let s = Server::start_with(Options {
        extra_args: vec!["--reaper-interval-secs".into(), "1".into()],
        ..Options::default()
    });
    let id = s.create("u").await;

    let o = cli(&s, None, &["pause", &id], None);
    assert!(o.status.success(), "{o:?}");
    let o = cli(&s, None, &["connect", &id], None);
    assert!(o.status.success(), "{o:?}");
    let (_, st) = s.get(&format!("/sandboxes/{id}/status")).await;
    assert_eq!(st["status"], "running", "{st}");
    assert!(
        stdout(&o).contains(st["mcp_url"].as_str().unwrap()),
        "{}",
        stdout(&o)
    );
    assert_eq!(s.run(&id, "echo hi").await["stdout"], "hi\n");

    let o = cli(&s, None, &["expose-port", &id, "8000"], None);
    assert!(o.status.success(), "{o:?}");
    // An isolated sandbox is reached through the control plane, on an
    // origin of its own; an unisolated one shares this machine's network.
    let (_, health) = s.get("/health").await;
    let expected = if health["isolated"] == true {
        let api_port = s.url.rsplit_once(':').unwrap().1;
        format!("http://8000-{id}.localhost:{api_port}")
    } else {
        "http://127.0.0.1:8000".to_string()
    };
    assert_eq!(stdout(&o).trim(), expected);
    // Refused by the service (exit 1) or, not being a port at all, by the
    // command line (exit 2, a usage error).
    for (bad, code) in [("0", 1), ("70000", 2), ("http", 2)] {
        let o = cli(&s, None, &["expose-port", &id, bad], None);
        assert_eq!(o.status.code(), Some(code), "port {bad}: {o:?}");
        assert!(!o.stderr.is_empty(), "port {bad}: no message");
    }

    let o = cli(&s, None, &["timeout", &id, "600"], None);
    assert!(o.status.success(), "{o:?}");
    let (_, st) = s.get(&format!("/sandboxes/{id}/status")).await;
    assert_eq!(st["timeout_secs"], 600, "{st}");
    let o = cli(&s, None, &["timeout", &id, "1"], None);
    assert!(o.status.success(), "{o:?}");
    assert!(
        common::eventually(std::time::Duration::from_secs(20), async || {
            s.get(&format!("/sandboxes/{id}/status")).await.1["status"] == "paused"
        })
        .await,
        "the timeout set from the CLI did not expire the sandbox"
    );
    let o = cli(&s, None, &["connect", "sb-missing"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("404"), "{o:?}");
}

/// What a newcomer gets wrong first: a flag exec does not have, data piped
/// to exec, create without --user, the config of a paused sandbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_answers_a_newcomer_in_its_own_terms() {
    let s = Server::start();
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).to_string();

    // The API's field name is not what the CLI user typed.
    let o = cli(&s, None, &["create"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--user is required"), "{}", stderr(&o));
    let o = cli(&s, None, &["create", "--user", "me"], None);
    let id = stdout(&o).trim().to_string();

    // An unknown flag before `--` is an error, not part of the command.
    let o = cli(&s, None, &["exec", &id, "--timeout", "5", "--", "ls"], None);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(stderr(&o).contains("--timeout-ms"), "{}", stderr(&o));
    // After `--`, a word starting with `-` is the command's.
    let o = cli(&s, None, &["exec", &id, "--", "-x"], None);
    assert_eq!(o.status.code(), Some(127), "{o:?}");
    let o = cli(&s, None, &["exec", &id, "--", "ls", "-a"], None);
    assert!(stdout(&o).contains(".."), "{o:?}");

    // Piped data is the command's stdin, byte for byte.
    let o = cli(&s, None, &["exec", &id, "--", "sort"], Some("b\na\n"));
    assert_eq!(stdout(&o), "a\nb\n", "{o:?}");

    // A tool's refusal is said once, without the tool's own "Error:" prefix,
    // and a missing folder is called missing.
    let o = cli(
        &s,
        None,
        &["exec", &id, "--cwd", "nowhere", "--", "ls"],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.starts_with("error: ") && !e.contains("Error:"), "{e}");
    assert!(e.contains("does not exist"), "{e}");

    // The config of a paused sandbox comes with a word about it.
    cli(&s, None, &["pause", &id], None);
    let o = cli(&s, None, &["mcp-config", &id], None);
    assert!(o.status.success(), "{o:?}");
    assert!(stderr(&o).contains("paused"), "{}", stderr(&o));
}
