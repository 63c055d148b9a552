//! run_command: shell commands in the foreground or as background jobs.

use std::time::Duration;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::service::RequestContext;
use rmcp::{RoleServer, tool, tool_router};

use super::{Tools, schema, success};
use crate::error::{ToolError, ToolResult};
use crate::process::{CommandSpec, Job, run_foreground};
use crate::pty::TermSize;
use mcp_tools_contract::command::{Finished, JobRef, RunCommandArgs, RunCommandOutput};

/// Default time a foreground command may run.
const DEFAULT_TIMEOUT_MS: u64 = 120_000;
/// Longest time a foreground command may run.
const MAX_TIMEOUT_MS: u64 = 600_000;
/// Bytes kept of each of stdout and stderr; the middle of longer output is cut.
pub const OUTPUT_LIMIT: usize = 30_000;

#[tool_router(router = command_router, vis = "pub(crate)")]
impl Tools {
    #[tool(
        description = "Run a shell command in the workspace (bash -c; stdin is empty). Returns exit \
            code, stdout, stderr; a non-zero exit is a normal result. Long output keeps its head and \
            tail. timeout_ms kills the whole process group. background=true returns at once with an \
            id for long-running processes such as servers; with pty=true too it runs on a terminal \
            (TERM=xterm-256color, cols x rows) for interactive programs. Without a terminal: \
            NO_COLOR=1, TERM=dumb unless env sets them. Not confined to the workspace.",
        output_schema = schema::<RunCommandOutput>(),
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = true)
    )]
    pub async fn run_command(
        &self,
        Parameters(args): Parameters<RunCommandArgs>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult {
        if args.command.trim().is_empty() {
            return Err(ToolError::InvalidArgument("command is empty".to_owned()));
        }
        let timeout_ms = args.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
            return Err(ToolError::InvalidArgument(format!(
                "timeout_ms must be between 1 and {MAX_TIMEOUT_MS}; for longer work use background=true"
            )));
        }
        for (key, value) in &args.env {
            if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
                return Err(ToolError::InvalidArgument(format!(
                    "invalid environment variable name or value: {key:?}"
                )));
            }
        }
        let terminal = if args.pty {
            if !args.background {
                return Err(ToolError::InvalidArgument(
                    "pty=true needs background=true: a terminal is driven with process_input \
                     and read with process_screen"
                        .to_owned(),
                ));
            }
            let size = TermSize::new(
                args.cols.unwrap_or(crate::pty::DEFAULT_COLS),
                args.rows.unwrap_or(crate::pty::DEFAULT_ROWS),
            )
            .map_err(ToolError::InvalidArgument)?;
            Some(size)
        } else if args.cols.is_some() || args.rows.is_some() {
            return Err(ToolError::InvalidArgument(
                "cols and rows size a terminal: set pty=true (and background=true) too".to_owned(),
            ));
        } else {
            None
        };
        let ws = &self.ctx.workspace;
        let cwd = match &args.cwd {
            Some(cwd) => ws.resolve(cwd)?,
            None => ws.root_path(),
        };
        let cwd_host = ws.host_path(&cwd);
        if !cwd_host.exists() {
            return Err(ToolError::NotFound(cwd.display()));
        }
        if !cwd_host.is_dir() {
            return Err(ToolError::NotADirectory(cwd.display()));
        }
        let spec = CommandSpec {
            command: args.command,
            cwd: cwd_host,
            env: args.env.into_iter().collect(),
            terminal,
        };
        if args.background {
            return self.start_background(&spec);
        }
        let done = run_foreground(
            &spec,
            Duration::from_millis(timeout_ms),
            OUTPUT_LIMIT,
            &context.ct,
            &self.ctx.jobs,
        )
        .await
        .map_err(|e| ToolError::Failed(format!("could not start the command: {e}")))?;

        let stdout = done.stdout.render();
        let stderr = done.stderr.render();
        let exit = done.exit.unwrap_or(crate::process::ExitInfo {
            exit_code: None,
            signal: None,
        });
        let mut text = String::new();
        if !stdout.is_empty() {
            text.push_str(&stdout);
            if !stdout.ends_with('\n') {
                text.push('\n');
            }
        }
        if !stderr.is_empty() {
            text.push_str("[stderr]\n");
            text.push_str(&stderr);
            if !stderr.ends_with('\n') {
                text.push('\n');
            }
        }
        let ms = done.duration.as_millis() as u64;
        if done.timed_out {
            text.push_str(&format!(
                "[timed out after {timeout_ms} ms: the process group was killed]"
            ));
        } else if done.cancelled {
            text.push_str("[cancelled: the process group was killed]");
        } else {
            text.push_str(&format!("[{exit}, {ms} ms]"));
        }
        if let Some(job) = &done.left_running {
            text.push_str(&format!(
                "\n[the command left processes running (process group {}); they are tracked \
                 as {id}: read their output with process_output, stop them with process_kill \
                 {id}; they are ended when the server stops]",
                job.pid,
                id = job.id
            ));
        } else if done.output_left_open {
            text.push_str(
                "\n[the command left processes running outside its process group that hold \
                 its output open; their later output is not captured: use background=true for those]",
            );
        }
        let cut = done.stdout.cut() + done.stderr.cut();
        let out = RunCommandOutput::Finished(Finished {
            exit_code: exit.exit_code,
            signal: exit.signal,
            stdout,
            stderr,
            output_cut_bytes: cut,
            timed_out: done.timed_out,
            duration_ms: ms,
            left_running: done.left_running.as_deref().map(job_ref),
        });
        Ok(success(text, &out))
    }
}

impl Tools {
    fn start_background(&self, spec: &CommandSpec) -> Result<CallToolResult, ToolError> {
        let job = self
            .ctx
            .jobs
            .spawn(spec)
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        let out = RunCommandOutput::Started(job_ref(&job));
        let text = match spec.terminal {
            Some(size) => format!(
                "Started background process {} (pid {}) on a {}x{} terminal. See its screen with \
                 process_screen, type with process_input (data, keys), wait with process_wait \
                 (screen=true matches the screen), stop it with process_kill.",
                job.id, job.pid, size.cols, size.rows
            ),
            None => format!(
                "Started background process {} (pid {}). Output goes to {}; read it with \
                 process_output, wait for it with process_wait, stop it with process_kill.",
                job.id,
                job.pid,
                job.log_path.display()
            ),
        };
        Ok(success(text, &out))
    }
}

/// How run_command names a job to the process tools.
fn job_ref(job: &Job) -> JobRef {
    JobRef {
        id: job.id.clone(),
        pid: job.pid,
        log_path: job.log_path.display().to_string(),
    }
}
