//! A sandbox's folder on disk: writing its own files whole, measuring
//! what it takes, and removing it.

use std::path::Path;

use crate::error::{Error, Result};

/// Removes `dir` and everything in it, also folders a command made read-only
/// (which stop a non-root owner from deleting their contents). Gone is fine.
pub(super) fn remove_tree(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            make_dirs_writable(dir);
            std::fs::remove_dir_all(dir)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn make_dirs_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    // symlink_metadata: never follow a link out of the sandbox's folder.
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            make_dirs_writable(&entry.path());
        }
    }
}

/// Writes one of a sandbox's own files (pid files, settings) whole or not
/// at all, flushed to disk, mode 0644.
pub(super) fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let folder = path.parent().unwrap_or(Path::new("/"));
    let name = Path::new(path.file_name().unwrap_or_default());
    cap_std::fs::Dir::open_ambient_dir(folder, cap_std::ambient_authority())
        .and_then(|dir| atomic_file::write(&dir, name, text.as_bytes(), 0o644))
        .map_err(|e| Error::Internal(format!("cannot write {}: {e}", path.display())))
}

/// Bytes the files under `dir` take on disk, never following a link.
pub(super) fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    let mut total = meta.blocks() * 512;
    if meta.is_dir()
        && let Ok(entries) = std::fs::read_dir(dir)
    {
        for entry in entries.flatten() {
            total += disk_usage(&entry.path());
        }
    }
    total
}
