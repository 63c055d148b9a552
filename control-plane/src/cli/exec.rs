//! `control-plane exec`: runs a command in a sandbox, with piped stdin, and
//! exits with its exit code.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use clap::Args;

use super::CliError;
use super::output::{shell_quote, with_spinner};
use crate::client::Client;
use crate::model::RunCommandRequest;

/// `control-plane exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Sandbox id (from `create` or `list`).
    pub id: String,
    /// Start it in the background and return at once.
    #[arg(long)]
    pub background: bool,
    /// Kill it after this many milliseconds.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Working directory inside the workspace.
    #[arg(long)]
    pub cwd: Option<String>,
    /// The command: one shell line, or a program and its arguments. Flags
    /// of exec come before it; after `--` everything is the command's.
    #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Most stdin `exec` passes on: the command line that carries it must stay
/// under Linux's limit for one argument (128 KiB), base64 included.
const MAX_EXEC_STDIN: usize = 64 * 1024;

/// Runs the command and returns its exit code (124 on timeout, 128 + N
/// for signal N).
pub(super) async fn exec(client: &Client, args: ExecArgs) -> Result<i32, CliError> {
    let line = if args.command.len() == 1 {
        args.command[0].clone()
    } else {
        args.command
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let line = match piped_stdin()? {
        Some(input) if !input.is_empty() => with_stdin(&line, &input),
        _ => line,
    };
    let req = RunCommandRequest {
        sandbox_id: args.id,
        command: line,
        background: args.background,
        timeout_ms: args.timeout_ms,
        cwd: args.cwd,
        env: BTreeMap::new(),
    };
    let r = with_spinner("running", client.run(&req)).await?;
    if args.background {
        println!("{}", r.output);
        return Ok(0);
    }
    print!("{}", r.stdout);
    let _ = std::io::stdout().flush();
    eprint!("{}", r.stderr);
    if r.timed_out {
        eprintln!("error: the command timed out");
        return Ok(124);
    }
    Ok(match (r.exit_code, r.signal) {
        (Some(c), _) => c,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 1,
    })
}

/// What was piped or redirected to this process's stdin, read to its end;
/// `None` for a terminal or a device such as /dev/null, which are not read.
fn piped_stdin() -> Result<Option<Vec<u8>>, CliError> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileTypeExt;
    let stdin = std::io::stdin();
    let Ok(fd) = stdin.as_fd().try_clone_to_owned() else {
        return Ok(None);
    };
    let kind = std::fs::File::from(fd)
        .metadata()
        .map(|m| m.file_type())
        .ok();
    if !kind.is_some_and(|k| k.is_fifo() || k.is_file() || k.is_socket()) {
        return Ok(None);
    }
    let mut input = Vec::new();
    stdin
        .lock()
        .take(MAX_EXEC_STDIN as u64 + 1)
        .read_to_end(&mut input)
        .map_err(|e| CliError::Usage(format!("reading stdin: {e}")))?;
    if input.len() > MAX_EXEC_STDIN {
        return Err(CliError::Usage(format!(
            "exec passes at most {} KiB of stdin to the command; write larger input \
             into the sandbox first (control-plane write ID FILE -) and run \
             exec ID -- 'COMMAND < FILE'",
            MAX_EXEC_STDIN / 1024
        )));
    }
    Ok(Some(input))
}

/// `line` run with `input` as its stdin: the bytes travel base64-encoded in
/// a here-document (whose alphabet cannot contain the end marker) and are
/// decoded in the sandbox by `base64 -d`.
fn with_stdin(line: &str, input: &[u8]) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(input);
    let mut doc = String::with_capacity(encoded.len() * 77 / 76 + line.len() + 96);
    doc.push_str("{ base64 -d <<'CONTROL_PLANE_STDIN'\n");
    for chunk in encoded.as_bytes().chunks(76) {
        doc.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        doc.push('\n');
    }
    // Own lines for the command, so a trailing comment in it cuts nothing.
    doc.push_str("CONTROL_PLANE_STDIN\n} | (\n");
    doc.push_str(line);
    doc.push_str("\n)");
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piped_stdin_reaches_the_command_byte_for_byte() {
        let input: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let line = with_stdin("od -An -v -tx1 # a comment", &input);
        let out = std::process::Command::new("sh")
            .args(["-c", &line])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let got: Vec<u8> = String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect();
        assert_eq!(got, input);
    }
}
