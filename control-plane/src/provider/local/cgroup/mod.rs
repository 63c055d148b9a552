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

use mounts::{join_cgroup, parse_mounts, parse_own};

mod mounts;

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

#[cfg(test)]
mod tests;
