//! The `local` provider: each sandbox is an `mcp-tools` child process on this
//! machine, listening on 127.0.0.1, with its own folder under the data folder:
//!
//! ```text
//! <data>/sandboxes/<id>/workspace   the agent's files (kept across pause)
//! <data>/sandboxes/<id>/state       mcp-tools' job logs, and `addr` once it listens
//! <data>/sandboxes/<id>/pid         the process to stop, checked before signalling
//! <data>/sandboxes/<id>/mcp-tools.log
//! ```
//!
//! Processes outlive a SIGKILLed control plane on purpose: at the next start
//! [`Provider::observe`] finds them through the pid file and they are re-adopted.
//! With bubblewrap each sandbox sees the machine read-only, minus home folders
//! and the data folder, plus its own workspace and state folders read-write.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use super::{Capabilities, CreateSpec, Observed, Provider, Started};
use crate::config::{Isolation, ServeConfig};
use crate::error::{Error, Result};
use crate::store::SandboxRecord;

/// How long a new mcp-tools may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stopping mcp-tools gets after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

pub struct LocalProvider {
    sandboxes_dir: PathBuf,
    mcp_tools: PathBuf,
    /// The bwrap binary when sandboxes are isolated.
    bwrap: Option<PathBuf>,
    /// Children started by this process, so they can be waited for (no zombies).
    children: Mutex<HashMap<String, Child>>,
    http: reqwest::Client,
}

impl LocalProvider {
    pub async fn new(config: &ServeConfig) -> Result<Self> {
        let sandboxes_dir = config.data_dir.join("sandboxes");
        std::fs::create_dir_all(&sandboxes_dir).map_err(|e| {
            Error::Internal(format!("cannot create {}: {e}", sandboxes_dir.display()))
        })?;
        let sandboxes_dir = sandboxes_dir
            .canonicalize()
            .map_err(|e| Error::Internal(format!("{}: {e}", sandboxes_dir.display())))?;
        let mcp_tools = find_mcp_tools(config.mcp_tools_bin.as_deref())?;
        let bwrap = match config.isolation {
            Isolation::Off => None,
            Isolation::Auto => find_working_bwrap().await,
            Isolation::On => Some(find_working_bwrap().await.ok_or_else(|| {
                Error::BadRequest(
                    "--isolation on needs a working bubblewrap (apt-get install bubblewrap)".into(),
                )
            })?),
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| Error::Internal(format!("http client: {e}")))?;
        Ok(LocalProvider {
            sandboxes_dir,
            mcp_tools,
            bwrap,
            children: Mutex::new(HashMap::new()),
            http,
        })
    }

    fn dir(&self, id: &str) -> Result<PathBuf> {
        // Ids are made by the control plane, but a record could be edited by hand:
        // never let one point outside the sandboxes folder.
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(Error::Internal(format!("invalid sandbox id {id:?}")));
        }
        Ok(self.sandboxes_dir.join(id))
    }

    /// Starts mcp-tools for sandbox `id`, on `port` if given and free, and
    /// waits until it answers /health.
    async fn start(&self, id: &str, token: &str, port: Option<u16>) -> Result<Started> {
        let dir = self.dir(id)?;
        let workspace = dir.join("workspace");
        let state = dir.join("state");
        for d in [&workspace, &state] {
            std::fs::create_dir_all(d)
                .map_err(|e| Error::Internal(format!("cannot create {}: {e}", d.display())))?;
        }
        let attempts: Vec<u16> = match port {
            Some(p) if p != 0 => vec![p, 0],
            _ => vec![0],
        };
        let mut last_error = None;
        for port in attempts {
            match self.spawn_once(id, &dir, token, port).await {
                Ok(addr) => {
                    return Ok(Started {
                        provider_id: id.to_string(),
                        mcp_url: format!("http://{addr}/mcp"),
                        mcp_headers: BTreeMap::new(),
                        provider_data: serde_json::json!({ "port": addr.port() }),
                    });
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Upstream("mcp-tools did not start".into())))
    }

    async fn spawn_once(&self, id: &str, dir: &Path, token: &str, port: u16) -> Result<SocketAddr> {
        // Written by mcp-tools, so it lives in a folder the sandbox can write.
        let addr_file = dir.join("state").join("addr");
        let _ = std::fs::remove_file(&addr_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("mcp-tools.log"))
            .map_err(|e| Error::Internal(format!("cannot open log in {}: {e}", dir.display())))?;
        let log2 = log
            .try_clone()
            .map_err(|e| Error::Internal(format!("log: {e}")))?;

        let mcp_args: Vec<OsString> = vec![
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string().into(),
            "--workspace".into(),
            dir.join("workspace").into(),
            "--state-dir".into(),
            dir.join("state").into(),
            "--addr-file".into(),
            addr_file.clone().into(),
            // Its log is kept for when a start fails; problems are enough.
            "--log-level".into(),
            "warn".into(),
        ];
        let mut cmd = match &self.bwrap {
            Some(bwrap) => {
                let mut c = Command::new(bwrap);
                c.args(bwrap_args(&self.sandboxes_dir, dir, &self.mcp_tools));
                c.arg(&self.mcp_tools);
                c
            }
            None => Command::new(&self.mcp_tools),
        };
        cmd.args(&mcp_args)
            // The sandbox must not inherit this process's secrets (API keys).
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", dir.join("workspace"))
            .env("LANG", "C.UTF-8")
            .env("MCP_AUTH_TOKEN", token)
            .current_dir(dir.join("workspace"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // A session of its own (so also a process group): a Ctrl-C on the
        // terminal reaches only the control plane, the sandbox has no
        // controlling terminal to inject keystrokes into, and stopping can
        // signal the whole group.
        // SAFETY: setsid(2) is async-signal-safe and touches no memory of ours.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| {
            Error::Upstream(format!("cannot start {}: {e}", self.mcp_tools.display()))
        })?;
        let pid = child.id().unwrap_or(0);
        write_atomically(&dir.join("pid"), &pid.to_string())?;

        let deadline = Instant::now() + START_TIMEOUT;
        let addr = loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(Error::Upstream(format!(
                    "mcp-tools for sandbox {id} exited at start ({status}); see {}",
                    dir.join("mcp-tools.log").display()
                )));
            }
            if let Some(addr) = read_addr(&addr_file) {
                break addr;
            }
            if Instant::now() > deadline {
                stop_pid(pid, Some(&mut child)).await;
                return Err(Error::Timeout(format!(
                    "mcp-tools for sandbox {id} did not start within {}s",
                    START_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        if !self.healthy(addr).await {
            stop_pid(pid, Some(&mut child)).await;
            return Err(Error::Upstream(format!(
                "mcp-tools for sandbox {id} listens on {addr} but /health fails"
            )));
        }
        self.children.lock().await.insert(id.to_string(), child);
        Ok(addr)
    }

    async fn healthy(&self, addr: SocketAddr) -> bool {
        match self.http.get(format!("http://{addr}/health")).send().await {
            Ok(r) => r.status().is_success(),
            Err(_) => false,
        }
    }

    /// The pid of sandbox `id`'s mcp-tools if it is alive and really ours.
    fn live_pid(&self, id: &str) -> Result<Option<u32>> {
        let dir = self.dir(id)?;
        let recorded = std::fs::read_to_string(dir.join("pid"))
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok());
        if let Some(pid) = recorded
            && process_is_ours(pid, &dir)
        {
            return Ok(Some(pid));
        }
        // A control plane killed between starting the process and writing the
        // pid file leaves one that only its command line identifies.
        Ok(find_session_leader(&dir))
    }

    /// Stops sandbox `id`'s process if there is one, and every process its
    /// commands left behind.
    async fn stop(&self, id: &str) -> Result<()> {
        let dir = self.dir(id)?;
        let mut child = self.children.lock().await.remove(id);
        // mcp-tools leads its own session, and its commands stay in it (in
        // process groups of their own, which signalling its group misses).
        // A leader that already died leaves its session id to them; its pid
        // names that session only while no other process has it.
        let session = match self.live_pid(id)? {
            Some(pid) => {
                stop_pid(pid, child.as_mut()).await;
                Some(pid)
            }
            None => {
                if let Some(child) = child.as_mut() {
                    let _ = child.try_wait();
                }
                std::fs::read_to_string(dir.join("pid"))
                    .ok()
                    .and_then(|t| t.trim().parse::<u32>().ok())
                    .filter(|pid| !Path::new(&format!("/proc/{pid}")).exists())
            }
        };
        if let Some(session) = session {
            kill_session(session).await;
        }
        let _ = std::fs::remove_file(dir.join("pid"));
        Ok(())
    }
}

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &'static str {
        "local"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            pause: true,
            expose_port: true,
            isolated: self.bwrap.is_some(),
            pause_on_shutdown: true,
        }
    }

    fn describe(&self) -> String {
        match &self.bwrap {
            Some(b) => format!(
                "local sandboxes run {} under {} (isolation on: each sees the machine read-only \
                 without /root and /home, its own folder read-write, its own processes, no \
                 capabilities, and not the other sandboxes)",
                self.mcp_tools.display(),
                b.display()
            ),
            None => format!(
                "local sandboxes run {} as this user WITHOUT isolation: commands in a sandbox can \
                 read and write anything this user can, including other sandboxes \
                 (install bubblewrap for isolation)",
                self.mcp_tools.display()
            ),
        }
    }

    async fn create(&self, spec: &CreateSpec) -> Result<Started> {
        if let Some(t) = &spec.template_id
            && t != "default"
        {
            return Err(Error::BadRequest(format!(
                "the local provider has only the template \"default\", not {t:?}"
            )));
        }
        let started = self.start(&spec.sandbox_id, &spec.token, None).await;
        if started.is_err() {
            let _ = self.stop(&spec.sandbox_id).await;
            let _ = std::fs::remove_dir_all(self.dir(&spec.sandbox_id)?);
        }
        started
    }

    async fn resume(&self, record: &SandboxRecord) -> Result<Started> {
        let dir = self.dir(&record.id)?;
        if !dir.join("workspace").is_dir() {
            return Err(Error::Upstream(format!(
                "the workspace of sandbox {} is gone from {}",
                record.id,
                dir.display()
            )));
        }
        // A process left from before (e.g. adopted) would hold the port.
        self.stop(&record.id).await?;
        self.start(&record.id, &record.token, recorded_port(record))
            .await
    }

    async fn pause(&self, record: &SandboxRecord) -> Result<()> {
        self.stop(&record.id).await
    }

    async fn delete(&self, record: &SandboxRecord) -> Result<()> {
        self.stop(&record.id).await?;
        let dir = self.dir(&record.id)?;
        remove_tree(&dir)
            .map_err(|e| Error::Internal(format!("cannot remove {}: {e}", dir.display())))
    }

    async fn observe(&self, record: &SandboxRecord) -> Result<Observed> {
        let id = &record.id;
        let dir = self.dir(id)?;
        if !dir.join("workspace").is_dir() {
            return Ok(Observed::Gone);
        }
        if let Some(child) = self.children.lock().await.get_mut(id) {
            // Reap a child that exited by itself.
            let _ = child.try_wait();
        }
        if self.live_pid(id)?.is_none() {
            return Ok(Observed::Stopped);
        }
        // The address file lies in a folder the sandbox can write: the port
        // recorded at start is trusted first, and the file (read with care)
        // only when there is none or it no longer answers, e.g. a start the
        // control plane did not live to record.
        let recorded = recorded_port(record).map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
        let mut candidates: Vec<SocketAddr> = recorded.into_iter().collect();
        if let Some(addr) = read_addr(&dir.join("state").join("addr"))
            && Some(addr) != recorded
        {
            candidates.push(addr);
        }
        for addr in candidates {
            if self.healthy(addr).await {
                return Ok(Observed::Running(Started {
                    provider_id: id.clone(),
                    mcp_url: format!("http://{addr}/mcp"),
                    mcp_headers: BTreeMap::new(),
                    provider_data: serde_json::json!({ "port": addr.port() }),
                }));
            }
        }
        // Alive but not answering: stop it so the state is clear.
        self.stop(id).await?;
        Ok(Observed::Stopped)
    }

    fn port_url(&self, _record: &SandboxRecord, port: u16) -> Result<String> {
        // Local sandboxes share this machine's network.
        Ok(format!("http://127.0.0.1:{port}"))
    }
}

/// Arguments that make bwrap show the sandbox the machine read-only, hide
/// home folders and the data folder (other sandboxes, the database, the pid
/// files), give it its workspace and state folders, and take every capability
/// away, so that even as root it cannot remount its way out.
fn bwrap_args(sandboxes_dir: &Path, dir: &Path, mcp_tools: &Path) -> Vec<OsString> {
    let data_dir = sandboxes_dir.parent().unwrap_or(sandboxes_dir);
    let workspace = dir.join("workspace");
    let state = dir.join("state");
    let mut args: Vec<OsString> = Vec::new();
    let mut add = |flag: &str, paths: &[&Path]| {
        args.push(flag.into());
        args.extend(paths.iter().map(|p| p.as_os_str().to_os_string()));
    };
    add("--ro-bind", &[Path::new("/"), Path::new("/")]);
    add("--dev", &[Path::new("/dev")]);
    add("--proc", &[Path::new("/proc")]);
    for hidden in [
        Path::new("/tmp"),
        Path::new("/root"),
        Path::new("/home"),
        data_dir,
    ] {
        add("--tmpfs", &[hidden]);
    }
    add("--bind", &[&workspace, &workspace]);
    add("--bind", &[&state, &state]);
    // The binary may live in a hidden folder (e.g. ~/.cargo/bin); keep it visible.
    add("--ro-bind", &[mcp_tools, mcp_tools]);
    // Its own pid namespace: it cannot see or signal other sandboxes' processes.
    // The network stays shared: mcp-tools must be reachable on loopback.
    for flag in [
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--cap-drop",
        "ALL",
        "--",
    ] {
        args.push(flag.into());
    }
    args
}

/// The mcp-tools binary: the configured one, else next to this binary, else on $PATH.
fn find_mcp_tools(configured: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = configured {
        return p
            .canonicalize()
            .map_err(|e| Error::BadRequest(format!("--mcp-tools-bin {}: {e}", p.display())));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        let candidate = dir.join("mcp-tools");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("mcp-tools");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(Error::BadRequest(
        "cannot find the mcp-tools binary next to control-plane or on PATH; \
         build it (cargo build -p mcp-tools) or pass --mcp-tools-bin / MCP_TOOLS_BIN"
            .into(),
    ))
}

/// bwrap on PATH that can actually create its namespaces here.
async fn find_working_bwrap() -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    let bwrap = std::env::split_paths(&paths)
        .map(|d| d.join("bwrap"))
        .find(|p| p.is_file())?;
    let ok = Command::new(&bwrap)
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
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false);
    ok.then_some(bwrap)
}

/// Removes `dir` and everything in it, also folders a command made read-only
/// (which stop a non-root owner from deleting their contents). Gone is fine.
fn remove_tree(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            make_dirs_writable(dir);
            std::fs::remove_dir_all(dir)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn make_dirs_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    // symlink_metadata: never follow a link out of the sandbox's folder.
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            make_dirs_writable(&entry.path());
        }
    }
}

/// The port mcp-tools listened on when the control plane last started it.
fn recorded_port(record: &SandboxRecord) -> Option<u16> {
    record
        .provider_data
        .get("port")
        .and_then(|p| p.as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
}

/// Longest address file accepted ("127.0.0.1:65535" is 15 bytes).
const ADDR_FILE_MAX: u64 = 64;

/// The loopback address mcp-tools wrote to `path`, if the file holds one.
///
/// The file is in a folder the sandbox can write, so it may have been
/// replaced by anything: a link is not followed, a FIFO or device is not
/// read (opening does not block), at most [`ADDR_FILE_MAX`] bytes are read,
/// and only a loopback address is accepted, never another host.
fn read_addr(path: &Path) -> Option<SocketAddr> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    if !file.metadata().ok()?.file_type().is_file() {
        return None;
    }
    let mut text = Vec::new();
    file.take(ADDR_FILE_MAX + 1).read_to_end(&mut text).ok()?;
    if text.len() as u64 > ADDR_FILE_MAX {
        return None;
    }
    let addr: SocketAddr = std::str::from_utf8(&text).ok()?.trim().parse().ok()?;
    addr.ip().is_loopback().then_some(addr)
}

fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| Error::Internal(format!("cannot write {}: {e}", path.display())))
}

/// True if `pid` is alive (not a zombie) and its command line mentions `dir`,
/// so a recycled pid of some other program is never signalled.
fn process_is_ours(pid: u32, dir: &Path) -> bool {
    if pid == 0 {
        return false;
    }
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let Ok(stat) = std::fs::read_to_string(proc_dir.join("stat")) else {
        return false;
    };
    // Field 3, after the parenthesised command name, is the state.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z") | Some("X")) {
        return false;
    }
    let Ok(cmdline) = std::fs::read(proc_dir.join("cmdline")) else {
        return false;
    };
    let workspace = dir.join("workspace");
    let needle = workspace.as_os_str().as_encoded_bytes();
    cmdline.windows(needle.len()).any(|w| w == needle)
}

/// The session leader (what [`LocalProvider::spawn_once`] starts) among the
/// processes of sandbox folder `dir`, if any is alive.
fn find_session_leader(dir: &Path) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if session_of(&stat) == Some(pid) && process_is_ours(pid, dir) {
            return Some(pid);
        }
    }
    None
}

/// The session id in the text of a `/proc/<pid>/stat`.
fn session_of(stat: &str) -> Option<u32> {
    // After "pid (comm)": state ppid pgrp session ...
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(3))
        .and_then(|s| s.parse::<u32>().ok())
}

/// Live processes of session `session`, zombies left out (already dead).
fn session_members(session: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            (session_of(&stat) == Some(session) && !matches!(state, Some("Z") | Some("X")))
                .then_some(pid)
        })
        .collect()
}

/// SIGKILL to every process of session `session`, again until none is left
/// (one may fork while the others are being killed).
async fn kill_session(session: u32) {
    let own = std::process::id();
    if session <= 1 || session == own {
        return;
    }
    for _ in 0..50 {
        let members: Vec<u32> = session_members(session)
            .into_iter()
            .filter(|pid| *pid != own)
            .collect();
        if members.is_empty() {
            return;
        }
        for pid in members {
            if let Ok(pid) = i32::try_from(pid) {
                // SAFETY: kill(2) on one process; no memory is involved.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::warn!(session, "processes of a stopped sandbox are still alive");
}

/// SIGTERM to the process group, then SIGKILL after the grace period.
async fn stop_pid(pid: u32, mut child: Option<&mut Child>) {
    let Ok(pgid) = i32::try_from(pid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
    unsafe {
        libc::kill(-pgid, libc::SIGTERM);
    }
    let deadline = Instant::now() + STOP_GRACE;
    loop {
        let gone = match child.as_deref_mut() {
            Some(c) => matches!(c.try_wait(), Ok(Some(_)) | Err(_)),
            None => !Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid),
        };
        if gone {
            // Whatever is left in the group gets no grace: under bwrap that is
            // the pid namespace's init, which ignores SIGTERM and whose end
            // takes every process of the sandbox with it.
            // SAFETY: as above.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
            return;
        }
        if Instant::now() > deadline {
            // SAFETY: as above.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
            if let Some(c) = child {
                let _ = c.wait().await;
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next().map(|st| st == "Z"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_file_is_read_with_care() {
        let dir = tempfile::tempdir().unwrap();
        let addr = dir.path().join("addr");
        std::fs::write(&addr, "127.0.0.1:6060\n").unwrap();
        assert_eq!(read_addr(&addr), Some("127.0.0.1:6060".parse().unwrap()));
        std::fs::write(&addr, "[::1]:6060").unwrap();
        assert_eq!(read_addr(&addr), Some("[::1]:6060".parse().unwrap()));

        // Never another host, nor a long file.
        std::fs::write(&addr, "10.1.2.3:6060").unwrap();
        assert_eq!(read_addr(&addr), None);
        std::fs::write(&addr, format!("127.0.0.1:6060{}", " ".repeat(100))).unwrap();
        assert_eq!(read_addr(&addr), None);

        // Not through a link, even to a good file.
        let good = dir.path().join("good");
        std::fs::write(&good, "127.0.0.1:6060").unwrap();
        std::fs::remove_file(&addr).unwrap();
        std::os::unix::fs::symlink(&good, &addr).unwrap();
        assert_eq!(read_addr(&addr), None);
        std::fs::remove_file(&addr).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &addr).unwrap();
        assert_eq!(read_addr(&addr), None);

        // A FIFO nobody writes to: refused at once, not waited on.
        std::fs::remove_file(&addr).unwrap();
        let c = std::ffi::CString::new(addr.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert_eq!(read_addr(&addr), None);
    }
}
