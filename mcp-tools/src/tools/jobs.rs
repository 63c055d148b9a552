//! Tools for background processes started by run_command(background=true):
//! process_output, process_wait, process_input, process_kill, process_list.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::handler::server::wrapper::Parameters;
use rmcp::service::RequestContext;
use rmcp::{RoleServer, tool, tool_router};

use super::{Tools, schema, success};
use crate::error::{ToolError, ToolResult};
use crate::output::rfc3339;
use crate::process::{ExitInfo, Job, parse_signal};
use mcp_tools_contract::process::{
    ListStatus, ProcessInputArgs, ProcessInputOutput, ProcessKillArgs, ProcessListArgs,
    ProcessListOutput, ProcessOutputArgs, ProcessOutputOutput, ProcessStatus, ProcessWaitArgs,
    ProcessWaitOutput,
};

/// Default and largest output returned by one process_output call.
const DEFAULT_OUTPUT_CHARS: usize = 30_000;
const MAX_OUTPUT_CHARS: usize = 200_000;
/// Longest a call may wait.
const MAX_WAIT_MS: u64 = 600_000;

/// Default and largest page of process_list.
const DEFAULT_LIST_LIMIT: usize = 50;
const MAX_LIST_LIMIT: usize = 200;

fn status(job: &Job) -> ProcessStatus {
    let exit = job.exit();
    ProcessStatus {
        id: job.id.clone(),
        pid: job.pid,
        command: job.command.clone(),
        running: exit.is_none(),
        exit_code: exit.and_then(|e| e.exit_code),
        signal: exit.and_then(|e| e.signal),
        started: rfc3339(job.started),
        output_bytes: job.total_output(),
        log_path: job.log_path.display().to_string(),
    }
}

fn describe(exit: Option<ExitInfo>) -> String {
    exit.map_or_else(|| "running".to_owned(), |e| format!("exited ({e})"))
}

impl Tools {
    pub(super) fn job(&self, id: &str) -> Result<Arc<Job>, ToolError> {
        self.ctx.jobs.get(id).ok_or_else(|| {
            ToolError::InvalidArgument(format!(
                "no process with id {id:?}; process_list shows the ones kept"
            ))
        })
    }
}

#[tool_router(router = jobs_router, vis = "pub(crate)")]
impl Tools {
    #[tool(
        description = "Read a background process's output from byte offset `since` (use the \
            previous next_offset to get only what is new), optionally waiting up to wait_ms for \
            some. Says whether it is still running and how it exited.",
        output_schema = schema::<ProcessOutputOutput>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    pub async fn process_output(
        &self,
        Parameters(args): Parameters<ProcessOutputArgs>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult {
        let job = self.job(&args.id)?;
        let max = args.max_chars.unwrap_or(DEFAULT_OUTPUT_CHARS);
        if max == 0 || max > MAX_OUTPUT_CHARS {
            return Err(ToolError::InvalidArgument(format!(
                "max_chars must be between 1 and {MAX_OUTPUT_CHARS}"
            )));
        }
        if args.wait_ms > 0 {
            let wait = Duration::from_millis(args.wait_ms.min(MAX_WAIT_MS));
            tokio::select! {
                () = job.wait_for_output(args.since, wait) => {}
                () = context.ct.cancelled() => {}
            }
        }
        let mut chunk = job.read(args.since, max);
        if args.strip_ansi {
            chunk.text = crate::output::strip_ansi(&chunk.text);
        }
        let status = status(&job);
        let more = chunk.next < chunk.total;
        let mut text = chunk.text.clone();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        if chunk.dropped > 0 {
            text.insert_str(
                0,
                &format!(
                    "[{} earlier bytes are no longer in memory; the log file {} has them]\n",
                    chunk.dropped, status.log_path
                ),
            );
        }
        text.push_str(&format!(
            "[{} {}; output bytes {}..{} of {}{}; next since={}]",
            job.id,
            describe(job.exit()),
            chunk.from,
            chunk.next,
            chunk.total,
            if more { ", more available" } else { "" },
            chunk.next
        ));
        let out = ProcessOutputOutput {
            status,
            output: chunk.text,
            from: chunk.from,
            next_offset: chunk.next,
            more,
            dropped: chunk.dropped,
        };
        Ok(success(text, &out))
    }

    #[tool(
        description = "Wait for a background process: until it exits, or until its output matches \
            until_regex (e.g. a server's \"listening on\" line), or timeout_ms passes. Use this \
            instead of sleep loops.",
        output_schema = schema::<ProcessWaitOutput>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    pub async fn process_wait(
        &self,
        Parameters(args): Parameters<ProcessWaitArgs>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult {
        let job = self.job(&args.id)?;
        let timeout_ms = args.timeout_ms.unwrap_or(30_000);
        if timeout_ms == 0 || timeout_ms > MAX_WAIT_MS {
            return Err(ToolError::InvalidArgument(format!(
                "timeout_ms must be between 1 and {MAX_WAIT_MS}"
            )));
        }
        let regex = args
            .until_regex
            .as_deref()
            .map(|r| {
                regex::bytes::RegexBuilder::new(r)
                    .multi_line(true)
                    // A terminal ends lines with \r\n; `$` still matches there.
                    .crlf(true)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| ToolError::InvalidArgument(format!("invalid until_regex: {e}")))
            })
            .transpose()?;
        if args.screen && (job.terminal.is_none() || regex.is_none()) {
            return Err(ToolError::InvalidArgument(
                "screen=true matches until_regex against a terminal's screen: it needs \
                 until_regex and a process started with pty=true"
                    .to_owned(),
            ));
        }
        let started = Instant::now();
        let cancel = context.ct.clone();
        let until = async {
            match (&regex, args.screen) {
                (Some(re), true) => job.wait_until_screen(re, &cancel).await,
                _ => job.wait_until(args.since, regex.as_ref(), &cancel).await,
            }
        };
        let waited = tokio::time::timeout(Duration::from_millis(timeout_ms), until).await;
        let (reason, matched) = match waited {
            Ok(Some(m)) => ("matched", Some(m)),
            Ok(None) if cancel.is_cancelled() => ("cancelled", None),
            Ok(None) => ("exited", None),
            Err(_) => ("timeout", None),
        };
        let total = job.total_output();
        let tail = job.read(total.saturating_sub(2000), 2000).text;
        let tail = tail
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        let waited_ms = started.elapsed().as_millis() as u64;
        let headline = match reason {
            "matched" => format!("{} output matched after {waited_ms} ms", job.id),
            "timeout" => format!("{} still waiting after {timeout_ms} ms (timeout)", job.id),
            "cancelled" => format!("{} wait cancelled", job.id),
            _ => format!("{} {}", job.id, describe(job.exit())),
        };
        // After an exit the headline already says how it ended.
        let text = if reason == "exited" {
            format!("{headline}.\nLast output:\n{tail}")
        } else {
            format!(
                "{headline}; process is {}.\nLast output:\n{tail}",
                describe(job.exit())
            )
        };
        let out = ProcessWaitOutput {
            status: status(&job),
            reason: reason.to_owned(),
            matched,
            tail,
            waited_ms,
        };
        Ok(success(text, &out))
    }

    #[tool(
        description = "Write to a background process's input: data as text exactly as given, then \
            named keys (pty processes: Enter, C-c, Up, Tab, Escape...). close_stdin=true sends \
            end of input (Ctrl-D on a terminal).",
        output_schema = schema::<ProcessInputOutput>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false)
    )]
    pub async fn process_input(
        &self,
        Parameters(args): Parameters<ProcessInputArgs>,
    ) -> ToolResult {
        let job = self.job(&args.id)?;
        if !job.is_running() {
            return Err(ToolError::Failed(format!(
                "{} has already {}; it reads no more input",
                job.id,
                describe(job.exit())
            )));
        }
        let mut bytes = args.data.clone().into_bytes();
        if !args.keys.is_empty() && job.terminal.is_none() {
            return Err(ToolError::InvalidArgument(format!(
                "keys are for processes on a terminal (run_command pty=true); {} reads a pipe: \
                 send text with data (\"\\n\" ends a line)",
                job.id
            )));
        }
        for key in &args.keys {
            let Some(seq) = crate::pty::key_bytes(key) else {
                return Err(ToolError::InvalidArgument(format!(
                    "unknown key {key:?}: use Enter, Tab, Escape, Backspace, Delete, Up, Down, \
                     Left, Right, Home, End, PageUp, PageDown, Insert, Space, F1-F12, \
                     C-<key> (Ctrl) or M-<key> (Alt); send text with data"
                )));
            };
            bytes.extend(seq);
        }
        job.write_stdin(&bytes, args.close_stdin)
            .await
            .map_err(ToolError::Failed)?;
        let out = ProcessInputOutput {
            id: job.id.clone(),
            bytes_written: bytes.len(),
            stdin_closed: args.close_stdin,
        };
        let text = format!(
            "Wrote {} bytes to {}'s {}{}",
            out.bytes_written,
            job.id,
            if job.terminal.is_some() {
                "terminal"
            } else {
                "stdin"
            },
            if args.close_stdin {
                " and closed it"
            } else {
                ""
            }
        );
        Ok(success(text, &out))
    }

    #[tool(
        description = "Send a signal (default TERM) to a background process and everything it started.",
        output_schema = schema::<ProcessStatus>(),
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    pub async fn process_kill(&self, Parameters(args): Parameters<ProcessKillArgs>) -> ToolResult {
        let job = self.job(&args.id)?;
        let signal = parse_signal(&args.signal).ok_or_else(|| {
            ToolError::InvalidArgument(format!(
                "unknown signal {:?}; use TERM, KILL, INT, HUP, QUIT, USR1, USR2, STOP or CONT",
                args.signal
            ))
        })?;
        // The group is signalled even after the job's shell has exited: what
        // it started in the background lives on in that group.
        let reached = match job.signal(signal) {
            Ok(()) => true,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => false,
            Err(e) => {
                return Err(ToolError::Failed(format!(
                    "signalling {} failed: {e}",
                    job.id
                )));
            }
        };
        if job.is_running() {
            // Give the process a moment to go, so the status says so.
            job.wait_for_output(u64::MAX, Duration::from_millis(500))
                .await;
        }
        let status = status(&job);
        if !reached {
            let text = format!(
                "{} has no processes left; it is {}",
                job.id,
                describe(job.exit())
            );
            return Ok(success(text, &status));
        }
        let text = format!(
            "Sent SIG{} to {}; it is {}",
            args.signal
                .trim()
                .to_ascii_uppercase()
                .trim_start_matches("SIG"),
            job.id,
            describe(job.exit())
        );
        Ok(success(text, &status))
    }

    #[tool(
        description = "List background processes, oldest first: running ones and recently \
            finished ones with their exit status. Filter with status (running or finished); \
            long lists come in pages (offset, limit).",
        output_schema = schema::<ProcessListOutput>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    pub async fn process_list(&self, Parameters(args): Parameters<ProcessListArgs>) -> ToolResult {
        let limit = args.limit.unwrap_or(DEFAULT_LIST_LIMIT);
        if limit == 0 || limit > MAX_LIST_LIMIT {
            return Err(ToolError::InvalidArgument(format!(
                "limit must be between 1 and {MAX_LIST_LIMIT}"
            )));
        }
        let matching: Vec<Arc<Job>> = self
            .ctx
            .jobs
            .list()
            .into_iter()
            .filter(|j| match args.status {
                ListStatus::All => true,
                ListStatus::Running => j.is_running(),
                ListStatus::Finished => !j.is_running(),
            })
            .collect();
        let total = matching.len();
        let jobs: Vec<Arc<Job>> = matching.into_iter().skip(args.offset).take(limit).collect();
        let end = args.offset.saturating_add(jobs.len());
        let next_offset = (end < total).then_some(end);
        let mut text = if jobs.is_empty() {
            match (total, args.status) {
                (0, ListStatus::All) => "No background processes".to_owned(),
                (0, ListStatus::Running) => "No running background processes".to_owned(),
                (0, ListStatus::Finished) => "No finished background processes kept".to_owned(),
                _ => format!("No processes at offset {}; there are {total}", args.offset),
            }
        } else {
            jobs.iter()
                .map(|j| {
                    format!(
                        "{}\tpid {}\t{}\t{}",
                        j.id,
                        j.pid,
                        describe(j.exit()),
                        j.command
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        if let Some(next) = next_offset {
            text.push_str(&format!(
                "\n[{}..{} of {total}; more with offset={next}]",
                args.offset, end
            ));
        }
        let processes = jobs.iter().map(|j| status(j)).collect();
        Ok(success(
            text,
            &ProcessListOutput {
                processes,
                total,
                next_offset,
            },
        ))
    }
}
