//! grep: content search with ripgrep's own crates: the `ignore` walker
//! (parallel, honours .gitignore) and `grep-searcher` with `grep-regex`.

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use grep_regex::{RegexMatcher, RegexMatcherBuilder};
use grep_searcher::{BinaryDetection, Searcher, SearcherBuilder, Sink, SinkContext, SinkMatch};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::service::RequestContext;
use rmcp::{RoleServer, tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::walk::{Filters, Reason, Skipped, SkippedCounts, modified, walk_files};
use super::{Tools, blocking, default_dot, default_true, schema, success};
use crate::error::{ToolError, ToolResult};
use crate::output::cap_line;

/// Entries (files or lines) returned unless head_limit says otherwise.
const DEFAULT_HEAD_LIMIT: usize = 250;
const MAX_HEAD_LIMIT: usize = 5000;
/// Characters of output returned at most, whatever head_limit says.
const MAX_OUTPUT_CHARS: usize = 40_000;
/// Characters kept of one matching line.
const MAX_LINE_CHARS: usize = 500;
/// Lines of context a search may ask for around each match.
const MAX_CONTEXT: usize = 100;
/// Lines of content kept in memory in all; past this only counts are kept.
const MAX_STORED_LINES: usize = 50_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputMode {
    #[default]
    FilesWithMatches,
    Content,
    Count,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct GrepArgs {
    /// Regular expression (Rust regex syntax, like ripgrep), e.g. `fn \w+\(` or `TODO`.
    pub pattern: String,
    /// File or folder to search (default: the workspace root).
    #[serde(default = "default_dot")]
    pub path: String,
    /// Only files matching this glob, e.g. `*.rs` or `src/**/*.{ts,tsx}`.
    pub glob: Option<String>,
    /// Only files of this type, e.g. rust, py, js, go (ripgrep's type names).
    #[serde(rename = "type")]
    pub file_type: Option<String>,
    /// files_with_matches (default): paths, newest first; content: path:line:text;
    /// count: path:count.
    #[serde(default)]
    pub output_mode: OutputMode,
    /// Match case-insensitively.
    #[serde(default)]
    pub case_insensitive: bool,
    /// Lines of context before each match (content mode).
    pub context_before: Option<usize>,
    /// Lines of context after each match (content mode).
    pub context_after: Option<usize>,
    /// Lines of context before and after each match (content mode).
    pub context: Option<usize>,
    /// Show line numbers in content mode (default true).
    pub line_numbers: Option<bool>,
    /// Let the pattern span lines; `.` then matches newlines too.
    #[serde(default)]
    pub multiline: bool,
    /// Return at most this many entries (files or lines; default 250).
    pub head_limit: Option<usize>,
    /// Skip this many entries first, to page through results.
    #[serde(default)]
    pub offset: usize,
    /// Search hidden files and folders; false skips them.
    #[serde(default = "default_true")]
    pub hidden: bool,
    /// Also search files that .gitignore/.ignore exclude.
    #[serde(default)]
    pub no_ignore: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct GrepOutput {
    pub mode: OutputMode,
    /// The entries returned: paths, `path:line:text` lines, or `path:count`.
    pub results: Vec<String>,
    /// Entries found in all, before offset and head_limit.
    pub total: usize,
    /// Files with at least one match.
    pub files_matched: usize,
    /// Matching lines in all.
    pub matches: u64,
    /// Some entries were left out (head_limit, offset or the output size cap).
    pub truncated: bool,
    /// Files and folders not searched, by reason.
    pub skipped: SkippedCounts,
}

/// What one file yielded.
struct FileHits {
    path: String,
    mtime: SystemTime,
    count: u64,
    lines: Vec<String>,
}

#[tool_router(router = grep_router, vis = "pub(crate)")]
impl Tools {
    #[tool(
        description = "Search file contents with a regex (ripgrep engine and syntax). Searches \
            hidden files, not .git/.hg/.svn; honours .gitignore; skips binary files; says what it \
            skipped. output_mode: files_with_matches (default, newest first), content \
            (path:line:text, with context options), count. Paths are workspace-relative. Filter \
            with glob or type. Results are capped by head_limit; page with offset.",
        output_schema = schema::<GrepOutput>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    pub async fn grep(
        &self,
        Parameters(args): Parameters<GrepArgs>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult {
        let ws = &self.ctx.workspace;
        let base = ws.resolve(&args.path)?;
        if !ws.host_path(&base).exists() {
            return Err(ToolError::NotFound(base.display()));
        }
        let head_limit = args.head_limit.unwrap_or(DEFAULT_HEAD_LIMIT);
        if head_limit == 0 || head_limit > MAX_HEAD_LIMIT {
            return Err(ToolError::InvalidArgument(format!(
                "head_limit must be between 1 and {MAX_HEAD_LIMIT}"
            )));
        }
        let context_lines = [args.context, args.context_before, args.context_after];
        if context_lines.into_iter().flatten().any(|n| n > MAX_CONTEXT) {
            return Err(ToolError::InvalidArgument(format!(
                "context lines must be at most {MAX_CONTEXT}; use read_file with offset and limit for more"
            )));
        }
        let matcher = build_matcher(&args)?;
        let searcher = build_searcher(&args);
        let cancel = context.ct.clone();
        let ctx = self.ctx.clone();
        blocking(move || {
            let skipped = std::sync::Arc::new(Skipped::default());
            let hits = Mutex::new(Vec::<FileHits>::new());
            let stored = AtomicUsize::new(0);
            let mode = args.output_mode;
            let numbered = args.line_numbers.unwrap_or(true);
            let filters = Filters {
                glob: args.glob.as_deref(),
                file_type: args.file_type.as_deref(),
                skip_hidden: !args.hidden,
                no_ignore: args.no_ignore,
            };
            walk_files(&ctx.workspace, &base, &filters, &skipped, &cancel, || {
                let (hits, stored, skipped) = (&hits, &stored, &skipped);
                let (matcher, mut searcher) = (matcher.clone(), searcher.clone());
                move |entry: &ignore::DirEntry, rel: String| {
                    let mut sink = Collect {
                        path: &rel,
                        numbered,
                        keep_lines: mode == OutputMode::Content,
                        stored,
                        first_only: mode == OutputMode::FilesWithMatches,
                        count: 0,
                        lines: Vec::new(),
                        binary: false,
                    };
                    let searched = searcher.search_path(&matcher, entry.path(), &mut sink);
                    if searched.is_err() {
                        skipped.add(Reason::Unreadable);
                        return;
                    }
                    if sink.binary {
                        skipped.add(Reason::Binary);
                        return;
                    }
                    if sink.count == 0 {
                        return;
                    }
                    let mtime = if mode == OutputMode::FilesWithMatches {
                        modified(entry)
                    } else {
                        SystemTime::UNIX_EPOCH
                    };
                    let (count, lines) = (sink.count, sink.lines);
                    hits.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(FileHits {
                            path: rel,
                            mtime,
                            count,
                            lines,
                        });
                }
            })?;
            let mut hits = hits
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let lines_dropped = stored.load(Ordering::Relaxed) > MAX_STORED_LINES;
            Ok(render(
                &args,
                &mut hits,
                head_limit,
                lines_dropped,
                &skipped,
            ))
        })
        .await
    }
}

fn build_matcher(args: &GrepArgs) -> Result<RegexMatcher, ToolError> {
    let mut builder = RegexMatcherBuilder::new();
    builder
        .case_insensitive(args.case_insensitive)
        .dfa_size_limit(32 * (1 << 20))
        .size_limit(16 * (1 << 20));
    if args.multiline {
        builder.multi_line(true).dot_matches_new_line(true);
    } else {
        // Lets the searcher find candidate lines fast, as ripgrep does.
        builder.line_terminator(Some(b'\n'));
    }
    builder.build(&args.pattern).map_err(|e| {
        // grep-regex reports the pattern as it wrapped it (`(?:(…`); the
        // plain parser quotes it as the model wrote it.
        let reason = match regex::Regex::new(&args.pattern) {
            Err(plain) => plain.to_string(),
            Ok(_) => e.to_string(),
        };
        ToolError::InvalidArgument(format!("invalid regex {:?}: {reason}", args.pattern))
    })
}

fn build_searcher(args: &GrepArgs) -> Searcher {
    let (mut before, mut after) = (0, 0);
    if args.output_mode == OutputMode::Content {
        before = args.context_before.or(args.context).unwrap_or(0);
        after = args.context_after.or(args.context).unwrap_or(0);
    }
    SearcherBuilder::new()
        .binary_detection(BinaryDetection::quit(b'\x00'))
        .line_number(args.output_mode == OutputMode::Content)
        .multi_line(args.multiline)
        .before_context(before)
        .after_context(after)
        .build()
}

fn render(
    args: &GrepArgs,
    hits: &mut [FileHits],
    head_limit: usize,
    lines_dropped: bool,
    skipped: &Skipped,
) -> rmcp::model::CallToolResult {
    let mode = args.output_mode;
    match mode {
        OutputMode::FilesWithMatches => {
            hits.sort_by(|a, b| b.mtime.cmp(&a.mtime).then_with(|| a.path.cmp(&b.path)));
        }
        _ => hits.sort_by(|a, b| a.path.cmp(&b.path)),
    }
    let files_matched = hits.len();
    let matches: u64 = hits.iter().map(|h| h.count).sum();
    let entries: Vec<String> = match mode {
        OutputMode::FilesWithMatches => hits.iter().map(|h| h.path.clone()).collect(),
        OutputMode::Count => hits
            .iter()
            .map(|h| format!("{}:{}", h.path, h.count))
            .collect(),
        OutputMode::Content => hits
            .iter_mut()
            .flat_map(|h| std::mem::take(&mut h.lines))
            .collect(),
    };
    let total = entries.len();
    let mut results = Vec::new();
    let mut chars = 0;
    for entry in entries.into_iter().skip(args.offset).take(head_limit) {
        if chars + entry.len() > MAX_OUTPUT_CHARS && !results.is_empty() {
            break;
        }
        chars += entry.len() + 1;
        results.push(entry);
    }
    let shown_end = args.offset.saturating_add(results.len());
    let truncated = args.offset > 0 || shown_end < total || lines_dropped;
    let noun = match mode {
        OutputMode::Content => "lines",
        OutputMode::Count | OutputMode::FilesWithMatches => "files",
    };
    let mut text = if total == 0 {
        format!("No matches for {:?}", args.pattern)
    } else {
        results.join("\n")
    };
    if total > 0 && (shown_end < total || args.offset > 0) {
        text.push_str(&format!(
            "\n[showing {noun} {}-{} of {total}; {}]",
            args.offset.saturating_add(1),
            shown_end,
            if shown_end < total {
                format!(
                    "continue with offset={shown_end}, or narrow the search with path, glob or type"
                )
            } else {
                "end of results".to_owned()
            }
        ));
    }
    if lines_dropped {
        text.push_str(&format!(
            "\n[over {MAX_STORED_LINES} matching lines: some files' lines were not kept (see count mode); narrow the search]"
        ));
    }
    if mode == OutputMode::Content && total > 0 {
        let lines = if matches == 1 { "line" } else { "lines" };
        let files = if files_matched == 1 { "file" } else { "files" };
        text.push_str(&format!(
            "\n[{matches} matching {lines} in {files_matched} {files}]"
        ));
    }
    if let Some(note) = skipped.note() {
        text.push('\n');
        text.push_str(&note);
    }
    success(
        text,
        &GrepOutput {
            mode,
            results,
            total,
            files_matched,
            matches,
            truncated,
            skipped: skipped.counts(),
        },
    )
}

/// Collects one file's matches.
struct Collect<'a> {
    path: &'a str,
    numbered: bool,
    keep_lines: bool,
    /// Lines kept by every file's search together; past the cap, lines are
    /// counted but not kept, so one huge file cannot exhaust memory.
    stored: &'a AtomicUsize,
    /// Stop at the first match (files_with_matches).
    first_only: bool,
    count: u64,
    lines: Vec<String>,
    /// The file turned out to be binary; its search stopped.
    binary: bool,
}

impl Collect<'_> {
    fn push(&mut self, sep: char, number: Option<u64>, line: &[u8]) {
        if self.stored.fetch_add(1, Ordering::Relaxed) >= MAX_STORED_LINES {
            self.keep_lines = false;
            return;
        }
        let text = String::from_utf8_lossy(line);
        let text = cap_line(text.trim_end_matches(['\n', '\r']), MAX_LINE_CHARS);
        self.lines.push(match (self.numbered, number) {
            (true, Some(n)) => format!("{}{sep}{n}{sep}{text}", self.path),
            _ => format!("{}{sep}{text}", self.path),
        });
    }
}

impl Sink for Collect<'_> {
    type Error = io::Error;

    fn matched(&mut self, _: &Searcher, mat: &SinkMatch<'_>) -> Result<bool, io::Error> {
        if self.first_only {
            self.count = 1;
            return Ok(false);
        }
        let mut number = mat.line_number();
        for line in mat.lines() {
            self.count += 1;
            if self.keep_lines {
                self.push(':', number, line);
            }
            number = number.map(|n| n + 1);
        }
        Ok(true)
    }

    fn context(&mut self, _: &Searcher, ctx: &SinkContext<'_>) -> Result<bool, io::Error> {
        if self.keep_lines {
            self.push('-', ctx.line_number(), ctx.bytes());
        }
        Ok(true)
    }

    fn binary_data(&mut self, _: &Searcher, _offset: u64) -> Result<bool, io::Error> {
        self.binary = true;
        Ok(false)
    }

    fn context_break(&mut self, _: &Searcher) -> Result<bool, io::Error> {
        if self.keep_lines {
            self.lines.push("--".to_owned());
        }
        Ok(true)
    }
}
