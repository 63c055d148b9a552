//! Resource limits and usage of local sandboxes through the kernel's control
//! groups, version 1 (one hierarchy per controller, as on these machines) or
//! version 2 (one unified hierarchy, most current distributions).
//!
//! Each sandbox gets a cgroup named after its id under the control plane's
//! own cgroup (as `/proc/self/cgroup` names it), in a `sandboxes` folder:
//!
//! ```text
//! v1: /sys/fs/cgroup/{memory,pids,cpu,cpuacct}/<own>/sandboxes/<id>/
//! v2: /sys/fs/cgroup/<own>/sandboxes/<id>/
//! ```
//!
//! What is written where (the kernel's documentation,
//! Documentation/admin-guide/cgroup-v1/ and cgroup-v2.rst):
//!
//! | limit            | v1                                                  | v2                          |
//! |------------------|-----------------------------------------------------|-----------------------------|
//! | memory (bytes)   | `memory.limit_in_bytes`, `memory.memsw.limit_in_bytes` | `memory.max`, `memory.swap.max` = 0 |
//! | processes        | `pids.max`                                          | `pids.max`                  |
//! | CPUs             | `cpu.cfs_period_us`, `cpu.cfs_quota_us`             | `cpu.max` (`quota period`)  |
//!
//! Memory covers the sandbox's tmpfs pages too (shared memory is charged to
//! the cgroup that first touches it).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Period of the CPU bandwidth limit, in microseconds (the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;

/// Which cgroup hierarchy a host uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// One hierarchy per controller.
    V1,
    /// The unified hierarchy.
    V2,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Version::V1 => "cgroup v1",
            Version::V2 => "cgroup v2",
        })
    }
}

/// Limits of one sandbox; `None` leaves a resource unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Memory in bytes, tmpfs included; beyond it the kernel's OOM killer
    /// ends a process of the sandbox.
    pub memory_bytes: Option<u64>,
    /// CPU time as a number of whole CPUs' worth of bandwidth.
    pub cpu_count: Option<u32>,
    /// Most processes (and threads) alive at once; a fork beyond fails.
    pub pids: Option<u64>,
}

/// What a sandbox's cgroup has used, read from the kernel's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time used since the cgroup was made, in microseconds.
    pub cpu_usec: u64,
    /// Memory in use now, in bytes (page cache and tmpfs included).
    pub memory_bytes: u64,
    /// The memory limit in bytes, `None` when unlimited.
    pub memory_limit_bytes: Option<u64>,
    /// Processes and threads alive now.
    pub pids: u64,
    /// The process limit, `None` when unlimited.
    pub pids_limit: Option<u64>,
    /// Forks refused because of the process limit.
    pub pids_refused: u64,
    /// Processes the OOM killer ended because of the memory limit.
    pub oom_kills: u64,
}

/// Where the control plane makes its sandboxes' cgroups.
#[derive(Debug, Clone)]
pub struct Cgroups {
    version: Version,
    /// v1: the `sandboxes` folder in each controller's hierarchy; v2: the one folder.
    parents: Parents,
}

#[derive(Debug, Clone)]
enum Parents {
    V1 {
        memory: PathBuf,
        pids: PathBuf,
        cpu: PathBuf,
        cpuacct: PathBuf,
    },
    V2(PathBuf),
}

/// One sandbox's cgroup (its folder in each hierarchy).
#[derive(Debug, Clone)]
pub struct SandboxCgroup {
    version: Version,
    dirs: Vec<PathBuf>,
}

impl Cgroups {
    /// The cgroups of this host as `/proc/self/mountinfo` and
    /// `/proc/self/cgroup` describe them, with the `sandboxes` folders made
    /// under this process's own cgroup. Errors say why limits cannot work
    /// here (no writable memory, pids and cpu controllers, not root...).
    pub fn detect() -> Result<Self, String> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("/proc/self/cgroup: {e}"))?;
        let cgroups = Self::from_tables(&mountinfo, &own)?;
        cgroups.prepare()?;
        Ok(cgroups)
    }

    /// Which hierarchy this is.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Reads the tables without touching the file system.
    fn from_tables(mountinfo: &str, own: &str) -> Result<Self, String> {
        let mounts = parse_mounts(mountinfo);
        let own = parse_own(own);
        let v1 = |controller: &str| -> Option<PathBuf> {
            let mount = mounts
                .iter()
                .find(|m| !m.v2 && m.controllers.iter().any(|c| c == controller))?;
            let path = own
                .iter()
                .find(|(cs, _)| cs.iter().any(|c| c == controller))
                .map(|(_, p)| p.as_str())
                .unwrap_or("/");
            Some(join_cgroup(&mount.point, &mount.root, path).join("sandboxes"))
        };
        if let (Some(memory), Some(pids), Some(cpu)) = (v1("memory"), v1("pids"), v1("cpu")) {
            let cpuacct = v1("cpuacct").unwrap_or_else(|| cpu.clone());
            return Ok(Cgroups {
                version: Version::V1,
                parents: Parents::V1 {
                    memory,
                    pids,
                    cpu,
                    cpuacct,
                },
            });
        }
        let unified = mounts.iter().find(|m| m.v2).ok_or_else(|| {
            "no cgroup hierarchy with the memory, pids and cpu controllers is mounted".to_string()
        })?;
        let path = own
            .iter()
            .find(|(cs, _)| cs.is_empty())
            .map(|(_, p)| p.as_str())
            .unwrap_or("/");
        Ok(Cgroups {
            version: Version::V2,
            parents: Parents::V2(
                join_cgroup(&unified.point, &unified.root, path).join("sandboxes"),
            ),
        })
    }

    /// Makes the `sandboxes` folders and, on v2, delegates the controllers
    /// to them.
    fn prepare(&self) -> Result<(), String> {
        match &self.parents {
            Parents::V1 {
                memory,
                pids,
                cpu,
                cpuacct,
            } => {
                for dir in [memory, pids, cpu, cpuacct] {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                }
                Ok(())
            }
            Parents::V2(parent) => {
                let own = parent.parent().unwrap_or(parent);
                let available = std::fs::read_to_string(own.join("cgroup.controllers"))
                    .map_err(|e| format!("{}: {e}", own.join("cgroup.controllers").display()))?;
                for needed in ["memory", "pids", "cpu"] {
                    if !available.split_whitespace().any(|c| c == needed) {
                        return Err(format!(
                            "the {needed} controller is not delegated to {}",
                            own.display()
                        ));
                    }
                }
                // A v2 cgroup that hands controllers to its children may hold
                // no process itself: this process moves to a leaf first.
                let enable = |dir: &Path| {
                    std::fs::write(dir.join("cgroup.subtree_control"), "+memory +pids +cpu")
                };
                if let Err(e) = enable(own) {
                    if e.raw_os_error() != Some(libc::EBUSY) {
                        return Err(format!(
                            "cannot delegate controllers in {}: {e}",
                            own.display()
                        ));
                    }
                    let leaf = own.join("control-plane");
                    std::fs::create_dir_all(&leaf)
                        .and_then(|()| std::fs::write(leaf.join("cgroup.procs"), "0"))
                        .and_then(|()| enable(own))
                        .map_err(|e| {
                            format!("cannot delegate controllers in {}: {e}", own.display())
                        })?;
                }
                std::fs::create_dir_all(parent)
                    .and_then(|()| enable(parent))
                    .map_err(|e| format!("cannot prepare {}: {e}", parent.display()))
            }
        }
    }

    /// The cgroup of sandbox `name` (made or not).
    pub fn sandbox(&self, name: &str) -> SandboxCgroup {
        let dirs = match &self.parents {
            Parents::V1 {
                memory,
                pids,
                cpu,
                cpuacct,
            } => {
                let mut dirs = vec![memory.join(name), pids.join(name), cpu.join(name)];
                if cpuacct != cpu {
                    dirs.push(cpuacct.join(name));
                }
                dirs
            }
            Parents::V2(parent) => vec![parent.join(name)],
        };
        SandboxCgroup {
            version: self.version,
            dirs,
        }
    }
}

impl SandboxCgroup {
    /// Makes the cgroup (again) and sets `limits`; a limit left `None` is
    /// written as unlimited, so a resumed sandbox gets exactly what it asks.
    pub fn create(&self, limits: &Limits) -> std::io::Result<()> {
        for dir in &self.dirs {
            match std::fs::create_dir(dir) {
                Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
        }
        for (file, value) in self.limit_files(limits) {
            match std::fs::write(&file, &value) {
                // memsw exists only with swap accounting; swap.max only with swap.
                Err(e) if e.kind() == ErrorKind::NotFound && is_optional(&file) => {}
                Err(e) => {
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("{}: {e}", file.display()),
                    ));
                }
                Ok(()) => {}
            }
        }
        Ok(())
    }

    /// The files written by [`SandboxCgroup::create`] and their values, in order.
    fn limit_files(&self, limits: &Limits) -> Vec<(PathBuf, String)> {
        let max = |v: Option<u64>, unlimited: &str| {
            v.map(|v| v.to_string())
                .unwrap_or_else(|| unlimited.to_string())
        };
        match self.version {
            Version::V1 => {
                let (memory, pids, cpu) = (&self.dirs[0], &self.dirs[1], &self.dirs[2]);
                let mem = max(limits.memory_bytes, "-1");
                // Memory plus swap (without it the limit only moves pages to
                // swap) may never be below the memory limit: lifted first.
                let memsw = memory.join("memory.memsw.limit_in_bytes");
                vec![
                    (memsw.clone(), "-1".to_string()),
                    (memory.join("memory.limit_in_bytes"), mem.clone()),
                    (memsw, mem),
                    (pids.join("pids.max"), max(limits.pids, "max")),
                    (cpu.join("cpu.cfs_period_us"), CPU_PERIOD_US.to_string()),
                    (
                        cpu.join("cpu.cfs_quota_us"),
                        max(limits.cpu_count.map(|c| u64::from(c) * CPU_PERIOD_US), "-1"),
                    ),
                ]
            }
            Version::V2 => {
                let dir = &self.dirs[0];
                vec![
                    (dir.join("memory.max"), max(limits.memory_bytes, "max")),
                    (dir.join("memory.swap.max"), "0".to_string()),
                    (dir.join("pids.max"), max(limits.pids, "max")),
                    (
                        dir.join("cpu.max"),
                        format!(
                            "{} {CPU_PERIOD_US}",
                            max(
                                limits.cpu_count.map(|c| u64::from(c) * CPU_PERIOD_US),
                                "max"
                            )
                        ),
                    ),
                ]
            }
        }
    }

    /// Moves process `pid` (and so everything it will start) into the cgroup.
    pub fn add(&self, pid: u32) -> std::io::Result<()> {
        for dir in &self.dirs {
            std::fs::write(dir.join("cgroup.procs"), pid.to_string())
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        }
        Ok(())
    }

    /// Processes in the cgroup now.
    pub fn pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.dirs[0].join("cgroup.procs"))
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// True when the cgroup exists and holds a process.
    pub fn is_populated(&self) -> bool {
        !self.pids().is_empty()
    }

    /// SIGKILLs every process in the cgroup, again until none is left (one
    /// may fork while the others die); gives up after about a second.
    pub async fn kill_all(&self) {
        if self.version == Version::V2
            && std::fs::write(self.dirs[0].join("cgroup.kill"), "1").is_ok()
        {
            for _ in 0..100 {
                if !self.is_populated() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        for _ in 0..100 {
            let pids = self.pids();
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                if let Ok(pid) = i32::try_from(pid)
                    && pid > 1
                {
                    // SAFETY: kill(2) on one process; no memory is involved.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::warn!(cgroup = %self.dirs[0].display(), "processes of a stopped sandbox are still alive");
    }

    /// Removes the cgroup once its processes are gone (kill them first).
    pub async fn remove(&self) {
        for dir in &self.dirs {
            for _ in 0..50 {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == ErrorKind::NotFound => break,
                    // Busy while the last processes finish exiting.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        }
    }

    /// Processes the OOM killer ended in the cgroup, read from one file.
    pub fn oom_kills(&self) -> Option<u64> {
        let (dir, file) = match self.version {
            Version::V1 => (&self.dirs[0], "memory.oom_control"),
            Version::V2 => (&self.dirs[0], "memory.events"),
        };
        std::fs::read_to_string(dir.join(file))
            .ok()
            .map(|t| keyed(&t, "oom_kill"))
    }

    /// The kernel's counters for the cgroup.
    pub fn usage(&self) -> std::io::Result<Usage> {
        let read = |dir: &Path, file: &str| std::fs::read_to_string(dir.join(file));
        let number = |text: &str| text.trim().parse::<u64>().ok();
        // "max" or v1's "huge number" mean no limit.
        let limit = |text: &str| number(text).filter(|v| *v < (1 << 62));
        match self.version {
            Version::V1 => {
                let (memory, pids) = (&self.dirs[0], &self.dirs[1]);
                let cpuacct = self.dirs.get(3).unwrap_or(&self.dirs[2]);
                Ok(Usage {
                    cpu_usec: number(&read(cpuacct, "cpuacct.usage")?).unwrap_or(0) / 1000,
                    memory_bytes: number(&read(memory, "memory.usage_in_bytes")?).unwrap_or(0),
                    memory_limit_bytes: limit(&read(memory, "memory.limit_in_bytes")?),
                    pids: number(&read(pids, "pids.current")?).unwrap_or(0),
                    pids_limit: limit(&read(pids, "pids.max")?),
                    pids_refused: keyed(&read(pids, "pids.events")?, "max"),
                    oom_kills: keyed(&read(memory, "memory.oom_control")?, "oom_kill"),
                })
            }
            Version::V2 => {
                let dir = &self.dirs[0];
                Ok(Usage {
                    cpu_usec: keyed(&read(dir, "cpu.stat")?, "usage_usec"),
                    memory_bytes: number(&read(dir, "memory.current")?).unwrap_or(0),
                    memory_limit_bytes: limit(&read(dir, "memory.max")?),
                    pids: number(&read(dir, "pids.current")?).unwrap_or(0),
                    pids_limit: limit(&read(dir, "pids.max")?),
                    pids_refused: keyed(&read(dir, "pids.events")?, "max"),
                    oom_kills: keyed(&read(dir, "memory.events")?, "oom_kill"),
                })
            }
        }
    }
}

fn is_optional(file: &Path) -> bool {
    matches!(
        file.file_name().and_then(|n| n.to_str()),
        Some("memory.memsw.limit_in_bytes" | "memory.swap.max")
    )
}

/// The number after `key` in a flat keyed file (`key value` lines).
fn keyed(text: &str, key: &str) -> u64 {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

struct Mount {
    point: PathBuf,
    /// The cgroup path shown at the mount point (`/` unless bind-mounted).
    root: String,
    v2: bool,
    controllers: Vec<String>,
}

/// cgroup mounts from the text of `/proc/self/mountinfo`.
fn parse_mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // id parent dev root point options [optional...] - fstype source superoptions
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            let (root, point) = (*left.get(3)?, *left.get(4)?);
            let fstype = *right.first()?;
            let super_options = right.get(2).copied().unwrap_or("");
            match fstype {
                "cgroup2" => Some(Mount {
                    point: PathBuf::from(unescape(point)),
                    root: unescape(root),
                    v2: true,
                    controllers: Vec::new(),
                }),
                "cgroup" => Some(Mount {
                    point: PathBuf::from(unescape(point)),
                    root: unescape(root),
                    v2: false,
                    controllers: super_options.split(',').map(str::to_string).collect(),
                }),
                _ => None,
            }
        })
        .collect()
}

/// `(controllers, path)` pairs from the text of `/proc/self/cgroup`; v2's
/// line has no controllers.
fn parse_own(text: &str) -> Vec<(Vec<String>, String)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let controllers = controllers
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
            Some((controllers, path.to_string()))
        })
        .collect()
}

/// The folder of cgroup `path` in a hierarchy mounted at `point` showing `root`.
fn join_cgroup(point: &Path, root: &str, path: &str) -> PathBuf {
    let relative = path
        .strip_prefix(root)
        .unwrap_or(path)
        .trim_start_matches('/');
    if relative.is_empty() {
        point.to_path_buf()
    } else {
        point.join(relative)
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const V1_OWN: &str = "\
9:name=systemd:/
8:pids:/
4:memory:/jobs/abc
2:cpuacct:/
1:cpu:/
0::/
";
    const V2_MOUNTS: &str =
        "30 23 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
    const V2_OWN: &str = "0::/user.slice/user-1000.slice/cp.service\n";

    #[test]
    fn v1_sandboxes_live_under_the_own_cgroup_of_each_controller() {
        let c = Cgroups::from_tables(V1_MOUNTS, V1_OWN).unwrap();
        assert_eq!(c.version(), Version::V1);
        let sb = c.sandbox("sb-1");
        assert_eq!(
            sb.dirs,
            [
                "/sys/fs/cgroup/memory/jobs/abc/sandboxes/sb-1",
                "/sys/fs/cgroup/pids/sandboxes/sb-1",
                "/sys/fs/cgroup/cpu/sandboxes/sb-1",
                "/sys/fs/cgroup/cpuacct/sandboxes/sb-1",
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn v2_sandboxes_live_under_the_own_cgroup() {
        let c = Cgroups::from_tables(V2_MOUNTS, V2_OWN).unwrap();
        assert_eq!(c.version(), Version::V2);
        assert_eq!(
            c.sandbox("sb-1").dirs,
            [PathBuf::from(
                "/sys/fs/cgroup/user.slice/user-1000.slice/cp.service/sandboxes/sb-1"
            )]
        );
        // A cgroup namespace shows the own cgroup as the mount's root.
        let ns = "30 23 0:27 /user.slice /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let c = Cgroups::from_tables(ns, "0::/user.slice/cp\n").unwrap();
        assert_eq!(
            c.sandbox("x").dirs,
            [PathBuf::from("/sys/fs/cgroup/cp/sandboxes/x")]
        );
    }

    #[test]
    fn no_controllers_is_an_error() {
        let none = "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n";
        assert!(Cgroups::from_tables(none, "0::/\n").is_err());
    }

    /// A fake hierarchy in a temporary folder: the files a kernel would show.
    fn fake(version: Version, dir: &Path) -> SandboxCgroup {
        let c = Cgroups {
            version,
            parents: match version {
                Version::V1 => Parents::V1 {
                    memory: dir.join("memory"),
                    pids: dir.join("pids"),
                    cpu: dir.join("cpu"),
                    cpuacct: dir.join("cpuacct"),
                },
                Version::V2 => Parents::V2(dir.join("unified")),
            },
        };
        let sb = c.sandbox("sb");
        for d in &sb.dirs {
            std::fs::create_dir_all(d).unwrap();
        }
        sb
    }

    fn read(path: PathBuf) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn v1_limits_are_written_to_each_controller() {
        let tmp = tempfile::tempdir().unwrap();
        let sb = fake(Version::V1, tmp.path());
        let limits = Limits {
            memory_bytes: Some(256 << 20),
            cpu_count: Some(2),
            pids: Some(100),
        };
        sb.create(&limits).unwrap();
        let d = tmp.path();
        assert_eq!(read(d.join("memory/sb/memory.limit_in_bytes")), "268435456");
        assert_eq!(
            read(d.join("memory/sb/memory.memsw.limit_in_bytes")),
            "268435456"
        );
        assert_eq!(read(d.join("pids/sb/pids.max")), "100");
        assert_eq!(read(d.join("cpu/sb/cpu.cfs_period_us")), "100000");
        assert_eq!(read(d.join("cpu/sb/cpu.cfs_quota_us")), "200000");

        sb.create(&Limits::default()).unwrap();
        assert_eq!(read(d.join("memory/sb/memory.limit_in_bytes")), "-1");
        assert_eq!(read(d.join("pids/sb/pids.max")), "max");
        assert_eq!(read(d.join("cpu/sb/cpu.cfs_quota_us")), "-1");

        sb.add(42).unwrap();
        for c in ["memory", "pids", "cpu", "cpuacct"] {
            assert_eq!(read(d.join(c).join("sb/cgroup.procs")), "42");
        }
    }

    #[test]
    fn v2_limits_are_written_to_the_one_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let sb = fake(Version::V2, tmp.path());
        sb.create(&Limits {
            memory_bytes: Some(1 << 30),
            cpu_count: Some(1),
            pids: Some(512),
        })
        .unwrap();
        let d = tmp.path().join("unified/sb");
        assert_eq!(read(d.join("memory.max")), "1073741824");
        assert_eq!(read(d.join("memory.swap.max")), "0");
        assert_eq!(read(d.join("pids.max")), "512");
        assert_eq!(read(d.join("cpu.max")), "100000 100000");
        sb.create(&Limits::default()).unwrap();
        assert_eq!(read(d.join("memory.max")), "max");
        assert_eq!(read(d.join("cpu.max")), "max 100000");
    }

    #[test]
    fn usage_is_read_from_the_kernels_counters() {
        let tmp = tempfile::tempdir().unwrap();
        let sb = fake(Version::V1, tmp.path());
        let d = tmp.path();
        for (file, text) in [
            ("cpuacct/sb/cpuacct.usage", "2500000\n"),
            ("memory/sb/memory.usage_in_bytes", "1048576\n"),
            ("memory/sb/memory.limit_in_bytes", "9223372036854771712\n"),
            (
                "memory/sb/memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
            ),
            ("pids/sb/pids.current", "7\n"),
            ("pids/sb/pids.max", "max\n"),
            ("pids/sb/pids.events", "max 12\n"),
        ] {
            std::fs::write(d.join(file), text).unwrap();
        }
        assert_eq!(
            sb.usage().unwrap(),
            Usage {
                cpu_usec: 2500,
                memory_bytes: 1 << 20,
                memory_limit_bytes: None,
                pids: 7,
                pids_limit: None,
                pids_refused: 12,
                oom_kills: 3,
            }
        );

        let sb = fake(Version::V2, tmp.path());
        let d = tmp.path().join("unified/sb");
        for (file, text) in [
            ("cpu.stat", "usage_usec 777\nuser_usec 700\n"),
            ("memory.current", "4096\n"),
            ("memory.max", "268435456\n"),
            ("memory.events", "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n"),
            ("pids.current", "2\n"),
            ("pids.max", "64\n"),
            ("pids.events", "max 0\n"),
        ] {
            std::fs::write(d.join(file), text).unwrap();
        }
        let u = sb.usage().unwrap();
        assert_eq!(
            (
                u.cpu_usec,
                u.memory_bytes,
                u.memory_limit_bytes,
                u.oom_kills
            ),
            (777, 4096, Some(256 << 20), 1)
        );
        assert_eq!((u.pids, u.pids_limit, u.pids_refused), (2, Some(64), 0));
    }
}
