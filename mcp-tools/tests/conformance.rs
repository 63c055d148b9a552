//! The official MCP conformance suite (`@modelcontextprotocol/conformance`,
//! pinned by `scripts/test.sh`, which installs it under target/conformance
//! and names it in `MCP_CONFORMANCE_DIR`) against the real binary: the
//! server scenarios that need no fixture tools, prompts or resources.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Server, skip};

/// Scenarios that test the protocol and transport, not the suite's own
/// fixture tools (`test_simple_text`, …), prompts or resources.
const SCENARIOS: [&str; 7] = [
    "server-initialize",
    "server-session-lifecycle",
    "server-stateless",
    "ping",
    "tools-list",
    "dns-rebinding-protection",
    "http-header-validation",
];

fn suite() -> Option<(PathBuf, PathBuf)> {
    let dir = std::env::var_os("MCP_CONFORMANCE_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/conformance"),
        PathBuf::from,
    );
    let node = dir.join("node_modules/.bin/node");
    let cli = dir.join("node_modules/@modelcontextprotocol/conformance/dist/index.js");
    (node.exists() && cli.exists()).then_some((node, cli))
}

/// What the suite reports when a check needs one of its own fixture tools
/// (`test_missing_capability`, `test_logging_tool`, …), which a real server
/// does not have: not a fault of the server.
const NEEDS_A_FIXTURE_TOOL: &str = "does not list the diagnostic tool";

#[test]
fn official_conformance_scenarios_pass() {
    let Some((node, cli)) = suite() else {
        skip("the MCP conformance suite is not installed (scripts/test.sh installs it)");
        return;
    };
    let server = Server::start();
    let results = tempfile::tempdir().unwrap();
    let mut failed = Vec::new();
    for scenario in SCENARIOS {
        let dir = results.path().join(scenario);
        let out = Command::new(&node)
            .arg(&cli)
            .args(["server", "--url", &server.url(), "--scenario", scenario])
            .arg("--output-dir")
            .arg(&dir)
            .output()
            .expect("run the conformance suite");
        let checks = checks(&dir);
        let passed = checks.iter().filter(|c| c["status"] == "SUCCESS").count();
        let faults: Vec<String> = checks
            .iter()
            .filter(|c| c["status"] == "FAILURE")
            .filter(|c| {
                !c["errorMessage"]
                    .as_str()
                    .is_some_and(|m| m.contains(NEEDS_A_FIXTURE_TOOL))
            })
            .map(|c| format!("{}: {}", c["id"], c["errorMessage"]))
            .collect();
        if passed == 0 || !faults.is_empty() {
            failed.push(format!(
                "{scenario}: {passed} checks passed; failed: {faults:#?}\n{}",
                String::from_utf8_lossy(&out.stdout)
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// Every check the suite recorded under `dir` (its `checks.json` files).
fn checks(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let mut found = Vec::new();
    for run in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(text) = std::fs::read_to_string(run.path().join("checks.json")) else {
            continue;
        };
        if let Ok(serde_json::Value::Array(checks)) = serde_json::from_str(&text) {
            found.extend(checks);
        }
    }
    found
}
