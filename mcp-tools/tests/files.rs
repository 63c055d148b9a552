//! read_file, write_file, list_directory and search_files through MCP,
//! and the workspace boundary for each.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Server, call, err, ok, text, write};
use serde_json::json;

#[tokio::test]
async fn write_then_read_round_trips_and_creates_parents() {
    let server = Server::start();
    let client = server.client().await;

    let out = ok(&call(
        &client,
        "write_file",
        json!({"path": "a/b/c.txt", "content": "one\ntwo\n"}),
    )
    .await);
    assert_eq!(out["created"], true);
    assert_eq!(out["bytes_written"], 8);
    assert_eq!(
        std::fs::read_to_string(server.path("a/b/c.txt")).unwrap(),
        "one\ntwo\n"
    );

    let result = call(&client, "read_file", json!({"path": "a/b/c.txt"})).await;
    let out = ok(&result);
    assert_eq!(text(&result), "one\ntwo\n");
    assert_eq!(out["content"], "one\ntwo\n");
    assert_eq!(out["total_lines"], 2);
    assert_eq!(out["more"], false);
    assert_eq!(out["sha256"].as_str().unwrap().len(), 64);

    // The seed's HTTP layer rejected empty content; an empty file is valid.
    let out = ok(&call(
        &client,
        "write_file",
        json!({"path": "a/b/c.txt", "content": ""}),
    )
    .await);
    assert_eq!(out["created"], false);
    assert_eq!(std::fs::read(server.path("a/b/c.txt")).unwrap(), b"");
}

#[tokio::test]
async fn write_keeps_mode_and_leaves_no_temp_files() {
    let server = Server::start();
    let client = server.client().await;
    let script = server.path("run.sh");
    write(&script, "#!/bin/sh\necho old\n");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    ok(&call(
        &client,
        "write_file",
        json!({"path": "run.sh", "content": "#!/bin/sh\necho new\n"}),
    )
    .await);
    let mode = std::fs::metadata(&script).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755);
    let names: Vec<_> = std::fs::read_dir(&server.workspace)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["run.sh"]);
}

#[tokio::test]
async fn read_refuses_binary_directories_missing_and_large_files() {
    let server = Server::start_with(common::Options {
        extra_args: vec!["--max-read-bytes".into(), "1000".into()],
        ..Default::default()
    });
    let client = server.client().await;
    std::fs::write(server.path("blob.bin"), [0u8, 1, 2, 255, 0, 7]).unwrap();
    write(&server.path("big.txt"), &"line of text\n".repeat(200));
    std::fs::create_dir(server.path("dir")).unwrap();

    let msg = err(&call(&client, "read_file", json!({"path": "blob.bin"})).await);
    assert!(msg.contains("binary") && msg.contains("6 bytes"), "{msg}");

    let msg = err(&call(&client, "read_file", json!({"path": "big.txt"})).await);
    assert!(
        msg.contains("2600 bytes") && msg.contains("offset"),
        "{msg}"
    );

    let msg = err(&call(&client, "read_file", json!({"path": "dir"})).await);
    assert!(msg.contains("directory"), "{msg}");

    let msg = err(&call(&client, "read_file", json!({"path": "nope.txt"})).await);
    assert!(msg.contains("does not exist"), "{msg}");

    // A ranged read of the large file works and says how to go on.
    let result = call(
        &client,
        "read_file",
        json!({"path": "big.txt", "offset": 10, "limit": 5}),
    )
    .await;
    let out = ok(&result);
    assert_eq!(out["start_line"], 10);
    assert_eq!(out["end_line"], 14);
    assert_eq!(out["total_lines"], 200);
    assert_eq!(out["more"], true);
    assert!(
        text(&result).starts_with("    10\tline of text\n"),
        "{}",
        text(&result)
    );
    assert!(text(&result).contains("offset=15"), "{}", text(&result));
}

#[tokio::test]
async fn list_directory_is_sorted_marks_folders_and_reports_errors() {
    let server = Server::start();
    let client = server.client().await;
    write(&server.path("b.txt"), "");
    write(&server.path("a/inner.txt"), "");
    write(&server.path("C.md"), "");

    let result = call(&client, "list_directory", json!({})).await;
    let out = ok(&result);
    assert_eq!(out["entries"], json!(["C.md", "a/", "b.txt"]));
    assert_eq!(text(&result), "C.md\na/\nb.txt");

    let out = ok(&call(&client, "list_directory", json!({"path": "a"})).await);
    assert_eq!(out["entries"], json!(["inner.txt"]));

    let msg = err(&call(&client, "list_directory", json!({"path": "missing"})).await);
    assert!(msg.contains("does not exist"), "{msg}");
    let msg = err(&call(&client, "list_directory", json!({"path": "b.txt"})).await);
    assert!(msg.contains("not a directory"), "{msg}");
}

#[tokio::test]
async fn search_files_globs_like_rg_files() {
    let server = Server::start();
    let client = server.client().await;
    write(&server.path("src/main.rs"), "fn main() {}");
    write(&server.path("src/lib/util.rs"), "");
    write(&server.path("README.md"), "");
    write(&server.path("target/debug/build.rs"), "");
    write(&server.path(".gitignore"), "target/\n");
    write(&server.path(".hidden/x.rs"), "");

    let out = ok(&call(&client, "search_files", json!({"pattern": "*.rs"})).await);
    let mut files: Vec<String> = serde_json::from_value(out["files"].clone()).unwrap();
    files.sort();
    assert_eq!(files, [".hidden/x.rs", "src/lib/util.rs", "src/main.rs"]);
    let out = ok(&call(
        &client,
        "search_files",
        json!({"pattern": "*.rs", "hidden": false}),
    )
    .await);
    // .hidden/ is skipped; .gitignore is no *.rs file either way.
    assert_eq!(out["skipped"]["hidden"], 1, "{out}");
    assert_eq!(out["skipped"]["ignored"], 1, "{out}");

    let out = ok(&call(
        &client,
        "search_files",
        json!({"pattern": "*.rs", "path": "src/lib"}),
    )
    .await);
    assert_eq!(out["files"], json!(["src/lib/util.rs"]));

    let out = ok(&call(&client, "search_files", json!({"pattern": "*.nothing"})).await);
    assert_eq!(out["total"], 0);

    let msg = err(&call(&client, "search_files", json!({"pattern": "a{b"})).await);
    assert!(msg.contains("invalid glob"), "{msg}");
}

/// Every way out of the workspace, for every tool that takes a path.
#[tokio::test]
async fn escapes_are_refused_for_every_path_tool() {
    let server = Server::start();
    let client = server.client().await;
    let outside = tempfile::tempdir().unwrap();
    write(&outside.path().join("secret.txt"), "secret");
    std::os::unix::fs::symlink(outside.path(), server.path("link_out")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        server.path("file_link_out"),
    )
    .unwrap();
    let abs_outside = outside.path().join("secret.txt").display().to_string();

    let escapes = [
        "../../etc/hostname",
        "..",
        "a/../../x",
        "/etc/hostname",
        abs_outside.as_str(),
        "link_out/secret.txt",
        "link_out",
        "file_link_out",
        "link_out/new/dir/file.txt",
        "bad\0path",
    ];
    for path in escapes {
        let calls = [
            ("read_file", json!({"path": path})),
            ("write_file", json!({"path": path, "content": "pwned"})),
            ("list_directory", json!({"path": path})),
            ("search_files", json!({"pattern": "*", "path": path})),
        ];
        for (tool, args) in calls {
            let result = call(&client, tool, args).await;
            let msg = err(&result);
            assert!(
                msg.contains("outside the workspace") || msg.contains("NUL"),
                "{tool}({path:?}) was not refused clearly: {msg}"
            );
        }
    }
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret.txt")).unwrap(),
        "secret"
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
}

#[tokio::test]
async fn absolute_paths_inside_the_workspace_work() {
    let server = Server::start();
    let client = server.client().await;
    let abs = server.path("x/y.txt").display().to_string();
    ok(&call(&client, "write_file", json!({"path": abs, "content": "hi"})).await);
    let out = ok(&call(&client, "read_file", json!({"path": "x/y.txt"})).await);
    assert_eq!(out["content"], "hi");
}

/// A symlink swapped in for a folder after the path was checked must not
/// let a write land outside: cap-std resolves the path again at write time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_a_symlink_planted_during_the_call_are_refused() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let server = Server::start();
    let client = server.client().await;
    let outside = tempfile::tempdir().unwrap();
    let dir = server.path("d");
    std::fs::create_dir(&dir).unwrap();

    // Flip d between a folder and a symlink out for as long as the writes
    // run, whatever the writes leave in it, and count the flips.
    let stop = Arc::new(AtomicBool::new(false));
    let flips = Arc::new(AtomicUsize::new(0));
    let flipper = {
        let (dir, target) = (dir.clone(), outside.path().to_path_buf());
        let (stop, flips) = (stop.clone(), flips.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match std::fs::symlink_metadata(&dir) {
                    Ok(m) if m.file_type().is_symlink() => std::fs::remove_file(&dir).unwrap(),
                    Ok(_) => std::fs::remove_dir_all(&dir).unwrap_or(()),
                    Err(_) => {}
                }
                if std::os::unix::fs::symlink(&target, &dir).is_ok() {
                    flips.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::yield_now();
                let _ = std::fs::remove_file(&dir);
                let _ = std::fs::create_dir(&dir);
                std::thread::yield_now();
            }
        })
    };
    let (mut written, mut refused) = (0, 0);
    for i in 0..300 {
        let result = call(
            &client,
            "write_file",
            json!({"path": format!("d/f{i}.txt"), "content": "x"}),
        )
        .await;
        if result.is_error == Some(true) {
            if text(&result).contains("symlink") {
                refused += 1;
            }
        } else {
            written += 1;
        }
    }
    let flips_during_writes = flips.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    flipper.join().unwrap();
    let leaked: Vec<_> = std::fs::read_dir(outside.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        leaked.is_empty(),
        "{} writes escaped, e.g. {:?}",
        leaked.len(),
        leaked.first()
    );
    // The race ran during the writes: writes met both the folder and the
    // symlink.
    assert!(flips_during_writes > 0, "no flip during the writes");
    assert!(refused > 0, "no write met the symlink ({written} written)");
    assert!(written > 0, "no write met the folder ({refused} refused)");
}

#[tokio::test]
async fn bad_arguments_are_tool_errors_not_protocol_faults() {
    let server = Server::start();
    let client = server.client().await;
    let msg = err(&call(&client, "read_file", json!({})).await);
    assert!(msg.contains("path"), "{msg}");
    let msg = err(&call(&client, "write_file", json!({"path": 7, "content": "x"})).await);
    assert!(msg.contains("expected a string"), "{msg}");
    // The session still works afterwards.
    ok(&call(&client, "list_directory", json!({})).await);
}

#[tokio::test]
async fn every_tool_has_schemas_annotations_and_a_description() {
    let server = Server::start();
    let client = server.client().await;
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    for seed_tool in [
        "read_file",
        "write_file",
        "list_directory",
        "run_command",
        "search_files",
    ] {
        assert!(names.contains(&seed_tool.to_owned()), "missing {seed_tool}");
    }
    for tool in &tools {
        assert!(
            tool.description.as_ref().is_some_and(|d| d.len() > 20),
            "{}",
            tool.name
        );
        assert!(
            tool.output_schema.is_some(),
            "{} has no output schema",
            tool.name
        );
        let ann = tool.annotations.as_ref().expect("annotations");
        assert!(ann.read_only_hint.is_some() && ann.destructive_hint.is_some());
    }
    // Only JSON Schema's own formats: validators warn on schemars' "uint".
    let listed = serde_json::to_string(&tools).unwrap();
    for format in ["\"uint", "\"int32", "\"int64", "\"uint64", "\"double"] {
        assert!(
            !listed.contains(&format!("\"format\":{format}")),
            "{format} in tools/list"
        );
    }
    let read_only = |name: &str| {
        tools
            .iter()
            .find(|t| t.name == name)
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()
            .read_only_hint
    };
    assert_eq!(read_only("read_file"), Some(true));
    assert_eq!(read_only("write_file"), Some(false));
    assert_eq!(read_only("run_command"), Some(false));
}

/// A name at the file system's 255-byte limit can still be written.
#[tokio::test]
async fn longest_file_names_can_be_written() {
    let server = Server::start();
    let client = server.client().await;
    let name = "n".repeat(255);
    ok(&call(&client, "write_file", json!({"path": name, "content": "x"})).await);
    ok(&call(
        &client,
        "edit_file",
        json!({"path": name, "old_string": "x", "new_string": "y"}),
    )
    .await);
    assert_eq!(std::fs::read_to_string(server.path(&name)).unwrap(), "y");
}
