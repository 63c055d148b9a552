//! Arguments every model and client can send: single-type schemas, null as
//! absent, numbers and booleans as strings, errors that name the parameter,
//! unknown arguments named back.

mod common;

use common::{Server, call, err, ok, text, write};
use serde_json::{Value, json};

/// Every parameter of every tool has one JSON type, and no schema uses a
/// null branch or a reference (LangChain's Gemini adapter turns those into
/// strings; the Inspector counts them as portability warnings).
#[tokio::test]
async fn every_parameter_has_one_json_type() {
    let server = Server::start();
    let client = server.client().await;
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.len() >= 15);
    for tool in &tools {
        let schema = Value::Object((*tool.input_schema).clone());
        let text = schema.to_string();
        for banned in ["\"null\"", "anyOf", "oneOf", "$ref", "$defs", "nullable"] {
            assert!(!text.contains(banned), "{} has {banned}: {text}", tool.name);
        }
        let properties = schema["properties"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for (name, property) in properties {
            assert!(
                property["type"].is_string(),
                "{}.{name} has no single type: {property}",
                tool.name
            );
        }
    }
}

/// `null` for any optional parameter means absent, for every tool.
#[tokio::test]
async fn null_means_absent_for_every_optional_parameter() {
    let server = Server::start();
    let client = server.client().await;
    write(&server.path("a.txt"), "needle\n");
    let required = [
        ("read_file", json!({"path": "a.txt"})),
        ("write_file", json!({"path": "b.txt", "content": "x"})),
        ("list_directory", json!({})),
        ("create_directory", json!({"path": "d"})),
        (
            "move_path",
            json!({"source": "b.txt", "destination": "c.txt"}),
        ),
        ("delete_path", json!({"path": "c.txt"})),
        ("file_info", json!({"path": "a.txt"})),
        (
            "edit_file",
            json!({"path": "a.txt", "old_string": "needle", "new_string": "pin"}),
        ),
        ("search_files", json!({"pattern": "*.txt"})),
        ("grep", json!({"pattern": "pin"})),
        ("run_command", json!({"command": "true"})),
        ("process_list", json!({})),
    ];
    let tools = client.list_all_tools().await.unwrap();
    let mut tried = 0;
    for (name, base) in required {
        let tool = tools.iter().find(|t| t.name == name).expect(name);
        let mut args = base.as_object().unwrap().clone();
        let optional = tool
            .input_schema
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let required: Vec<Value> = tool
            .input_schema
            .get("required")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for key in optional.keys() {
            if !required.contains(&json!(key)) {
                args.insert(key.clone(), Value::Null);
                tried += 1;
            }
        }
        let result = call(&client, name, Value::Object(args.clone())).await;
        ok(&result);
    }
    assert!(tried > 20, "only {tried} optional parameters tried");
}

#[tokio::test]
async fn numbers_and_booleans_sent_as_strings_are_accepted() {
    let server = Server::start();
    let client = server.client().await;
    write(&server.path("a.txt"), "one\nTWO\nthree\n");
    let out = ok(&call(
        &client,
        "run_command",
        json!({"command": "echo hi", "timeout_ms": "5000", "background": "false"}),
    )
    .await);
    assert_eq!(out["exit_code"], 0);
    let out = ok(&call(
        &client,
        "grep",
        json!({"pattern": "two", "case_insensitive": "true", "output_mode": "content",
               "head_limit": "10", "context": 1.0}),
    )
    .await);
    assert_eq!(out["results"][1], "a.txt:2:TWO", "{out}");
    let out = ok(&call(
        &client,
        "read_file",
        json!({"path": "a.txt", "offset": "2", "limit": " 1 "}),
    )
    .await);
    assert_eq!(out["content"], "     2\tTWO\n");
}

/// An argument of the wrong type is named, with the JSON type expected and
/// the value received.
#[tokio::test]
async fn type_errors_name_the_parameter_the_type_and_the_value() {
    let server = Server::start();
    let client = server.client().await;
    let msg = err(&call(
        &client,
        "grep",
        json!({"pattern": "x", "case_insensitive": "maybe", "head_limit": "many"}),
    )
    .await);
    for part in [
        "`case_insensitive` must be a boolean (true or false); received the string \"maybe\"",
        "`head_limit` must be an integer ≥ 0; received the string \"many\"",
    ] {
        assert!(msg.contains(part), "{part:?} not in {msg}");
    }
    assert!(!msg.contains("deserialize"), "{msg}");
    let msg = err(&call(&client, "read_file", json!({"path": "a", "offset": -3})).await);
    assert!(
        msg.contains("`offset` must be an integer ≥ 0; received the number -3"),
        "{msg}"
    );
    let msg = err(&call(
        &client,
        "grep",
        json!({"pattern": "x", "output_mode": "lines"}),
    )
    .await);
    assert!(
        msg.contains("`output_mode` must be one of \"files_with_matches\", \"content\", \"count\""),
        "{msg}"
    );
    let msg = err(&call(&client, "read_file", json!({})).await);
    assert!(
        msg.contains("missing required argument `path`: expected a string"),
        "{msg}"
    );
    let msg = err(&call(
        &client,
        "run_command",
        json!({"command": "true", "env": {"A": ["x"]}}),
    )
    .await);
    assert!(msg.contains("`env.A` must be a string"), "{msg}");
}

/// An unknown argument is named back with the valid ones, not ignored.
#[tokio::test]
async fn unknown_arguments_are_named_with_the_valid_ones() {
    let server = Server::start();
    let client = server.client().await;
    let msg = err(&call(
        &client,
        "run_command",
        json!({"command": "sleep 5", "timeout": 100}),
    )
    .await);
    assert!(
        msg.contains("unknown argument `timeout`; did you mean `timeout_ms`?"),
        "{msg}"
    );
    let valid = msg.split("Valid arguments: ").nth(1).unwrap_or_default();
    for name in ["background", "command", "cwd", "env", "timeout_ms"] {
        assert!(valid.contains(name), "{name} not listed: {msg}");
    }
    let msg = err(&call(&client, "process_list", json!({"verbose": true})).await);
    assert!(msg.contains("unknown argument `verbose`"), "{msg}");
}

/// An invalid regex is quoted as written, not as the engine wrapped it.
#[tokio::test]
async fn invalid_regex_is_quoted_as_written() {
    let server = Server::start();
    let client = server.client().await;
    for args in [
        json!({"pattern": "(unclosed"}),
        json!({"pattern": "(unclosed", "case_insensitive": true}),
    ] {
        let msg = err(&call(&client, "grep", args).await);
        assert!(msg.contains("invalid regex \"(unclosed\""), "{msg}");
        assert!(!msg.contains("(?:"), "{msg}");
    }
}

/// process_wait after an exit says how the process ended once.
#[tokio::test]
async fn process_wait_reports_an_exit_once() {
    let server = Server::start();
    let client = server.client().await;
    let out = ok(&call(
        &client,
        "run_command",
        json!({"command": "echo done", "background": true}),
    )
    .await);
    let id = out["id"].as_str().unwrap().to_owned();
    let result = call(&client, "process_wait", json!({"id": id})).await;
    let shown = text(&result);
    assert_eq!(shown.matches("exit code 0").count(), 1, "{shown}");
    assert!(
        shown.starts_with(&format!("{id} exited (exit code 0)")),
        "{shown}"
    );
}

/// A path that is missing while a name differing only by Unicode
/// normalisation, a Unicode space or letter case exists: the error names it.
#[tokio::test]
async fn missing_paths_name_their_near_twin() {
    let server = Server::start();
    let client = server.client().await;
    // NFD, as macOS writes names; a narrow no-break space, as in macOS
    // screenshot names.
    write(&server.path("Cafe\u{301}/Screenshot\u{202F}1.txt"), "x\n");
    write(&server.path("README.md"), "x\n");
    for (tool, args, twin) in [
        (
            "read_file",
            json!({"path": "Caf\u{e9}/Screenshot 1.txt"}),
            "Cafe\u{301}/Screenshot\u{202F}1.txt",
        ),
        ("file_info", json!({"path": "readme.md"}), "README.md"),
        (
            "grep",
            json!({"pattern": "x", "path": "Caf\u{e9}"}),
            "Cafe\u{301}",
        ),
        (
            "run_command",
            json!({"command": "true", "cwd": "caf\u{e9}"}),
            "Cafe\u{301}",
        ),
    ] {
        let msg = err(&call(&client, tool, args).await);
        assert!(
            msg.contains(&format!("did you mean '{twin}'?")),
            "{tool}: {msg}"
        );
    }
    let msg = err(&call(&client, "read_file", json!({"path": "nothing.md"})).await);
    assert!(!msg.contains("did you mean"), "{msg}");
}
