//! What grep and search_files return can be used as it is: workspace-relative
//! paths whatever form `path` took, hidden folders searched (VCS folders
//! not), and every skipped entry counted and explained.

mod common;

use common::{Server, call, ok, text, write};
use serde_json::{Value, json};

fn strings(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = serde_json::from_value(v.clone()).unwrap();
    out.sort();
    out
}

/// A path a search returns opens the file it names, in every output mode
/// and whatever form the `path` argument took.
#[tokio::test]
async fn returned_paths_are_workspace_relative() {
    let server = Server::start();
    let client = server.client().await;
    write(&server.path("gp/one.txt"), "needle\n");
    write(&server.path("one.txt"), "other\n");
    let absolute = server.path("gp").display().to_string();
    for path in ["gp", "./gp", "gp/", absolute.as_str(), "gp/../gp"] {
        let out = ok(&call(&client, "grep", json!({"pattern": "needle", "path": path})).await);
        assert_eq!(out["results"], json!(["gp/one.txt"]), "path {path}");
        let out = ok(&call(
            &client,
            "grep",
            json!({"pattern": "needle", "path": path, "output_mode": "content"}),
        )
        .await);
        assert_eq!(
            out["results"],
            json!(["gp/one.txt:1:needle"]),
            "path {path}"
        );
        let result = call(
            &client,
            "grep",
            json!({"pattern": "needle", "path": path, "output_mode": "count"}),
        )
        .await;
        assert_eq!(
            ok(&result)["results"],
            json!(["gp/one.txt:1"]),
            "path {path}"
        );
        assert!(
            text(&result).starts_with("gp/one.txt:1"),
            "{}",
            text(&result)
        );
        let result = call(
            &client,
            "search_files",
            json!({"pattern": "*.txt", "path": path}),
        )
        .await;
        assert_eq!(ok(&result)["files"], json!(["gp/one.txt"]), "path {path}");
        assert!(text(&result).starts_with("gp/one.txt"), "{}", text(&result));
    }
    // A single file as `path`.
    let out = ok(&call(
        &client,
        "grep",
        json!({"pattern": "needle", "path": "gp/one.txt", "output_mode": "content"}),
    )
    .await);
    assert_eq!(out["results"], json!(["gp/one.txt:1:needle"]));
    // The returned path reads the right file.
    let out = ok(&call(&client, "read_file", json!({"path": "gp/one.txt"})).await);
    assert_eq!(out["content"], "needle\n");
}

/// Dot folders are searched; VCS folders are not unless named; a glob that
/// names a hidden segment includes it even with hidden=false.
#[tokio::test]
async fn hidden_folders_are_searched_and_vcs_folders_are_not() {
    let server = Server::start();
    let client = server.client().await;
    write(
        &server.path(".github/workflows/ci.yml"),
        "env:\n  token: ${{ secrets.GITHUB_TOKEN }}\n",
    );
    write(&server.path(".git/config"), "GITHUB_TOKEN in git config\n");
    write(&server.path("src/a.rs"), "fn main() {}\n");

    let out = ok(&call(&client, "grep", json!({"pattern": "GITHUB_TOKEN"})).await);
    assert_eq!(out["results"], json!([".github/workflows/ci.yml"]));
    let out = ok(&call(
        &client,
        "search_files",
        json!({"pattern": ".github/workflows/*.yml"}),
    )
    .await);
    assert_eq!(out["files"], json!([".github/workflows/ci.yml"]));
    let out = ok(&call(
        &client,
        "search_files",
        json!({"pattern": ".github/workflows/*.yml", "hidden": false}),
    )
    .await);
    assert_eq!(out["files"], json!([".github/workflows/ci.yml"]));

    // The .git folder is searched only when named.
    let out = ok(&call(
        &client,
        "grep",
        json!({"pattern": "GITHUB_TOKEN", "path": ".git"}),
    )
    .await);
    assert_eq!(out["results"], json!([".git/config"]));
    let out = ok(&call(&client, "search_files", json!({"pattern": ".git/*"})).await);
    assert_eq!(out["files"], json!([".git/config"]));
    let out = ok(&call(&client, "search_files", json!({"pattern": "config"})).await);
    assert_eq!(out["total"], 0);
}

/// An empty result that skipped something says what, how many, and which
/// argument includes it.
#[tokio::test]
async fn skipped_entries_are_counted_and_explained() {
    let server = Server::start();
    let client = server.client().await;
    write(&server.path(".gitignore"), "build/\n");
    write(&server.path("build/gen.rs"), "needle\n");
    write(&server.path("build/more.rs"), "needle\n");
    write(&server.path(".env"), "needle\n");
    std::fs::write(server.path("blob.bin"), b"needle\x00\x01").unwrap();
    write(&server.path("locked/secret.rs"), "needle\n");
    // Root reads everything; the unreadable case needs an ordinary user.
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            server.path("locked"),
            std::fs::Permissions::from_mode(0o000),
        )
        .unwrap();
    } else {
        std::fs::remove_dir_all(server.path("locked")).unwrap();
    }

    let result = call(
        &client,
        "grep",
        json!({"pattern": "needle", "hidden": false}),
    )
    .await;
    let out = ok(&result);
    assert_eq!(out["total"], 0);
    assert_eq!(out["skipped"]["ignored"], 2, "{out}");
    assert_eq!(out["skipped"]["binary"], 1, "{out}");
    assert_eq!(out["skipped"]["hidden"], 2, "{out}");
    let shown = text(&result);
    for note in [
        "No matches",
        "2 hidden files and folders (hidden=true includes them)",
        "2 files excluded by .gitignore/.ignore (no_ignore=true includes them)",
        "1 binary file",
    ] {
        assert!(shown.contains(note), "{note:?} not in {shown}");
    }
    if !root {
        assert_eq!(out["skipped"]["unreadable"], 1, "{out}");
        assert!(shown.contains("1 unreadable entry"), "{shown}");
    }

    let result = call(
        &client,
        "search_files",
        json!({"pattern": "*.rs", "hidden": false}),
    )
    .await;
    let out = ok(&result);
    assert_eq!(out["total"], 0);
    assert_eq!(out["skipped"]["ignored"], 2, "{out}");
    assert!(
        text(&result)
            .contains("2 files excluded by .gitignore/.ignore (no_ignore=true includes them)"),
        "{}",
        text(&result)
    );

    // With the arguments the note names, they are found.
    let out = ok(&call(
        &client,
        "grep",
        json!({"pattern": "needle", "no_ignore": true}),
    )
    .await);
    assert_eq!(
        strings(&out["results"]),
        [".env", "build/gen.rs", "build/more.rs"]
    );
    assert_eq!(out["skipped"]["ignored"], 0);
    assert_eq!(out["skipped"]["hidden"], 0);
}
