//! Commands and files in a sandbox, through the MCP tools of mcp-tools in
//! it: the `run-command`, `write-file` and `read-file` endpoints. Each call
//! goes through the sandbox's own MCP endpoint ([`crate::mcp`]), whatever
//! the provider, with the arguments and results of
//! [`mcp_tools_contract`], so the compiler checks both ends agree.

use std::time::Duration;

use mcp_tools_contract::command::{RunCommandArgs, RunCommandOutput};
use mcp_tools_contract::files::{ReadFileArgs, ReadFileOutput, WriteFileArgs, WriteFileOutput};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ProviderError, Result};
use crate::ids::SandboxId;
use crate::mcp::Target;
use crate::model::{FileOperationRequest, RunCommandRequest, RunCommandResponse};
use crate::sandboxes::{Caller, Sandboxes};

/// Tool calls that do not run a command should answer quickly.
const FILE_CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// mcp-tools' own ceiling for a foreground command, and its default.
const MAX_COMMAND_MS: u64 = 600_000;
const DEFAULT_COMMAND_MS: u64 = 120_000;
/// Slack on top of a command's timeout for the round trip.
const COMMAND_SLACK: Duration = Duration::from_secs(30);

/// Runs `req.command` in sandbox `id` through its `run_command` tool.
///
/// Errors: `Invalid` for an empty command or a timeout out of
/// 1..=600000 ms; those of [`Sandboxes::call_target`]; `Tool` when the tool
/// refuses; `Provider` when the sandbox does not answer in time.
pub async fn run_command(
    sandboxes: &Sandboxes,
    caller: &Caller,
    id: &SandboxId,
    req: RunCommandRequest,
) -> Result<RunCommandResponse> {
    if req.command.trim().is_empty() {
        return Err(Error::Invalid("command must not be empty".into()));
    }
    if req.timeout_ms == Some(0) || req.timeout_ms.is_some_and(|t| t > MAX_COMMAND_MS) {
        return Err(Error::Invalid(format!(
            "timeout_ms must be between 1 and {MAX_COMMAND_MS}"
        )));
    }
    let target = sandboxes.call_target(caller, id)?;
    let args = RunCommandArgs {
        command: req.command,
        background: req.background,
        timeout_ms: req.timeout_ms,
        cwd: req.cwd,
        env: req.env,
        ..RunCommandArgs::default()
    };
    let wait = Duration::from_millis(req.timeout_ms.unwrap_or(DEFAULT_COMMAND_MS)) + COMMAND_SLACK;
    // The memory limit's kills are counted by the sandbox's cgroup, which
    // the sandbox itself cannot see: compared before and after.
    let oom_before = sandboxes.oom_kills(id);
    let out: RunCommandOutput = call(sandboxes, &target, "run_command", &args, wait).await?;
    let oom_killed = oom_before
        .zip(sandboxes.oom_kills(id))
        .is_some_and(|(before, after)| after > before);
    Ok(match out {
        RunCommandOutput::Started(job) => RunCommandResponse {
            output: format!(
                "Command started in background (job {}, log {})",
                job.id, job.log_path
            ),
            exit_code: None,
            stdout: String::new(),
            stderr: String::new(),
            signal: None,
            timed_out: false,
            duration_ms: None,
            job_id: Some(job.id),
            pid: Some(job.pid),
            log_path: Some(job.log_path),
            oom_killed,
        },
        RunCommandOutput::Finished(done) => {
            let job = done.left_running;
            RunCommandResponse {
                output: format!("{}{}", done.stdout, done.stderr),
                exit_code: done.exit_code,
                stdout: done.stdout,
                stderr: done.stderr,
                signal: done.signal,
                timed_out: done.timed_out,
                duration_ms: Some(done.duration_ms),
                pid: job.as_ref().map(|j| j.pid),
                log_path: job.as_ref().map(|j| j.log_path.clone()),
                job_id: job.map(|j| j.id),
                oom_killed,
            }
        }
    })
}

/// Calls `tool` with `args` and reads its `structuredContent` as `T`.
///
/// Errors: those of [`Sandboxes::call_tool`]; `Provider` when the answer
/// does not have the contract's shape (a sandbox running another version
/// of mcp-tools).
async fn call<A: Serialize, T: DeserializeOwned>(
    sandboxes: &Sandboxes,
    target: &Target,
    tool: &str,
    args: &A,
    timeout: Duration,
) -> Result<T> {
    let args = serde_json::to_value(args)
        .map_err(|e| ProviderError::failed(format!("cannot encode the {tool} arguments: {e}")))?;
    let out = sandboxes.call_tool(target, tool, args, timeout).await?;
    serde_json::from_value(out.structured).map_err(|e| {
        ProviderError::failed(format!(
            "sandbox {}'s {tool} answered in a shape this control plane does not know: {e}",
            target.sandbox_id
        ))
        .into()
    })
}

/// Writes `req.content` to `req.path` in sandbox `id` through its
/// `write_file` tool.
pub async fn write_file(
    sandboxes: &Sandboxes,
    caller: &Caller,
    id: &SandboxId,
    req: FileOperationRequest,
) -> Result<()> {
    let Some(content) = req.content else {
        return Err(Error::Invalid(
            "content is required (it may be empty)".into(),
        ));
    };
    check_path(&req.path)?;
    let target = sandboxes.call_target(caller, id)?;
    let args = WriteFileArgs {
        path: req.path,
        content,
    };
    let _: WriteFileOutput =
        call(sandboxes, &target, "write_file", &args, FILE_CALL_TIMEOUT).await?;
    Ok(())
}

/// A file's text as read-file returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileText {
    /// The text, decoded (without a BOM).
    pub content: String,
    /// How the file stores it: `utf-8`, `utf-8-bom`, `utf-16le` or
    /// `utf-16be`, as the sandbox's read_file tool names it.
    pub encoding: String,
}

/// The text of `req.path` in sandbox `id`, read through its `read_file`
/// tool; a UTF-16 or BOM-marked file comes back decoded, its encoding named.
///
/// Errors: `Invalid` when the tool could not return the file as it is
/// (an image, not UTF-8, too large, lines too long): this endpoint answers
/// with the file's content or not at all. A notebook is read as its JSON.
pub async fn read_file(
    sandboxes: &Sandboxes,
    caller: &Caller,
    id: &SandboxId,
    req: FileOperationRequest,
) -> Result<FileText> {
    check_path(&req.path)?;
    let target = sandboxes.call_target(caller, id)?;
    // raw: a notebook's JSON, not its cells rendered for a model.
    let args = ReadFileArgs {
        path: req.path.clone(),
        raw: true,
        ..ReadFileArgs::default()
    };
    let out: ReadFileOutput =
        call(sandboxes, &target, "read_file", &args, FILE_CALL_TIMEOUT).await?;
    if let Some(image) = out.image {
        return Err(Error::Invalid(format!(
            "{} is binary ({}), which read-file does not return as text; \
             an MCP client sees it through the read_file tool, or read it with \
             run-command (e.g. base64 {})",
            req.path, image.mime_type, req.path
        )));
    }
    // The tool shows what it cannot return as is (invalid bytes replaced,
    // long lines cut, a tail left out) and says so; this endpoint answers
    // with the file's content, so such a read is refused, not passed on.
    if out.lossy {
        return Err(Error::Invalid(format!(
            "{} is not valid UTF-8 text, which read-file returns; \
                 read it with run-command (e.g. base64 {})",
            req.path, req.path
        )));
    }
    if out.more || out.cut_lines > 0 {
        return Err(Error::Invalid(format!(
            "{} is too large for read-file to return whole{}; \
                 read it with run-command (e.g. head, sed -n or base64)",
            req.path,
            if out.cut_lines > 0 {
                format!(" ({} lines are too long)", out.cut_lines)
            } else {
                String::new()
            }
        )));
    }
    Ok(FileText {
        content: out.content,
        encoding: out.encoding.unwrap_or_else(|| "utf-8".to_owned()),
    })
}

fn check_path(path: &str) -> Result<()> {
    if path.is_empty() || path.contains('\0') {
        return Err(Error::Invalid("path must be a non-empty file path".into()));
    }
    Ok(())
}
