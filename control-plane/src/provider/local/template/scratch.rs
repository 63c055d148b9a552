//! A build's own folder: removed when the build fails or is interrupted,
//! after detaching whatever mmdebstrap left mounted in it.

use std::path::{Path, PathBuf};

use crate::provider::local::folder::remove_tree;

/// A build's folder, removed when dropped (a failed or interrupted build).
pub(super) struct Scratch(pub(super) PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = remove_build_folder(&self.0) {
            tracing::warn!("cannot remove {}: {e}", self.0.display());
        }
    }
}

/// Removes a build's folder, after detaching whatever an interrupted
/// mmdebstrap left mounted in it (`/proc`, `/dev` binds): removing through a
/// mount would reach the host's own files.
pub(super) fn remove_build_folder(dir: &Path) -> std::io::Result<()> {
    let mut mounts = mounts_under(dir);
    // Deepest first.
    mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    for mount in &mounts {
        let Ok(c) = std::ffi::CString::new(mount.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        // SAFETY: umount2(2) with a valid NUL-terminated path; no memory is shared.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
    if !mounts_under(dir).is_empty() {
        return Err(std::io::Error::other(format!(
            "{} still has mounts inside; not removed",
            dir.display()
        )));
    }
    remove_tree(dir)
}

/// Mount points at or under `dir`, from /proc/self/mountinfo.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// A mountinfo path with its octal escapes (`\040` for a space) undone.
pub(super) fn unescape_mount_path(s: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}
