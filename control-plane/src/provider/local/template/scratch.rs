//! A build's own folder: removed when the build fails or is interrupted,
//! after detaching whatever mmdebstrap left mounted in it.

use std::path::{Path, PathBuf};

use crate::provider::local::folder::remove_tree;
use crate::provider::local::mountinfo::mounts_under;

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
