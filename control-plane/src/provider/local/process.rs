//! Starting and stopping a sandbox's processes: mcp-tools under bubblewrap
//! (in its cgroup, behind its firewall, with slirp4netns) or as a plain
//! child, waiting until it listens, and ending
//! everything a sandbox left behind.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::health::healthy_soon;
use super::settings::Chosen;
use super::{LocalProvider, Running, bwrap, network, procs, quota, write_atomically};
use crate::error::{Error, ProviderError, Result};
use crate::ids::SandboxId;

/// How long a new mcp-tools may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(20);

impl LocalProvider {
    /// Starts sandbox `id` and waits until its mcp-tools answers /health.
    /// A start that fails leaves no process.
    pub(super) async fn start(
        &self,
        id: &SandboxId,
        token: &str,
        chosen: &Chosen,
    ) -> Result<Running> {
        let layout = self.layout(id);
        let failed = |what: &str, e: std::io::Error| {
            Error::Internal(format!("{what} for sandbox {id}: {e}"))
        };
        for d in [
            layout.dir.clone(),
            layout.workspace(),
            layout.state(),
            layout.run(),
        ] {
            std::fs::create_dir_all(&d).map_err(|e| failed("cannot create folders", e))?;
        }
        let uid = self
            .identities
            .claim(
                &self.sandboxes_dir,
                &layout.dir,
                &[&layout.workspace(), &layout.state(), &layout.run()],
            )
            .map_err(|e| failed("cannot give the sandbox its user", e))?;
        if let (Some(mb), Ok(quotas)) = (chosen.disk_size_mb, &self.protections.quota) {
            quotas
                .attach(&layout.dir, &layout.workspace(), mb, uid)
                .await
                .map_err(|e| failed("cannot mount the workspace's file system", e))?;
        }
        for stale in [
            layout.socket(),
            layout.run().join("mcp.sock"),
            layout.run().join("ready"),
        ] {
            let _ = std::fs::remove_file(stale);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(layout.dir.join("mcp-tools.log"))
            .map_err(|e| failed("cannot open the log", e))?;
        // Kept while the sandbox exists, so its template is not deleted under it.
        match &chosen.template {
            Some(name) => write_atomically(&layout.dir.join("template"), name)?,
            None => {
                let _ = std::fs::remove_file(layout.dir.join("template"));
            }
        }

        let started = match &self.bwrap {
            Some(bwrap) => {
                self.start_isolated(id, token, chosen, &layout, bwrap, uid, log)
                    .await
            }
            None if chosen.template.is_some() => Err(Error::Invalid(
                "sandboxes on a template need bubblewrap, which does not work here".into(),
            )),
            None => self.start_plain(id, token, &layout, log).await,
        };
        if let Err(e) = started {
            self.stop(id).await;
            // The folder of a failed create goes: its log goes to ours first.
            let log = std::fs::read(layout.dir.join("mcp-tools.log")).unwrap_or_default();
            let tail = String::from_utf8_lossy(&log[log.len().saturating_sub(2000)..]);
            tracing::warn!(sandbox = %id, "start failed: {e}; its log ends with: {tail}");
            return Err(e);
        }
        Ok(self.running(id, chosen))
    }

    /// bubblewrap, held until it is in its cgroup and behind its firewall;
    /// then slirp4netns once mcp-tools listens.
    #[allow(clippy::too_many_arguments)]
    async fn start_isolated(
        &self,
        id: &SandboxId,
        token: &str,
        chosen: &Chosen,
        layout: &bwrap::Layout,
        bwrap_bin: &Path,
        uid: Option<u32>,
        log: std::fs::File,
    ) -> Result<()> {
        let cgroup = self.cgroup(id);
        if let Some(cg) = &cgroup {
            cg.create(&chosen.limits()).map_err(|e| {
                ProviderError::failed(format!("cannot set the limits of sandbox {id}: {e}"))
            })?;
        }
        let internet = match (&self.protections.internet, chosen.internet) {
            (Ok(tools), true) => Some(tools),
            _ => None,
        };
        let template = match &chosen.template {
            Some(name) => Some(self.template_root(layout, name, uid)?),
            None => None,
        };
        let mcp_tools = match (&template, &self.static_mcp_tools) {
            (None, _) => self.mcp_tools.as_path(),
            (Some(_), Ok(bin)) => bin.as_path(),
            (Some(_), Err(why)) => {
                return Err(ProviderError::refused(format!(
                    "sandboxes on a template cannot start: {why}"
                ))
                .into());
            }
        };
        let launch = bwrap::Launch {
            layout,
            bwrap: bwrap_bin,
            mcp_tools,
            template: template.as_ref(),
            user: match (&self.setpriv, uid) {
                (Some(setpriv), Some(uid)) => Some((setpriv.as_path(), uid)),
                _ => None,
            },
            resolv_conf: internet.map(|_| self.resolv_conf.as_path()),
            // Half the memory: tmpfs pages cannot be reclaimed, so a full /tmp
            // must be an ENOSPC, not an OOM kill of everything in the sandbox.
            tmp_bytes: Some(chosen.memory_mb.saturating_mul(1 << 19)),
            token,
            log: log
                .try_clone()
                .map_err(|e| Error::Internal(format!("log: {e}")))?,
        };
        let held = launch.start().await?;
        let bwrap_pid = held.child.id().unwrap_or(0);
        let sandbox_pid = held.sandbox_pid;
        write_atomically(&layout.dir.join("pid"), &bwrap_pid.to_string())?;
        let held = {
            let placed = match &cgroup {
                Some(cg) => cg.add(bwrap_pid).and_then(|()| cg.add(sandbox_pid)),
                None => Ok(()),
            };
            if let Err(e) = placed {
                let mut child = held.child;
                let _ = child.kill().await;
                return Err(ProviderError::failed(format!(
                    "cannot put sandbox {id} in its cgroup: {e}"
                ))
                .into());
            }
            if let Some(tools) = internet
                && !network::in_user_namespace()
                && let Err(e) = tools.apply_firewall(sandbox_pid, &self.firewall).await
            {
                let mut child = held.child;
                let _ = child.kill().await;
                return Err(e);
            }
            held
        };
        let child = held.release()?;
        self.keep_until_ready(id, layout, child).await?;
        if let Some(tools) = internet {
            if network::in_user_namespace() {
                // Without root the firewall goes in only now: bubblewrap
                // maps the user into the namespace that owns the network
                // after it is released, and before that nft has no
                // privilege there. No packet has left yet: the namespace
                // has only `lo` until slirp4netns adds `tap0` below, and
                // the sandbox has no privilege over its network to add
                // rules of its own first.
                tools.apply_firewall(sandbox_pid, &self.firewall).await?;
            }
            // Only now: slirp4netns brings up the namespace's loopback too,
            // which must not race bubblewrap's own setup of it.
            // Once more if the first fails: under heavy load slirp4netns
            // was seen to fail now and then at start.
            let slirp = match tools.start_slirp(sandbox_pid, &log).await {
                Ok(slirp) => slirp,
                Err(e) => {
                    tracing::warn!(sandbox = %id, "{e}; trying once more");
                    tools.start_slirp(sandbox_pid, &log).await?
                }
            };
            let slirp_pid = slirp.id().unwrap_or(0);
            write_atomically(&layout.dir.join("slirp.pid"), &slirp_pid.to_string())?;
            if let Some(cg) = &cgroup {
                // Its memory counts as the sandbox's, and it ends with it.
                let _ = cg.add(slirp_pid);
            }
            self.keep(id, slirp).await;
        }
        if !healthy_soon(&layout.socket()).await {
            return Err(ProviderError::failed(format!(
                "mcp-tools of sandbox {id} listens but /health fails"
            ))
            .into());
        }
        Ok(())
    }

    /// mcp-tools as a plain child process, without isolation.
    async fn start_plain(
        &self,
        id: &SandboxId,
        token: &str,
        layout: &bwrap::Layout,
        log: std::fs::File,
    ) -> Result<()> {
        let log2 = log
            .try_clone()
            .map_err(|e| Error::Internal(format!("log: {e}")))?;
        let args: Vec<OsString> = vec![
            "--unix-socket".into(),
            layout.run().join("mcp.sock").into(),
            "--addr-file".into(),
            layout.run().join("ready").into(),
            "--workspace".into(),
            layout.workspace().into(),
            "--state-dir".into(),
            layout.state().into(),
            "--log-level".into(),
            "warn".into(),
        ];
        let mut cmd = Command::new(&self.setsid);
        cmd.arg(&self.mcp_tools)
            .args(&args)
            // The sandbox must not inherit this process's secrets (API keys).
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("HOME", layout.workspace())
            .env("LANG", "C.UTF-8")
            .env("MCP_AUTH_TOKEN", token)
            .current_dir(layout.workspace())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let child = cmd.spawn().map_err(|e| {
            ProviderError::failed(format!("cannot start {}: {e}", self.mcp_tools.display()))
        })?;
        write_atomically(
            &layout.dir.join("pid"),
            &child.id().unwrap_or(0).to_string(),
        )?;
        self.keep_until_ready(id, layout, child).await?;
        if !healthy_soon(&layout.socket()).await {
            return Err(ProviderError::failed(format!(
                "mcp-tools of sandbox {id} listens but /health fails"
            ))
            .into());
        }
        Ok(())
    }

    /// Keeps `child` among sandbox `id`'s processes, so `stop` ends and
    /// reaps it.
    async fn keep(&self, id: &SandboxId, child: Child) {
        self.children
            .lock()
            .await
            .entry(id.clone())
            .or_default()
            .push(child);
    }

    /// Waits for `child`'s mcp-tools to be ready ([`wait_for_socket`]) and
    /// keeps `child` either way, so a failed start is still ended by `stop`.
    async fn keep_until_ready(
        &self,
        id: &SandboxId,
        layout: &bwrap::Layout,
        mut child: Child,
    ) -> Result<()> {
        let waited = wait_for_socket(&mut child, layout).await;
        self.keep(id, child).await;
        waited.map_err(|e| e.into_error(id, layout))
    }

    /// The pid of sandbox `id`'s outer process if it is alive and really ours.
    pub(super) fn live_pid(&self, id: &SandboxId) -> Option<u32> {
        let dir = self.dir(id);
        if let Some(pid) = recorded_pid(&dir, "pid")
            && procs::process_is_ours(pid, &dir)
        {
            return Some(pid);
        }
        // A control plane killed between starting the process and writing the
        // pid file leaves one that only its command line identifies.
        procs::find_group_leader(&dir)
    }

    /// Stops sandbox `id`'s processes, every process its commands left
    /// behind, and its network.
    pub(super) async fn stop(&self, id: &SandboxId) {
        let dir = self.dir(id);
        let mut children = self.children.lock().await.remove(id).unwrap_or_default();
        let cgroup = self.cgroup(id);
        if let Some(cg) = &cgroup {
            cg.kill_all().await;
        }
        // The outer process leads its own process group. Without bubblewrap
        // mcp-tools leads its own session too, and its commands stay in it
        // (in process groups of their own, which signalling its group
        // misses). A leader that already died leaves its session id to them;
        // its pid names that session only while no other process has it.
        let leader = children.first_mut();
        let session = match self.live_pid(id) {
            Some(pid) => {
                procs::stop_group(pid, leader).await;
                Some(pid)
            }
            None => {
                if let Some(child) = leader {
                    let _ = child.try_wait();
                }
                recorded_pid(&dir, "pid").filter(|pid| procs::is_gone(*pid))
            }
        };
        if let Some(session) = session {
            procs::kill_session(session).await;
        }
        if let Some(pid) = recorded_pid(&dir, "slirp.pid")
            && procs::is_slirp_of(pid)
        {
            procs::signal_process(pid, libc::SIGKILL);
        }
        for child in &mut children {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        // Anything else of this sandbox still alive: e.g. bubblewrap's
        // first process, orphaned when a control plane killed mid-start left
        // it waiting, before it was in any group or cgroup.
        procs::kill_all_of(&dir).await;
        quota::detach(&dir.join("workspace"));
        if let Some(cg) = &cgroup {
            cg.remove().await;
        }
        for file in ["pid", "slirp.pid", "mcp.sock"] {
            let _ = std::fs::remove_file(dir.join(file));
        }
    }
}

/// Why mcp-tools never came to listen.
enum Exit {
    /// It exited, with this status.
    Exited(std::process::ExitStatus),
    /// It did not make its socket within [`START_TIMEOUT`].
    TimedOut,
    /// Its socket is not a socket (the sandbox cannot have made it so
    /// before mcp-tools ran, so something is badly wrong).
    NotASocket,
}

impl Exit {
    fn into_error(self, id: &SandboxId, layout: &bwrap::Layout) -> Error {
        let log = layout.dir.join("mcp-tools.log");
        match self {
            Exit::Exited(status) => ProviderError::failed(format!(
                "mcp-tools for sandbox {id} exited at start ({status}); see {}",
                log.display()
            )),
            Exit::TimedOut => ProviderError::timeout(format!(
                "mcp-tools for sandbox {id} did not start within {}s; see {}",
                START_TIMEOUT.as_secs(),
                log.display()
            )),
            Exit::NotASocket => {
                ProviderError::failed(format!("the socket of sandbox {id} is not a socket"))
            }
        }
        .into()
    }
}

/// Waits until `child`'s mcp-tools says its socket in the sandbox's `run`
/// folder is ready (it writes `ready` there), then moves the socket to the sandbox's own folder, out of the
/// sandbox's reach: the control plane connects only there, so nothing the
/// sandbox does later (a link in place of the socket) redirects it.
async fn wait_for_socket(child: &mut Child, layout: &bwrap::Layout) -> Result<(), Exit> {
    use std::os::unix::fs::FileTypeExt;
    let made = layout.run().join("mcp.sock");
    let ready = layout.run().join("ready");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Exit::Exited(status));
        }
        if std::fs::symlink_metadata(&ready).is_ok() {
            break;
        }
        if Instant::now() > deadline {
            return Err(Exit::TimedOut);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // rename(2) moves a link itself, never what it points to.
    std::fs::rename(&made, layout.socket()).map_err(|_| Exit::NotASocket)?;
    match std::fs::symlink_metadata(layout.socket()) {
        Ok(meta) if meta.file_type().is_socket() => Ok(()),
        _ => Err(Exit::NotASocket),
    }
}

/// The pid in file `name` of sandbox folder `dir`, if there is one.
fn recorded_pid(dir: &Path, name: &str) -> Option<u32> {
    std::fs::read_to_string(dir.join(name))
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
}
