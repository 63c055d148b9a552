//! File operations on names: create_directory, move_path, delete_path, file_info.

use std::io::{BufRead, BufReader};

use cap_std::fs::{FileType, MetadataExt};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Tools, blocking, schema, success};
use crate::error::ToolError;
use crate::error::ToolResult;
use crate::output::{SNIFF_BYTES, looks_binary, rfc3339};
use crate::text::Encoding;
use crate::workspace::op_error;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct PathArg {
    /// Path relative to the workspace root.
    pub path: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct CreateDirectoryOutput {
    pub path: String,
    /// False when the folder already existed.
    pub created: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct MovePathArgs {
    /// File or folder to move or rename.
    pub source: String,
    /// Its new path (not the folder to move it into). Parent folders are created.
    pub destination: String,
    /// Replace an existing file (or empty folder) at the destination.
    #[serde(default)]
    pub overwrite: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct MovePathOutput {
    pub source: String,
    pub destination: String,
    /// Something at the destination was replaced.
    pub replaced: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct DeletePathArgs {
    /// File, symlink or folder to delete.
    pub path: String,
    /// Delete a folder with everything in it.
    #[serde(default)]
    pub recursive: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DeletePathOutput {
    pub path: String,
    /// What was deleted: file, dir, symlink or other.
    pub kind: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct FileInfoOutput {
    pub path: String,
    /// file, dir, symlink or other.
    pub kind: String,
    pub size: u64,
    /// Permission bits in octal, e.g. "0644".
    pub mode: String,
    /// Last modification, RFC 3339 UTC.
    pub modified: String,
    /// Where a symlink points.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symlink_target: Option<String>,
    /// For files: whether the content looks binary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_binary: Option<bool>,
    /// For text files: number of lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_count: Option<u64>,
    /// For text files: utf-8, utf-8-bom, utf-16le or utf-16be.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// For folders: number of entries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<u64>,
}

fn kind(t: FileType) -> &'static str {
    if t.is_symlink() {
        "symlink"
    } else if t.is_dir() {
        "dir"
    } else if t.is_file() {
        "file"
    } else {
        "other"
    }
}

#[tool_router(router = paths_router, vis = "pub(crate)")]
impl Tools {
    #[tool(
        description = "Create a folder and any missing parents. Succeeds if it already exists.",
        output_schema = schema::<CreateDirectoryOutput>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    pub async fn create_directory(&self, Parameters(args): Parameters<PathArg>) -> ToolResult {
        let path = self.ctx.workspace.resolve(&args.path)?;
        let ctx = self.ctx.clone();
        blocking(move || {
            let dir = ctx.workspace.dir();
            let created = match dir.metadata(path.rel()) {
                Ok(m) if m.is_dir() => false,
                Ok(_) => {
                    return Err(ToolError::InvalidArgument(format!(
                        "'{}' exists and is not a folder",
                        path.display()
                    )));
                }
                Err(_) => {
                    dir.create_dir_all(path.rel())
                        .map_err(|e| op_error("creating", &path, e))?;
                    true
                }
            };
            let text = if created {
                format!("Created folder {}", path.display())
            } else {
                format!("Folder {} already exists", path.display())
            };
            let out = CreateDirectoryOutput {
                path: path.display(),
                created,
            };
            Ok(success(text, &out))
        })
        .await
    }

    #[tool(
        description = "Move or rename a file or folder within the workspace. Refuses to replace an \
            existing destination unless overwrite=true.",
        output_schema = schema::<MovePathOutput>(),
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false)
    )]
    pub async fn move_path(&self, Parameters(args): Parameters<MovePathArgs>) -> ToolResult {
        let ws = &self.ctx.workspace;
        let source = ws.resolve_link(&args.source)?;
        let destination = ws.resolve_link(&args.destination)?;
        if source.is_root() || destination.is_root() {
            return Err(ToolError::InvalidArgument(
                "the workspace root cannot be moved or replaced".to_owned(),
            ));
        }
        if destination.rel().starts_with(source.rel()) {
            return Err(ToolError::InvalidArgument(format!(
                "cannot move '{}' into itself",
                source.display()
            )));
        }
        let ctx = self.ctx.clone();
        blocking(move || {
            let dir = ctx.workspace.dir();
            dir.symlink_metadata(source.rel())
                .map_err(|e| op_error("moving", &source, e))?;
            let replaced = match dir.symlink_metadata(destination.rel()) {
                Ok(_) if !args.overwrite => {
                    return Err(ToolError::InvalidArgument(format!(
                        "'{}' already exists; set overwrite=true to replace it",
                        destination.display()
                    )));
                }
                Ok(_) => true,
                Err(_) => false,
            };
            if let Some(parent) = destination.parent() {
                dir.create_dir_all(parent.rel())
                    .map_err(|e| op_error("creating the folders of", &destination, e))?;
            }
            dir.rename(source.rel(), dir, destination.rel())
                .map_err(|e| op_error("moving to", &destination, e))?;
            let out = MovePathOutput {
                source: source.display(),
                destination: destination.display(),
                replaced,
            };
            let text = format!(
                "Moved {} to {}{}",
                out.source,
                out.destination,
                if replaced {
                    " (replaced what was there)"
                } else {
                    ""
                }
            );
            Ok(success(text, &out))
        })
        .await
    }

    #[tool(
        description = "Delete a file, symlink or empty folder; recursive=true deletes a folder with \
            its contents. Never deletes the workspace root.",
        output_schema = schema::<DeletePathOutput>(),
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false)
    )]
    pub async fn delete_path(&self, Parameters(args): Parameters<DeletePathArgs>) -> ToolResult {
        let path = self.ctx.workspace.resolve_link(&args.path)?;
        if path.is_root() {
            return Err(ToolError::InvalidArgument(
                "refusing to delete the workspace root; delete what is inside it instead"
                    .to_owned(),
            ));
        }
        let ctx = self.ctx.clone();
        blocking(move || {
            let dir = ctx.workspace.dir();
            let meta = dir
                .symlink_metadata(path.rel())
                .map_err(|e| op_error("deleting", &path, e))?;
            let what = kind(meta.file_type());
            let removed = match (what, args.recursive) {
                ("dir", true) => dir.remove_dir_all(path.rel()),
                ("dir", false) => dir.remove_dir(path.rel()).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::DirectoryNotEmpty {
                        std::io::Error::other("the folder is not empty; set recursive=true to delete it with its contents")
                    } else {
                        e
                    }
                }),
                _ => dir.remove_file(path.rel()),
            };
            removed.map_err(|e| op_error("deleting", &path, e))?;
            let out = DeletePathOutput {
                path: path.display(),
                kind: what.to_owned(),
            };
            Ok(success(format!("Deleted {} {}", what, out.path), &out))
        })
        .await
    }

    #[tool(
        description = "Describe a path: kind, size, mode, modification time; for files whether \
            they are binary, their text encoding and line count; for symlinks their target.",
        output_schema = schema::<FileInfoOutput>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    pub async fn file_info(&self, Parameters(args): Parameters<PathArg>) -> ToolResult {
        let path = self.ctx.workspace.resolve_link(&args.path)?;
        let ctx = self.ctx.clone();
        blocking(move || {
            let dir = ctx.workspace.dir();
            let meta = dir
                .symlink_metadata(path.rel())
                .map_err(|e| op_error("inspecting", &path, e))?;
            let what = kind(meta.file_type());
            let mut out = FileInfoOutput {
                path: path.display(),
                kind: what.to_owned(),
                size: meta.len(),
                mode: format!("{:04o}", meta.mode() & 0o7777),
                modified: meta
                    .modified()
                    .map_or_else(|_| String::new(), |t| rfc3339(t.into_std())),
                symlink_target: None,
                is_binary: None,
                line_count: None,
                encoding: None,
                entries: None,
            };
            match what {
                "symlink" => {
                    out.symlink_target = dir
                        .read_link_contents(path.rel())
                        .ok()
                        .map(|t| t.display().to_string());
                }
                "dir" => {
                    out.entries = dir.read_dir(path.rel()).ok().map(|d| d.count() as u64);
                }
                "file" => {
                    let file = ctx.workspace.open_file(&path)?;
                    let encoding =
                        Encoding::of_file(&file).map_err(|e| op_error("reading", &path, e))?;
                    let mut reader = BufReader::with_capacity(64 * 1024, Encoding::reader(file));
                    let head = reader
                        .fill_buf()
                        .map_err(|e| op_error("reading", &path, e))?;
                    let binary = looks_binary(&head[..head.len().min(SNIFF_BYTES)]);
                    out.is_binary = Some(binary);
                    if !binary {
                        out.encoding = Some(encoding.name().to_owned());
                        out.line_count =
                            Some(count_lines(reader).map_err(|e| op_error("reading", &path, e))?);
                    }
                }
                _ => {}
            }
            let mut text = format!(
                "{}: {}, {} bytes, mode {}, modified {}",
                out.path, out.kind, out.size, out.mode, out.modified
            );
            if let Some(target) = &out.symlink_target {
                text.push_str(&format!(", points to {target}"));
            }
            if let Some(lines) = out.line_count {
                let encoding = out.encoding.as_deref().unwrap_or("utf-8");
                text.push_str(&format!(", {encoding} text with {lines} lines"));
            } else if out.is_binary == Some(true) {
                text.push_str(", binary");
            }
            if let Some(n) = out.entries {
                text.push_str(&format!(", {n} entries"));
            }
            Ok(success(text, &out))
        })
        .await
    }
}

/// Lines in a text, counting a last line without a newline.
fn count_lines(mut reader: impl BufRead) -> std::io::Result<u64> {
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        lines += buf.iter().filter(|&&b| b == b'\n').count() as u64;
        last = buf[buf.len() - 1];
        let n = buf.len();
        reader.consume(n);
    }
    Ok(lines + u64::from(last != b'\n'))
}
