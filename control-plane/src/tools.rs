//! Commands and files in a sandbox, through the MCP tools of mcp-tools in
//! it: the `run-command`, `write-file` and `read-file` endpoints. Each call
//! goes through the sandbox's own MCP endpoint ([`crate::mcp`]), whatever
//! the provider.

use std::time::Duration;

use serde_json::{Value, json};

use crate::error::{Error, ProviderError, Result};
use crate::ids::SandboxId;
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
    let mut args = json!({ "command": req.command, "background": req.background });
    if let Some(t) = req.timeout_ms {
        args["timeout_ms"] = json!(t);
    }
    if let Some(cwd) = &req.cwd {
        args["cwd"] = json!(cwd);
    }
    if !req.env.is_empty() {
        args["env"] = json!(req.env);
    }
    let wait = Duration::from_millis(req.timeout_ms.unwrap_or(DEFAULT_COMMAND_MS)) + COMMAND_SLACK;
    // The memory limit's kills are counted by the sandbox's cgroup, which
    // the sandbox itself cannot see: compared before and after.
    let oom_before = sandboxes.oom_kills(id);
    let out = sandboxes
        .call_tool(&target, "run_command", args, wait)
        .await?;
    let oom_killed = oom_before
        .zip(sandboxes.oom_kills(id))
        .is_some_and(|(before, after)| after > before);
    let s = &out.structured;
    let text = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let stdout = text("stdout");
    let stderr = text("stderr");
    let job_id = s.get("id").and_then(Value::as_str).map(str::to_string);
    let log_path = s
        .get("log_path")
        .and_then(Value::as_str)
        .map(str::to_string);
    let output = if req.background {
        format!(
            "Command started in background (job {}, log {})",
            job_id.as_deref().unwrap_or("?"),
            log_path.as_deref().unwrap_or("?")
        )
    } else if s.is_null() {
        out.text
    } else {
        format!("{stdout}{stderr}")
    };
    Ok(RunCommandResponse {
        output,
        exit_code: s
            .get("exit_code")
            .and_then(Value::as_i64)
            .and_then(|c| i32::try_from(c).ok()),
        stdout,
        stderr,
        signal: s
            .get("signal")
            .and_then(Value::as_i64)
            .and_then(|c| i32::try_from(c).ok()),
        timed_out: s.get("timed_out").and_then(Value::as_bool).unwrap_or(false),
        duration_ms: s.get("duration_ms").and_then(Value::as_u64),
        job_id,
        pid: s
            .get("pid")
            .and_then(Value::as_u64)
            .and_then(|p| u32::try_from(p).ok()),
        log_path,
        oom_killed,
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
    let args = json!({ "path": req.path, "content": content });
    sandboxes
        .call_tool(&target, "write_file", args, FILE_CALL_TIMEOUT)
        .await?;
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
    let args = json!({ "path": req.path, "raw": true });
    let out = sandboxes
        .call_tool(&target, "read_file", args, FILE_CALL_TIMEOUT)
        .await?;
    if let Some(image) = out.structured.get("image") {
        let mime = image
            .get("mime_type")
            .and_then(Value::as_str)
            .unwrap_or("image");
        return Err(Error::Invalid(format!(
            "{} is binary ({mime}), which read-file does not return as text; \
             an MCP client sees it through the read_file tool, or read it with \
             run-command (e.g. base64 {})",
            req.path, req.path
        )));
    }
    // The tool shows what it cannot return as is (invalid bytes replaced,
    // long lines cut, a tail left out) and says so; this endpoint answers
    // with the file's content, so such a read is refused, not passed on.
    let flag = |name: &str| out.structured.get(name).and_then(Value::as_bool) == Some(true);
    let cut_lines = out
        .structured
        .get("cut_lines")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if flag("lossy") {
        return Err(Error::Invalid(format!(
            "{} is not valid UTF-8 text, which read-file returns; \
                 read it with run-command (e.g. base64 {})",
            req.path, req.path
        )));
    }
    if flag("more") || cut_lines > 0 {
        return Err(Error::Invalid(format!(
            "{} is too large for read-file to return whole{}; \
                 read it with run-command (e.g. head, sed -n or base64)",
            req.path,
            if cut_lines > 0 {
                format!(" ({cut_lines} lines are too long)")
            } else {
                String::new()
            }
        )));
    }
    let encoding = out
        .structured
        .get("encoding")
        .and_then(Value::as_str)
        .unwrap_or("utf-8")
        .to_owned();
    match out.structured.get("content").and_then(Value::as_str) {
        Some(c) => Ok(FileText {
            content: c.to_string(),
            encoding,
        }),
        None => Err(ProviderError::failed(format!(
            "sandbox {id}'s read_file answered without content"
        ))
        .into()),
    }
}

fn check_path(path: &str) -> Result<()> {
    if path.is_empty() || path.contains('\0') {
        return Err(Error::Invalid("path must be a non-empty file path".into()));
    }
    Ok(())
}
