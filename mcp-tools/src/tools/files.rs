//! File tools: read_file, write_file, list_directory.

use std::io::{BufRead, BufReader, Read};

use cap_std::fs::PermissionsExt;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Tools, blocking, default_dot, schema, success};
use crate::error::{ToolError, ToolResult};
use crate::output::{SNIFF_BYTES, cap_line, looks_binary};
use crate::text::{Encoding, HashingReader};
use crate::workspace::{WorkspacePath, op_error};
use mcp_tools_contract::files::{ReadFileArgs, ReadFileOutput, WriteFileArgs, WriteFileOutput};

/// Lines returned by one read_file call unless `limit` says otherwise.
const DEFAULT_READ_LINES: usize = 2000;
/// Characters kept of one line; the rest is cut with a marker.
const MAX_LINE_CHARS: usize = 2000;
/// Entries list_directory shows at most.
const MAX_LIST_ENTRIES: usize = 2000;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListDirectoryArgs {
    /// Folder path, relative to the workspace root.
    #[serde(default = "default_dot")]
    pub path: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ListDirectoryOutput {
    pub path: String,
    /// Sorted names; folders end with `/`.
    pub entries: Vec<String>,
    /// Entries in the folder, including any not listed.
    pub total: usize,
    pub truncated: bool,
}

#[tool_router(router = files_router, vis = "pub(crate)")]
impl Tools {
    #[tool(
        description = "Read a file in the workspace. Text: a whole read returns the content as is; \
            with offset/limit it returns that line range, numbered; results say the total \
            line count and whether more remains. PNG, JPEG, GIF and WebP come back as images \
            (large ones scaled down); Jupyter notebooks (.ipynb) as their cells in order with \
            outputs, offset/limit counting cells. SVG is text. Refuses other binary files and \
            whole reads of large files.",
        output_schema = schema::<ReadFileOutput>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    pub async fn read_file(&self, Parameters(args): Parameters<ReadFileArgs>) -> ToolResult {
        let path = self.ctx.workspace.resolve(&args.path)?;
        let ctx = self.ctx.clone();
        blocking(
            move || match super::media::read_media(&ctx, &path, &args)? {
                Some(result) => Ok(result),
                None => read_file(&ctx, &path, &args),
            },
        )
        .await
    }

    #[tool(
        description = "Write a file in the workspace, replacing its content (empty content is \
            allowed). Creates parent folders, writes atomically, keeps an existing file's mode, \
            encoding (UTF-8/UTF-16 BOM) and CRLF line endings.",
        output_schema = schema::<WriteFileOutput>(),
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    pub async fn write_file(&self, Parameters(args): Parameters<WriteFileArgs>) -> ToolResult {
        let path = self.ctx.workspace.resolve(&args.path)?;
        let ctx = self.ctx.clone();
        blocking(move || {
            let (created, written, encoding, crlf) = {
                let _writing = ctx.lock_writes();
                let (encoding, crlf) = existing_format(&ctx.workspace, &path);
                let content = if crlf {
                    crate::text::to_crlf(&args.content)
                } else {
                    std::borrow::Cow::Borrowed(args.content.as_str())
                };
                let bytes = encoding.encode(&content);
                let created = write_atomic(&ctx.workspace, &path, &bytes)?;
                (created, bytes.len(), encoding, crlf)
            };
            let out = WriteFileOutput {
                path: path.display(),
                bytes_written: written,
                created,
                encoding: encoding.name().to_owned(),
                crlf,
            };
            let verb = if created { "Created" } else { "Wrote" };
            let mut kept = Vec::new();
            if encoding != Encoding::Utf8 {
                kept.push(encoding.name());
            }
            if crlf {
                kept.push("CRLF line endings");
            }
            let kept = if kept.is_empty() {
                String::new()
            } else {
                format!("; kept the file's {}", kept.join(" and "))
            };
            Ok(success(
                format!("{verb} {} ({} bytes{kept})", out.path, out.bytes_written),
                &out,
            ))
        })
        .await
    }

    #[tool(
        description = "List a folder in the workspace: sorted names, folders marked with a trailing /.",
        output_schema = schema::<ListDirectoryOutput>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    pub async fn list_directory(
        &self,
        Parameters(args): Parameters<ListDirectoryArgs>,
    ) -> ToolResult {
        let path = self.ctx.workspace.resolve(&args.path)?;
        let ctx = self.ctx.clone();
        blocking(move || list_directory(&ctx.workspace, &path)).await
    }
}

fn read_file(ctx: &super::ToolContext, path: &WorkspacePath, args: &ReadFileArgs) -> ToolResult {
    let ws = &ctx.workspace;
    let shown = path.display();
    let file = ws.open_file(path)?;
    let meta = file.metadata().map_err(|e| op_error("reading", path, e))?;
    let size = meta.len();
    let ranged = args.offset.is_some() || args.limit.is_some();
    if !ranged && size > ctx.max_read_bytes {
        return Err(ToolError::TooLarge {
            path: shown,
            size,
            limit: ctx.max_read_bytes,
        });
    }
    let offset = args.offset.unwrap_or(1);
    if offset == 0 {
        return Err(ToolError::InvalidArgument(
            "offset is 1-based: the first line is offset=1".to_owned(),
        ));
    }
    // A whole read (no offset, no limit) is bounded by max_read_bytes and
    // returns the file exactly; only ranged reads page and cut long lines.
    let limit = if ranged {
        args.limit.unwrap_or(DEFAULT_READ_LINES)
    } else {
        usize::MAX
    };
    let keep_per_line = if ranged {
        MAX_LINE_CHARS * 4
    } else {
        usize::MAX
    };
    if limit == 0 {
        return Err(ToolError::InvalidArgument(
            "limit must be at least 1".to_owned(),
        ));
    }
    let numbered = args.line_numbers.unwrap_or(ranged);

    let encoding = Encoding::of_file(&file).map_err(|e| op_error("reading", path, e))?;
    // Every byte of the file is hashed on its way to the decoder, which
    // hands on UTF-8 text (UTF-16 transcoded, the BOM left out).
    let mut hashing = HashingReader {
        inner: file,
        hasher: Sha256::new(),
    };
    let mut reader = BufReader::with_capacity(64 * 1024, Encoding::reader(&mut hashing));
    let sniff = reader
        .fill_buf()
        .map_err(|e| op_error("reading", path, e))?;
    if looks_binary(&sniff[..sniff.len().min(SNIFF_BYTES)]) {
        return Err(ToolError::Binary { path: shown, size });
    }

    // One pass over the file: hash it all, count its lines, keep the window.
    let mut content = String::new();
    let (mut total_lines, mut end_line, mut cut_lines) = (0usize, 0usize, 0usize);
    let (mut crlf, mut lossy, mut budget_hit) = (false, false, false);
    let mut line = Vec::new();
    loop {
        line.clear();
        // Only the start of a very long line is kept in memory: a file that
        // is one 10 GB line must not be loaded whole to show 2000 characters.
        let n = read_line_capped(&mut reader, &mut line, keep_per_line)
            .map_err(|e| op_error("reading", path, e))?;
        if n == 0 {
            break;
        }
        total_lines += 1;
        let in_window = total_lines >= offset && total_lines < offset.saturating_add(limit);
        if !in_window || budget_hit {
            continue;
        }
        let whole = n == line.len();
        let mut body = line.as_slice();
        if whole && let Some(rest) = body.strip_suffix(b"\n") {
            body = rest;
            if let Some(rest) = body.strip_suffix(b"\r") {
                body = rest;
                crlf = true;
            }
        }
        let text = match std::str::from_utf8(body) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            // A kept prefix may end inside a character: not an encoding fault.
            Err(e) if !whole && e.error_len().is_none() => std::borrow::Cow::Borrowed(
                std::str::from_utf8(&body[..e.valid_up_to()]).unwrap_or(""),
            ),
            Err(_) => {
                lossy = true;
                String::from_utf8_lossy(body)
            }
        };
        let (shown_line, cut) = if !ranged {
            (text, false)
        } else if whole {
            let capped = cap_line(&text, MAX_LINE_CHARS);
            let cut = capped.len() != text.len();
            (std::borrow::Cow::Owned(capped.into_owned()), cut)
        } else {
            let head: String = text.chars().take(MAX_LINE_CHARS).collect();
            let shown = format!("{head}... [line of {n} bytes cut]");
            (std::borrow::Cow::Owned(shown), true)
        };
        cut_lines += usize::from(cut);
        if content.len() + shown_line.len() > ctx.max_read_bytes as usize && end_line > 0 {
            budget_hit = true;
            continue;
        }
        if numbered {
            content.push_str(&format!("{total_lines:>6}\t"));
        }
        content.push_str(&shown_line);
        if !numbered && n > body.len() {
            // Keep the file's own line ending on a whole, plain read.
            content.push_str(if line.ends_with(b"\r\n") {
                "\r\n"
            } else {
                "\n"
            });
        } else if numbered {
            content.push('\n');
        }
        end_line = total_lines;
    }
    if offset > total_lines.max(1) {
        return Err(ToolError::InvalidArgument(format!(
            "offset {offset} is past the end of {shown}, which has {total_lines} lines"
        )));
    }
    drop(reader);
    let start_line = if end_line == 0 { 0 } else { offset };
    let more = end_line < total_lines;
    let out = ReadFileOutput {
        path: shown,
        content,
        start_line,
        end_line,
        total_lines,
        more,
        size,
        sha256: hex(&hashing.hasher.finalize()),
        crlf,
        lossy,
        encoding: Some(encoding.name().to_owned()),
        cut_lines,
        image: None,
        notebook: None,
    };
    let mut text = out.content.clone();
    let mut notes = Vec::new();
    if more || ranged {
        notes.push(format!(
            "lines {}-{} of {}",
            out.start_line, out.end_line, out.total_lines
        ));
    }
    if more {
        notes.push(format!(
            "more remains: read on with offset={}",
            out.end_line + 1
        ));
    }
    if lossy {
        notes.push("not valid UTF-8: invalid bytes shown as U+FFFD".to_owned());
    }
    if encoding != Encoding::Utf8 {
        notes.push(format!(
            "file is {}; edit_file and write_file keep that encoding",
            encoding.name()
        ));
    }
    if crlf && numbered {
        notes.push("file uses CRLF line endings".to_owned());
    }
    if cut_lines > 0 {
        notes.push(format!(
            "{cut_lines} long lines cut at {MAX_LINE_CHARS} characters"
        ));
    }
    if size == 0 {
        notes.push("file is empty".to_owned());
    }
    if !notes.is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("[{}]", notes.join("; ")));
    }
    Ok(success(text, &out))
}

/// Reads one line, through its `\n`, into `line`, keeping at most `keep`
/// bytes of it. Returns the line's whole length in bytes, 0 at the end of
/// the file.
fn read_line_capped(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    keep: usize,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(total);
        }
        let (chunk, ends) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        let room = keep.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let n = chunk.len();
        total += n;
        reader.consume(n);
        if ends {
            return Ok(total);
        }
    }
}

/// The encoding and line ending (true: CRLF) of the file at `path`, for
/// writing it back the same way; UTF-8 and LF when it does not exist.
fn existing_format(ws: &crate::workspace::Workspace, path: &WorkspacePath) -> (Encoding, bool) {
    let Ok(file) = ws.open_file(path) else {
        return (Encoding::Utf8, false);
    };
    let mut head = Vec::new();
    if std::io::Read::take(file, SNIFF_BYTES as u64)
        .read_to_end(&mut head)
        .is_err()
    {
        return (Encoding::Utf8, false);
    }
    crate::text::sniff_format(&head)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// folder, flushed to disk, then renamed over the target. Keeps an
/// existing file's mode. Returns whether the file is new.
pub(crate) fn write_atomic(
    ws: &crate::workspace::Workspace,
    path: &WorkspacePath,
    bytes: &[u8],
) -> Result<bool, ToolError> {
    let dir = ws.dir();
    let shown = path.display();
    if path.is_root() {
        return Err(ToolError::IsADirectory(shown));
    }
    let existing = match dir.metadata(path.rel()) {
        Ok(meta) if meta.is_dir() => return Err(ToolError::IsADirectory(shown)),
        Ok(meta) => Some(meta.permissions()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(op_error("checking", path, e)),
    };
    let parent = path.parent().unwrap_or_else(|| ws.root_path());
    dir.create_dir_all(parent.rel())
        .map_err(|e| op_error("creating the folders of", path, e))?;

    // A new file gets 0644; an existing one keeps its mode.
    let mode = existing.as_ref().map_or(0o644, |p| p.mode());
    atomic_file::write(dir, path.rel(), bytes, mode).map_err(|e| op_error("writing", path, e))?;
    Ok(existing.is_none())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn list_directory(ws: &crate::workspace::Workspace, path: &WorkspacePath) -> ToolResult {
    let shown = path.display();
    let meta = ws
        .dir()
        .metadata(path.rel())
        .map_err(|e| op_error("reading", path, e))?;
    if !meta.is_dir() {
        return Err(ToolError::NotADirectory(shown));
    }
    let mut entries = Vec::new();
    for entry in ws
        .dir()
        .read_dir(path.rel())
        .map_err(|e| op_error("listing", path, e))?
    {
        let entry = entry.map_err(|e| op_error("listing", path, e))?;
        let mut name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = match entry.file_type() {
            Ok(t) if t.is_dir() => true,
            // A symlink to a folder inside the workspace lists as a folder.
            Ok(t) if t.is_symlink() => ws
                .dir()
                .metadata(path.rel().join(entry.file_name()))
                .is_ok_and(|m| m.is_dir()),
            _ => false,
        };
        if is_dir {
            name.push('/');
        }
        entries.push(name);
    }
    entries.sort();
    let total = entries.len();
    let truncated = total > MAX_LIST_ENTRIES;
    entries.truncate(MAX_LIST_ENTRIES);
    let mut text = if entries.is_empty() {
        format!("{shown} is empty")
    } else {
        entries.join("\n")
    };
    if truncated {
        text.push_str(&format!(
            "\n[{MAX_LIST_ENTRIES} of {total} entries shown; use search_files to narrow down]"
        ));
    }
    let out = ListDirectoryOutput {
        path: shown,
        entries,
        total,
        truncated,
    };
    Ok(success(text, &out))
}
