//! The READMEs' snippets, extracted and checked so that they stay true as
//! pasted. A fenced `sh` or `python` block runs unless its info string says
//! `no-run: REASON` (an account or a network this machine lacks, a server in
//! the foreground, a build of minutes); those are checked for syntax only.
//! Shell snippets run with `bash -e` from the repository's root, with the
//! binaries under test where `scripts/bin-dir.sh` finds them (through
//! CARGO_TARGET_DIR, which is what a newcomer with their own target folder
//! has) and a control plane at CONTROL_PLANE_URL. Python snippets (MCP
//! clients) run with `python3` against a sandbox of a real control plane:
//! MCP_URL is its `mcp_url`, MCP_TOKEN the bearer token of its
//! `mcp_headers`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;

/// One fenced code block.
struct Snippet {
    file: &'static str,
    line: usize,
    lang: String,
    /// Why it is not run, if it is not.
    no_run: Option<String>,
    code: String,
}

const READMES: &[&str] = &[
    "README.md",
    "control-plane/README.md",
    "sandbox-template/README.md",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn snippets() -> Vec<Snippet> {
    let mut all = Vec::new();
    for file in READMES {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        let mut open: Option<Snippet> = None;
        for (i, line) in text.lines().enumerate() {
            let Some(info) = line.strip_prefix("```") else {
                if let Some(s) = open.as_mut() {
                    s.code.push_str(line);
                    s.code.push('\n');
                }
                continue;
            };
            match open.take() {
                Some(s) => all.push(s),
                None => {
                    let (lang, rest) = info.split_once(' ').unwrap_or((info, ""));
                    let no_run = rest
                        .trim()
                        .strip_prefix("no-run:")
                        .map(|r| r.trim().to_string());
                    if let Some(r) = &no_run {
                        assert!(!r.is_empty(), "{file}:{}: no-run without a reason", i + 1);
                    }
                    open = Some(Snippet {
                        file,
                        line: i + 1,
                        lang: lang.to_string(),
                        no_run,
                        code: String::new(),
                    });
                }
            }
        }
        assert!(open.is_none(), "{file}: a code block is never closed");
    }
    all
}

/// Runs `cmd` to its end within `limit`; its status and output.
fn run(mut cmd: Command, limit: Duration) -> (bool, String) {
    let out = tempfile::NamedTempFile::new().unwrap();
    cmd.stdin(Stdio::null())
        .stdout(out.reopen().unwrap())
        .stderr(out.reopen().unwrap());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(out.path()).unwrap_or_default();
    match status {
        Some(s) => (s.success(), text),
        None => (false, format!("{text}\n(killed after {limit:?})")),
    }
}

#[test]
fn every_snippet_is_valid_and_marked() {
    let all = snippets();
    assert!(all.len() > 20, "found only {} snippets", all.len());
    for s in &all {
        let check = match s.lang.as_str() {
            "sh" | "bash" => {
                let mut c = Command::new("bash");
                c.arg("-n").arg("-c").arg(&s.code);
                c
            }
            "python" => {
                let mut c = Command::new("python3");
                c.arg("-c")
                    .arg("import ast, sys; ast.parse(sys.argv[1])")
                    .arg(&s.code);
                c
            }
            _ => continue,
        };
        let (ok, out) = run(check, Duration::from_secs(30));
        assert!(
            ok,
            "{}:{}: {} snippet does not parse:\n{out}",
            s.file, s.line, s.lang
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_snippets_run_as_pasted() {
    let runnable: Vec<Snippet> = snippets()
        .into_iter()
        .filter(|s| s.lang == "python" && s.no_run.is_none())
        .collect();
    assert!(!runnable.is_empty(), "the Python example is no longer run");

    let server = Server::start();
    let (status, created) = server
        .post(
            "/sandboxes/create",
            serde_json::json!({ "user_id": "readme" }),
        )
        .await;
    assert_eq!(status, 200, "create failed: {created}");
    let url = created["mcp_url"].as_str().unwrap().to_owned();
    let token = created["mcp_headers"]["Authorization"]
        .as_str()
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap()
        .to_owned();
    for s in runnable {
        let mut cmd = Command::new("python3");
        cmd.arg("-c")
            .arg(&s.code)
            .current_dir(repo())
            .env("MCP_URL", &url)
            .env("MCP_TOKEN", &token);
        let (ok, out) = tokio::task::spawn_blocking(move || run(cmd, Duration::from_secs(120)))
            .await
            .unwrap();
        assert!(
            ok && !out.trim().is_empty(),
            "{}:{}: the snippet failed or printed nothing:\n{}\n--- output:\n{out}",
            s.file,
            s.line,
            s.code
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_snippets_run_as_pasted() {
    let runnable: Vec<Snippet> = snippets()
        .into_iter()
        .filter(|s| matches!(s.lang.as_str(), "sh" | "bash") && s.no_run.is_none())
        .collect();
    assert!(runnable.len() >= 2, "the walk-throughs are no longer run");

    // A target folder of our own whose release and debug folders hold the
    // binaries under test: scripts/bin-dir.sh must find them through it.
    let bins = Path::new(env!("CARGO_BIN_EXE_control-plane"))
        .parent()
        .unwrap()
        .to_path_buf();
    let target = tempfile::tempdir().unwrap();
    for profile in ["release", "debug"] {
        std::os::unix::fs::symlink(&bins, target.path().join(profile)).unwrap();
    }
    let server = Server::start();
    for s in runnable {
        let mut cmd = Command::new("bash");
        cmd.arg("-e")
            .arg("-c")
            .arg(&s.code)
            .current_dir(repo())
            .env("CARGO_TARGET_DIR", target.path())
            .env("CONTROL_PLANE_URL", &server.url)
            .env_remove("CONTROL_PLANE_API_KEY");
        let (ok, out) = tokio::task::spawn_blocking(move || run(cmd, Duration::from_secs(120)))
            .await
            .unwrap();
        assert!(
            ok,
            "{}:{}: the snippet failed:\n{}\n--- output:\n{out}",
            s.file, s.line, s.code
        );
    }
}
