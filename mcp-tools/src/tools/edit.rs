//! edit_file: exact string replacement, with a precondition on the file's hash.

use std::io::Read;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::files::{hex, write_atomic};
use super::{Tools, blocking, schema, success};
use crate::error::{ToolError, ToolResult};
use crate::output::looks_binary;
use crate::text::Encoding;
use crate::workspace::{Workspace, WorkspacePath, op_error};

/// Lines of context shown around an edit.
const SNIPPET_CONTEXT: usize = 3;
/// Largest file edit_file loads (it holds the file and its edited copy).
const MAX_EDIT_BYTES: u64 = 32 * 1024 * 1024;
/// Lines listed when a string occurs more than once.
const MAX_LISTED_LINES: usize = 20;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct EditFileArgs {
    /// File path, relative to the workspace root.
    pub path: String,
    /// Exact text to replace, including whitespace and indentation.
    pub old_string: String,
    /// Text to put in its place.
    pub new_string: String,
    /// Replace every occurrence; otherwise old_string must occur exactly once.
    #[serde(default)]
    pub replace_all: bool,
    /// Refuse the edit unless the file's SHA-256 is this (from read_file),
    /// so an edit never lands on a file that changed since it was read.
    pub expected_sha256: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct EditFileOutput {
    pub path: String,
    pub replacements: usize,
    /// Line where the first replacement starts.
    pub first_line: usize,
    /// SHA-256 of the file after the edit.
    pub sha256: String,
    /// Numbered lines around the first replacement.
    pub snippet: String,
}

#[tool_router(router = edit_router, vis = "pub(crate)")]
impl Tools {
    #[tool(
        description = "Replace exact text in a file. old_string must occur exactly once unless \
            replace_all=true; the error says how often and on which lines it occurs. Keeps line \
            endings, encoding (UTF-8/UTF-16 BOM) and mode, writes atomically. expected_sha256 (from read_file) refuses the edit \
            if the file changed since it was read. Returns the edited lines, numbered.",
        output_schema = schema::<EditFileOutput>(),
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false)
    )]
    pub async fn edit_file(&self, Parameters(args): Parameters<EditFileArgs>) -> ToolResult {
        let path = self.ctx.workspace.resolve(&args.path)?;
        if args.old_string.is_empty() {
            return Err(ToolError::InvalidArgument(
                "old_string is empty; use write_file to create a file or replace all of it"
                    .to_owned(),
            ));
        }
        if args.old_string == args.new_string {
            return Err(ToolError::InvalidArgument(
                "old_string and new_string are the same; nothing to change".to_owned(),
            ));
        }
        let ctx = self.ctx.clone();
        blocking(move || {
            let ws = &ctx.workspace;
            let _writing = ctx.lock_writes();
            let shown = path.display();
            let bytes = read_bounded(ws, &path)?;
            check_unchanged(&shown, &bytes, args.expected_sha256.as_deref())?;
            let (text, encoding) = decode_text(&shown, &bytes)?;
            let (old, new) = in_line_endings_of(&text, &args.old_string, &args.new_string);
            let starts = occurrences(&shown, &text, &old, args.replace_all)?;
            let edited = if args.replace_all {
                text.replace(&old, &new)
            } else {
                text.replacen(&old, &new, 1)
            };
            // The file keeps its encoding and BOM.
            let encoded = encoding.encode(&edited);
            write_atomic(ws, &path, &encoded)?;

            let first_line = line_of(&text, starts[0]);
            let new_lines = new.matches('\n').count() + 1;
            let snippet = numbered_lines(
                &edited,
                first_line.saturating_sub(SNIPPET_CONTEXT).max(1),
                first_line + new_lines - 1 + SNIPPET_CONTEXT,
            );
            let out = EditFileOutput {
                path: shown,
                replacements: if args.replace_all { starts.len() } else { 1 },
                first_line,
                sha256: hex(&Sha256::digest(&encoded)),
                snippet,
            };
            let text = format!(
                "Edited {} ({} replacement{}):\n{}",
                out.path,
                out.replacements,
                if out.replacements == 1 { "" } else { "s" },
                out.snippet
            );
            Ok(success(text, &out))
        })
        .await
    }
}

/// The file's bytes, refused above [`MAX_EDIT_BYTES`].
fn read_bounded(ws: &Workspace, path: &WorkspacePath) -> Result<Vec<u8>, ToolError> {
    let file = ws.open_file(path)?;
    let size = file
        .metadata()
        .map_err(|e| op_error("reading", path, e))?
        .len();
    if size > MAX_EDIT_BYTES {
        return Err(ToolError::InvalidArgument(format!(
            "'{}' is {size} bytes; edit_file edits files up to {MAX_EDIT_BYTES} bytes \
             (use run_command with sed or a script for larger ones)",
            path.display()
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_EDIT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| op_error("reading", path, e))?;
    Ok(bytes)
}

/// The `expected_sha256` precondition: refuses when the file's SHA-256 (hex,
/// any case) is not the one the caller read.
fn check_unchanged(shown: &str, bytes: &[u8], expected: Option<&str>) -> Result<(), ToolError> {
    let hash = hex(&Sha256::digest(bytes));
    match expected {
        Some(expected) if !expected.trim().eq_ignore_ascii_case(&hash) => {
            Err(ToolError::Failed(format!(
                "'{shown}' changed since it was read (its sha256 is now {hash}); read it again before editing"
            )))
        }
        _ => Ok(()),
    }
}

/// The file as text and the encoding to write it back in; binary files and
/// invalid text are refused.
fn decode_text(shown: &str, bytes: &[u8]) -> Result<(String, Encoding), ToolError> {
    let size = bytes.len() as u64;
    let sniffed = Encoding::sniff(bytes);
    if sniffed == Encoding::Utf8 && looks_binary(bytes) {
        return Err(ToolError::Binary {
            path: shown.to_owned(),
            size,
        });
    }
    let Some((text, encoding)) = Encoding::decode(bytes) else {
        return Err(ToolError::InvalidArgument(format!(
            "'{shown}' is not valid {}; edit_file only edits text (use write_file or run_command)",
            if sniffed == Encoding::Utf8 {
                "UTF-8"
            } else {
                sniffed.name()
            }
        )));
    };
    if text.contains('\0') {
        return Err(ToolError::Binary {
            path: shown.to_owned(),
            size,
        });
    }
    Ok((text, encoding))
}

/// `old` and `new` in the file's line endings. A model writes "\n"; in CRLF
/// lines the same text has "\r\n". The text as written is tried first: a
/// file may mix both.
fn in_line_endings_of(text: &str, old: &str, new: &str) -> (String, String) {
    let in_crlf = !text.contains(old) && text.contains("\r\n") && !old.contains('\r');
    let convert = |s: &str| {
        if in_crlf && !s.contains('\r') {
            s.replace('\n', "\r\n")
        } else {
            s.to_owned()
        }
    };
    (convert(old), convert(new))
}

/// Byte offsets where `old` starts in `text`. Refused when it is absent, or
/// occurs more than once without `replace_all` (the error lists the lines).
fn occurrences(
    shown: &str,
    text: &str,
    old: &str,
    replace_all: bool,
) -> Result<Vec<usize>, ToolError> {
    let starts: Vec<usize> = text.match_indices(old).map(|(i, _)| i).collect();
    match starts.len() {
        0 => Err(ToolError::Failed(format!(
            "old_string was not found in '{shown}'; it must match exactly, including \
             whitespace and indentation (read_file shows the current text)"
        ))),
        n if n > 1 && !replace_all => {
            let lines: Vec<String> = starts
                .iter()
                .take(MAX_LISTED_LINES)
                .map(|&s| line_of(text, s).to_string())
                .collect();
            let more = if n > MAX_LISTED_LINES { ", ..." } else { "" };
            Err(ToolError::Failed(format!(
                "old_string occurs {n} times in '{shown}' (lines {}{more}); include more \
                 surrounding text to make it unique, or set replace_all=true",
                lines.join(", ")
            )))
        }
        _ => Ok(starts),
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

/// Lines `from..=to` (1-based) of `text`, numbered like `cat -n`.
fn numbered_lines(text: &str, from: usize, to: usize) -> String {
    let mut out = String::new();
    for (i, line) in text.lines().enumerate().skip(from - 1).take(to + 1 - from) {
        out.push_str(&format!("{:>6}\t{}\n", i + 1, line.trim_end_matches('\r')));
    }
    out
}
