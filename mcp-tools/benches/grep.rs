//! grep against ripgrep, side by side in one run, on a generated tree of
//! source-like text (default 50,000 files, about 500 MB).
//!
//!     apt-get install ripgrep    # the reference
//!     cargo bench -p mcp-tools --bench grep -- [--files 50000] [--mb 500] [--runs 5]
//!
//! Each query runs once to warm the page cache, then `--runs` times; the
//! table gives the median wall time of `rg` (a process writing to a pipe)
//! and of the grep tool (an MCP call over HTTP to mcp-tools, whole round
//! trip), and their ratio. The tree is kept in target/ between runs.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use support::Session;

const WORDS: &[&str] = &[
    "let", "mut", "fn", "pub", "struct", "impl", "return", "self", "match", "if", "else", "for",
    "while", "in", "const", "static", "use", "mod", "async", "await", "value", "count", "buffer",
    "index", "result", "error", "config", "handler", "request", "response", "client", "server",
    "path", "file", "data", "len", "push", "iter", "map", "filter", "collect", "into", "unwrap",
    "clone", "Some", "None", "Ok", "Err", "String", "Vec", "Option", "usize", "u64",
];
/// A rare literal, planted in about one file in 500.
const NEEDLE: &str = "ERR_SANDBOX_QUOTA_EXCEEDED";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().expect(name))
    };
    let files = flag("--files", 50_000) as usize;
    let mb = flag("--mb", 500);
    let runs = flag("--runs", 5) as usize;
    if Command::new("rg").arg("--version").output().is_err() {
        eprintln!("ripgrep (rg) is the reference and is not installed: apt-get install ripgrep");
        std::process::exit(2);
    }

    let tree = target_dir().join(format!("bench-grep-tree-{files}-{mb}"));
    generate(&tree, files, mb * 1024 * 1024);
    let scratch = tempfile::tempdir().unwrap();
    let (child, addr) = support::start_mcp_tools(&tree, scratch.path());
    let _guard = support::Kill(vec![child]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url: Arc<str> = format!("http://{addr}/mcp").into();
    let session = rt.block_on(Session::open(&url));

    let queries: [(&str, &[&str], String); 4] = [
        (
            "literal, content",
            &["-n", NEEDLE],
            format!(r#"{{"pattern":"{NEEDLE}","output_mode":"content","head_limit":5000}}"#),
        ),
        (
            "literal, files",
            &["-l", NEEDLE],
            format!(r#"{{"pattern":"{NEEDLE}","head_limit":5000}}"#),
        ),
        (
            "regex, count",
            &["-c", r"fn [a-z]+_handler\(request"],
            r#"{"pattern":"fn [a-z]+_handler\\(request","output_mode":"count","head_limit":5000}"#
                .to_owned(),
        ),
        (
            "regex, files -i",
            &["-l", "-i", r"quota_[a-z]+_exceeded"],
            r#"{"pattern":"quota_[a-z]+_exceeded","case_insensitive":true,"head_limit":5000}"#
                .to_owned(),
        ),
    ];
    println!(
        "tree: {files} files, {} MB at {}; median of {runs} runs after one warm-up",
        dir_size(&tree) / (1024 * 1024),
        tree.display()
    );
    println!(
        "{:<18} {:>10} {:>12} {:>8} {:>9}",
        "query", "rg ms", "grep ms", "ratio", "results"
    );
    let mut id = 100;
    for (name, rg_args, tool_args) in &queries {
        let rg = || {
            let out = Command::new("rg")
                .args(*rg_args)
                .current_dir(&tree)
                .output()
                .expect("run rg");
            out.stdout.iter().filter(|&&b| b == b'\n').count()
        };
        let mut grep = || {
            id += 1;
            let body = rt.block_on(session.call(id, "grep", tool_args));
            assert!(!body.contains(r#""isError":true"#), "grep failed: {body}");
            body.split(r#""total":"#)
                .nth(1)
                .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse::<usize>().ok())
                .expect("total in the answer")
        };
        let (rg_results, grep_results) = (rg(), grep());
        assert_eq!(
            rg_results, grep_results,
            "{name}: rg found {rg_results}, grep {grep_results}"
        );
        let rg_ms = median(runs, || {
            rg();
        });
        let grep_ms = median(runs, || {
            grep();
        });
        println!(
            "{:<18} {:>10.1} {:>12.1} {:>7.2}x {:>9}",
            name,
            rg_ms,
            grep_ms,
            grep_ms / rg_ms,
            grep_results
        );
    }
}

fn median(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    )
}

fn dir_size(dir: &Path) -> u64 {
    ignore::WalkBuilder::new(dir)
        .standard_filters(false)
        .build()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Writes the tree once; a marker file says it is complete.
fn generate(root: &Path, files: usize, bytes: u64) {
    let done = root.join(".complete");
    if done.exists() {
        return;
    }
    eprintln!(
        "generating {files} files, {} MB, in {} ...",
        bytes >> 20,
        root.display()
    );
    let _ = std::fs::remove_dir_all(root);
    let started = Instant::now();
    let per_file = (bytes / files as u64) as usize;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let exts = ["rs", "py", "js", "go", "c", "ts"];
    for i in 0..files {
        let dir = root.join(format!("pkg{:03}/mod{:02}", i / 1000, (i / 50) % 20));
        if i % 50 == 0 {
            std::fs::create_dir_all(&dir).unwrap();
        }
        let mut text = String::with_capacity(per_file + 200);
        while text.len() < per_file {
            let r = next();
            match r % 40 {
                0 => text.push_str(&format!(
                    "fn {}_handler(request: Request) -> Response {{\n",
                    WORDS[(r >> 8) as usize % WORDS.len()]
                )),
                1 => text.push_str("}\n\n"),
                _ => {
                    let indent = (r >> 16) as usize % 3;
                    text.push_str(&"    ".repeat(indent + 1));
                    for k in 0..(3 + (r >> 20) % 9) {
                        let w = WORDS[((r >> (k * 5)) as usize + k as usize) % WORDS.len()];
                        text.push_str(w);
                        text.push(if k % 3 == 2 { '.' } else { ' ' });
                    }
                    text.push_str(";\n");
                }
            }
        }
        if next() % 500 == 0 {
            text.push_str(&format!(
                "    return Err({NEEDLE}); // quota_check_exceeded\n"
            ));
        }
        let name = dir.join(format!("file{i}.{}", exts[i % exts.len()]));
        std::fs::write(name, text).unwrap();
    }
    std::fs::write(&done, "").unwrap();
    eprintln!("generated in {:.1} s", started.elapsed().as_secs_f64());
}
