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
//! [`Provider::inspect`] finds them through the pid file and they are re-adopted.
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

use super::{Capabilities, CreateSpec, Endpoint, Inspection, Provider, Running, SandboxRef};
use crate::config::{Isolation, LocalConfig};
use crate::error::{Error, ProviderError, Result, StartError};
use crate::ids::{ProviderId, SandboxId};

mod bwrap;
mod procs;

/// How long a new mcp-tools may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs each sandbox as an mcp-tools process on this machine (under
/// bubblewrap when isolation is on).
pub struct LocalProvider {
    sandboxes_dir: PathBuf,
    mcp_tools: PathBuf,
    /// The bwrap binary when sandboxes are isolated.
    bwrap: Option<PathBuf>,
    /// setsid(1), which starts each sandbox in a session of its own.
    setsid: PathBuf,
    /// Children started by this process, so they can be waited for (no zombies).
    children: Mutex<HashMap<SandboxId, Child>>,
    http: reqwest::Client,
}

impl LocalProvider {
    /// A provider keeping its sandboxes in `<data_dir>/sandboxes`.
    ///
    /// Errors: the folder cannot be made, mcp-tools is not found, or
    /// `--isolation on` without a working bubblewrap.
    pub async fn new(config: &LocalConfig, data_dir: &Path) -> Result<Self, StartError> {
        let sandboxes_dir = data_dir.join("sandboxes");
        std::fs::create_dir_all(&sandboxes_dir).map_err(|source| StartError::Io {
            what: "cannot create",
            path: sandboxes_dir.clone(),
            source,
        })?;
        let sandboxes_dir = sandboxes_dir
            .canonicalize()
            .map_err(|source| StartError::Io {
                what: "cannot use",
                path: sandboxes_dir.clone(),
                source,
            })?;
        let mcp_tools = find_mcp_tools(config.mcp_tools_bin.as_deref())?;
        let bwrap = match config.isolation {
            Isolation::Off => None,
            Isolation::Auto => bwrap::find_working_bwrap().await,
            Isolation::On => Some(bwrap::find_working_bwrap().await.ok_or_else(|| {
                StartError::Config(
                    "--isolation on needs a working bubblewrap (apt-get install bubblewrap)".into(),
                )
            })?),
        };
        let setsid = find_on_path("setsid").ok_or_else(|| {
            StartError::Config(
                "the local provider needs setsid (util-linux, or busybox) on PATH".into(),
            )
        })?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| StartError::Config(format!("http client: {e}")))?;
        Ok(LocalProvider {
            sandboxes_dir,
            mcp_tools,
            bwrap,
            setsid,
            children: Mutex::new(HashMap::new()),
            http,
        })
    }

    /// Sandbox `id`'s folder (an id is one path component, never `..`).
    fn dir(&self, id: &SandboxId) -> PathBuf {
        self.sandboxes_dir.join(id.as_str())
    }

    /// Starts mcp-tools for sandbox `id`, on `port` if given and free, and
    /// waits until it answers /health.
    async fn start(&self, id: &SandboxId, token: &str, port: Option<u16>) -> Result<Running> {
        let dir = self.dir(id);
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
                Ok(addr) => return Ok(running_at(id, addr)),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| ProviderError::failed("mcp-tools did not start").into()))
    }

    /// Starts mcp-tools once, asking for `port` (0: any), and waits until
    /// it listens and answers /health. A start that fails leaves no process.
    async fn spawn_once(
        &self,
        id: &SandboxId,
        dir: &Path,
        token: &str,
        port: u16,
    ) -> Result<SocketAddr> {
        // Written by mcp-tools, so it lives in a folder the sandbox can write.
        let addr_file = dir.join("state").join("addr");
        let _ = std::fs::remove_file(&addr_file);
        let mut child = self
            .command(dir, token, port, &addr_file)?
            .spawn()
            .map_err(|e| {
                ProviderError::failed(format!("cannot start {}: {e}", self.mcp_tools.display()))
            })?;
        let pid = child.id().unwrap_or(0);
        write_atomically(&dir.join("pid"), &pid.to_string())?;
        let listening = match wait_listening(&mut child, &addr_file).await {
            Ok(addr) if self.healthy(addr).await => Ok(addr),
            Ok(addr) => Err(ProviderError::failed(format!(
                "mcp-tools for sandbox {id} listens on {addr} but /health fails"
            ))),
            Err(Exit::Exited(status)) => Err(ProviderError::failed(format!(
                "mcp-tools for sandbox {id} exited at start ({status}); see {}",
                dir.join("mcp-tools.log").display()
            ))),
            Err(Exit::TimedOut) => Err(ProviderError::timeout(format!(
                "mcp-tools for sandbox {id} did not start within {}s",
                START_TIMEOUT.as_secs()
            ))),
        };
        match listening {
            Ok(addr) => {
                self.children.lock().await.insert(id.clone(), child);
                Ok(addr)
            }
            Err(e) => {
                procs::stop_group(pid, Some(&mut child)).await;
                Err(e.into())
            }
        }
    }

    /// The command that runs sandbox folder `dir`'s mcp-tools: under bwrap
    /// when isolation is on, with nothing of this process's environment but
    /// `PATH`, its output appended to `mcp-tools.log`.
    fn command(&self, dir: &Path, token: &str, port: u16, addr_file: &Path) -> Result<Command> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("mcp-tools.log"))
            .and_then(|log| Ok((log.try_clone()?, log)))
            .map_err(|e| Error::Internal(format!("cannot open log in {}: {e}", dir.display())))?;
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
            addr_file.into(),
            // Its log is kept for when a start fails; problems are enough.
            "--log-level".into(),
            "warn".into(),
        ];
        // setsid(1) gives the sandbox a session of its own (so also a process
        // group): a Ctrl-C on the terminal reaches only the control plane, the
        // sandbox has no controlling terminal to inject keystrokes into, and
        // stopping can sweep the whole session. It execs in place (same pid).
        // A program rather than a pre_exec hook: with a hook the standard
        // library forks instead of using posix_spawn, and every fork copies
        // this process's memory, which makes creates slower as it grows.
        let mut cmd = Command::new(&self.setsid);
        if let Some(bwrap) = &self.bwrap {
            cmd.arg(bwrap)
                .args(bwrap::bwrap_args(&self.sandboxes_dir, dir, &self.mcp_tools));
        }
        cmd.arg(&self.mcp_tools)
            .args(&mcp_args)
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
            .stdout(log.0)
            .stderr(log.1);
        Ok(cmd)
    }

    async fn healthy(&self, addr: SocketAddr) -> bool {
        match self.http.get(format!("http://{addr}/health")).send().await {
            Ok(r) => r.status().is_success(),
            Err(_) => false,
        }
    }

    /// The pid of sandbox `id`'s mcp-tools if it is alive and really ours.
    fn live_pid(&self, id: &SandboxId) -> Option<u32> {
        let dir = self.dir(id);
        if let Some(pid) = recorded_pid(&dir)
            && procs::process_is_ours(pid, &dir)
        {
            return Some(pid);
        }
        // A control plane killed between starting the process and writing the
        // pid file leaves one that only its command line identifies.
        procs::find_session_leader(&dir)
    }

    /// Stops sandbox `id`'s process if there is one, and every process its
    /// commands left behind.
    async fn stop(&self, id: &SandboxId) {
        let dir = self.dir(id);
        let mut child = self.children.lock().await.remove(id);
        // mcp-tools leads its own session, and its commands stay in it (in
        // process groups of their own, which signalling its group misses).
        // A leader that already died leaves its session id to them; its pid
        // names that session only while no other process has it.
        let session = match self.live_pid(id) {
            Some(pid) => {
                procs::stop_group(pid, child.as_mut()).await;
                Some(pid)
            }
            None => {
                if let Some(child) = child.as_mut() {
                    let _ = child.try_wait();
                }
                recorded_pid(&dir).filter(|pid| procs::is_gone(*pid))
            }
        };
        if let Some(session) = session {
            procs::kill_session(session).await;
        }
        let _ = std::fs::remove_file(dir.join("pid"));
    }
}

/// Why mcp-tools never came to listen.
enum Exit {
    /// It exited, with this status.
    Exited(std::process::ExitStatus),
    /// It did not write its address within [`START_TIMEOUT`].
    TimedOut,
}

/// Waits until `child` (a starting mcp-tools) writes the address it listens
/// on to `addr_file`.
async fn wait_listening(child: &mut Child, addr_file: &Path) -> Result<SocketAddr, Exit> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Exit::Exited(status));
        }
        if let Some(addr) = read_addr(addr_file) {
            return Ok(addr);
        }
        if Instant::now() > deadline {
            return Err(Exit::TimedOut);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The pid in sandbox folder `dir`'s pid file, if there is one.
fn recorded_pid(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(dir.join("pid"))
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
}

/// What [`LocalProvider`] reports of sandbox `id` listening on `addr`.
fn running_at(id: &SandboxId, addr: SocketAddr) -> Running {
    Running {
        provider_id: ProviderId::from(id),
        endpoint: Endpoint {
            url: format!("http://{addr}/mcp"),
            headers: BTreeMap::new(),
        },
        provider_data: serde_json::json!({ "port": addr.port() }),
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

    async fn create(&self, spec: &CreateSpec) -> Result<Running> {
        if let Some(t) = &spec.template_id
            && t != "default"
        {
            return Err(Error::Invalid(format!(
                "the local provider has only the template \"default\", not {t:?}"
            )));
        }
        let started = self.start(&spec.sandbox_id, &spec.token, None).await;
        if started.is_err() {
            self.stop(&spec.sandbox_id).await;
            let _ = std::fs::remove_dir_all(self.dir(&spec.sandbox_id));
        }
        started
    }

    async fn resume(&self, sandbox: SandboxRef<'_>) -> Result<Running> {
        let dir = self.dir(sandbox.id);
        if !dir.join("workspace").is_dir() {
            return Err(ProviderError::failed(format!(
                "the workspace of sandbox {} is gone from {}",
                sandbox.id,
                dir.display()
            ))
            .into());
        }
        // A process left from before (e.g. adopted) would hold the port.
        self.stop(sandbox.id).await;
        self.start(sandbox.id, sandbox.token, recorded_port(sandbox))
            .await
    }

    async fn pause(&self, sandbox: SandboxRef<'_>) -> Result<()> {
        self.stop(sandbox.id).await;
        Ok(())
    }

    async fn delete(&self, sandbox: SandboxRef<'_>) -> Result<()> {
        self.stop(sandbox.id).await;
        let dir = self.dir(sandbox.id);
        remove_tree(&dir)
            .map_err(|e| Error::Internal(format!("cannot remove {}: {e}", dir.display())))
    }

    async fn inspect(&self, sandbox: SandboxRef<'_>) -> Result<Inspection> {
        let id = sandbox.id;
        let dir = self.dir(id);
        if !dir.join("workspace").is_dir() {
            return Ok(Inspection::Gone);
        }
        if let Some(child) = self.children.lock().await.get_mut(id) {
            // Reap a child that exited by itself.
            let _ = child.try_wait();
        }
        if self.live_pid(id).is_none() {
            return Ok(Inspection::Stopped);
        }
        // The address file lies in a folder the sandbox can write: the port
        // recorded at start is trusted first, and the file (read with care)
        // only when there is none or it no longer answers, e.g. a start the
        // control plane did not live to record.
        let recorded = recorded_port(sandbox).map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
        let mut candidates: Vec<SocketAddr> = recorded.into_iter().collect();
        if let Some(addr) = read_addr(&dir.join("state").join("addr"))
            && Some(addr) != recorded
        {
            candidates.push(addr);
        }
        for addr in candidates {
            if self.healthy(addr).await {
                return Ok(Inspection::Running(running_at(id, addr)));
            }
        }
        // Alive but not answering: stop it so the state is clear.
        self.stop(id).await;
        Ok(Inspection::Stopped)
    }

    fn port_url(&self, _sandbox: SandboxRef<'_>, port: u16) -> Result<String> {
        // Local sandboxes share this machine's network.
        Ok(format!("http://127.0.0.1:{port}"))
    }
}

/// The mcp-tools binary: the configured one, else next to this binary, else on $PATH.
fn find_mcp_tools(configured: Option<&Path>) -> Result<PathBuf, StartError> {
    if let Some(p) = configured {
        return p
            .canonicalize()
            .map_err(|e| StartError::Config(format!("--mcp-tools-bin {}: {e}", p.display())));
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
    Err(StartError::Config(
        "cannot find the mcp-tools binary next to control-plane or on PATH; \
         build it (cargo build -p mcp-tools) or pass --mcp-tools-bin / MCP_TOOLS_BIN"
            .into(),
    ))
}

/// The program `name` in a folder of $PATH.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
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
fn recorded_port(sandbox: SandboxRef<'_>) -> Option<u16> {
    sandbox
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
