//! Who a local sandbox is on this machine.
//!
//! A control plane running as root gives each sandbox a host user id of its
//! own, from a configurable range, which owns the sandbox's workspace: files
//! of root and of other sandboxes keep their permissions against it, e.g.
//! `/etc/shadow` stays unreadable. The id is the workspace folder's owner, so
//! it needs no record of its own and survives restarts; a workspace owned by
//! someone else (made by an older version, which ran sandboxes as root) is
//! handed over to a fresh id the next time it starts.
//!
//! A control plane running as another user runs sandboxes as that user,
//! inside the user namespace bubblewrap makes.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;

/// A range of host user ids, written `FIRST-LAST` (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidRange {
    first: u32,
    last: u32,
}

impl UidRange {
    /// True when `uid` lies in the range.
    pub fn contains(&self, uid: u32) -> bool {
        (self.first..=self.last).contains(&uid)
    }
}

impl FromStr for UidRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a user id range like 2000000-2065535");
        let (first, last) = s.split_once('-').ok_or_else(bad)?;
        let first: u32 = first.trim().parse().map_err(|_| bad())?;
        let last: u32 = last.trim().parse().map_err(|_| bad())?;
        // 0 is root, and (uid_t)-1 means "no change" to the kernel.
        if first == 0 || last < first || last == u32::MAX {
            return Err(format!(
                "the user id range {s:?} must be non-empty, above 0 and below 4294967295"
            ));
        }
        Ok(UidRange { first, last })
    }
}

impl std::fmt::Display for UidRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// How sandboxes get their identity.
#[derive(Debug)]
pub enum Identities {
    /// Each sandbox has its own host uid (and a gid of the same number).
    PerSandbox {
        range: UidRange,
        /// Held while an id is chosen and its workspace claimed, so two
        /// creates never pick the same one.
        choosing: Mutex<()>,
    },
    /// Sandboxes run as the control plane's own user.
    Own,
}

impl Identities {
    /// Per-sandbox ids from `range` when this process is root, else its own user.
    pub fn new(range: UidRange) -> Self {
        // SAFETY: geteuid(2) cannot fail and touches no memory.
        if unsafe { libc::geteuid() } == 0 {
            Identities::PerSandbox {
                range,
                choosing: Mutex::new(()),
            }
        } else {
            Identities::Own
        }
    }

    /// True when sandboxes get host ids of their own.
    pub fn per_sandbox(&self) -> bool {
        matches!(self, Identities::PerSandbox { .. })
    }

    /// The uid of the sandbox whose folder is `dir` (in `sandboxes_dir`),
    /// whose `owned` sub-folders (workspace, state) then belong to it; `None`
    /// for [`Identities::Own`]. A folder already owned by an id of the range
    /// keeps it; otherwise the lowest id no other sandbox folder owns is
    /// taken and everything in `owned` is handed over to it.
    pub fn claim(
        &self,
        sandboxes_dir: &Path,
        dir: &Path,
        owned: &[&Path],
    ) -> std::io::Result<Option<u32>> {
        let Identities::PerSandbox { range, choosing } = self else {
            return Ok(None);
        };
        let _guard = choosing.lock().unwrap_or_else(|e| e.into_inner());
        let current = std::fs::symlink_metadata(dir.join("workspace"))
            .map(|m| m.uid())
            .ok()
            .filter(|uid| range.contains(*uid));
        let uid = match current {
            Some(uid) => uid,
            None => {
                let taken = owners(sandboxes_dir, range);
                (range.first..=range.last)
                    .find(|uid| !taken.contains(uid))
                    .ok_or_else(|| {
                        std::io::Error::other(format!(
                            "every user id of the sandbox range {range} is taken"
                        ))
                    })?
            }
        };
        for path in owned {
            hand_over(path, uid)?;
        }
        Ok(Some(uid))
    }
}

/// The uids of the range that own a sandbox's workspace in `sandboxes_dir`.
fn owners(sandboxes_dir: &Path, range: &UidRange) -> std::collections::HashSet<u32> {
    std::fs::read_dir(sandboxes_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::symlink_metadata(e.path().join("workspace")).ok())
        .map(|m| m.uid())
        .filter(|uid| range.contains(*uid))
        .collect()
}

/// Gives `path` and everything under it to `uid` (group too), never
/// following a link. Entries already owned by `uid` are skipped, so a
/// sandbox that starts again costs one `stat`.
fn hand_over(path: &Path, uid: u32) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.uid() == uid && meta.gid() == uid {
        return Ok(());
    }
    std::os::unix::fs::lchown(path, Some(uid), Some(uid))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            hand_over(&entry?.path(), uid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_refuse_root() {
        let r: UidRange = "2000000-2000009".parse().unwrap();
        assert!(r.contains(2_000_000) && r.contains(2_000_009) && !r.contains(2_000_010));
        assert_eq!(r.to_string(), "2000000-2000009");
        for bad in ["0-10", "10-5", "x-1", "5", "1-4294967295"] {
            assert!(bad.parse::<UidRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn each_sandbox_gets_its_own_id_and_keeps_it() {
        // SAFETY: geteuid(2) cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("not root: per-sandbox ids are not used, nothing to check");
            assert!(!Identities::new("100-200".parse().unwrap()).per_sandbox());
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let ids = Identities::new("3000000-3000001".parse().unwrap());
        let make = |name: &str| {
            let dir = tmp.path().join(name);
            std::fs::create_dir_all(dir.join("workspace/sub")).unwrap();
            std::fs::write(dir.join("workspace/sub/f"), "x").unwrap();
            std::os::unix::fs::symlink("/etc/shadow", dir.join("workspace/link")).unwrap();
            dir
        };
        let (a, b, c) = (make("a"), make("b"), make("c"));
        let uid_a = ids.claim(tmp.path(), &a, &[&a.join("workspace")]).unwrap();
        let uid_b = ids.claim(tmp.path(), &b, &[&b.join("workspace")]).unwrap();
        assert_eq!((uid_a, uid_b), (Some(3_000_000), Some(3_000_001)));
        // Handed over all the way down, and the link itself, not its target.
        let owner = |p: &Path| std::fs::symlink_metadata(p).unwrap().uid();
        assert_eq!(owner(&a.join("workspace/sub/f")), 3_000_000);
        assert_eq!(owner(&a.join("workspace/link")), 3_000_000);
        assert_eq!(owner(Path::new("/etc/shadow")), 0);
        // Claimed again: the same id. The range is full for a third.
        assert_eq!(
            ids.claim(tmp.path(), &a, &[&a.join("workspace")]).unwrap(),
            Some(3_000_000)
        );
        assert!(ids.claim(tmp.path(), &c, &[&c.join("workspace")]).is_err());
    }
}
