//! Multi-file patches: parsing the two formats models write, and applying
//! a parsed patch to a file's text. No I/O here: the apply_patch tool reads
//! the files, and writes the results all at once or not at all.
//!
//! - [`v4a`]: the "V4A" envelope of OpenAI's Codex CLI (`*** Begin Patch`,
//!   `*** Update File: …`, `@@` context, `*** End Patch`).
//! - [`unified`]: unified diffs as `git diff` and `diff -u` write them.
//! - [`apply`]: finding each hunk in a file's lines and replacing it.

pub mod apply;
pub mod unified;
pub mod v4a;

/// A parsed patch: file operations in the order written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    pub files: Vec<FileChange>,
}

/// One file operation of a patch. Paths are as written in the patch
/// (relative to the workspace root), not yet checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileChange {
    /// Create a file (an existing one is replaced) with these lines.
    Add {
        path: String,
        lines: Vec<String>,
        /// The last line has no newline (unified diffs' `\ No newline`).
        no_final_newline: bool,
        /// Unix mode bits from `new file mode` (e.g. 0o755).
        mode: Option<u32>,
    },
    /// Remove a file.
    Delete { path: String },
    /// Change a file in place, and optionally rename it.
    Update {
        path: String,
        move_to: Option<String>,
        hunks: Vec<Hunk>,
        /// Unix mode bits from `new mode`.
        mode: Option<u32>,
    },
}

impl FileChange {
    /// The path the operation starts from.
    #[cfg(test)]
    pub fn path(&self) -> &str {
        match self {
            FileChange::Add { path, .. }
            | FileChange::Delete { path }
            | FileChange::Update { path, .. } => path,
        }
    }
}

/// One change inside a file: `old` lines (context and removed) become
/// `new` lines (context and added).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hunk {
    /// How the hunk is named in errors, e.g. `@@ -10,6 +10,7 @@` or
    /// `@@ def greet():`.
    pub header: String,
    /// V4A `@@ <line>` anchors: each is found, in order, before `old` is
    /// searched after it.
    pub anchors: Vec<String>,
    pub old: Vec<String>,
    pub new: Vec<String>,
    /// For each line of `new`: the index in `old` of the same context
    /// line, or `None` for an added line.
    pub context_of: Vec<Option<usize>>,
    /// The hunk must match at the end of the file (V4A `*** End of File`).
    pub at_eof: bool,
    /// 1-based line where `old` starts, from a unified hunk header.
    pub old_start: Option<usize>,
    /// The old side ends without a newline (`\ No newline at end of file`).
    pub old_no_newline: bool,
    /// The new side ends without a newline.
    pub new_no_newline: bool,
    /// Lines removed and added (context not counted).
    pub removed: usize,
    pub added: usize,
}

/// Why a patch could not be parsed: the 1-based line of the patch and what
/// is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("patch line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(line: usize, message: impl Into<String>) -> Self {
        ParseError {
            line,
            message: message.into(),
        }
    }
}

/// Parses `text` as a V4A patch when it starts with `*** Begin Patch`, and
/// as a unified diff otherwise.
pub fn parse(text: &str) -> Result<Patch, ParseError> {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let patch = if v4a::starts_patch(first) {
        v4a::parse(text)?
    } else {
        unified::parse(text)?
    };
    if patch.files.is_empty() {
        return Err(ParseError::new(
            1,
            "the patch changes no file: write a V4A patch (*** Begin Patch ... *** End Patch) \
             or a unified diff (--- a/file, +++ b/file, @@ hunks)",
        ));
    }
    Ok(patch)
}

/// Splits patch text into lines without their `\n` or `\r\n`.
pub(crate) fn patch_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    if text.ends_with('\n') {
        lines.pop();
    }
    lines
}
