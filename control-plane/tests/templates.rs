//! Local templates through the real HTTP API and CLI: sandboxes on a small
//! template built once per run (`common::on_minimal_template`), the original
//! client's walk-through on the default template, a failed build, who may
//! build and delete, and sandboxes without a template.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{Value, json};

/// `stat -L` of `path` inside sandbox `id`: (device, inode).
async fn stat_inside(s: &Server, id: &str, path: &str) -> (u64, u64) {
    let out = s.run(id, &format!("stat -L -c '%d %i' {path}")).await;
    let text = out["stdout"].as_str().unwrap().trim().to_string();
    let (dev, ino) = text
        .split_once(' ')
        .unwrap_or_else(|| panic!("stat: {out}"));
    (dev.parse().unwrap(), ino.parse().unwrap())
}

fn stat_here(path: &Path) -> (u64, u64) {
    let meta = std::fs::metadata(path).unwrap();
    (meta.dev(), meta.ino())
}

#[tokio::test]
async fn a_sandbox_on_the_minimal_template_has_its_environment_not_the_hosts() {
    let Some(opts) = on_minimal_template() else {
        return;
    };
    let s = Server::start_with(opts);
    let id = s.create("alice").await;

    // The seed's step: python (python-is-python3) runs a file of the workspace.
    let (status, body) = s
        .post(
            "/sandboxes/write-file",
            json!({"sandbox_id": id, "path": "hello.py", "content": "print('Hello!')"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let out = s.run(&id, "python hello.py").await;
    assert_eq!(out["stdout"], "Hello!\n", "{out}");
    let out = s.run(&id, "node -e 'console.log(6 * 7)'").await;
    assert_eq!(out["stdout"], "42\n", "{out}");

    // /etc/os-release is the template's own file, not this machine's copy
    // of the same text: the same file on disk.
    let root = shared_templates_dir().join("minimal/root");
    let template_os_release = stat_here(&root.join("etc/os-release"));
    assert_eq!(
        stat_inside(&s, &id, "/etc/os-release").await,
        template_os_release
    );
    assert_ne!(template_os_release, stat_here(Path::new("/etc/os-release")));

    // This machine's files are absent: the repository, its tools, its PATH.
    let repo = env!("CARGO_MANIFEST_DIR");
    let out = s
        .run(
            &id,
            &format!(
                "for p in {repo} /usr/bin/bwrap /usr/bin/mmdebstrap /usr/bin/cargo /root/.cargo; do \
                 test -e $p && echo present $p; done; echo checked"
            ),
        )
        .await;
    assert_eq!(out["stdout"], "checked\n", "{out}");
    let out = s.run(&id, "pwd; id -un; echo $HOME; echo $PATH").await;
    assert_eq!(
        out["stdout"],
        "/home/user\nuser\n/home/user\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
        "{out}"
    );
    // Read-only root, writable workspace and /tmp.
    let out = s
        .run(
            &id,
            "touch /usr/x 2>/dev/null && echo wrote-root; touch /tmp/t ~/w && echo ok",
        )
        .await;
    assert_eq!(out["stdout"], "ok\n", "{out}");

    // A resumed sandbox is on the same template.
    let (status, body) = s.post(&format!("/sandboxes/{id}/pause"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = s.post(&format!("/sandboxes/{id}/resume"), json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        stat_inside(&s, &id, "/etc/os-release").await,
        template_os_release
    );
    let out = s.run(&id, "cat hello.py").await;
    assert_eq!(out["stdout"], "print('Hello!')", "{out}");

    // Listed, as the default; /health says sandboxes run on it.
    let (status, list) = s.get("/templates").await;
    assert_eq!(status, 200, "{list}");
    let minimal = list["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "minimal")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(minimal["default"], true);
    assert_eq!(minimal["release"], "bookworm");
    assert_eq!(minimal["packages"], json!(MINIMAL_PACKAGES));
    assert!(
        minimal["size_bytes"].as_u64().unwrap() > 50_000_000,
        "{minimal}"
    );
    let (_, health) = s.get("/health").await;
    assert!(
        health["environment"]
            .as_str()
            .unwrap()
            .starts_with("template minimal"),
        "{health}"
    );
    // A template that is not built is a clear 400.
    let (status, body) = s
        .post(
            "/sandboxes/create",
            json!({"user_id": "alice", "template_id": "no-such-template"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no template \"no-such-template\""),
        "{body}"
    );
}

/// The original client's own walk-through (create, `ls -la`, write
/// hello.py, read it, `python hello.py`, delete), as a Python script with
/// httpx, against a control plane whose default template is the small one
/// (standing in for the full default template, which `scripts/serve.sh`
/// builds).
#[tokio::test]
async fn the_seed_client_walk_through_passes_on_the_default_template() {
    let Some(opts) = on_minimal_template() else {
        return;
    };
    let s = Server::start_with(opts);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/seed_walkthrough.py");
    let url = s.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(&script)
            .arg(&url)
            .output()
            .expect("python3")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named 'httpx'") {
        skip("httpx is not installed (python3 -m pip install httpx)");
        return;
    }
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("Python output: Hello!"), "{stdout}");
    assert!(stdout.contains("ok: delete"), "{stdout}");
}

/// A build that fails (an unknown package) names the package, and leaves
/// `template list` as it was and nothing in the templates folder.
#[tokio::test]
async fn a_failed_build_names_the_package_and_leaves_nothing() {
    if Command::new("mmdebstrap")
        .arg("--version")
        .output()
        .is_err()
    {
        skip("mmdebstrap is not installed");
        return;
    }
    let templates = tempfile::tempdir().unwrap();
    let s = Server::start_with(Options {
        extra_args: vec![
            "--templates-dir".into(),
            templates.path().display().to_string(),
            "--template-apt-cache".into(),
            template_apt_cache().display().to_string(),
        ],
        ..Options::default()
    });
    let before = s.cli(&["template", "list", "--json"]);
    assert!(before.status.success());
    assert_eq!(String::from_utf8_lossy(&before.stdout).trim(), "[]");

    let out = s.cli(&[
        "template",
        "build",
        "broken",
        "--package",
        "python3",
        "--package",
        "no-such-package-xyz",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    // The build's own output came through, then the error naming the package.
    assert!(stderr.contains("I: "), "{stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .unwrap_or("")
            .contains("Debian bookworm has no package no-such-package-xyz"),
        "{stderr}"
    );

    let after = s.cli(&["template", "list", "--json"]);
    assert_eq!(after.stdout, before.stdout);
    let left: Vec<_> = std::fs::read_dir(templates.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".apt-cache"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    // Bad names and package names are refused before anything runs.
    let (status, body) = s
        .post(
            "/templates",
            json!({"name": "../x", "packages": ["python3"]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let out = s.cli(&["template", "build", "x", "--package=--include=evil"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a Debian package name"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn only_keys_bound_to_no_user_build_or_delete_templates() {
    let Some(mut opts) = on_minimal_template() else {
        return;
    };
    opts.api_keys = Some(format!("{KEY_ADMIN},{KEY_ALICE}:alice"));
    let mut s = Server::start_with(opts);

    s.key = Some(KEY_ALICE.into());
    let (status, list) = s.get("/templates").await;
    assert_eq!(status, 200, "{list}");
    let (status, body) = s
        .post(
            "/templates",
            json!({"name": "mine", "packages": ["python3"]}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    let (status, body) = s.delete("/templates/minimal").await;
    assert_eq!(status, 403, "{body}");
    let out = s.cli(&["template", "build", "mine", "--package", "python3"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bound to user \"alice\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = s.cli(&["template", "delete", "minimal"]);
    assert!(!out.status.success());

    // Unkeyed requests are refused as before.
    s.key = None;
    let (status, _) = s.get("/templates").await;
    assert_eq!(status, 401);

    // The admin key may, but not while a sandbox uses the template.
    s.key = Some(KEY_ADMIN.into());
    let id = s.create("alice").await;
    let (status, body) = s.delete("/templates/minimal").await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains(&id),
        "{body}"
    );
    let (status, body) = s.delete("/templates/no-such-template").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = s
        .post(
            "/templates",
            json!({"name": "minimal", "packages": ["python3"]}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = s.delete(&format!("/sandboxes/{id}")).await;
    assert_eq!(status, 200, "{body}");
    assert!(shared_templates_dir().join("minimal/root").is_dir());
}

/// Without a template, sandboxes see this machine's system; /health says
/// so, and PATH holds only folders that exist inside.
#[tokio::test]
async fn without_a_template_path_holds_only_what_the_sandbox_sees() {
    if !bwrap_works() {
        skip("bubblewrap cannot make its namespaces here");
        return;
    }
    let host_path = std::env::var("PATH").unwrap_or_default();
    let s = Server::start_with(Options {
        env: vec![(
            "PATH".into(),
            format!("/root/.cargo/bin:/home/nobody/bin:/run/x:{host_path}"),
        )],
        ..Options::default()
    });
    let (_, health) = s.get("/health").await;
    let environment = health["environment"].as_str().unwrap();
    assert!(
        environment.starts_with("this machine's own system"),
        "{health}"
    );
    let id = s.create("alice").await;
    let out = s
        .run(
            &id,
            "echo \"$PATH\"; IFS=:; for d in $PATH; do test -d \"$d\" || echo missing \"$d\"; done",
        )
        .await;
    let stdout = out["stdout"].as_str().unwrap();
    let mut lines = stdout.lines();
    let path = lines.next().unwrap();
    assert!(!path.contains("/root") && !path.contains("/home"), "{path}");
    assert!(path.split(':').any(|d| d == "/usr/bin"), "{path}");
    let missing: Vec<&str> = lines.collect();
    assert!(missing.is_empty(), "{missing:?} in {path}");
    let out: Value = s.run(&id, "python3 -c 'print(1)'").await;
    assert_eq!(out["stdout"], "1\n", "{out}");
}
