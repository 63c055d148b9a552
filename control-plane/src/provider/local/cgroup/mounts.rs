//! The cgroup hierarchies this host mounts and this process's place in
//! them, read from the text of `/proc/self/mountinfo` and `/proc/self/cgroup`
//! (proc(5)).

use std::path::{Path, PathBuf};

use crate::provider::local::mountinfo::unescape;

/// One cgroup mount.
pub(super) struct Mount {
    pub(super) point: PathBuf,
    /// The cgroup path shown at the mount point (`/` unless bind-mounted).
    pub(super) root: String,
    pub(super) v2: bool,
    pub(super) controllers: Vec<String>,
}

/// cgroup mounts from the text of `/proc/self/mountinfo`.
pub(super) fn parse_mounts(mountinfo: &str) -> Vec<Mount> {
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
                    point: unescape(point),
                    root: unescape(root).to_string_lossy().into_owned(),
                    v2: true,
                    controllers: Vec::new(),
                }),
                "cgroup" => Some(Mount {
                    point: unescape(point),
                    root: unescape(root).to_string_lossy().into_owned(),
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
pub(super) fn parse_own(text: &str) -> Vec<(Vec<String>, String)> {
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
pub(super) fn join_cgroup(point: &Path, root: &str, path: &str) -> PathBuf {
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
