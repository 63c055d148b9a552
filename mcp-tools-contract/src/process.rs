//! The process tools, for jobs `run_command` started (`background=true`)
//! or adopted (what a foreground `cmd &` left running): `process_output`,
//! `process_wait`, `process_input`, `process_kill`, `process_list`, and for
//! jobs on a terminal `process_screen` and `process_resize`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The arguments of `process_output`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct ProcessOutputArgs {
    /// Process id from run_command (e.g. "p1").
    pub id: String,
    /// Byte offset to read from; pass the previous call's next_offset to get only new output.
    #[serde(default)]
    pub since: u64,
    /// Wait up to this many ms for new output or exit when there is none yet.
    #[serde(default)]
    pub wait_ms: u64,
    /// Most bytes of output to return (default 30000).
    pub max_chars: Option<usize>,
    /// Remove terminal escape sequences (colours, cursor moves) from the
    /// output shown; offsets still count the raw bytes.
    #[serde(default)]
    pub strip_ansi: bool,
}

/// A job as the process tools report it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ProcessStatus {
    /// Id for the process tools, e.g. `p1`.
    pub id: String,
    /// Process id, which is also its process group id.
    pub pid: u32,
    /// The command line it runs.
    pub command: String,
    /// Some process of it is still alive.
    pub running: bool,
    /// Exit code, once it exited by itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Signal that ended it, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Start time, RFC 3339 UTC.
    pub started: String,
    /// Bytes of output so far.
    pub output_bytes: u64,
    /// File that receives its output.
    pub log_path: String,
}

/// What `process_output` returns: the job's status and a window of its
/// output, by byte offsets.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ProcessOutputOutput {
    /// The job.
    #[serde(flatten)]
    pub status: ProcessStatus,
    /// Output (stdout and stderr interleaved) from `from` to `next_offset`.
    pub output: String,
    /// Byte offset `output` starts at (later than `since` when older output
    /// left memory).
    pub from: u64,
    /// Pass as `since` next time.
    pub next_offset: u64,
    /// More output is already available after next_offset.
    pub more: bool,
    /// Bytes after `since` that were dropped from memory (the log file has them).
    pub dropped: u64,
}

/// The arguments of `process_wait`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct ProcessWaitArgs {
    /// Process id from run_command.
    pub id: String,
    /// Return as soon as the output (from `since` on) matches this regex, e.g. "Listening on".
    pub until_regex: Option<String>,
    /// Byte offset the regex is matched from (default 0: all output).
    #[serde(default)]
    pub since: u64,
    /// Give up after this many ms (default 30000, max 600000).
    pub timeout_ms: Option<u64>,
    /// Match until_regex against the terminal screen as rendered now
    /// (pty processes; rows joined by "\n", trailing spaces removed)
    /// instead of the raw output.
    #[serde(default)]
    pub screen: bool,
}

/// What `process_wait` returns.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ProcessWaitOutput {
    /// The job.
    #[serde(flatten)]
    pub status: ProcessStatus,
    /// Why the wait ended: matched, exited or timeout.
    pub reason: String,
    /// The text the regex matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<String>,
    /// The last lines of output.
    pub tail: String,
    /// How long the call waited, in milliseconds.
    pub waited_ms: u64,
}

/// The arguments of `process_input`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct ProcessInputArgs {
    /// Process id from run_command.
    pub id: String,
    /// Text to write to its stdin exactly as given (add "\n" to end a line).
    #[serde(default)]
    pub data: String,
    /// Keys sent after data (pty only): Enter, Tab, Escape, Backspace, Up,
    /// Down, Left, Right, Home, End, PageUp, PageDown, F1, C-c, M-x...
    #[serde(default)]
    pub keys: Vec<String>,
    /// Close stdin afterwards (end of input).
    #[serde(default)]
    pub close_stdin: bool,
}

/// What `process_input` returns.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ProcessInputOutput {
    /// The job written to.
    pub id: String,
    /// Bytes written: `data` and the keys' sequences.
    pub bytes_written: usize,
    /// Its stdin is closed now.
    pub stdin_closed: bool,
}

/// The arguments of `process_kill`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ProcessKillArgs {
    /// Process id from run_command.
    pub id: String,
    /// TERM (default), KILL, INT, HUP, QUIT, USR1, USR2, STOP or CONT.
    #[serde(default = "default_signal")]
    pub signal: String,
}

/// `process_kill`'s default signal.
fn default_signal() -> String {
    "TERM".to_owned()
}

/// Which processes process_list shows: `all`, `running` or `finished`.
// The variants carry no docs: schemars would list them as `oneOf`
// branches instead of one `enum`, which some clients mishandle.
#[allow(missing_docs)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ListStatus {
    #[default]
    All,
    Running,
    Finished,
}

/// The arguments of `process_list`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct ProcessListArgs {
    /// Which processes to list.
    #[serde(default)]
    pub status: ListStatus,
    /// How many matching processes to skip, oldest first; pass the previous
    /// call's next_offset to get the next page.
    #[serde(default)]
    pub offset: usize,
    /// Most processes to return (default 50, max 200).
    pub limit: Option<usize>,
}

/// What `process_list` returns: one page of jobs, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ProcessListOutput {
    /// The jobs on this page.
    pub processes: Vec<ProcessStatus>,
    /// How many processes match the status filter, across all pages.
    pub total: usize,
    /// Pass as `offset` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<usize>,
}

/// The arguments of `process_screen`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct ProcessScreenArgs {
    /// Id of a pty process.
    pub id: String,
}

/// What `process_screen` returns: the terminal as a person would see it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ProcessScreenOutput {
    /// The job.
    pub id: String,
    /// Some process of it is still alive.
    pub running: bool,
    /// Top to bottom, trailing blanks removed.
    pub rows: Vec<String>,
    /// Terminal width, in columns.
    pub cols: u32,
    /// Terminal height, in rows.
    pub height: u32,
    /// 1-based.
    pub cursor_row: u32,
    /// 1-based.
    pub cursor_col: u32,
    /// The program shows the cursor.
    pub cursor_visible: bool,
    /// A full-screen program (editor, pager) is showing.
    pub alternate_screen: bool,
}

/// The arguments of `process_resize`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct ProcessResizeArgs {
    /// Id of a pty process.
    pub id: String,
    /// New width in columns (1-1000).
    pub cols: u16,
    /// New height in rows (1-500).
    pub rows: u16,
}

/// What `process_resize` returns: the new size.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ProcessResizeOutput {
    /// The job.
    pub id: String,
    /// Width, in columns.
    pub cols: u32,
    /// Height, in rows.
    pub rows: u32,
}
