//! apply_patch through the real binary: V4A and unified diffs, all or
//! nothing, errors a model can act on, confinement.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;
use serde_json::json;
use sha2::{Digest, Sha256};

fn read(server: &Server, rel: &str) -> String {
    std::fs::read_to_string(server.path(rel)).unwrap()
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn v4a_patch_updates_adds_deletes_and_moves_in_one_call() {
    let server = Server::start();
    write(
        &server.path("src/app.py"),
        "import os\n\ndef greet():\n    print(\"Hi\")\n    return 1\n",
    );
    write(&server.path("old.txt"), "obsolete\n");
    write(&server.path("lib/name.txt"), "alpha\nbeta\ngamma\n");
    let client = server.client().await;
    let patch = "*** Begin Patch\n\
                 *** Update File: src/app.py\n\
                 @@ def greet():\n\
                 -    print(\"Hi\")\n\
                 +    print(\"Hello, world!\")\n\
                 *** Add File: docs/new.md\n\
                 +# New\n\
                 +text\n\
                 *** Delete File: old.txt\n\
                 *** Update File: lib/name.txt\n\
                 *** Move to: renamed/dir/name.txt\n\
                 @@\n \
                 alpha\n\
                 -beta\n\
                 +BETA\n\
                 *** End Patch\n";
    let result = call(&client, "apply_patch", json!({ "patch": patch })).await;
    let out = ok(&result);
    assert_eq!(
        read(&server, "src/app.py"),
        "import os\n\ndef greet():\n    print(\"Hello, world!\")\n    return 1\n"
    );
    assert_eq!(read(&server, "docs/new.md"), "# New\ntext\n");
    assert!(!server.path("old.txt").exists());
    assert!(!server.path("lib/name.txt").exists());
    assert_eq!(
        read(&server, "renamed/dir/name.txt"),
        "alpha\nBETA\ngamma\n"
    );

    let files = out["files"].as_array().unwrap();
    let actions: Vec<&str> = files
        .iter()
        .map(|f| f["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["updated", "added", "deleted", "moved"]);
    assert_eq!(
        (files[0]["added"].as_u64(), files[0]["removed"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(files[3]["moved_from"], "lib/name.txt");
    // The returned hash chains into edit_file's precondition.
    let hash = files[0]["sha256"].as_str().unwrap();
    assert_eq!(
        hash,
        sha(&std::fs::read(server.path("src/app.py")).unwrap())
    );
    let edited = call(
        &client,
        "edit_file",
        json!({"path": "src/app.py", "old_string": "return 1", "new_string": "return 2",
               "expected_sha256": hash}),
    )
    .await;
    ok(&edited);
}

#[tokio::test]
async fn a_hunk_that_does_not_match_changes_nothing_and_names_the_near_match() {
    let server = Server::start();
    write(&server.path("a.txt"), "one\ntwo\nthree\n");
    write(
        &server.path("b.rs"),
        "fn main() {\n    let x = 1;\n    let y = 2;\n    println!(\"{x}\");\n}\n",
    );
    let client = server.client().await;
    let patch = "*** Begin Patch\n\
                 *** Update File: a.txt\n\
                 @@\n one\n-two\n+TWO\n\
                 *** Add File: c.txt\n+new\n\
                 *** Update File: b.rs\n\
                 @@\n     let x = 1;\n-    let y = 3;\n+    let y = 4;\n     println!(\"{x}\");\n\
                 *** End Patch\n";
    let msg = err(&call(&client, "apply_patch", json!({ "patch": patch })).await);
    assert!(msg.contains("nothing was changed"), "{msg}");
    assert!(msg.contains("b.rs") && msg.contains("hunk 1"), "{msg}");
    // The nearest place: line 2, where the third line differs.
    assert!(
        msg.contains("line 2") && msg.contains("let y = 3;") && msg.contains("let y = 2;"),
        "{msg}"
    );
    assert_eq!(read(&server, "a.txt"), "one\ntwo\nthree\n");
    assert!(!server.path("c.txt").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&server.workspace)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn context_tolerates_whitespace_and_typographic_punctuation_and_keeps_crlf_and_mode() {
    let server = Server::start();
    let path = server.path("run.sh");
    std::fs::write(
        &path,
        "#!/bin/sh\r\necho \u{201C}hi\u{201D}  \r\necho done\r\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let client = server.client().await;
    let patch = "*** Begin Patch\n*** Update File: run.sh\n@@\n echo \"hi\"\n-echo done\n+echo finished\n*** End Patch";
    ok(&call(&client, "apply_patch", json!({ "patch": patch })).await);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "#!/bin/sh\r\necho \u{201C}hi\u{201D}  \r\necho finished\r\n"
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o755
    );
}

#[tokio::test]
async fn end_of_file_hunks_and_anchors_pick_the_right_place() {
    let server = Server::start();
    write(
        &server.path("f.py"),
        "class A:\n    x = 1\nclass B:\n    x = 1\n# end\nx = 1\n",
    );
    let client = server.client().await;
    let patch = "*** Begin Patch\n*** Update File: f.py\n@@ class B:\n-    x = 1\n+    x = 2\n\
                 @@\n-x = 1\n+x = 3\n*** End of File\n*** End Patch\n";
    ok(&call(&client, "apply_patch", json!({ "patch": patch })).await);
    assert_eq!(
        read(&server, "f.py"),
        "class A:\n    x = 1\nclass B:\n    x = 2\n# end\nx = 3\n"
    );
}

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "-c",
            "core.quotepath=true",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn a_git_diff_of_two_commits_applies() {
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    git(r, &["init", "-q"]);
    let before: &[(&str, &str)] = &[
        ("keep.txt", "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n"),
        ("gone.txt", "bye\n"),
        ("old name.txt", "same\ncontent\nhere\nline\n"),
        ("tail.txt", "no newline at end"),
        ("script.sh", "echo hi\n"),
    ];
    for (p, c) in before {
        std::fs::write(r.join(p), c).unwrap();
    }
    git(r, &["add", "-A"]);
    git(r, &["commit", "-qm", "one"]);
    std::fs::write(r.join("keep.txt"), "1\n2\nthree\n4\n5\n6\n7\n8\nnine\n10\n").unwrap();
    std::fs::remove_file(r.join("gone.txt")).unwrap();
    std::fs::rename(r.join("old name.txt"), r.join("new\u{e9} name.txt")).unwrap();
    std::fs::write(r.join("tail.txt"), "now with newline\n").unwrap();
    std::fs::set_permissions(r.join("script.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(r.join("added.txt"), "fresh\n").unwrap();
    git(r, &["add", "-A"]);
    git(r, &["commit", "-qm", "two"]);
    let diff = git(r, &["diff", "-M", "HEAD~1", "HEAD"]);
    assert!(
        diff.contains("rename from") && diff.contains("\\ No newline") && diff.contains("new mode"),
        "{diff}"
    );

    let server = Server::start();
    for (p, c) in before {
        std::fs::write(server.path(p), c).unwrap();
    }
    let client = server.client().await;
    let out = ok(&call(&client, "apply_patch", json!({ "patch": diff })).await);
    assert_eq!(out["files"].as_array().unwrap().len(), 6, "{out}");
    for p in [
        "keep.txt",
        "new\u{e9} name.txt",
        "tail.txt",
        "script.sh",
        "added.txt",
    ] {
        assert_eq!(
            read(&server, p),
            std::fs::read_to_string(r.join(p)).unwrap(),
            "{p}"
        );
    }
    assert!(!server.path("gone.txt").exists());
    assert!(!server.path("old name.txt").exists());
    let mode = std::fs::metadata(server.path("script.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
}

#[tokio::test]
async fn paths_outside_the_workspace_are_refused() {
    let server = Server::start();
    write(&server.path("in.txt"), "x\n");
    let client = server.client().await;
    let outside = server.workspace.parent().unwrap().join("escaped.txt");
    for patch in [
        "*** Begin Patch\n*** Add File: in2.txt\n+ok\n*** Add File: ../escaped.txt\n+pwned\n*** End Patch\n".to_owned(),
        format!("*** Begin Patch\n*** Add File: in2.txt\n+ok\n*** Add File: {}\n+pwned\n*** End Patch\n", outside.display()),
        "*** Begin Patch\n*** Update File: in.txt\n*** Move to: ../escaped.txt\n@@\n-x\n+y\n*** End Patch\n".to_owned(),
        "--- a/in.txt\n+++ b/../escaped.txt\n@@ -1 +1 @@\n-x\n+y\n".to_owned(),
    ] {
        let msg = err(&call(&client, "apply_patch", json!({ "patch": patch })).await);
        assert!(msg.contains("outside the workspace"), "{msg}");
    }
    std::os::unix::fs::symlink("/etc", server.path("etc")).unwrap();
    let msg = err(&call(
        &client,
        "apply_patch",
        json!({"patch": "*** Begin Patch\n*** Add File: etc/evil\n+x\n*** End Patch\n"}),
    )
    .await);
    assert!(msg.contains("outside the workspace"), "{msg}");
    assert!(!outside.exists());
    assert!(!server.path("in2.txt").exists());
    assert_eq!(read(&server, "in.txt"), "x\n");
}

#[tokio::test]
async fn malformed_binary_and_truncated_patches_are_refused_clearly() {
    let server = Server::start();
    write(&server.path("f.txt"), "a\n");
    let client = server.client().await;
    let cases = [
        (
            "*** Begin Patch\n*** Update File: f.txt\n@@\n-a\n+b\n",
            "cut short",
        ),
        (
            "diff --git a/x.png b/x.png\nindex 1..2 100644\nGIT binary patch\nliteral 5\n",
            "binary",
        ),
        (
            "*** Begin Patch\n*** Frobnicate File: f.txt\n*** End Patch\n",
            "expected a file header",
        ),
        ("hello", "changes no file"),
        (
            "*** Begin Patch\n*** Update File: missing.txt\n@@\n-a\n+b\n*** End Patch\n",
            "does not exist",
        ),
        (
            "*** Begin Patch\n*** Delete File: nope.txt\n*** End Patch\n",
            "does not exist",
        ),
    ];
    for (patch, expected) in cases {
        let msg = err(&call(&client, "apply_patch", json!({ "patch": patch })).await);
        assert!(msg.contains(expected), "{patch:?}: {msg}");
    }
    assert_eq!(read(&server, "f.txt"), "a\n");
}

#[tokio::test]
async fn utf16_and_bom_files_keep_their_encoding() {
    let server = Server::start();
    let utf16: Vec<u8> = b"\xFF\xFE"
        .iter()
        .copied()
        .chain(
            "caf\u{e9}\r\nold\r\n"
                .encode_utf16()
                .flat_map(u16::to_le_bytes),
        )
        .collect();
    std::fs::write(server.path("w.txt"), &utf16).unwrap();
    std::fs::write(server.path("b.txt"), "\u{feff}one\ntwo\n").unwrap();
    let client = server.client().await;
    let patch = "*** Begin Patch\n*** Update File: w.txt\n@@\n caf\u{e9}\n-old\n+new\n\
                 *** Update File: b.txt\n@@\n-two\n+2\n*** End Patch\n";
    ok(&call(&client, "apply_patch", json!({ "patch": patch })).await);
    let expected: Vec<u8> = b"\xFF\xFE"
        .iter()
        .copied()
        .chain(
            "caf\u{e9}\r\nnew\r\n"
                .encode_utf16()
                .flat_map(u16::to_le_bytes),
        )
        .collect();
    assert_eq!(std::fs::read(server.path("w.txt")).unwrap(), expected);
    assert_eq!(read(&server, "b.txt"), "\u{feff}one\n2\n");
}
