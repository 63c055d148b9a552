//! grep through MCP: modes, filters, context, caps and paging.

mod common;

use std::time::{Duration, SystemTime};

use common::{Server, call, err, ok, text, write};
use serde_json::{Value, json};

fn tree(server: &Server) {
    write(
        &server.path("src/main.rs"),
        "fn main() {\n    let todo = 1;\n    // TODO: more\n}\n",
    );
    write(
        &server.path("src/lib.rs"),
        "pub fn helper() {}\n// todo later\n",
    );
    write(&server.path("app.py"), "def main():\n    pass  # TODO\n");
    write(&server.path("notes.md"), "nothing to see\n");
    write(&server.path(".gitignore"), "build/\n");
    write(&server.path("build/out.rs"), "// TODO generated\n");
    write(&server.path(".hidden/x.rs"), "// TODO hidden\n");
    std::fs::write(server.path("blob.bin"), b"TODO\x00\x01binary").unwrap();
}

fn strings(v: &Value) -> Vec<String> {
    serde_json::from_value(v.clone()).unwrap()
}

#[tokio::test]
async fn files_with_matches_is_the_default_newest_first() {
    let server = Server::start();
    let client = server.client().await;
    tree(&server);
    let old = SystemTime::now() - Duration::from_secs(3600);
    for f in ["src/main.rs", "src/lib.rs"] {
        std::fs::File::options()
            .write(true)
            .open(server.path(f))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let out = ok(&call(&client, "grep", json!({"pattern": "TODO"})).await);
    let files = strings(&out["results"]);
    // Hidden files are searched; ignored and binary files are skipped, and
    // the result says so.
    assert_eq!(files, [".hidden/x.rs", "app.py", "src/main.rs"]);
    assert_eq!(out["skipped"]["ignored"], 1, "{out}");
    assert_eq!(out["skipped"]["binary"], 1, "{out}");
    let result = call(&client, "grep", json!({"pattern": "TODO", "hidden": false})).await;
    assert_eq!(strings(&ok(&result)["results"]), ["app.py", "src/main.rs"]);
    let shown = text(&result);
    for note in [
        "2 hidden files and folders (hidden=true includes them)",
        "1 file excluded by .gitignore/.ignore (no_ignore=true includes them)",
        "1 binary file",
    ] {
        assert!(shown.contains(note), "{note:?} not in {shown}");
    }

    let out = ok(&call(
        &client,
        "grep",
        json!({"pattern": "todo", "case_insensitive": true}),
    )
    .await);
    assert_eq!(out["files_matched"], 4);

    let out = ok(&call(
        &client,
        "grep",
        json!({"pattern": "TODO", "hidden": true, "no_ignore": true}),
    )
    .await);
    let mut files = strings(&out["results"]);
    files.sort();
    assert_eq!(
        files,
        [".hidden/x.rs", "app.py", "build/out.rs", "src/main.rs"]
    );
}

#[tokio::test]
async fn content_mode_shows_numbered_lines_and_context() {
    let server = Server::start();
    let client = server.client().await;
    tree(&server);
    let result = call(
        &client,
        "grep",
        json!({"pattern": "TODO", "output_mode": "content", "path": "src"}),
    )
    .await;
    let out = ok(&result);
    assert_eq!(
        strings(&out["results"]),
        ["src/main.rs:3:    // TODO: more"]
    );

    let out = ok(&call(
        &client,
        "grep",
        json!({"pattern": "let todo", "output_mode": "content", "context": 1, "path": "src/main.rs"}),
    )
    .await);
    assert_eq!(
        strings(&out["results"]),
        [
            "src/main.rs-1-fn main() {",
            "src/main.rs:2:    let todo = 1;",
            "src/main.rs-3-    // TODO: more"
        ]
    );

    let out = ok(&call(
        &client,
        "grep",
        json!({"pattern": "TODO", "output_mode": "content", "line_numbers": false, "glob": "*.py"}),
    )
    .await);
    assert_eq!(strings(&out["results"]), ["app.py:    pass  # TODO"]);

    let out = ok(&call(
        &client,
        "grep",
        json!({"pattern": "TODO", "type": "rust", "output_mode": "count"}),
    )
    .await);
    assert_eq!(
        strings(&out["results"]),
        [".hidden/x.rs:1", "src/main.rs:1"]
    );

    let out = ok(&call(
        &client,
        "grep",
        json!({"pattern": "main\\(\\).*?pass", "multiline": true, "output_mode": "content"}),
    )
    .await);
    assert_eq!(
        strings(&out["results"]),
        ["app.py:1:def main():", "app.py:2:    pass  # TODO"]
    );
}

#[tokio::test]
async fn results_are_capped_and_paged() {
    let server = Server::start();
    let client = server.client().await;
    let body: String = (0..1000).map(|i| format!("match {i}\n")).collect();
    write(&server.path("many.txt"), &body);

    let result = call(
        &client,
        "grep",
        json!({"pattern": "match", "output_mode": "content"}),
    )
    .await;
    let out = ok(&result);
    assert_eq!(out["total"], 1000);
    assert_eq!(out["results"].as_array().unwrap().len(), 250);
    assert_eq!(out["truncated"], true);
    assert!(
        text(&result).contains("continue with offset=250"),
        "{}",
        text(&result)
    );

    let out = ok(&call(
        &client,
        "grep",
        json!({"pattern": "match", "output_mode": "content", "offset": 990, "head_limit": 50}),
    )
    .await);
    let results = strings(&out["results"]);
    assert_eq!(results.len(), 10);
    assert_eq!(results[0], "many.txt:991:match 990");

    // One huge line cannot flood the answer either.
    write(
        &server.path("wide.txt"),
        &format!("needle {}\n", "y".repeat(100_000)),
    );
    let result = call(
        &client,
        "grep",
        json!({"pattern": "needle", "output_mode": "content"}),
    )
    .await;
    assert!(text(&result).len() < 2_000, "{} chars", text(&result).len());
}

#[tokio::test]
async fn bad_patterns_and_types_are_tool_errors() {
    let server = Server::start();
    let client = server.client().await;
    let msg = err(&call(&client, "grep", json!({"pattern": "(unclosed"})).await);
    assert!(msg.contains("invalid regex"), "{msg}");
    let msg = err(&call(&client, "grep", json!({"pattern": "x", "type": "klingon"})).await);
    assert!(msg.contains("type"), "{msg}");
    let msg = err(&call(&client, "grep", json!({"pattern": "x", "path": "missing"})).await);
    assert!(msg.contains("does not exist"), "{msg}");
    let msg = err(&call(&client, "grep", json!({"pattern": "x", "head_limit": 0})).await);
    assert!(msg.contains("head_limit"), "{msg}");
}

#[tokio::test]
async fn tool_list_stays_small() {
    let server = Server::start();
    let client = server.client().await;
    let tools = client.list_all_tools().await.unwrap();
    let bytes = serde_json::to_vec(&tools).unwrap().len();
    assert!(bytes < 24 * 1024, "tools/list is {bytes} bytes");
    assert!(tools.len() >= 15, "{} tools", tools.len());
}

#[tokio::test]
async fn huge_offsets_and_context_are_handled() {
    let server = Server::start();
    let client = server.client().await;
    write(&server.path("a.txt"), "needle\n");
    let out = ok(&call(
        &client,
        "grep",
        json!({"pattern": "needle", "output_mode": "content", "offset": u64::MAX}),
    )
    .await);
    assert_eq!(out["results"], json!([]));
    assert_eq!(out["total"], 1);
    let msg = err(&call(
        &client,
        "grep",
        json!({"pattern": "needle", "context": 1000}),
    )
    .await);
    assert!(msg.contains("at most 100"), "{msg}");
}

/// One file with more matching lines than the server keeps in memory:
/// the lines past the cap are counted, not kept, and the answer says so.
#[tokio::test]
async fn one_file_cannot_fill_memory_with_matches() {
    let server = Server::start();
    let client = server.client().await;
    let body: String = (0..60_000).map(|i| format!("hit {i}\n")).collect();
    write(&server.path("huge.log"), &body);
    let result = call(
        &client,
        "grep",
        json!({"pattern": "hit", "output_mode": "content"}),
    )
    .await;
    let out = ok(&result);
    assert_eq!(out["matches"], 60_000);
    assert_eq!(out["total"], 50_000);
    assert_eq!(out["truncated"], true);
    assert!(text(&result).contains("were not kept"), "{}", text(&result));
}

/// A grep cancelled over MCP (`notifications/cancelled`) stops reading
/// files: it ends as cancelled, and once it has ended no file of the tree
/// is read any more and most were never read. Reads are seen in the files'
/// access times (set in the past, so the first read moves them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_grep_stops_reading_files() {
    use common::{Options, RawSession};
    use std::fs::FileTimes;
    use std::time::Instant;

    const DIRS: usize = 200;
    const FILES_PER_DIR: usize = 200;
    let server = Server::start_with(Options {
        log_level: Some("info"),
        ..Options::default()
    });
    // 40,000 empty files: no data blocks, and each costs the grep an open
    // and a read.
    let long_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400);
    let mut dirs = Vec::new();
    for d in 0..DIRS {
        let dir = server.path(&format!("tree/d{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..FILES_PER_DIR {
            let file = std::fs::File::create(dir.join(format!("f{f:03}.txt"))).unwrap();
            file.set_times(FileTimes::new().set_accessed(long_ago))
                .unwrap();
        }
        // The directory's own access time moves when the walk lists it.
        std::fs::File::open(&dir)
            .unwrap()
            .set_times(FileTimes::new().set_accessed(long_ago))
            .unwrap();
        dirs.push(dir);
    }
    let was_read =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().accessed().unwrap() > long_ago;
    let files_read = || {
        dirs.iter()
            .flat_map(|d| std::fs::read_dir(d).unwrap())
            .filter(|e| was_read(&e.as_ref().unwrap().path()))
            .count()
    };

    let raw = std::sync::Arc::new(RawSession::open(&server).await);
    let grepping = {
        let raw = raw.clone();
        tokio::spawn(async move {
            raw.call(2, "grep", json!({"pattern": "needle", "path": "tree"}))
                .await
        })
    };
    // The walk has started once it lists a folder.
    assert!(
        common::eventually(Duration::from_secs(30), || dirs.iter().any(|d| was_read(d))),
        "the grep never started"
    );
    let ended = || {
        server
            .logs()
            .lines()
            .find(|l| l.contains("tool=grep") && l.contains("tool call"))
            .map(str::to_owned)
    };
    // A cancel that arrives before the request is registered is ignored:
    // cancel again until the grep ends.
    let deadline = Instant::now() + Duration::from_secs(30);
    let line = loop {
        raw.cancel(2).await;
        if common::eventually(Duration::from_millis(200), || ended().is_some()) {
            break ended().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the cancelled grep did not end; logs:\n{}",
            server.logs()
        );
    };
    assert!(
        line.contains("tool_error"),
        "the grep ran to its end instead of stopping: {line}"
    );
    let read_when_ended = files_read();
    let total = DIRS * FILES_PER_DIR;
    assert!(
        read_when_ended < total,
        "every file was read: the cancel stopped nothing"
    );
    // Nothing of the grep goes on in the background.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        files_read(),
        read_when_ended,
        "files were still read after the grep ended"
    );
    // The server answers at once.
    let started = Instant::now();
    let answer = raw.call(3, "list_directory", json!({"path": "."})).await;
    assert!(answer.contains("tree"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the next call took {:?}",
        started.elapsed()
    );
    grepping.abort();
    eprintln!("{read_when_ended} of {total} files read before the grep stopped");
}
