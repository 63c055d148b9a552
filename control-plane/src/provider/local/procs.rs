//! The processes of local sandboxes, seen through `/proc` and stopped with
//! signals. Everything that reads `/proc/<pid>/stat` or sends a signal is
//! here, behind safe functions.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::process::Child;

/// How long a stopping mcp-tools gets after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The fields of `/proc/<pid>/stat` used here (see proc_pid_stat(5)).
struct Stat {
    /// One letter: R, S, D, Z (zombie), X (dead), ...
    state: char,
    /// Process group id.
    group: u32,
    /// Session id.
    session: u32,
}

impl Stat {
    /// `/proc/<pid>/stat` of a process, if it exists.
    fn of(pid: u32) -> Option<Stat> {
        Stat::parse(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    /// Parses the text of a stat file: `pid (comm) state ppid pgrp session ...`.
    /// The command name may hold spaces and parentheses, so fields are
    /// counted from the last `)`.
    fn parse(text: &str) -> Option<Stat> {
        let mut fields = text.rsplit_once(')')?.1.split_whitespace();
        let state = fields.next()?.chars().next()?;
        let group = fields.nth(1)?.parse().ok()?;
        let session = fields.next()?.parse().ok()?;
        Some(Stat {
            state,
            group,
            session,
        })
    }

    /// Dead, or a zombie waiting for its parent: nothing left to signal.
    fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// Sends `signal` to process group `pgid`. Groups 0 and 1 (ours, and
/// init's) are never signalled.
pub fn signal_group(pgid: u32, signal: i32) {
    if let Ok(pgid) = i32::try_from(pgid)
        && pgid > 1
    {
        // SAFETY: kill(2) with a negative pid signals a process group; it
        // touches no memory of ours, and the group is at least 2.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// Sends `signal` to process `pid`. Pids 0 and 1 are never signalled.
pub fn signal_process(pid: u32, signal: i32) {
    if let Ok(pid) = i32::try_from(pid)
        && pid > 1
    {
        // SAFETY: kill(2) on one process, at least 2; no memory is involved.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// True if `pid` is alive (not a zombie) and its command line mentions
/// `dir`'s workspace, so a recycled pid of some other program is never
/// signalled.
pub fn process_is_ours(pid: u32, dir: &Path) -> bool {
    if pid == 0 {
        return false;
    }
    match Stat::of(pid) {
        Some(stat) if !stat.is_dead() => {}
        _ => return false,
    }
    let Ok(cmdline) = std::fs::read(PathBuf::from(format!("/proc/{pid}/cmdline"))) else {
        return false;
    };
    let workspace = dir.join("workspace");
    let needle = workspace.as_os_str().as_encoded_bytes();
    cmdline.windows(needle.len()).any(|w| w == needle)
}

/// Every pid in `/proc` with its stat.
fn all_processes() -> impl Iterator<Item = (u32, Stat)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((pid, Stat::of(pid)?))
        })
}

/// The process group leader (the process the local provider starts) among
/// the processes of sandbox folder `dir`, if any is alive.
pub fn find_group_leader(dir: &Path) -> Option<u32> {
    all_processes()
        .find(|(pid, stat)| stat.group == *pid && process_is_ours(*pid, dir))
        .map(|(pid, _)| pid)
}

/// The one child of process `pid` (bubblewrap's outer process has one: the
/// sandbox's first process), if it has exactly one.
pub fn only_child(pid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    let mut children = text
        .split_whitespace()
        .filter_map(|c| c.parse::<u32>().ok());
    match (children.next(), children.next()) {
        (Some(child), None) => Some(child),
        _ => None,
    }
}

/// True if `pid` is alive and runs slirp4netns (so a recycled pid is never
/// signalled for it).
pub fn is_slirp_of(pid: u32) -> bool {
    if pid <= 1 || Stat::of(pid).is_none_or(|s| s.is_dead()) {
        return false;
    }
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .and_then(|c| c.split(|b| *b == 0).next().map(<[u8]>::to_vec))
        .is_some_and(|argv0| argv0.ends_with(b"slirp4netns"))
}

/// SIGKILLs every live process whose command line mentions sandbox folder
/// `dir`'s workspace, again until none is left (about a second at most).
pub async fn kill_all_of(dir: &Path) {
    for _ in 0..50 {
        let ours: Vec<u32> = all_processes()
            .filter(|(pid, stat)| !stat.is_dead() && process_is_ours(*pid, dir))
            .map(|(pid, _)| pid)
            .collect();
        if ours.is_empty() {
            return;
        }
        for pid in ours {
            signal_process(pid, libc::SIGKILL);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::warn!(dir = %dir.display(), "processes of a stopped sandbox are still alive");
}

/// True if process `pid` no longer exists.
pub fn is_gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// Live processes of session `session`, zombies left out (already dead).
fn session_members(session: u32) -> Vec<u32> {
    all_processes()
        .filter(|(_, stat)| stat.session == session && !stat.is_dead())
        .map(|(pid, _)| pid)
        .collect()
}

/// SIGKILL to every process of session `session`, again until none is left
/// (one may fork while the others are being killed).
pub async fn kill_session(session: u32) {
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
            signal_process(pid, libc::SIGKILL);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tracing::warn!(session, "processes of a stopped sandbox are still alive");
}

/// SIGTERM to process group `pid`, then SIGKILL once its leader is gone or
/// after [`STOP_GRACE`]. `child` is the leader's handle when this process
/// started it, so that it is waited for (no zombie).
pub async fn stop_group(pid: u32, mut child: Option<&mut Child>) {
    if pid <= 1 {
        return;
    }
    signal_group(pid, libc::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    loop {
        let gone = match child.as_deref_mut() {
            Some(c) => matches!(c.try_wait(), Ok(Some(_)) | Err(_)),
            None => Stat::of(pid).is_none_or(|s| s.state == 'Z'),
        };
        if gone {
            // Whatever is left in the group gets no grace: under bwrap that is
            // the pid namespace's init, which ignores SIGTERM and whose end
            // takes every process of the sandbox with it.
            signal_group(pid, libc::SIGKILL);
            return;
        }
        if Instant::now() > deadline {
            signal_group(pid, libc::SIGKILL);
            if let Some(c) = child {
                let _ = c.wait().await;
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let s = Stat::parse("42 (a) b) (c) S 1 41 40 0 -1").unwrap();
        assert_eq!((s.state, s.group, s.session), ('S', 41, 40));
        assert!(!s.is_dead());
        assert!(Stat::parse("7 (x) Z 1 7 9").unwrap().is_dead());
        assert!(Stat::parse("garbage").is_none());
    }

    #[test]
    fn this_process_is_seen_and_pid_1_is_never_signalled() {
        let me = Stat::of(std::process::id()).unwrap();
        assert!(!me.is_dead());
        assert!(!is_gone(std::process::id()));
        // Harmless by construction: these return without a signal.
        signal_group(1, 0);
        signal_group(0, 0);
        signal_process(1, 0);
    }
}
