//! The parallel directory walk shared by search_files and grep: ripgrep's
//! `ignore` walker with the same filters for both, which gives every file
//! it visits by its workspace-relative path and counts what it skipped.
//!
//! Hidden files and folders are searched, as current agent tools do, except
//! the version-control folders in [`VCS_DIRS`] (unless the path or glob
//! names one). `hidden=false` skips dot entries; `no_ignore=true` searches
//! what .gitignore/.ignore exclude. Whatever a walk skips is counted in a
//! [`Skipped`], which tells the model how to include it.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use ignore::overrides::OverrideBuilder;
use ignore::types::TypesBuilder;
use ignore::{DirEntry, WalkBuilder, WalkState};
use schemars::JsonSchema;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::ToolError;
use crate::workspace::{Workspace, WorkspacePath};

/// Folders of version-control systems: never searched unless named.
pub const VCS_DIRS: [&str; 3] = [".git", ".hg", ".svn"];
/// Entries the count of ignored files visits at most.
const MAX_IGNORED_COUNT_ENTRIES: usize = 100_000;

/// Which files a walk visits.
#[derive(Debug, Default)]
pub struct Filters<'a> {
    /// A glob over paths, as `rg -g` takes it.
    pub glob: Option<&'a str>,
    /// A ripgrep file type name, as `rg -t` takes it.
    pub file_type: Option<&'a str>,
    /// Skip hidden files and folders (names starting with `.`); a glob
    /// with a hidden segment includes them anyway.
    pub skip_hidden: bool,
    /// Visit what .gitignore/.ignore exclude too.
    pub no_ignore: bool,
}

impl Filters<'_> {
    /// Hidden entries are skipped unless the glob names a hidden segment
    /// (`.github/workflows/*.yml`, `**/.env`).
    fn skips_hidden(&self) -> bool {
        self.skip_hidden && !self.glob.is_some_and(names_hidden_segment)
    }

    /// VCS folders are skipped unless the glob names one.
    fn skips_vcs(&self) -> bool {
        !self
            .glob
            .is_some_and(|g| g.split('/').any(|seg| VCS_DIRS.contains(&seg)))
    }
}

fn names_hidden_segment(glob: &str) -> bool {
    glob.trim_start_matches('!')
        .split('/')
        .any(|seg| seg.starts_with('.') && seg != "." && seg != "..")
}

/// What a walk or search left out, by reason. Every tool that walks the
/// workspace reports it (see [`Skipped::note`]), so an empty result never
/// reads as "does not exist" when something was only skipped.
#[derive(Debug, Default)]
pub struct Skipped {
    hidden: AtomicU64,
    ignored: AtomicU64,
    ignored_more: std::sync::atomic::AtomicBool,
    binary: AtomicU64,
    unreadable: AtomicU64,
}

/// Counts of entries left out, in a tool's structured output.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub struct SkippedCounts {
    /// Hidden files and folders (dot names) not searched; hidden=true includes them.
    pub hidden: u64,
    /// Files .gitignore/.ignore exclude (a lower bound in huge trees); no_ignore=true includes them.
    pub ignored: u64,
    /// Binary files not searched.
    pub binary: u64,
    /// Files or folders that could not be read.
    pub unreadable: u64,
}

/// Why an entry was skipped.
#[derive(Debug, Clone, Copy)]
pub enum Reason {
    Hidden,
    Binary,
    Unreadable,
}

impl Skipped {
    /// Counts one entry skipped for `reason`.
    pub fn add(&self, reason: Reason) {
        let counter = match reason {
            Reason::Hidden => &self.hidden,
            Reason::Binary => &self.binary,
            Reason::Unreadable => &self.unreadable,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn counts(&self) -> SkippedCounts {
        SkippedCounts {
            hidden: self.hidden.load(Ordering::Relaxed),
            ignored: self.ignored.load(Ordering::Relaxed),
            binary: self.binary.load(Ordering::Relaxed),
            unreadable: self.unreadable.load(Ordering::Relaxed),
        }
    }

    /// A line for the text result, e.g. `[skipped: 2 hidden entries
    /// (hidden=true includes them), 1 binary file]`; `None` when nothing was
    /// skipped.
    pub fn note(&self) -> Option<String> {
        let c = self.counts();
        let plural = |n: u64, one: &str, many: &str| {
            if n == 1 {
                format!("1 {one}")
            } else {
                format!("{n} {many}")
            }
        };
        let mut parts = Vec::new();
        if c.hidden > 0 {
            parts.push(format!(
                "{} (hidden=true includes them)",
                plural(
                    c.hidden,
                    "hidden file or folder",
                    "hidden files and folders"
                )
            ));
        }
        if c.ignored > 0 {
            let more = if self.ignored_more.load(Ordering::Relaxed) {
                "over "
            } else {
                ""
            };
            parts.push(format!(
                "{more}{} excluded by .gitignore/.ignore (no_ignore=true includes them)",
                plural(c.ignored, "file", "files")
            ));
        }
        if c.binary > 0 {
            parts.push(plural(c.binary, "binary file", "binary files"));
        }
        if c.unreadable > 0 {
            parts.push(plural(
                c.unreadable,
                "unreadable entry",
                "unreadable entries",
            ));
        }
        (!parts.is_empty()).then(|| format!("[skipped: {}]", parts.join(", ")))
    }
}

/// Visits every regular file under `base` (or `base` itself, if a file) on
/// all cores. `make_visitor` makes one visitor per thread; each gets the
/// entry and its path relative to the workspace root (the form every tool
/// accepts, whatever form `base` was given in). What the filters leave out
/// is counted in `skipped`. Stops early, with an error, when `cancel` fires.
pub fn walk_files<'s, M, V>(
    ws: &Workspace,
    base: &WorkspacePath,
    filters: &Filters,
    skipped: &Arc<Skipped>,
    cancel: &'s CancellationToken,
    mut make_visitor: M,
) -> Result<(), ToolError>
where
    M: FnMut() -> V,
    V: FnMut(&DirEntry, String) + Send + 's,
{
    let root = ws.host_path(base);
    let walker = builder(&root, filters, !filters.no_ignore, Some(skipped.clone()))?;
    let visited = AtomicUsize::new(0);
    walker.build_parallel().run(|| {
        let mut visit = make_visitor();
        let visited = &visited;
        let root_path = ws.root();
        Box::new(move |entry| {
            if cancel.is_cancelled() {
                return WalkState::Quit;
            }
            let entry = match entry {
                Ok(entry) => entry,
                Err(_) => {
                    skipped.add(Reason::Unreadable);
                    return WalkState::Continue;
                }
            };
            if entry.file_type().is_some_and(|t| t.is_file()) {
                visited.fetch_add(1, Ordering::Relaxed);
                visit(&entry, workspace_relative(root_path, entry.path()));
            }
            WalkState::Continue
        })
    });
    if cancel.is_cancelled() {
        return Err(ToolError::Failed("cancelled".to_owned()));
    }
    if !filters.no_ignore {
        count_ignored(&root, filters, visited.into_inner(), skipped, cancel)?;
    }
    Ok(())
}

/// The path of a walked entry relative to the workspace root.
fn workspace_relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// Counts the files the ignore rules kept out of a walk that visited
/// `visited` files: a second walk without those rules, bounded in size.
fn count_ignored(
    root: &Path,
    filters: &Filters,
    visited: usize,
    skipped: &Skipped,
    cancel: &CancellationToken,
) -> Result<(), ToolError> {
    let walker = builder(root, filters, false, None)?;
    let (files, entries) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let cut = std::sync::atomic::AtomicBool::new(false);
    walker.build_parallel().run(|| {
        let (files, entries, cut) = (&files, &entries, &cut);
        Box::new(move |entry| {
            if cancel.is_cancelled() {
                return WalkState::Quit;
            }
            if entries.fetch_add(1, Ordering::Relaxed) >= MAX_IGNORED_COUNT_ENTRIES {
                cut.store(true, Ordering::Relaxed);
                return WalkState::Quit;
            }
            if let Ok(entry) = entry
                && entry.file_type().is_some_and(|t| t.is_file())
            {
                files.fetch_add(1, Ordering::Relaxed);
            }
            WalkState::Continue
        })
    });
    let ignored = files.into_inner().saturating_sub(visited) as u64;
    skipped.ignored.store(ignored, Ordering::Relaxed);
    skipped
        .ignored_more
        .store(cut.into_inner() && ignored > 0, Ordering::Relaxed);
    Ok(())
}

/// A walker over `root` with `filters`; `ignore_rules` turns .gitignore
/// and .ignore on. Hidden entries skipped are counted in `skipped`.
fn builder(
    root: &Path,
    filters: &Filters,
    ignore_rules: bool,
    skipped: Option<Arc<Skipped>>,
) -> Result<WalkBuilder, ToolError> {
    let mut walker = WalkBuilder::new(root);
    walker
        // Hidden entries are filtered below, where they can be counted.
        .hidden(false)
        .git_ignore(ignore_rules)
        .git_global(false)
        .git_exclude(ignore_rules)
        .ignore(ignore_rules)
        .parents(ignore_rules)
        // A workspace copied without its .git still has its ignore files.
        .require_git(false);
    let (skip_hidden, skip_vcs) = (filters.skips_hidden(), filters.skips_vcs());
    walker.filter_entry(move |entry| {
        // The folder asked for is searched whatever its name.
        if entry.depth() == 0 {
            return true;
        }
        let name = entry.file_name().as_encoded_bytes();
        if skip_vcs && VCS_DIRS.iter().any(|d| d.as_bytes() == name) {
            return false;
        }
        if skip_hidden && name.starts_with(b".") {
            if let Some(skipped) = &skipped {
                skipped.add(Reason::Hidden);
            }
            return false;
        }
        true
    });
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
    Ok(walker)
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

    fn tree(files: usize) -> (tempfile::TempDir, Workspace) {
        let tmp = tempfile::tempdir().unwrap();
        for i in 0..files {
            std::fs::write(tmp.path().join(format!("f{i}.txt")), "x").unwrap();
        }
        let ws = Workspace::open(tmp.path()).unwrap();
        (tmp, ws)
    }

    #[test]
    fn visits_every_file_with_its_relative_path() {
        let (_tmp, ws) = tree(50);
        let seen = std::sync::Mutex::new(Vec::new());
        walk_files(
            &ws,
            &ws.root_path(),
            &Filters::default(),
            &Arc::default(),
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
        let (_tmp, ws) = tree(2000);
        let cancel = CancellationToken::new();
        let visited = AtomicUsize::new(0);
        let filters = Filters::default();
        let result = walk_files(
            &ws,
            &ws.root_path(),
            &filters,
            &Arc::default(),
            &cancel,
            || {
                |_: &DirEntry, _: String| {
                    if visited.fetch_add(1, Ordering::Relaxed) == 10 {
                        cancel.cancel();
                    }
                }
            },
        );
        assert!(matches!(result, Err(ToolError::Failed(m)) if m == "cancelled"));
        assert!(
            visited.load(Ordering::Relaxed) < 100,
            "{visited:?} files visited"
        );
    }
}
