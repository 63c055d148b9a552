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

/// The cargo target folder these tests were built in.
pub fn target_dir() -> PathBuf {
    let cp = Path::new(env!("CARGO_BIN_EXE_control-plane"));
    cp.parent()
        .and_then(Path::parent)
        .expect("the binary is in <target>/<profile>/")
        .to_path_buf()
}

/// The static mcp-tools that sandboxes on a template run, as
/// `scripts/test.sh` builds it; `None` (with a [`skip`]) when it is not built.
pub fn static_mcp_tools_bin() -> Option<PathBuf> {
    let bin = target_dir().join("x86_64-unknown-linux-musl/release/mcp-tools");
    if bin.is_file() {
        Some(bin)
    } else {
        skip(&format!(
            "{} is not built (cargo build --release --target x86_64-unknown-linux-musl -p mcp-tools)",
            bin.display()
        ));
        None
    }
}

/// apt's download cache for template builds: the one
/// `sandbox-template/build-rootfs.sh` uses by default, so the template
/// image tests and these share their downloads (builds take turns).
pub fn template_apt_cache() -> PathBuf {
    target_dir().join("sandbox-template-build/apt-archives")
}

/// The packages of the small template the tests build once and share.
pub const MINIMAL_PACKAGES: &[&str] = &["python-is-python3", "nodejs"];

/// The folder of the small template shared by the tests of a run (and
/// later runs, while its package list is the same).
pub fn shared_templates_dir() -> PathBuf {
    target_dir().join("test-templates")
}

/// Options of a control plane whose default template is the shared small
/// one, `minimal` (built first if needed, through the CLI of a control
/// plane started for that); `None` when this machine cannot build or run it
/// (a [`skip`] says why).
pub fn on_minimal_template() -> Option<Options> {
    if !bwrap_works() {
        skip("bubblewrap cannot make its namespaces here");
        return None;
    }
    if Command::new("mmdebstrap")
        .arg("--version")
        .output()
        .is_err()
    {
        skip("mmdebstrap is not installed");
        return None;
    }
    let static_bin = static_mcp_tools_bin()?;
    let dir = shared_templates_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let opts = Options {
        extra_args: vec![
            "--templates-dir".into(),
            dir.display().to_string(),
            "--template-apt-cache".into(),
            template_apt_cache().display().to_string(),
            "--template-mcp-tools-bin".into(),
            static_bin.display().to_string(),
        ],
        env: vec![("CONTROL_PLANE_DEFAULT_TEMPLATE".into(), "minimal".into())],
        ..Options::default()
    };
    // One test of the run builds it; the others wait here for it.
    let lock = std::fs::File::create(target_dir().join("test-templates.lock")).unwrap();
    {
        use std::os::fd::AsRawFd;
        // SAFETY: flock(2) on a descriptor we own; released when `lock` closes.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "lock the shared templates");
    }
    let manifest = dir.join("minimal/template.json");
    let built: Option<Value> = std::fs::read(&manifest)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let wanted: Vec<Value> = MINIMAL_PACKAGES.iter().map(|p| json!(p)).collect();
    if built.as_ref().and_then(|m| m["packages"].as_array()) != Some(&wanted) {
        let server = Server::start_with(opts.clone());
        if built.is_some() {
            let out = server.cli(&["template", "delete", "minimal"]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut args = vec!["template", "build", "minimal"];
        for p in MINIMAL_PACKAGES {
            args.extend(["--package", p]);
        }
        let out = server.cli(&args);
        assert!(
            out.status.success(),
            "building the minimal template failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    drop(lock);
    Some(opts)
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
            // Sandboxes on this machine's system unless a test names a
            // template (tests/templates.rs): most tests are about the
            // control plane, not the environment.
            .env("CONTROL_PLANE_DEFAULT_TEMPLATE", "none")
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
    /// Runs the CLI against this control plane (with [`Server::key`]).
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_control-plane"));
        cmd.arg("--url").arg(&self.url).args(args);
        match &self.key {
            Some(key) => cmd.env("CONTROL_PLANE_API_KEY", key),
            None => cmd.env_remove("CONTROL_PLANE_API_KEY"),
        };
        cmd.stdin(Stdio::null()).output().expect("run the CLI")
    }

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

/// Makes a sandbox's folder vanish as a reboot or a cleaner of the data
/// folder would: what is mounted under it (its disk-quota workspace) is
/// detached first, then every file is removed.
pub fn wipe_sandbox_dir(s: &Server, id: &str) {
    let dir = s.data_dir().join("sandboxes").join(id);
    let mut mounts = mounts_under(&dir);
    // Innermost first.
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    for m in mounts {
        let out = Command::new("umount").arg("-l").arg(&m).output().unwrap();
        assert!(
            out.status.success(),
            "umount -l {}: {}",
            m.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
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
