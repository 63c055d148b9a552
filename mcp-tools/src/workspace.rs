//! Path confinement: every path a tool touches lies inside the workspace.
//!
//! Two locks, because one is not enough:
//! - [`Workspace::resolve`] checks a path given by a model lexically (no NUL,
//!   no `..` above the root, no absolute path elsewhere) and resolves the
//!   symlinks on it, refusing any that lead outside. Its result, a
//!   [`WorkspacePath`], is the only way the tools name a file.
//! - Every file operation then goes through a `cap_std::fs::Dir` opened on
//!   the root, which resolves the path again at the moment of the operation
//!   (with `openat2(RESOLVE_BENEATH)` where the kernel has it). A symlink
//!   planted between the check and the write is refused there.
//!
//! `run_command` is a shell and is not confined by this: the sandbox itself
//! is the boundary for commands.

use std::io;
use std::path::{Component, Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::Dir;

use crate::error::ToolError;

/// The folder the tools work in, opened once at start.
#[derive(Debug)]
pub struct Workspace {
    root: PathBuf,
    dir: Dir,
}

/// A path inside the workspace, relative to its root, with every symlink
/// on its existing part resolved. Only [`Workspace::resolve`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspacePath {
    rel: PathBuf,
}

impl WorkspacePath {
    /// The path relative to the workspace root (`.` for the root itself).
    pub fn rel(&self) -> &Path {
        &self.rel
    }

    /// True for the workspace root.
    pub fn is_root(&self) -> bool {
        self.rel == Path::new(".")
    }

    /// How the path is shown to a model: relative to the root.
    pub fn display(&self) -> String {
        self.rel.to_string_lossy().into_owned()
    }

    /// The parent folder, or `None` for the root.
    pub fn parent(&self) -> Option<WorkspacePath> {
        if self.is_root() {
            return None;
        }
        let parent = self.rel.parent().filter(|p| !p.as_os_str().is_empty());
        Some(WorkspacePath {
            rel: parent.map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        })
    }
}

impl Workspace {
    /// Opens `root`, which must be an existing folder.
    pub fn open(root: &Path) -> io::Result<Self> {
        let root = std::fs::canonicalize(root)?;
        let dir = Dir::open_ambient_dir(&root, ambient_authority())?;
        Ok(Workspace { root, dir })
    }

    /// The absolute, canonical root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The capability every file operation goes through.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }

    /// The absolute path of `path` on this machine, for code that cannot
    /// go through [`Workspace::dir`] (the directory walker, a command's
    /// working folder).
    pub fn host_path(&self, path: &WorkspacePath) -> PathBuf {
        if path.is_root() {
            self.root.clone()
        } else {
            self.root.join(&path.rel)
        }
    }

    /// Opens a regular file for reading. FIFOs, sockets and devices are
    /// refused; the open does not block, so a FIFO cannot hang the call.
    pub fn open_file(&self, path: &WorkspacePath) -> Result<std::fs::File, ToolError> {
        use cap_std::fs::{OpenOptions, OpenOptionsExt};
        let file = self
            .dir
            .open_with(
                path.rel(),
                OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK),
            )
            .map_err(|e| op_error("opening", path, e))?;
        let meta = file.metadata().map_err(|e| op_error("reading", path, e))?;
        if meta.is_dir() {
            return Err(ToolError::IsADirectory(path.display()));
        }
        if !meta.is_file() {
            return Err(ToolError::InvalidArgument(format!(
                "'{}' is not a regular file (a FIFO, socket or device); use run_command for it",
                path.display()
            )));
        }
        Ok(file.into_std())
    }

    /// The root as a [`WorkspacePath`].
    pub fn root_path(&self) -> WorkspacePath {
        WorkspacePath {
            rel: PathBuf::from("."),
        }
    }

    /// Checks a path given by a model and resolves it inside the workspace.
    ///
    /// Relative paths are relative to the root; absolute paths must lie
    /// inside it. The path need not exist: its missing tail is kept as
    /// written, after its existing head has been resolved.
    pub fn resolve(&self, input: &str) -> Result<WorkspacePath, ToolError> {
        let lexical = self.lexical(input)?;
        self.resolve_lexical(input, lexical)
    }

    /// Like [`Workspace::resolve`], but a symlink in the last component is
    /// not followed: the result names the link itself. For operations on
    /// names (move, delete) rather than on contents.
    pub fn resolve_link(&self, input: &str) -> Result<WorkspacePath, ToolError> {
        let lexical = self.lexical(input)?;
        let (Some(parent), Some(name)) = (lexical.parent(), lexical.file_name()) else {
            return Ok(self.root_path());
        };
        let parent = self.resolve_lexical(input, parent.to_path_buf())?;
        let rel = if parent.is_root() {
            PathBuf::from(name)
        } else {
            parent.rel.join(name)
        };
        Ok(WorkspacePath { rel })
    }

    /// Checks `input` without touching the disk: no NUL, no absolute path
    /// elsewhere, no `..` above the root. Returns it relative to the root.
    fn lexical(&self, input: &str) -> Result<PathBuf, ToolError> {
        let outside = |reason| ToolError::OutsideWorkspace {
            path: input.to_owned(),
            reason,
            root: self.root.display().to_string(),
        };
        if input.contains('\0') {
            return Err(ToolError::InvalidArgument(
                "path contains a NUL byte".to_owned(),
            ));
        }
        let given = Path::new(input);
        let relative = if given.is_absolute() {
            given
                .strip_prefix(&self.root)
                .map_err(|_| outside("an absolute path elsewhere on the machine"))?
        } else {
            given
        };

        let mut lexical = PathBuf::new();
        for component in relative.components() {
            match component {
                Component::Normal(part) => lexical.push(part),
                Component::CurDir => {}
                Component::ParentDir => {
                    if !lexical.pop() {
                        return Err(outside("'..' leads above the workspace root"));
                    }
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(outside("an absolute path elsewhere on the machine"));
                }
            }
        }
        Ok(lexical)
    }

    /// Resolves the symlinks on a lexically checked path.
    fn resolve_lexical(&self, input: &str, lexical: PathBuf) -> Result<WorkspacePath, ToolError> {
        if lexical.as_os_str().is_empty() {
            return Ok(self.root_path());
        }

        // A last component that exists and is no symlink needs no resolving;
        // only its folder does. Canonicalizing it would open it, and a file
        // replaced by a concurrent rename then reads back as "name (deleted)".
        if let (Some(parent), Some(name)) = (lexical.parent(), lexical.file_name())
            && self
                .dir
                .symlink_metadata(&lexical)
                .is_ok_and(|meta| !meta.file_type().is_symlink())
        {
            let parent = self.resolve_lexical(input, parent.to_path_buf())?;
            let rel = if parent.is_root() {
                PathBuf::from(name)
            } else {
                parent.rel.join(name)
            };
            return Ok(WorkspacePath { rel });
        }

        // Resolve symlinks on the longest existing head of the path; cap-std
        // refuses any that lead outside the root.
        let mut head = lexical.as_path();
        let mut tail = Vec::new();
        loop {
            match self.dir.canonicalize(head) {
                Ok(real) => {
                    let mut rel = real;
                    rel.extend(tail.iter().rev());
                    if rel.as_os_str().is_empty() {
                        return Ok(self.root_path());
                    }
                    return Ok(WorkspacePath { rel });
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    let Some(name) = head.file_name() else {
                        return Ok(WorkspacePath { rel: lexical });
                    };
                    tail.push(name.to_owned());
                    head = head.parent().unwrap_or(Path::new(""));
                    if head.as_os_str().is_empty() {
                        return Ok(WorkspacePath { rel: lexical });
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::NotADirectory => {
                    return Err(ToolError::NotADirectory(head.display().to_string()));
                }
                Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
                    return Err(self.symlink_refusal(input, head, err));
                }
                Err(err) => return Err(ToolError::io("resolving", input, err)),
            }
        }
    }

    /// Explains why cap-std refused `head`: a symlink that leaves the root,
    /// or an absolute one (which cap-std never follows, even into the root).
    fn symlink_refusal(&self, input: &str, head: &Path, err: io::Error) -> ToolError {
        let full = self.root.join(head);
        let real = full.ancestors().find_map(|p| std::fs::canonicalize(p).ok());
        let reason = match real {
            Some(real) if real.starts_with(&self.root) => {
                "a symlink on it is absolute; only relative symlinks are followed"
            }
            Some(_) => "a symlink on it points outside the workspace",
            None => return ToolError::io("resolving", input, err),
        };
        ToolError::OutsideWorkspace {
            path: input.to_owned(),
            reason,
            root: self.root.display().to_string(),
        }
    }
}

impl Workspace {
    /// For a path that names nothing: the existing path it most likely
    /// meant, where each missing component is replaced by the one name in
    /// its folder that differs from it only by Unicode normalisation (NFC
    /// against NFD, as macOS writes names), by a Unicode space for a plain
    /// one (U+00A0, U+202F in screenshot names) or by letter case. `None`
    /// when the path exists, is outside the workspace, or has no such twin.
    pub fn near_miss(&self, input: &str) -> Option<String> {
        let lexical = self.lexical(input).ok()?;
        let mut found = PathBuf::new();
        let mut changed = false;
        for part in lexical.components() {
            let Component::Normal(name) = part else {
                return None;
            };
            let here = found.join(name);
            if self.dir.symlink_metadata(&here).is_ok() {
                found = here;
                continue;
            }
            let wanted = loose_key(&name.to_string_lossy());
            let folder = if found.as_os_str().is_empty() {
                Path::new(".")
            } else {
                found.as_path()
            };
            let mut twins = self
                .dir
                .read_dir(folder)
                .ok()?
                .filter_map(Result::ok)
                .map(|entry| entry.file_name())
                .filter(|candidate| loose_key(&candidate.to_string_lossy()) == wanted);
            let twin = twins.next()?;
            if twins.next().is_some() {
                return None;
            }
            found.push(twin);
            changed = true;
        }
        changed.then(|| found.to_string_lossy().into_owned())
    }
}

/// A name as a person would read it: NFC, any Unicode space as a plain
/// one, lower case.
fn loose_key(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    name.nfc()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .flat_map(char::to_lowercase)
        .collect()
}

/// Maps an I/O error from an operation on a [`WorkspacePath`]. cap-std
/// reports a symlink swapped in after [`Workspace::resolve`] as permission
/// denied; say plainly that the workspace boundary refused it.
pub fn op_error(action: &'static str, path: &WorkspacePath, err: io::Error) -> ToolError {
    if err.kind() == io::ErrorKind::PermissionDenied && err.to_string().contains("outside") {
        return ToolError::OutsideWorkspace {
            path: path.display(),
            reason: "a symlink on it points outside the workspace",
            root: String::from("the workspace"),
        };
    }
    ToolError::io(action, &path.display(), err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws() -> (tempfile::TempDir, Workspace) {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("a")).unwrap();
        std::fs::write(tmp.path().join("a/f.txt"), "x").unwrap();
        let ws = Workspace::open(tmp.path()).unwrap();
        (tmp, ws)
    }

    #[test]
    fn near_misses_are_found_by_normalisation_space_and_case() {
        let (_tmp, ws) = ws();
        std::fs::create_dir(ws.root().join("Cafe\u{301}")).unwrap();
        std::fs::write(ws.root().join("Cafe\u{301}/Screenshot\u{202F}1.png"), "").unwrap();
        assert_eq!(
            ws.near_miss("Caf\u{e9}/screenshot 1.png").as_deref(),
            Some("Cafe\u{301}/Screenshot\u{202F}1.png")
        );
        assert_eq!(ws.near_miss("A/F.TXT").as_deref(), Some("a/f.txt"));
        assert_eq!(ws.near_miss("a/f.txt"), None, "exists");
        assert_eq!(ws.near_miss("a/g.txt"), None, "no twin");
        assert_eq!(ws.near_miss("../a"), None, "outside");
    }

    #[test]
    fn resolve_link_keeps_the_last_component() {
        let (_tmp, ws) = ws();
        std::os::unix::fs::symlink("/etc", ws.root().join("out")).unwrap();
        assert_eq!(ws.resolve_link("out").unwrap().display(), "out");
        assert!(ws.resolve_link("out/x").is_err());
        assert!(ws.resolve_link("..").is_err());
        assert!(ws.resolve_link(".").unwrap().is_root());
    }

    #[test]
    fn relative_and_absolute_inside_resolve_to_the_same_path() {
        let (_tmp, ws) = ws();
        let abs = ws.root().join("a/f.txt");
        assert_eq!(
            ws.resolve("a/./f.txt").unwrap(),
            ws.resolve(abs.to_str().unwrap()).unwrap()
        );
        assert_eq!(ws.resolve("a/../a/f.txt").unwrap().display(), "a/f.txt");
        assert!(ws.resolve("").unwrap().is_root());
        assert!(ws.resolve("a/..").unwrap().is_root());
    }

    /// A file replaced by renames while it is resolved keeps its own name
    /// (canonicalizing an open, replaced file reads back "name (deleted)").
    #[test]
    fn files_replaced_during_resolution_keep_their_name() {
        let (_tmp, ws) = ws();
        let root = ws.root().to_path_buf();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::fs::write(root.join("a/tmp"), "y").unwrap();
                    std::fs::rename(root.join("a/tmp"), root.join("a/f.txt")).unwrap();
                }
            })
        };
        for _ in 0..2000 {
            assert_eq!(ws.resolve("a/f.txt").unwrap().display(), "a/f.txt");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
    }

    #[test]
    fn escapes_are_refused() {
        let (_tmp, ws) = ws();
        for bad in ["..", "../etc/passwd", "a/../../x", "/etc/hostname"] {
            assert!(
                matches!(ws.resolve(bad), Err(ToolError::OutsideWorkspace { .. })),
                "{bad} was not refused"
            );
        }
        assert!(matches!(
            ws.resolve("a\0b"),
            Err(ToolError::InvalidArgument(_))
        ));
    }

    #[test]
    fn symlinks_out_are_refused_and_in_are_followed() {
        let (_tmp, ws) = ws();
        std::os::unix::fs::symlink("/etc", ws.root().join("out")).unwrap();
        std::os::unix::fs::symlink("a", ws.root().join("in")).unwrap();
        assert!(matches!(
            ws.resolve("out/hostname"),
            Err(ToolError::OutsideWorkspace { .. })
        ));
        assert!(matches!(
            ws.resolve("out/new/file"),
            Err(ToolError::OutsideWorkspace { .. })
        ));
        assert_eq!(ws.resolve("in/f.txt").unwrap().display(), "a/f.txt");
        assert_eq!(ws.resolve("in/new/g").unwrap().display(), "a/new/g");
    }
}
