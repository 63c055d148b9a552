//! Files written whole or not at all: the bytes go to a new temporary file
//! beside the target, are flushed to disk, and the temporary file is
//! renamed over the target. A reader sees the old file or the new one,
//! never a part of one; after a crash the file is one or the other.
//!
//! Everything happens inside a [`cap_std::fs::Dir`] and by paths relative
//! to it, so a caller that confines paths to a directory (mcp-tools'
//! workspace: `openat2` with `RESOLVE_BENEATH`) keeps that confinement for
//! the temporary file and the rename too; a caller with a plain path opens
//! its folder with [`Dir::open_ambient_dir`] first.

use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use cap_std::fs::{Dir, OpenOptions, Permissions, PermissionsExt};

/// Writes `bytes` to `path` (relative to `dir`) whole or not at all, with
/// the Unix permission bits `mode` (e.g. `0o644`, or an existing file's to
/// keep it). The folder of `path` must exist.
///
/// # Errors
/// Those of creating, writing, flushing or renaming the temporary file;
/// the temporary file is removed again and `path` is untouched.
pub fn write(dir: &Dir, path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let folder = path.parent().unwrap_or(Path::new(""));
    let tmp = write_temp(dir, folder, bytes, mode)?;
    dir.rename(&tmp, dir, path).inspect_err(|_| {
        let _ = dir.remove_file(&tmp);
    })
}

/// Writes `bytes` to a new temporary file in `folder` (relative to `dir`,
/// `""` for `dir` itself), with the Unix permission bits `mode`, flushed
/// to disk; returns its path relative to `dir`, for the caller to rename
/// over its target (or remove). For callers that must have several files
/// ready before renaming any; others use [`write`].
///
/// The name is fixed-length (`.atomic-` and 16 hex digits and `.tmp`), so a
/// target whose name is near the 255-byte limit still has room beside it.
///
/// # Errors
/// Those of creating, writing or flushing the file, which is then removed.
pub fn write_temp(dir: &Dir, folder: &Path, bytes: &[u8], mode: u32) -> io::Result<PathBuf> {
    let tmp = folder.join(format!(".atomic-{:016x}.tmp", random()));
    let write = || -> io::Result<()> {
        let mut file = dir.open_with(&tmp, OpenOptions::new().write(true).create_new(true))?;
        file.write_all(bytes)?;
        file.set_permissions(Permissions::from_mode(mode))?;
        file.sync_all()
    };
    write().inspect_err(|_| {
        let _ = dir.remove_file(&tmp);
    })?;
    Ok(tmp)
}

/// 64 random bits, from the standard library's per-process random hash
/// keys and the time: enough to keep concurrent temporary names apart
/// (`create_new` refuses a clash rather than overwrite).
fn random() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use cap_std::ambient_authority;

    use super::*;

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_the_file_with_the_mode_given_and_leaves_no_temporary() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("sub")).unwrap();
        std::fs::write(root.path().join("sub/f"), "old").unwrap();
        let dir = Dir::open_ambient_dir(root.path(), ambient_authority()).unwrap();
        write(&dir, Path::new("sub/f"), b"new", 0o751).unwrap();
        let meta = std::fs::metadata(root.path().join("sub/f")).unwrap();
        assert_eq!(std::fs::read(root.path().join("sub/f")).unwrap(), b"new");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o751);
        assert_eq!(names(&root.path().join("sub")), ["f"]);
    }

    #[test]
    fn a_failed_rename_leaves_the_target_and_no_temporary() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("d/inner")).unwrap();
        let dir = Dir::open_ambient_dir(root.path(), ambient_authority()).unwrap();
        // A file cannot be renamed over a non-empty folder.
        assert!(write(&dir, Path::new("d"), b"x", 0o644).is_err());
        assert!(root.path().join("d/inner").is_dir());
        assert_eq!(names(root.path()), ["d"]);
    }

    #[test]
    fn paths_stay_beneath_the_directory() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("jail")).unwrap();
        let dir = Dir::open_ambient_dir(root.path().join("jail"), ambient_authority()).unwrap();
        assert!(write(&dir, Path::new("../escaped"), b"x", 0o644).is_err());
        assert!(!root.path().join("escaped").exists());
        assert_eq!(names(root.path()), ["jail"]);
    }
}
