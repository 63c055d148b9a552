//! The parallel directory walk shared by search_files and grep: ripgrep's
//! `ignore` walker with the same filters for both.

use std::path::Path;

use ignore::overrides::OverrideBuilder;
use ignore::types::TypesBuilder;
use ignore::{DirEntry, WalkBuilder, WalkState};
use tokio_util::sync::CancellationToken;

use crate::error::ToolError;

/// Which files a walk visits.
#[derive(Debug, Default)]
pub struct Filters<'a> {
    /// A glob over paths, as `rg -g` takes it.
    pub glob: Option<&'a str>,
    /// A ripgrep file type name, as `rg -t` takes it.
    pub file_type: Option<&'a str>,
    /// Visit hidden files and folders too.
    pub hidden: bool,
    /// Visit what .gitignore/.ignore exclude too.
    pub no_ignore: bool,
}

/// Visits every regular file under `root` (or `root` itself, if a file) on
/// all cores. `make_visitor` makes one visitor per thread; each gets the
/// entry and its path relative to `root` (a file root: its name). Stops
/// early, with an error, when `cancel` fires.
pub fn walk_files<'s, M, V>(
    root: &'s Path,
    filters: &Filters,
    cancel: &'s CancellationToken,
    mut make_visitor: M,
) -> Result<(), ToolError>
where
    M: FnMut() -> V,
    V: FnMut(&DirEntry, String) + Send + 's,
{
    let mut walker = WalkBuilder::new(root);
    walker
        .hidden(!filters.hidden)
        .git_ignore(!filters.no_ignore)
        .git_global(false)
        .git_exclude(!filters.no_ignore)
        .ignore(!filters.no_ignore)
        .parents(!filters.no_ignore)
        // A workspace copied without its .git still has its ignore files.
        .require_git(false);
    if let Some(glob) = filters.glob {
        let invalid = |e: ignore::Error| ToolError::InvalidArgument(format!("invalid glob: {e}"));
        let mut overrides = OverrideBuilder::new(root);
        overrides.add(glob).map_err(invalid)?;
        walker.overrides(overrides.build().map_err(invalid)?);
    }
    if let Some(file_type) = filters.file_type {
        let mut types = TypesBuilder::new();
        types.add_defaults();
        types.select(file_type);
        let types = types.build().map_err(|e| {
            ToolError::InvalidArgument(format!(
                "{e}; use a ripgrep type name such as rust, py, js, ts, go, java, c, cpp, md"
            ))
        })?;
        walker.types(types);
    }
    let base = if root.is_file() {
        root.parent().unwrap_or(root)
    } else {
        root
    };
    walker.build_parallel().run(|| {
        let mut visit = make_visitor();
        Box::new(move |entry| {
            if cancel.is_cancelled() {
                return WalkState::Quit;
            }
            let Ok(entry) = entry else {
                return WalkState::Continue;
            };
            if entry.file_type().is_some_and(|t| t.is_file()) {
                let rel = entry.path().strip_prefix(base).unwrap_or(entry.path());
                let rel = rel.to_string_lossy().into_owned();
                visit(&entry, rel);
            }
            WalkState::Continue
        })
    });
    if cancel.is_cancelled() {
        return Err(ToolError::Failed("cancelled".to_owned()));
    }
    Ok(())
}

/// When a walked file was last modified (the epoch if that cannot be read),
/// for newest-first orders.
pub fn modified(entry: &DirEntry) -> std::time::SystemTime {
    entry
        .metadata()
        .ok()
        .and_then(|m| m.modified().ok())
        .unwrap_or(std::time::SystemTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn tree(files: usize) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        for i in 0..files {
            std::fs::write(tmp.path().join(format!("f{i}.txt")), "x").unwrap();
        }
        tmp
    }

    #[test]
    fn visits_every_file_with_its_relative_path() {
        let tmp = tree(50);
        let seen = std::sync::Mutex::new(Vec::new());
        walk_files(
            tmp.path(),
            &Filters::default(),
            &CancellationToken::new(),
            || |_: &DirEntry, rel: String| seen.lock().unwrap().push(rel),
        )
        .unwrap();
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        assert_eq!(seen.len(), 50);
        assert_eq!(seen[0], "f0.txt");
    }

    /// A cancelled walk stops at the next file and says so.
    #[test]
    fn cancellation_stops_the_walk() {
        let tmp = tree(2000);
        let cancel = CancellationToken::new();
        let visited = AtomicUsize::new(0);
        let result = walk_files(tmp.path(), &Filters::default(), &cancel, || {
            |_: &DirEntry, _: String| {
                if visited.fetch_add(1, Ordering::Relaxed) == 10 {
                    cancel.cancel();
                }
            }
        });
        assert!(matches!(result, Err(ToolError::Failed(m)) if m == "cancelled"));
        assert!(
            visited.load(Ordering::Relaxed) < 100,
            "{visited:?} files visited"
        );
    }
}
