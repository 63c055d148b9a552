//! search_files: find files by name with a glob, the way `rg --files -g` does.

use std::sync::Mutex;
use std::time::SystemTime;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::service::RequestContext;
use rmcp::{RoleServer, tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::walk::{Filters, Skipped, SkippedCounts, modified, walk_files};
use super::{Tools, blocking, default_dot, default_true, schema, success};
use crate::error::{ToolError, ToolResult};

/// Files search_files returns unless `limit` says otherwise.
const DEFAULT_FILE_LIMIT: usize = 500;
const MAX_FILE_LIMIT: usize = 10_000;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SearchFilesArgs {
    /// Glob over file paths, e.g. `*.rs`, `src/**/test_*.py`, `!*.min.js`. A glob
    /// without `/` matches the file name at any depth.
    pub pattern: String,
    /// Folder to search (default: the workspace root).
    #[serde(default = "default_dot")]
    pub path: String,
    /// Most files to return (default 500).
    pub limit: Option<usize>,
    /// Search hidden files and folders; false skips them.
    #[serde(default = "default_true")]
    pub hidden: bool,
    /// Also search files that .gitignore/.ignore exclude.
    #[serde(default)]
    pub no_ignore: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct SearchFilesOutput {
    /// Matching files, workspace-relative, newest-modified first.
    pub files: Vec<String>,
    /// Matching files found, including any not returned.
    pub total: usize,
    pub truncated: bool,
    /// Files and folders not searched, by reason.
    pub skipped: SkippedCounts,
}

#[tool_router(router = search_router, vis = "pub(crate)")]
impl Tools {
    #[tool(
        description = "Find files by glob (e.g. `*.rs`, `src/**/*.py`) under a folder. Searches \
            hidden files, not .git/.hg/.svn; honours .gitignore; says what it skipped. Returns \
            workspace-relative paths, newest-modified first.",
        output_schema = schema::<SearchFilesOutput>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    pub async fn search_files(
        &self,
        Parameters(args): Parameters<SearchFilesArgs>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult {
        let ws = &self.ctx.workspace;
        let base = ws.resolve(&args.path)?;
        let root = ws.host_path(&base);
        if !root.is_dir() {
            return Err(if root.exists() {
                ToolError::NotADirectory(base.display())
            } else {
                ToolError::NotFound(base.display())
            });
        }
        let limit = args.limit.unwrap_or(DEFAULT_FILE_LIMIT);
        if limit == 0 || limit > MAX_FILE_LIMIT {
            return Err(ToolError::InvalidArgument(format!(
                "limit must be between 1 and {MAX_FILE_LIMIT}"
            )));
        }
        let cancel = context.ct.clone();
        let ctx = self.ctx.clone();
        blocking(move || {
            let skipped = std::sync::Arc::new(Skipped::default());
            let found = Mutex::new(Vec::<(SystemTime, String)>::new());
            let filters = Filters {
                glob: Some(&args.pattern),
                skip_hidden: !args.hidden,
                no_ignore: args.no_ignore,
                ..Filters::default()
            };
            walk_files(&ctx.workspace, &base, &filters, &skipped, &cancel, || {
                let found = &found;
                move |entry: &ignore::DirEntry, rel: String| {
                    let mtime = modified(entry);
                    found
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push((mtime, rel));
                }
            })?;
            let mut found = found
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            let total = found.len();
            let files: Vec<String> = found.into_iter().take(limit).map(|(_, p)| p).collect();
            let truncated = total > files.len();
            let mut text = if files.is_empty() {
                format!("No files match {}", args.pattern)
            } else {
                files.join("\n")
            };
            if truncated {
                text.push_str(&format!(
                    "\n[{} of {total} files shown, newest first; narrow the pattern or raise limit]",
                    files.len()
                ));
            }
            if let Some(note) = skipped.note() {
                text.push('\n');
                text.push_str(&note);
            }
            Ok(success(
                text,
                &SearchFilesOutput {
                    files,
                    total,
                    truncated,
                    skipped: skipped.counts(),
                },
            ))
        })
        .await
    }
}
