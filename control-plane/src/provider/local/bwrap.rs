//! Isolation of local sandboxes with bubblewrap: the arguments that confine
//! one sandbox, starting it (`bwrap` → `setpriv` for a sandbox user of its
//! own → `mcp-tools`), held by bubblewrap before it runs anything so the
//! control plane can put it in its cgroup and load its firewall first, and
//! the check that bwrap works on this machine.
//!
//! No `pre_exec` hook and no `Command::uid`: either makes the standard
//! library fork the whole control plane instead of using `posix_spawn`. The
//! two descriptors bubblewrap's handshake needs are the child's stdin
//! (`--block-fd 0`: bubblewrap waits for one byte on it) and stdout
//! (`--info-fd 1`: it writes `{"child-pid": N, ...}` there). bubblewrap
//! closes both before it runs mcp-tools, which starts with them pointing at
//! `/dev/null` (Rust's runtime reopens closed standard descriptors).

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};

use crate::error::{Error, ProviderError, Result};

/// Where mcp-tools listens inside every sandbox: its folder `run/` is
/// mounted at `/run/mcp-tools`.
pub const SOCKET_INSIDE: &str = "/run/mcp-tools/mcp.sock";

/// The file mcp-tools writes once its socket is ready (its `--addr-file`).
pub const READY_INSIDE: &str = "/run/mcp-tools/ready";

/// The workspace inside a sandbox on a template, as on E2B.
pub const WORKSPACE_IN_TEMPLATE: &str = "/home/user";

/// mcp-tools' job logs inside a sandbox on a template.
const STATE_IN_TEMPLATE: &str = "/run/mcp-tools-state";

/// Where the (static) mcp-tools is bound inside a sandbox on a template.
const MCP_TOOLS_IN_TEMPLATE: &str = "/run/mcp-tools-bin/mcp-tools";

/// `PATH` inside a sandbox on a template (Debian's default).
pub const PATH_IN_TEMPLATE: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Longest `--info-fd` answer read (bubblewrap's is about 200 bytes).
const INFO_MAX: usize = 4096;

/// The folders of one sandbox, all under its own folder.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The data folder, hidden from the sandbox.
    pub data_dir: PathBuf,
    /// `<data>/sandboxes/<id>`.
    pub dir: PathBuf,
}

impl Layout {
    /// The agent's files, kept across pause.
    pub fn workspace(&self) -> PathBuf {
        self.dir.join("workspace")
    }
    /// mcp-tools' job logs.
    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }
    /// Where mcp-tools makes its socket and, once it is ready, `ready`
    /// (writable by the sandbox).
    pub fn run(&self) -> PathBuf {
        self.dir.join("run")
    }
    /// Where the control plane moves the socket once mcp-tools made it:
    /// a folder the sandbox can neither see nor write, so the sandbox cannot
    /// swap it for a link to some other socket of this machine.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("mcp.sock")
    }
}

/// A template a sandbox runs on: its root filesystem becomes `/`.
#[derive(Debug, Clone)]
pub struct TemplateRoot {
    /// The template's root filesystem (bound read-only at `/`).
    pub root: PathBuf,
    /// The template's `/etc/passwd` plus the sandbox's user (`user`, its
    /// uid, home `/home/user`), bound over `/etc/passwd`.
    pub passwd: PathBuf,
    /// The same for `/etc/group`.
    pub group: PathBuf,
}

/// How one sandbox is started.
#[derive(Debug)]
pub struct Launch<'a> {
    pub layout: &'a Layout,
    pub bwrap: &'a Path,
    /// mcp-tools on this machine: a static one when `template` is set.
    pub mcp_tools: &'a Path,
    /// The template it runs on; `None`: this machine's system, read-only.
    pub template: Option<&'a TemplateRoot>,
    /// `setpriv` and the host uid (= gid) that mcp-tools runs as, when the
    /// control plane is root.
    pub user: Option<(&'a Path, u32)>,
    /// The file bound over `/etc/resolv.conf`, for sandboxes with internet access.
    pub resolv_conf: Option<&'a Path>,
    /// Size of the sandbox's `/tmp` in bytes (`/dev/shm` gets half).
    pub tmp_bytes: Option<u64>,
    pub token: &'a str,
    pub log: std::fs::File,
}

/// A started sandbox, held until [`Held::release`].
pub struct Held {
    /// bubblewrap's outer process (the child of the control plane).
    pub child: Child,
    /// The sandbox's first process, in its namespaces (host pid).
    pub sandbox_pid: u32,
    release: std::io::PipeWriter,
}

impl Held {
    /// Lets bubblewrap run mcp-tools.
    pub fn release(mut self) -> Result<Child> {
        self.release
            .write_all(b"x")
            .map_err(|e| ProviderError::failed(format!("cannot release the sandbox: {e}")))?;
        Ok(self.child)
    }
}

impl Launch<'_> {
    /// Starts bubblewrap and waits until it reports the sandbox's first
    /// process, which then waits for [`Held::release`].
    pub async fn start(self) -> Result<Held> {
        let (info, info_w) = std::io::pipe().map_err(|e| Error::Internal(format!("pipe: {e}")))?;
        let (block, release) =
            std::io::pipe().map_err(|e| Error::Internal(format!("pipe: {e}")))?;
        let mut cmd = Command::new(self.bwrap);
        cmd.args(self.bwrap_args());
        if let Some((setpriv, uid)) = self.user {
            // bubblewrap runs as root (no user namespace, so it reaches any
            // folder); setpriv then becomes the sandbox's own user, with no
            // capability left to regain, before mcp-tools runs.
            cmd.arg(setpriv)
                .arg(format!("--reuid={uid}"))
                .arg(format!("--regid={uid}"))
                .args([
                    "--clear-groups",
                    "--inh-caps=-all",
                    "--bounding-set=-all",
                    "--no-new-privs",
                    "--",
                ]);
        }
        cmd.arg(self.mcp_tools_inside())
            .args(self.mcp_tools_args())
            // The sandbox must not inherit this process's secrets (API keys).
            .env_clear()
            .env("LANG", "C.UTF-8")
            .env("MCP_AUTH_TOKEN", self.token)
            .current_dir(self.layout.workspace())
            .stdin(block)
            .stdout(info_w)
            .stderr(self.log)
            // A process group of its own: a Ctrl-C on the control plane's
            // terminal reaches only the control plane (posix_spawn does this).
            .process_group(0);
        match self.template {
            Some(_) => {
                cmd.env("PATH", PATH_IN_TEMPLATE)
                    .env("HOME", WORKSPACE_IN_TEMPLATE)
                    .env("USER", "user");
            }
            None => {
                cmd.env("PATH", host_path_inside())
                    .env("HOME", self.layout.workspace());
            }
        }
        let child = cmd.spawn().map_err(|e| {
            ProviderError::failed(format!("cannot start {}: {e}", self.bwrap.display()))
        })?;
        // Our copies of the child's ends go with the command: a bubblewrap
        // that fails early then reads as end-of-file, not as a wait.
        drop(cmd);
        let sandbox_pid = read_child_pid(info).await?;
        Ok(Held {
            child,
            sandbox_pid,
            release,
        })
    }

    /// bubblewrap's arguments: the machine read-only, without home folders,
    /// `/run`, the data folder (other sandboxes, the database) and the cgroup
    /// tree; a `/dev` of its own with its own terminals; the sandbox's own
    /// workspace, state and run folders; its own pid, IPC, UTS and network
    /// namespaces; no capabilities.
    pub fn bwrap_args(&self) -> Vec<OsString> {
        let layout = self.layout;
        let (workspace, state, run) = (layout.workspace(), layout.state(), layout.run());
        let mut args: Vec<OsString> = Vec::new();
        let mut add = |items: &[&dyn AsRef<std::ffi::OsStr>]| {
            args.extend(items.iter().map(|p| p.as_ref().to_os_string()));
        };
        match self.template {
            Some(t) => add(&[&"--ro-bind", &t.root, &"/"]),
            None => add(&[&"--ro-bind", &"/", &"/"]),
        }
        // A /dev of its own: null, zero, full, random, urandom and tty, and a
        // new devpts instance (with its /dev/ptmx) for its terminals, which
        // shows neither the host's nor another sandbox's.
        add(&[&"--dev", &"/dev"]);
        // Writable by everyone (sticky), as on any machine: the sandbox's
        // user is not the root that mounts them.
        add(&[&"--perms", &"01777"]);
        if let Some(bytes) = self.tmp_bytes {
            add(&[&"--size", &(bytes / 2).to_string()]);
        }
        add(&[&"--tmpfs", &"/dev/shm"]);
        add(&[&"--proc", &"/proc"]);
        add(&[&"--perms", &"01777"]);
        if let Some(bytes) = self.tmp_bytes {
            add(&[&"--size", &bytes.to_string()]);
        }
        add(&[&"--tmpfs", &"/tmp"]);
        match self.template {
            Some(t) => {
                // The template's own /run and /home are empty; these hold
                // the sandbox's folders, which the template cannot have.
                add(&[&"--tmpfs", &"/run", &"--tmpfs", &"/home"]);
                add(&[&"--bind", &workspace, &WORKSPACE_IN_TEMPLATE]);
                add(&[&"--bind", &state, &STATE_IN_TEMPLATE]);
                add(&[&"--bind", &run, &"/run/mcp-tools"]);
                add(&[&"--ro-bind", &self.mcp_tools, &MCP_TOOLS_IN_TEMPLATE]);
                add(&[&"--ro-bind", &t.passwd, &"/etc/passwd"]);
                add(&[&"--ro-bind", &t.group, &"/etc/group"]);
                add(&[&"--chdir", &WORKSPACE_IN_TEMPLATE]);
            }
            None => {
                for hidden in ["/root", "/home", "/run", "/sys/fs/cgroup"] {
                    if Path::new(hidden).exists() {
                        add(&[&"--tmpfs", &hidden]);
                    }
                }
                add(&[&"--tmpfs", &layout.data_dir]);
                // Made here so that the sandbox's user may pass through it to its
                // folders (bubblewrap would make it 0700, root's).
                add(&[&"--perms", &"0755", &"--dir", &layout.dir]);
                add(&[&"--bind", &workspace, &workspace]);
                add(&[&"--bind", &state, &state]);
                add(&[&"--bind", &run, &"/run/mcp-tools"]);
                // The binary may live in a hidden folder (e.g. ~/.cargo/bin); keep it visible.
                add(&[&"--ro-bind", &self.mcp_tools, &self.mcp_tools]);
            }
        }
        if let Some(resolv) = self.resolv_conf {
            add(&[&"--ro-bind", &resolv, &"/etc/resolv.conf"]);
        }
        if self.user.is_none() {
            // Under its own user setpriv drops them itself, after it has used
            // the one it needs to become that user.
            add(&[&"--cap-drop", &"ALL"]);
        }
        add(&[
            &"--unshare-pid",
            &"--unshare-ipc",
            &"--unshare-uts",
            &"--unshare-net",
            &"--new-session",
            &"--block-fd",
            &"0",
            &"--info-fd",
            &"1",
            &"--",
        ]);
        args
    }

    /// Where the sandbox sees mcp-tools.
    fn mcp_tools_inside(&self) -> &Path {
        match self.template {
            Some(_) => Path::new(MCP_TOOLS_IN_TEMPLATE),
            None => self.mcp_tools,
        }
    }

    fn mcp_tools_args(&self) -> Vec<OsString> {
        let (workspace, state) = match self.template {
            Some(_) => (
                PathBuf::from(WORKSPACE_IN_TEMPLATE),
                PathBuf::from(STATE_IN_TEMPLATE),
            ),
            None => (self.layout.workspace(), self.layout.state()),
        };
        vec![
            "--unix-socket".into(),
            SOCKET_INSIDE.into(),
            // Written once the socket is ready: the control plane's signal.
            "--addr-file".into(),
            READY_INSIDE.into(),
            "--workspace".into(),
            workspace.into(),
            "--state-dir".into(),
            state.into(),
            // Its log is kept for when a start fails; problems are enough.
            "--log-level".into(),
            "warn".into(),
        ]
    }
}

/// This machine's `PATH` as a sandbox on its system can use it: only the
/// folders that exist and that the sandbox sees (not under the home folders
/// or `/run`, which are hidden); Debian's default when none is left.
pub fn host_path_inside() -> OsString {
    let hidden = [Path::new("/root"), Path::new("/home"), Path::new("/run")];
    let host = std::env::var_os("PATH").unwrap_or_default();
    let kept: Vec<PathBuf> = std::env::split_paths(&host)
        .filter(|d| d.is_absolute() && d.is_dir() && !hidden.iter().any(|h| d.starts_with(h)))
        .collect();
    if kept.is_empty() {
        return PATH_IN_TEMPLATE.into();
    }
    std::env::join_paths(kept).unwrap_or_else(|_| PATH_IN_TEMPLATE.into())
}

/// The `child-pid` of bubblewrap's `--info-fd` answer.
async fn read_child_pid(info: std::io::PipeReader) -> Result<u32> {
    let failed = |why: &str| -> Error {
        ProviderError::failed(format!(
            "bubblewrap did not start the sandbox ({why}); see its mcp-tools.log"
        ))
        .into()
    };
    let mut info = pipe::Receiver::from_owned_fd(std::os::fd::OwnedFd::from(info))
        .map_err(|e| Error::Internal(format!("pipe: {e}")))?;
    let mut text = Vec::new();
    let mut buf = [0u8; 512];
    // bubblewrap ends its answer with "}\n" and then closes the descriptor.
    while !text.ends_with(b"}\n") && text.len() < INFO_MAX {
        match info.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(e) => return Err(failed(&e.to_string())),
        }
    }
    let value: serde_json::Value =
        serde_json::from_slice(&text).map_err(|_| failed("no process id"))?;
    value
        .get("child-pid")
        .and_then(|p| p.as_u64())
        .and_then(|p| u32::try_from(p).ok())
        .filter(|p| *p > 1)
        .ok_or_else(|| failed("no process id"))
}

/// bwrap on PATH that can actually create its namespaces here.
pub async fn find_working_bwrap() -> Option<PathBuf> {
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
            "--unshare-net",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_sees_its_own_folders_and_no_network_of_the_host() {
        let layout = Layout {
            data_dir: PathBuf::from("/data"),
            dir: PathBuf::from("/data/sandboxes/sb-1"),
        };
        let log = tempfile::tempfile().unwrap();
        let launch = Launch {
            layout: &layout,
            bwrap: Path::new("/usr/bin/bwrap"),
            mcp_tools: Path::new("/opt/mcp-tools"),
            template: None,
            user: None,
            resolv_conf: Some(Path::new("/data/sandboxes/resolv.conf")),
            tmp_bytes: Some(1024),
            token: "t",
            log,
        };
        let args: Vec<String> = launch
            .bwrap_args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let joined = args.join(" ");
        for expected in [
            "--unshare-net",
            "--unshare-pid",
            "--new-session",
            "--block-fd 0 --info-fd 1 --",
            "--perms 01777 --size 1024 --tmpfs /tmp",
            "--bind /data/sandboxes/sb-1/workspace /data/sandboxes/sb-1/workspace",
            "--bind /data/sandboxes/sb-1/run /run/mcp-tools",
            "--ro-bind /data/sandboxes/resolv.conf /etc/resolv.conf",
        ] {
            assert!(
                joined.contains(expected),
                "{expected:?} missing in {joined}"
            );
        }
        // The data folder is hidden before the sandbox's own folders are shown.
        let hide = joined.find("--tmpfs /data ").unwrap();
        assert!(
            hide < joined
                .find("--bind /data/sandboxes/sb-1/workspace")
                .unwrap()
        );
        assert!(joined.contains("--dev /dev --perms 01777 --size 512 --tmpfs /dev/shm"));
    }

    #[test]
    fn a_sandbox_on_a_template_sees_its_root_and_nothing_of_the_host() {
        let layout = Layout {
            data_dir: PathBuf::from("/data"),
            dir: PathBuf::from("/data/sandboxes/sb-1"),
        };
        let template = TemplateRoot {
            root: PathBuf::from("/data/templates/default/root"),
            passwd: PathBuf::from("/data/sandboxes/sb-1/passwd"),
            group: PathBuf::from("/data/sandboxes/sb-1/group"),
        };
        let launch = Launch {
            layout: &layout,
            bwrap: Path::new("/usr/bin/bwrap"),
            mcp_tools: Path::new("/opt/static/mcp-tools"),
            template: Some(&template),
            user: None,
            resolv_conf: None,
            tmp_bytes: None,
            token: "t",
            log: tempfile::tempfile().unwrap(),
        };
        let joined = launch
            .bwrap_args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            joined.starts_with("--ro-bind /data/templates/default/root / "),
            "{joined}"
        );
        for expected in [
            "--bind /data/sandboxes/sb-1/workspace /home/user",
            "--ro-bind /opt/static/mcp-tools /run/mcp-tools-bin/mcp-tools",
            "--ro-bind /data/sandboxes/sb-1/passwd /etc/passwd",
            "--chdir /home/user",
        ] {
            assert!(
                joined.contains(expected),
                "{expected:?} missing in {joined}"
            );
        }
        assert!(!joined.contains("--ro-bind / /"), "{joined}");
        let args: Vec<String> = launch
            .mcp_tools_args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert!(
            args.join(" ").contains("--workspace /home/user"),
            "{args:?}"
        );
    }
}
