//! edit_file, read_file paging, and the file operations through MCP.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Server, call, err, ok, text, write};
use serde_json::json;

#[tokio::test]
async fn edit_replaces_a_unique_string_and_shows_the_lines() {
    let server = Server::start();
    let client = server.client().await;
    write(
        &server.path("m.py"),
        "def a():\n    return 1\n\ndef b():\n    return 2\n",
    );
    std::fs::set_permissions(server.path("m.py"), std::fs::Permissions::from_mode(0o750)).unwrap();

    let result = call(
        &client,
        "edit_file",
        json!({"path": "m.py", "old_string": "return 2", "new_string": "return 3"}),
    )
    .await;
    let out = ok(&result);
    assert_eq!(out["replacements"], 1);
    assert_eq!(out["first_line"], 5);
    assert!(
        text(&result).contains("     5\t    return 3"),
        "{}",
        text(&result)
    );
    assert_eq!(
        std::fs::read_to_string(server.path("m.py")).unwrap(),
        "def a():\n    return 1\n\ndef b():\n    return 3\n"
    );
    let mode = std::fs::metadata(server.path("m.py"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o750);
}

#[tokio::test]
async fn ambiguous_missing_and_noop_edits_are_refused() {
    let server = Server::start();
    let client = server.client().await;
    write(&server.path("f.txt"), "x = 1\ny = 2\nx = 1\n");

    let msg = err(&call(
        &client,
        "edit_file",
        json!({"path": "f.txt", "old_string": "x = 1", "new_string": "x = 9"}),
    )
    .await);
    assert!(
        msg.contains("occurs 2 times") && msg.contains("lines 1, 3"),
        "{msg}"
    );
    let msg = err(&call(
        &client,
        "edit_file",
        json!({"path": "f.txt", "old_string": "z = 1", "new_string": "q"}),
    )
    .await);
    assert!(msg.contains("not found"), "{msg}");
    let msg = err(&call(
        &client,
        "edit_file",
        json!({"path": "f.txt", "old_string": "y", "new_string": "y"}),
    )
    .await);
    assert!(msg.contains("the same"), "{msg}");
    assert_eq!(
        std::fs::read_to_string(server.path("f.txt")).unwrap(),
        "x = 1\ny = 2\nx = 1\n"
    );

    let out = ok(&call(
        &client,
        "edit_file",
        json!({"path": "f.txt", "old_string": "x = 1", "new_string": "x = 9", "replace_all": true}),
    )
    .await);
    assert_eq!(out["replacements"], 2);
    assert_eq!(
        std::fs::read_to_string(server.path("f.txt")).unwrap(),
        "x = 9\ny = 2\nx = 9\n"
    );
}

#[tokio::test]
async fn stale_sha_is_refused_and_fresh_sha_is_accepted() {
    let server = Server::start();
    let client = server.client().await;
    write(&server.path("f.txt"), "alpha\n");
    let read = ok(&call(&client, "read_file", json!({"path": "f.txt"})).await);
    let sha = read["sha256"].as_str().unwrap().to_owned();

    // Someone else changes the file after the model read it.
    write(&server.path("f.txt"), "alpha beta\n");
    let msg = err(&call(
        &client,
        "edit_file",
        json!({"path": "f.txt", "old_string": "alpha", "new_string": "gamma", "expected_sha256": sha}),
    )
    .await);
    assert!(msg.contains("changed since it was read"), "{msg}");
    assert_eq!(
        std::fs::read_to_string(server.path("f.txt")).unwrap(),
        "alpha beta\n"
    );

    let read = ok(&call(&client, "read_file", json!({"path": "f.txt"})).await);
    let out = ok(&call(
        &client,
        "edit_file",
        json!({"path": "f.txt", "old_string": "alpha", "new_string": "gamma", "expected_sha256": read["sha256"]}),
    )
    .await);
    let after = ok(&call(&client, "read_file", json!({"path": "f.txt"})).await);
    assert_eq!(out["sha256"], after["sha256"]);
}

#[tokio::test]
async fn crlf_files_keep_their_line_endings() {
    let server = Server::start();
    let client = server.client().await;
    std::fs::write(server.path("w.txt"), "one\r\ntwo\r\nthree\r\n").unwrap();
    let read = ok(&call(&client, "read_file", json!({"path": "w.txt", "offset": 1})).await);
    assert_eq!(read["crlf"], true);
    assert_eq!(read["content"], "     1\tone\n     2\ttwo\n     3\tthree\n");
    ok(&call(
        &client,
        "edit_file",
        json!({"path": "w.txt", "old_string": "one\ntwo", "new_string": "1\n2"}),
    )
    .await);
    assert_eq!(
        std::fs::read(server.path("w.txt")).unwrap(),
        b"1\r\n2\r\nthree\r\n"
    );
}

#[tokio::test]
async fn read_file_pages_cuts_long_lines_and_shows_bad_utf8_lossily() {
    let server = Server::start();
    let client = server.client().await;
    let body: String = (1..=2500).map(|i| format!("line {i}\n")).collect();
    write(&server.path("long.txt"), &body);

    // A whole read (within the size limit) gives the file exactly.
    let out = ok(&call(&client, "read_file", json!({"path": "long.txt"})).await);
    assert_eq!(out["content"], body);
    assert_eq!(out["end_line"], 2500);
    assert_eq!(out["more"], false);
    // A ranged read pages: 2000 lines unless limit says otherwise.
    let out = ok(&call(
        &client,
        "read_file",
        json!({"path": "long.txt", "offset": 1}),
    )
    .await);
    assert_eq!(out["end_line"], 2000);
    assert_eq!(out["total_lines"], 2500);
    assert_eq!(out["more"], true);
    let out = ok(&call(
        &client,
        "read_file",
        json!({"path": "long.txt", "offset": 2001}),
    )
    .await);
    assert_eq!(out["start_line"], 2001);
    assert_eq!(out["end_line"], 2500);
    assert_eq!(out["more"], false);
    let msg = err(&call(
        &client,
        "read_file",
        json!({"path": "long.txt", "offset": 3000}),
    )
    .await);
    assert!(msg.contains("past the end"), "{msg}");

    let wide = format!("{}\n", "x".repeat(5000));
    write(&server.path("wide.txt"), &wide);
    let out = ok(&call(&client, "read_file", json!({"path": "wide.txt"})).await);
    assert_eq!(out["content"], wide);
    assert_eq!(out["cut_lines"], 0);
    let out = ok(&call(
        &client,
        "read_file",
        json!({"path": "wide.txt", "limit": 10}),
    )
    .await);
    assert_eq!(out["cut_lines"], 1);
    assert!(
        out["content"]
            .as_str()
            .unwrap()
            .contains("[3000 more characters]")
    );

    std::fs::write(server.path("latin1.txt"), b"caf\xe9\n").unwrap();
    let result = call(&client, "read_file", json!({"path": "latin1.txt"})).await;
    let out = ok(&result);
    assert_eq!(out["lossy"], true);
    assert_eq!(out["content"], "caf\u{FFFD}\n");
    assert!(text(&result).contains("not valid UTF-8"));
}

#[tokio::test]
async fn create_move_delete_and_info() {
    let server = Server::start();
    let client = server.client().await;

    let out = ok(&call(&client, "create_directory", json!({"path": "a/b/c"})).await);
    assert_eq!(out["created"], true);
    let out = ok(&call(&client, "create_directory", json!({"path": "a/b/c"})).await);
    assert_eq!(out["created"], false);
    assert!(server.path("a/b/c").is_dir());

    write(&server.path("a/x.txt"), "one\ntwo\n");
    let out = ok(&call(&client, "file_info", json!({"path": "a/x.txt"})).await);
    assert_eq!(out["kind"], "file");
    assert_eq!(out["size"], 8);
    assert_eq!(out["line_count"], 2);
    assert_eq!(out["is_binary"], false);
    assert!(out["modified"].as_str().unwrap().ends_with('Z'));
    let out = ok(&call(&client, "file_info", json!({"path": "a"})).await);
    assert_eq!(out["kind"], "dir");
    assert_eq!(out["entries"], 2);

    ok(&call(
        &client,
        "move_path",
        json!({"source": "a/x.txt", "destination": "d/y.txt"}),
    )
    .await);
    assert!(!server.path("a/x.txt").exists());
    assert_eq!(
        std::fs::read_to_string(server.path("d/y.txt")).unwrap(),
        "one\ntwo\n"
    );

    write(&server.path("z.txt"), "z");
    let msg = err(&call(
        &client,
        "move_path",
        json!({"source": "z.txt", "destination": "d/y.txt"}),
    )
    .await);
    assert!(msg.contains("overwrite=true"), "{msg}");
    let out = ok(&call(
        &client,
        "move_path",
        json!({"source": "z.txt", "destination": "d/y.txt", "overwrite": true}),
    )
    .await);
    assert_eq!(out["replaced"], true);
    assert_eq!(
        std::fs::read_to_string(server.path("d/y.txt")).unwrap(),
        "z"
    );

    let msg = err(&call(&client, "delete_path", json!({"path": "a"})).await);
    assert!(msg.contains("recursive=true"), "{msg}");
    ok(&call(
        &client,
        "delete_path",
        json!({"path": "a", "recursive": true}),
    )
    .await);
    assert!(!server.path("a").exists());
    ok(&call(&client, "delete_path", json!({"path": "d/y.txt"})).await);
    assert!(!server.path("d/y.txt").exists());

    for root in [".", "", "/", "d/..", server.workspace.to_str().unwrap()] {
        let result = call(
            &client,
            "delete_path",
            json!({"path": root, "recursive": true}),
        )
        .await;
        let msg = err(&result);
        assert!(
            msg.contains("workspace root") || msg.contains("outside"),
            "{root}: {msg}"
        );
    }
    assert!(server.workspace.is_dir());
    let msg = err(&call(
        &client,
        "move_path",
        json!({"source": ".", "destination": "x"}),
    )
    .await);
    assert!(msg.contains("root"), "{msg}");
}

#[tokio::test]
async fn new_tools_refuse_escapes_but_may_remove_a_link_that_points_out() {
    let server = Server::start();
    let client = server.client().await;
    let outside = tempfile::tempdir().unwrap();
    write(&outside.path().join("keep.txt"), "keep");
    std::os::unix::fs::symlink(outside.path(), server.path("out")).unwrap();
    write(&server.path("in.txt"), "in");

    let calls = [
        (
            "edit_file",
            json!({"path": "out/keep.txt", "old_string": "keep", "new_string": "gone"}),
        ),
        (
            "edit_file",
            json!({"path": "../keep.txt", "old_string": "keep", "new_string": "gone"}),
        ),
        ("create_directory", json!({"path": "out/newdir"})),
        ("create_directory", json!({"path": "../newdir"})),
        (
            "move_path",
            json!({"source": "in.txt", "destination": "out/stolen.txt"}),
        ),
        (
            "move_path",
            json!({"source": "out/keep.txt", "destination": "here.txt"}),
        ),
        (
            "move_path",
            json!({"source": "in.txt", "destination": "/tmp/stolen.txt"}),
        ),
        ("delete_path", json!({"path": "out/keep.txt"})),
        ("delete_path", json!({"path": "../../etc"})),
        ("file_info", json!({"path": "out/keep.txt"})),
        ("file_info", json!({"path": "/etc/passwd"})),
        ("grep", json!({"pattern": "keep", "path": "out"})),
        ("grep", json!({"pattern": "root", "path": "/etc"})),
        ("run_command", json!({"command": "true", "cwd": "out"})),
    ];
    for (tool, args) in calls {
        let msg = err(&call(&client, tool, args.clone()).await);
        assert!(
            msg.contains("outside the workspace"),
            "{tool} {args}: {msg}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(outside.path().join("keep.txt")).unwrap(),
        "keep"
    );
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);

    // The link itself lives in the workspace: describing or deleting it is fine.
    let out = ok(&call(&client, "file_info", json!({"path": "out"})).await);
    assert_eq!(out["kind"], "symlink");
    ok(&call(&client, "delete_path", json!({"path": "out"})).await);
    assert!(outside.path().join("keep.txt").exists());
}

/// A FIFO in the workspace must not hang a call that reads files.
#[tokio::test]
async fn fifos_are_refused_without_blocking() {
    let server = Server::start();
    let client = server.client().await;
    let status = std::process::Command::new("mkfifo")
        .arg(server.path("pipe"))
        .status()
        .unwrap();
    assert!(status.success());
    let calls = [
        ("read_file", json!({"path": "pipe"})),
        (
            "edit_file",
            json!({"path": "pipe", "old_string": "a", "new_string": "b"}),
        ),
    ];
    for (tool, args) in calls {
        let result = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            call(&client, tool, args),
        )
        .await
        .unwrap_or_else(|_| panic!("{tool} hung on a FIFO"));
        let msg = err(&result);
        assert!(msg.contains("not a regular file"), "{tool}: {msg}");
    }
    let out = ok(&call(&client, "file_info", json!({"path": "pipe"})).await);
    assert_eq!(out["kind"], "other");
}

/// A file that is one enormous line is read in bounded memory and shown cut.
#[tokio::test]
async fn one_huge_line_is_cut_not_loaded() {
    let server = Server::start();
    let client = server.client().await;
    let mut body = "é".repeat(5_000_000);
    body.push_str("\nsecond\n");
    write(&server.path("min.js"), &body);
    let result = call(
        &client,
        "read_file",
        json!({"path": "min.js", "offset": 1, "limit": 2}),
    )
    .await;
    let out = ok(&result);
    assert_eq!(out["total_lines"], 2);
    assert_eq!(out["cut_lines"], 1);
    assert_eq!(out["lossy"], false);
    let content = out["content"].as_str().unwrap();
    assert!(
        content.contains("... [line of 10000001 bytes cut]"),
        "{}",
        &content[content.len() - 100..]
    );
    assert!(content.ends_with("     2\tsecond\n"));
    assert!(content.len() < 10_000, "{} bytes", content.len());
}

#[tokio::test]
async fn edit_refuses_files_too_large_to_hold() {
    let server = Server::start();
    let client = server.client().await;
    let file = std::fs::File::create(server.path("big.log")).unwrap();
    file.set_len(33 * 1024 * 1024).unwrap();
    let msg = err(&call(
        &client,
        "edit_file",
        json!({"path": "big.log", "old_string": "a", "new_string": "b"}),
    )
    .await);
    assert!(msg.contains("up to 33554432 bytes"), "{msg}");
}

/// Concurrent edits of one file each land: none is lost to another's write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_edits_of_one_file_all_land() {
    let server = std::sync::Arc::new(Server::start());
    let body: String = (0..24).map(|i| format!("marker{i}\n")).collect();
    write(&server.path("shared.txt"), &body);
    let client = std::sync::Arc::new(server.client().await);
    let mut tasks = Vec::new();
    for i in 0..24 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let args = json!({"path": "shared.txt", "old_string": format!("marker{i}\n"), "new_string": format!("edited{i}\n")});
            ok(&call(&client, "edit_file", args).await);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let after = std::fs::read_to_string(server.path("shared.txt")).unwrap();
    let expected: String = (0..24).map(|i| format!("edited{i}\n")).collect();
    assert_eq!(after, expected);
}

/// In a file that mixes LF and CRLF lines, old_string is found where it
/// matches as written, and also where it matches with CRLF endings; each
/// replacement keeps the endings of the lines it replaces.
#[tokio::test]
async fn edits_in_files_mixing_lf_and_crlf_find_both_kinds_of_line() {
    let server = Server::start();
    let client = server.client().await;
    std::fs::write(server.path("m.txt"), "a\r\nb\r\nc\nd\n").unwrap();
    ok(&call(
        &client,
        "edit_file",
        json!({"path": "m.txt", "old_string": "c\nd", "new_string": "C\nD"}),
    )
    .await);
    assert_eq!(
        std::fs::read(server.path("m.txt")).unwrap(),
        b"a\r\nb\r\nC\nD\n"
    );
    let out = ok(&call(
        &client,
        "edit_file",
        json!({"path": "m.txt", "old_string": "a\nb", "new_string": "A\nB"}),
    )
    .await);
    assert_eq!(out["first_line"], 1);
    assert_eq!(
        std::fs::read(server.path("m.txt")).unwrap(),
        b"A\r\nB\r\nC\nD\n"
    );
}

/// A non-ASCII old_string is matched exactly, in LF and CRLF files, with
/// the right line and snippet.
#[tokio::test]
async fn non_ascii_old_strings_are_matched_and_replaced() {
    let server = Server::start();
    let client = server.client().await;
    for eol in ["\n", "\r\n"] {
        let original = [
            "// 日本語のコメント",
            "let naïve = \"café\";",
            "emoji 😀 end",
        ]
        .join(eol)
            + eol;
        std::fs::write(server.path("u.rs"), &original).unwrap();
        let out = ok(&call(
            &client,
            "edit_file",
            json!({"path": "u.rs", "old_string": "naïve = \"café\";\nemoji 😀",
                   "new_string": "naïf = \"thé\";\nemoji 🎉"}),
        )
        .await);
        assert_eq!(out["first_line"], 2, "{eol:?}");
        assert!(
            out["snippet"]
                .as_str()
                .unwrap()
                .contains("     3\temoji 🎉 end"),
            "{eol:?}: {out}"
        );
        let expected =
            ["// 日本語のコメント", "let naïf = \"thé\";", "emoji 🎉 end"].join(eol) + eol;
        assert_eq!(
            std::fs::read_to_string(server.path("u.rs")).unwrap(),
            expected,
            "{eol:?}"
        );
    }
}
