//! Starts the real control-plane binary (with the real mcp-tools next to it)
//! on an ephemeral port and speaks HTTP to it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const KEY_ADMIN: &str = "admin-key-0123456789abcdef";
pub const KEY_ALICE: &str = "alice-key-0123456789abcdef";
pub const KEY_BOB: &str = "bob-key-0123456789abcdef00";

/// The mcp-tools binary that `cargo build --workspace --bins` puts next to ours.
pub fn mcp_tools_bin() -> PathBuf {
    let cp = Path::new(env!("CARGO_BIN_EXE_control-plane"));
    let bin = cp.with_file_name("mcp-tools");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --workspace --bins` before these tests",
        bin.display()
    );
    bin
}

/// Options of one control-plane start.
#[derive(Clone, Default)]
pub struct Options {
    /// Value of CONTROL_PLANE_API_KEYS.
    pub api_keys: Option<String>,
    pub extra_args: Vec<String>,
    /// Extra environment variables (they win over the defaults set here).
    pub env: Vec<(String, String)>,
    /// Where its stderr (the log) goes; inherited when `None`.
    pub log_file: Option<PathBuf>,
    /// RLIMIT_NOFILE, soft and hard, to start it with (so it cannot raise it).
    pub open_files: Option<u64>,
}

/// A running control plane with its own data folder, which outlives restarts.
pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub data: tempfile::TempDir,
    opts: Options,
    pub http: reqwest::Client,
    /// Key sent by [`Server::get`] and friends.
    pub key: Option<String>,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> Server {
        let data = tempfile::tempdir().expect("temp dir");
        let mut s = Server {
            child: None,
            url: String::new(),
            data,
            key: opts.api_keys.as_ref().map(|_| KEY_ADMIN.to_string()),
            opts,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
        };
        s.spawn();
        s
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data.path().join("data")
    }

    fn spawn(&mut self) {
        let addr_file = self.data.path().join("addr");
        let _ = std::fs::remove_file(&addr_file);
        // A restart keeps the port, as a deployed control plane does: the
        // sandboxes' URLs lead through it.
        let port = self
            .url
            .rsplit_once(':')
            .map_or("0".to_string(), |(_, p)| p.to_string());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_control-plane"));
        cmd.arg("serve")
            .arg("--port")
            .arg(&port)
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--addr-file")
            .arg(&addr_file)
            .arg("--mcp-tools-bin")
            .arg(mcp_tools_bin())
            .args(&self.opts.extra_args)
            .env_remove("CONTROL_PLANE_API_KEYS")
            .env_remove("CONTROL_PLANE_HOST")
            .env("CONTROL_PLANE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(keys) = &self.opts.api_keys {
            cmd.env("CONTROL_PLANE_API_KEYS", keys);
        }
        for (k, v) in &self.opts.env {
            cmd.env(k, v);
        }
        if let Some(path) = &self.opts.log_file {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("log file");
            cmd.stderr(log);
        }
        if let Some(limit) = self.opts.open_files {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            // SAFETY: setrlimit is async-signal-safe and reads a struct copied
            // into the closure.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("start control-plane");
        let started = Instant::now();
        let addr = loop {
            if let Ok(addr) = std::fs::read_to_string(&addr_file)
                && !addr.is_empty()
            {
                break addr;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("control-plane exited at start: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "control-plane did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        self.url = format!("http://{}", addr.trim());
        self.child = Some(child);
    }

    /// SIGKILL the control plane (sandboxes keep running) and start it again
    /// on the same data folder.
    pub fn kill_and_restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
        self.spawn();
    }

    /// SIGTERM and wait: the graceful path.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) with a pid this test started or found; no memory is involved.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    panic!("control-plane did not stop on SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.url));
        match &self.key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    /// GET; returns (status, body as JSON or Null).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        send(self.req(reqwest::Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        send(self.req(reqwest::Method::POST, path).json(&body)).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        send(self.req(reqwest::Method::DELETE, path)).await
    }

    /// Creates a sandbox for `user` and returns its id, asserting success.
    pub async fn create(&self, user: &str) -> String {
        let (status, body) = self
            .post("/sandboxes/create", json!({ "user_id": user }))
            .await;
        assert_eq!(status, 200, "create failed: {body}");
        body["sandbox_id"].as_str().unwrap().to_string()
    }

    /// Runs `command` in sandbox `id`, asserting the call succeeded.
    pub async fn run(&self, id: &str, command: &str) -> Value {
        let (status, body) = self
            .post(
                "/sandboxes/run-command",
                json!({ "sandbox_id": id, "command": command }),
            )
            .await;
        assert_eq!(status, 200, "run-command failed: {body}");
        body
    }

    /// Pids of every process of this server's sandboxes (bwrap included).
    pub fn sandbox_processes(&self) -> Vec<u32> {
        processes_mentioning(&self.data_dir().join("sandboxes"))
    }

    /// Pids of the mcp-tools servers of this server's sandboxes, one per running sandbox.
    pub fn sandbox_servers(&self) -> Vec<u32> {
        let bin = mcp_tools_bin();
        let bin = bin.as_os_str().as_encoded_bytes();
        self.sandbox_processes()
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.split(|b| *b == 0).next() == Some(bin))
            })
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) with a pid this test started or found; no memory is involved.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // Never leave sandboxes behind, whatever the test did.
        for pid in self.sandbox_processes() {
            // SAFETY: kill(2) with a pid this test started or found; no memory is involved.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
        // Nor the workspaces' file systems (disk quotas) of sandboxes a
        // killed control plane left running.
        for mount in mounts_under(&self.data_dir()) {
            let path = std::ffi::CString::new(mount.into_os_string().into_encoded_bytes()).unwrap();
            // SAFETY: umount2(2) with a NUL-terminated path we own.
            unsafe {
                libc::umount2(path.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
}

pub async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.expect("request failed");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Live (non-zombie) processes whose command line contains `needle`.
pub fn processes_mentioning(needle: &Path) -> Vec<u32> {
    let needle = needle.as_os_str().as_encoded_bytes().to_vec();
    let mut pids = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let zombie = std::fs::read_to_string(e.path().join("stat"))
            .map(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
            .unwrap_or(false);
        if !zombie
            && cmdline
                .windows(needle.len())
                .any(|w| w == needle.as_slice())
        {
            pids.push(pid);
        }
    }
    pids
}

/// Mount points under `dir` (from /proc/self/mountinfo).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// Polls `f` until it returns true or `timeout` passes.
pub async fn eventually(timeout: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether bwrap is installed and can do here what the local provider asks
/// of it.
pub fn bwrap_works() -> bool {
    Command::new("bwrap")
        .args([
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--unshare-pid",
            "--cap-drop",
            "ALL",
            "--",
            "true",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Records that the running test checks less than its name says, because
/// `reason` (a tool missing on this machine). In CI (`CI=true`) that fails
/// the test: CI installs every tool the tests need. Elsewhere the skip is
/// printed and appended to the file `$TEST_SKIP_LOG`, which
/// `scripts/test.sh` counts and prints before nextest's summary.
pub fn skip(reason: &str) {
    let test = format!(
        "{}::{}",
        env!("CARGO_CRATE_NAME"),
        std::thread::current().name().unwrap_or("?")
    );
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
        "{test} cannot run in CI: {reason}"
    );
    eprintln!("SKIPPED {test}: {reason}");
    if let Some(log) = std::env::var_os("TEST_SKIP_LOG") {
        use std::io::Write;
        let line = format!("{test}: {reason}\n");
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .expect("TEST_SKIP_LOG is writable");
    }
}
