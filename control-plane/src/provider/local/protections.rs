//! The protections a local sandbox boundary is made of (bubblewrap,
//! namespaces, a host user each, cgroup limits, disk quotas) and which of
//! them hold on this host.

use super::{cgroup, network, quota};

/// The protections a sandbox boundary is made of, and whether each holds here.
#[derive(Debug, Clone)]
pub(super) struct Protections {
    /// bubblewrap: files, processes, IPC.
    pub(super) filesystem: bool,
    /// A network namespace each; `Err` says what is missing for internet access.
    pub(super) network: bool,
    pub(super) internet: std::result::Result<network::NetworkTools, String>,
    /// A host user each (control plane running as root).
    pub(super) user: bool,
    /// cgroup limits; `Err` says why not.
    pub(super) cgroups: std::result::Result<cgroup::Cgroups, String>,
    /// Disk quotas; `Err` says why not.
    pub(super) quota: std::result::Result<quota::Quotas, String>,
}

/// What holds and what does not, as `name: why` for the missing ones.
pub(super) fn missing_protections(p: &Protections) -> Vec<String> {
    let mut missing = Vec::new();
    if !p.filesystem {
        missing.push("filesystem and network namespaces: no working bubblewrap".to_string());
    }
    if let Err(why) = &p.internet {
        missing.push(format!("internet access for sandboxes: {why}"));
    }
    if !p.user {
        missing.push("a host user per sandbox: needs root, bubblewrap and setpriv".to_string());
    }
    if let Err(why) = &p.cgroups {
        missing.push(format!("cgroup limits: {why}"));
    }
    if let Err(why) = &p.quota {
        missing.push(format!("disk quotas: {why}"));
    }
    missing
}
