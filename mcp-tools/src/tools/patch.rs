//! apply_patch: a multi-file patch, applied to every file or to none.
//!
//! The whole patch is worked out in memory first (every hunk found, every
//! path checked); only then are the new files written beside their targets,
//! flushed, and renamed into place. If a rename fails part-way, the files
//! already replaced are put back. The write lock edit_file and write_file
//! take is held throughout. Files keep their encoding (UTF-8, with or
//! without BOM, UTF-16 with BOM), line endings and mode.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::files::hex;
use super::{ToolContext, Tools, blocking, schema, success};
use crate::error::{ToolError, ToolResult};
use crate::output::looks_binary;
use crate::patch::apply::{Text, apply_hunks};
use crate::patch::{FileChange, parse};
use crate::text::Encoding;
use crate::workspace::{WorkspacePath, op_error};

/// Largest patch text accepted.
const MAX_PATCH_BYTES: usize = 8 * 1024 * 1024;
/// Largest file a patch may change (as edit_file).
const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;
/// Most file operations in one patch.
const MAX_FILES: usize = 1000;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ApplyPatchArgs {
    /// V4A or unified diff; paths relative to the workspace root.
    pub patch: String,
}

/// What a patch did to a file.
#[derive(Debug, Clone, Copy, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PatchAction {
    Added,
    Updated,
    Moved,
    Deleted,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PatchedFile {
    /// Path after the patch.
    pub path: String,
    pub action: PatchAction,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_from: Option<String>,
    /// Lines added and removed.
    pub added: usize,
    pub removed: usize,
    /// SHA-256 of the new content (none when deleted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ApplyPatchOutput {
    /// In the patch's order.
    pub files: Vec<PatchedFile>,
}

#[tool_router(router = patch_router, vis = "pub(crate)")]
impl Tools {
    #[tool(
        description = "Apply a multi-file patch atomically (all files change or none): V4A \
            (*** Begin Patch, *** Add/Update/Delete File: p, *** Move to: q, @@ hunks of ' ', -, + \
            lines, *** End Patch) or a unified diff (git diff, diff -u). A failed hunk names its \
            file and nearest near-match. Returns +/- counts and new sha256s.",
        output_schema = schema::<ApplyPatchOutput>(),
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false)
    )]
    pub async fn apply_patch(&self, Parameters(args): Parameters<ApplyPatchArgs>) -> ToolResult {
        if args.patch.len() > MAX_PATCH_BYTES {
            return Err(ToolError::InvalidArgument(format!(
                "the patch is {} bytes; apply_patch takes up to {MAX_PATCH_BYTES} (split it)",
                args.patch.len()
            )));
        }
        let ctx = self.ctx.clone();
        blocking(move || apply_patch(&ctx, &args.patch)).await
    }
}

/// A file as it is on disk before the patch.
#[derive(Debug, Clone)]
struct Original {
    bytes: Vec<u8>,
    mode: u32,
}

/// One path the patch touches: what it was and what it becomes.
#[derive(Debug)]
struct Staged {
    path: WorkspacePath,
    original: Option<Original>,
    /// New content and mode; `None` removes the file.
    new: Option<(Vec<u8>, u32)>,
}

/// The patch worked out in memory, path by path.
#[derive(Debug, Default)]
struct Plan {
    order: Vec<PathBuf>,
    staged: HashMap<PathBuf, Staged>,
}

impl Plan {
    /// The path's entry, loading the file from disk the first time.
    fn entry(&mut self, ctx: &ToolContext, path: &WorkspacePath) -> Result<&mut Staged, ToolError> {
        let key = path.rel().to_path_buf();
        if !self.staged.contains_key(&key) {
            let original = load(ctx, path)?;
            let new = original.as_ref().map(|o| (o.bytes.clone(), o.mode));
            self.order.push(key.clone());
            self.staged.insert(
                key.clone(),
                Staged {
                    path: path.clone(),
                    original,
                    new,
                },
            );
        }
        Ok(self.staged.get_mut(&key).expect("inserted above"))
    }
}

fn load(ctx: &ToolContext, path: &WorkspacePath) -> Result<Option<Original>, ToolError> {
    let file = match ctx.workspace.open_file(path) {
        Ok(file) => file,
        Err(ToolError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata().map_err(|e| op_error("reading", path, e))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(ToolError::InvalidArgument(format!(
            "'{}' is {} bytes; apply_patch changes files up to {MAX_FILE_BYTES} bytes",
            path.display(),
            meta.len()
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| op_error("reading", path, e))?;
    Ok(Some(Original {
        bytes,
        mode: meta.permissions().mode() & 0o7777,
    }))
}

/// A file's text, or why it cannot be patched.
/// A file's text and how it is stored, or why it cannot be patched.
fn text_of(path: &WorkspacePath, bytes: &[u8]) -> Result<(Text, Encoding), ToolError> {
    let sniffed = Encoding::sniff(bytes);
    if sniffed == Encoding::Utf8 && looks_binary(bytes) {
        return Err(ToolError::Binary {
            path: path.display(),
            size: bytes.len() as u64,
        });
    }
    let (text, encoding) = Encoding::decode(bytes).ok_or_else(|| {
        ToolError::InvalidArgument(format!(
            "'{}' is not valid {}; apply_patch only changes text files",
            path.display(),
            if sniffed == Encoding::Utf8 {
                "UTF-8"
            } else {
                sniffed.name()
            }
        ))
    })?;
    Ok((Text::parse(&text), encoding))
}

fn apply_patch(ctx: &ToolContext, patch_text: &str) -> ToolResult {
    let patch = parse(patch_text).map_err(|e| {
        ToolError::InvalidArgument(format!(
            "the patch could not be read, nothing was changed: {e}"
        ))
    })?;
    if patch.files.len() > MAX_FILES {
        return Err(ToolError::InvalidArgument(format!(
            "the patch has {} file operations; apply_patch takes up to {MAX_FILES}",
            patch.files.len()
        )));
    }
    let ws = &ctx.workspace;
    let _writing = ctx.lock_writes();
    let mut plan = Plan::default();
    let mut report = Vec::new();
    let unchanged = |e: ToolError| ToolError::Failed(format!("nothing was changed: {e}"));
    for change in &patch.files {
        let done = match change {
            FileChange::Add {
                path,
                lines,
                no_final_newline,
                mode,
            } => {
                let path = ws.resolve(path).map_err(unchanged)?;
                let entry = plan.entry(ctx, &path).map_err(unchanged)?;
                let mode = mode.or(entry.new.as_ref().map(|n| n.1)).unwrap_or(0o644);
                let bytes = Text::new_file(lines.clone(), *no_final_newline)
                    .render()
                    .into_bytes();
                let sha = hex(&Sha256::digest(&bytes));
                entry.new = Some((bytes, mode));
                PatchedFile {
                    path: path.display(),
                    action: PatchAction::Added,
                    moved_from: None,
                    added: lines.len(),
                    removed: 0,
                    sha256: Some(sha),
                }
            }
            FileChange::Delete { path } => {
                let path = ws.resolve_link(path).map_err(unchanged)?;
                let entry = plan.entry(ctx, &path).map_err(unchanged)?;
                let Some((bytes, _)) = entry.new.take() else {
                    return Err(unchanged(ToolError::Failed(format!(
                        "*** Delete File: '{}' does not exist",
                        path.display()
                    ))));
                };
                let removed = text_of(&path, &bytes).map_or(0, |(t, _)| t.lines.len());
                PatchedFile {
                    path: path.display(),
                    action: PatchAction::Deleted,
                    moved_from: None,
                    added: 0,
                    removed,
                    sha256: None,
                }
            }
            FileChange::Update {
                path,
                move_to,
                hunks,
                mode,
            } => {
                let path = ws.resolve(path).map_err(unchanged)?;
                let shown = path.display();
                let entry = plan.entry(ctx, &path).map_err(unchanged)?;
                let Some((bytes, old_mode)) = entry.new.clone() else {
                    return Err(unchanged(ToolError::Failed(format!(
                        "'{shown}' does not exist, so it cannot be updated (use *** Add File: to create it)"
                    ))));
                };
                let (mut text, encoding) = text_of(&path, &bytes).map_err(unchanged)?;
                apply_hunks(&mut text, hunks).map_err(|e| {
                    ToolError::Failed(format!(
                        "nothing was changed: '{shown}', {e}. Read the file again and resend the whole patch"
                    ))
                })?;
                let bytes = encoding.encode(&text.render());
                let sha = hex(&Sha256::digest(&bytes));
                let new = Some((bytes, mode.unwrap_or(old_mode)));
                let (added, removed) = hunks
                    .iter()
                    .fold((0, 0), |(a, r), h| (a + h.added, r + h.removed));
                match move_to {
                    Some(dest) => {
                        let dest = ws.resolve(dest).map_err(unchanged)?;
                        entry.new = None;
                        plan.entry(ctx, &dest).map_err(unchanged)?.new = new;
                        PatchedFile {
                            path: dest.display(),
                            action: PatchAction::Moved,
                            moved_from: Some(shown),
                            added,
                            removed,
                            sha256: Some(sha),
                        }
                    }
                    None => {
                        entry.new = new;
                        PatchedFile {
                            path: shown,
                            action: PatchAction::Updated,
                            moved_from: None,
                            added,
                            removed,
                            sha256: Some(sha),
                        }
                    }
                }
            }
        };
        report.push(done);
    }
    commit(ctx, &plan)?;

    let mut text = format!(
        "Applied the patch ({} file{}):",
        report.len(),
        if report.len() == 1 { "" } else { "s" }
    );
    for f in &report {
        let what = match (&f.moved_from, f.action) {
            (Some(from), _) => format!("moved {from} -> {}", f.path),
            (None, PatchAction::Added) => format!("added {}", f.path),
            (None, PatchAction::Deleted) => format!("deleted {}", f.path),
            (None, _) => format!("updated {}", f.path),
        };
        text.push_str(&format!("\n  {what} (+{} -{})", f.added, f.removed));
        if let Some(sha) = &f.sha256 {
            text.push_str(&format!(" sha256 {sha}"));
        }
    }
    Ok(success(text, &ApplyPatchOutput { files: report }))
}

/// Writes the plan to disk: all new files beside their targets first, then
/// the renames and removals. A failure before the first rename leaves every
/// file as it was; one after it puts back the files already changed.
fn commit(ctx: &ToolContext, plan: &Plan) -> Result<(), ToolError> {
    let dir = ctx.workspace.dir();
    let changed: Vec<&Staged> = plan
        .order
        .iter()
        .map(|k| &plan.staged[k])
        .filter(|s| match (&s.original, &s.new) {
            (Some(o), Some((bytes, mode))) => o.bytes != *bytes || o.mode != *mode,
            (None, None) => false,
            _ => true,
        })
        .collect();

    let mut temps: Vec<(PathBuf, &Staged)> = Vec::new();
    let discard = |temps: &[(PathBuf, &Staged)]| {
        for (tmp, _) in temps {
            let _ = dir.remove_file(tmp);
        }
    };
    for staged in &changed {
        let Some((bytes, mode)) = &staged.new else {
            continue;
        };
        match write_temp(ctx, &staged.path, bytes, *mode) {
            Ok(tmp) => temps.push((tmp, staged)),
            Err(e) => {
                discard(&temps);
                return Err(ToolError::Failed(format!("nothing was changed: {e}")));
            }
        }
    }

    let mut done: Vec<&Staged> = Vec::new();
    let mut failure = None;
    for (i, (tmp, staged)) in temps.iter().enumerate() {
        if let Err(e) = dir.rename(tmp, dir, staged.path.rel()) {
            discard(&temps[i..]);
            failure = Some(op_error("writing", &staged.path, e));
            break;
        }
        done.push(*staged);
    }
    if failure.is_none() {
        for staged in changed.iter().copied().filter(|s| s.new.is_none()) {
            if let Err(e) = dir.remove_file(staged.path.rel()) {
                failure = Some(op_error("deleting", &staged.path, e));
                break;
            }
            done.push(staged);
        }
    }
    let Some(failure) = failure else {
        return Ok(());
    };
    let mut unrestored = Vec::new();
    for staged in done {
        let restored = match &staged.original {
            Some(o) => write_temp(ctx, &staged.path, &o.bytes, o.mode)
                .and_then(|tmp| {
                    dir.rename(&tmp, dir, staged.path.rel())
                        .map_err(|e| op_error("restoring", &staged.path, e))
                })
                .is_ok(),
            None => dir.remove_file(staged.path.rel()).is_ok(),
        };
        if !restored {
            unrestored.push(staged.path.display());
        }
    }
    Err(ToolError::Failed(if unrestored.is_empty() {
        format!("{failure}; the files already changed were restored, so nothing was changed")
    } else {
        format!(
            "{failure}; these files could not be restored and hold the patched content: {}",
            unrestored.join(", ")
        )
    }))
}

/// Writes `bytes` to a new temporary file in `path`'s folder (created if
/// missing), with `mode`, flushed to disk. Returns its relative path.
fn write_temp(
    ctx: &ToolContext,
    path: &WorkspacePath,
    bytes: &[u8],
    mode: u32,
) -> Result<PathBuf, ToolError> {
    let ws = &ctx.workspace;
    let dir = ws.dir();
    if let Ok(meta) = dir.metadata(path.rel())
        && meta.is_dir()
    {
        return Err(ToolError::IsADirectory(path.display()));
    }
    let parent = path.parent().unwrap_or_else(|| ws.root_path());
    dir.create_dir_all(parent.rel())
        .map_err(|e| op_error("creating the folders of", path, e))?;
    atomic_file::write_temp(dir, parent.rel(), bytes, mode)
        .map_err(|e| op_error("writing", path, e))
}
