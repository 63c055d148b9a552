//! Finding the editor (code-server) a sandbox can run: an executable on
//! the sandbox's `PATH`, looked up under its own root, links followed the
//! way they lead inside it.

use std::path::{Path, PathBuf};

/// Whether `code-server` is an executable file in one of the folders of
/// `path` (a `PATH` value as the sandbox has it) under `root`, its `/`.
pub(super) fn editor_on_path(root: &Path, path: &std::ffi::OsStr) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path)
        .filter(|dir| dir.is_absolute())
        .filter_map(|dir| resolve_under(root, &dir.join("code-server")))
        .any(|bin| {
            std::fs::symlink_metadata(bin)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Where `path`, as seen by a sandbox whose `/` is `root`, is on this
/// machine: its links followed the way they lead inside (an absolute link
/// target is under `root`), up to 8 of them.
fn resolve_under(root: &Path, path: &Path) -> Option<PathBuf> {
    let mut inside = path.to_path_buf();
    for _ in 0..8 {
        let here = root.join(inside.strip_prefix("/").unwrap_or(&inside));
        let meta = std::fs::symlink_metadata(&here).ok()?;
        if !meta.file_type().is_symlink() {
            return Some(here);
        }
        let target = std::fs::read_link(&here).ok()?;
        inside = match target.is_absolute() {
            true => target,
            false => inside.parent()?.join(target),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_editor_is_found_on_the_sandbox_path_under_its_root() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("usr/local/bin")).unwrap();
        std::fs::create_dir_all(r.join("opt/cs/out")).unwrap();
        // npm's way: an absolute link, which leads inside the root, not on
        // this machine.
        std::os::unix::fs::symlink("/opt/cs/out/entry.js", r.join("usr/local/bin/code-server"))
            .unwrap();
        let path = std::ffi::OsStr::new("/usr/bin:/usr/local/bin");
        assert!(!editor_on_path(r, path), "a dangling link is no editor");
        let entry = r.join("opt/cs/out/entry.js");
        std::fs::write(&entry, "#!/usr/bin/env node\n").unwrap();
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(!editor_on_path(r, path), "not executable");
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(editor_on_path(r, path));
        assert!(!editor_on_path(
            r,
            std::ffi::OsStr::new("/usr/bin:relative")
        ));
        // A loop of links ends.
        std::fs::remove_file(r.join("usr/local/bin/code-server")).unwrap();
        std::os::unix::fs::symlink(
            "/usr/local/bin/code-server",
            r.join("usr/local/bin/code-server"),
        )
        .unwrap();
        assert!(!editor_on_path(r, path));
    }
}
