//! Shell commands: foreground runs with a timeout, and background jobs
//! whose output a model can page through, wait on and write to.
//!
//! Every command runs in its own process group, so a timeout or a kill
//! reaches the grandchildren a shell starts, not just the shell.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::output::{HeadTail, continuation_bytes_at_start, unfinished_char_len};
use crate::pty::{self, TermSize, Terminal};

/// How long output is still collected after the shell exits, for processes
/// it left behind that hold the pipes open.
const DRAIN_GRACE: Duration = Duration::from_millis(300);
/// Bytes of a background job's output kept in memory.
pub const JOB_RING_BYTES: usize = 1024 * 1024;
/// Bytes of a background job's output written to its log file.
const JOB_LOG_BYTES: u64 = 64 * 1024 * 1024;
/// Longest a write to a job's stdin may wait for the job to read.
const STDIN_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the processes a foreground command left running are checked
/// for, to tell when the last one has gone.
const LEFTOVER_POLL: Duration = Duration::from_millis(200);
/// Finished jobs kept for process_output and process_list.
const KEEP_FINISHED: usize = 64;
/// How long a finished job is kept.
const KEEP_FINISHED_FOR: Duration = Duration::from_secs(3600);

/// The shell commands run in: bash where the image has it, else sh.
fn shell() -> &'static str {
    static SHELL: OnceLock<&'static str> = OnceLock::new();
    SHELL.get_or_init(|| {
        if Path::new("/bin/bash").exists() {
            "/bin/bash"
        } else {
            "/bin/sh"
        }
    })
}

/// What to run and where.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    pub command: String,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
    /// Run on a pseudo-terminal of this size (background jobs only).
    pub terminal: Option<TermSize>,
}

impl CommandSpec {
    /// The command to spawn. On a terminal it is started through
    /// `setsid -c` (see [`pty::setsid`]), so no `pre_exec` hook is needed
    /// and the standard library spawns with `posix_spawn`.
    ///
    /// # Errors
    /// On a terminal, when setsid(1) cannot be found.
    fn to_command(&self) -> std::io::Result<Command> {
        let mut cmd = match self.terminal {
            Some(_) => {
                // A session of its own, the terminal on its stdin as its
                // controlling terminal, then the shell in the same process.
                let mut cmd = Command::new(pty::setsid()?);
                cmd.arg("-c").arg(shell());
                cmd
            }
            None => Command::new(shell()),
        };
        // `--`: a command line that starts with `-` is a command, not an option.
        cmd.arg("-c")
            .arg("--")
            .arg(&self.command)
            .current_dir(&self.cwd)
            // The server's own secret is not the commands' business.
            .env_remove("MCP_AUTH_TOKEN");
        if self.terminal.is_some() {
            // Not `process_group(0)`: setsid(1) forks when started as a
            // group leader, and the job's pid would be a process that exits.
            cmd.env("TERM", "xterm-256color");
        } else {
            // Without a terminal, colour codes only reach the model as
            // noise; the caller's `env` may say otherwise.
            cmd.env("TERM", "dumb")
                .env("NO_COLOR", "1")
                .process_group(0);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        Ok(cmd)
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, Serialize, schemars::JsonSchema, PartialEq, Eq)]
pub struct ExitInfo {
    /// Exit code, when the process exited by itself.
    pub exit_code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
}

impl From<ExitStatus> for ExitInfo {
    fn from(status: ExitStatus) -> Self {
        ExitInfo {
            exit_code: status.code(),
            signal: status.signal(),
        }
    }
}

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.exit_code, self.signal) {
            (Some(code), _) => write!(f, "exit code {code}"),
            (None, Some(sig)) => write!(f, "killed by signal {sig} ({})", signal_name(sig)),
            (None, None) => f.write_str("exit status unknown"),
        }
    }
}

/// Sends `signal` to every process in the group led by `pgid`.
pub fn kill_group(pgid: u32, signal: i32) -> std::io::Result<()> {
    let pgid = libc::pid_t::try_from(pgid).map_err(std::io::Error::other)?;
    // SAFETY: killpg takes plain integers and touches no memory of ours.
    if unsafe { libc::killpg(pgid, signal) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// True while the process group `pgid` has a member that is not a zombie
/// (a zombie still takes signals, but runs no more).
pub fn group_alive(pgid: u32) -> bool {
    if kill_group(pgid, 0).is_err() {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    entries.filter_map(Result::ok).any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // "pid (comm) state ppid pgrp ...": the name may hold spaces and
        // parentheses, so fields are counted after the last ')'.
        let mut fields = stat
            .rsplit_once(')')
            .map_or("", |(_, f)| f)
            .split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|g| g.parse::<u32>().ok());
        pgrp == Some(pgid) && state != Some("Z")
    })
}

/// Signals a model may send, by name.
pub fn parse_signal(name: &str) -> Option<i32> {
    let name = name.trim().to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    Some(match name {
        "TERM" => libc::SIGTERM,
        "KILL" => libc::SIGKILL,
        "INT" => libc::SIGINT,
        "HUP" => libc::SIGHUP,
        "QUIT" => libc::SIGQUIT,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "STOP" => libc::SIGSTOP,
        "CONT" => libc::SIGCONT,
        _ => return None,
    })
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGKILL => "SIGKILL",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        _ => "signal",
    }
}

/// The result of a foreground run.
#[derive(Debug)]
pub struct Finished {
    pub exit: Option<ExitInfo>,
    pub stdout: HeadTail,
    pub stderr: HeadTail,
    pub timed_out: bool,
    pub cancelled: bool,
    /// Output was still open when the shell exited (it left processes
    /// behind that hold it); what they print later is not captured here.
    pub output_left_open: bool,
    /// The processes the command left running in its process group (`cmd
    /// &`), tracked as a job: listed by process_list, reached by
    /// process_kill, ended at shutdown; what they print goes to its output.
    pub left_running: Option<Arc<Job>>,
    pub duration: Duration,
}

/// Runs `spec` to completion, with stdin from /dev/null, keeping at most
/// `limit` bytes of each stream. On timeout or cancellation the whole
/// process group is killed. Processes the shell leaves running in its
/// group become a job of `jobs` ([`Finished::left_running`]).
pub async fn run_foreground(
    spec: &CommandSpec,
    timeout: Duration,
    limit: usize,
    cancel: &CancellationToken,
    jobs: &Jobs,
) -> std::io::Result<Finished> {
    let started = Instant::now();
    let mut child = spec
        .to_command()?
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pgid = child.id().unwrap_or(0);
    // If the caller stops waiting (the request is dropped), the whole group
    // goes, not just the shell.
    let mut group = GroupGuard(Some(pgid));
    let stdout = Arc::new(Mutex::new(HeadTail::new(limit)));
    let stderr = Arc::new(Mutex::new(HeadTail::new(limit)));
    // Once the shell has exited, what the processes it left print goes to
    // the job that tracks them.
    let adopted: Arc<OnceLock<Arc<Job>>> = Arc::default();
    let sink = |buf: &Arc<Mutex<HeadTail>>| {
        let (buf, adopted) = (buf.clone(), adopted.clone());
        move |bytes: &[u8]| match adopted.get() {
            Some(job) => job.push_output(bytes),
            None => lock(&buf).push(bytes),
        }
    };
    let readers = [
        tokio::spawn(pump(child.stdout.take(), sink(&stdout))),
        tokio::spawn(pump(child.stderr.take(), sink(&stderr))),
    ];

    let (mut timed_out, mut cancelled) = (false, false);
    let status = tokio::select! {
        status = child.wait() => Some(status?),
        () = tokio::time::sleep(timeout) => { timed_out = true; None }
        () = cancel.cancelled() => { cancelled = true; None }
    };
    let status = match status {
        Some(status) => status,
        None => {
            let _ = kill_group(pgid, libc::SIGKILL);
            child.wait().await?
        }
    };
    // The shell has exited; what it left running in the background is its
    // own business from here on.
    group.0 = None;

    let mut output_left_open = false;
    let mut open_readers = Vec::new();
    let drained_by = tokio::time::Instant::now() + DRAIN_GRACE;
    for mut reader in readers {
        if tokio::time::timeout_at(drained_by, &mut reader)
            .await
            .is_err()
        {
            open_readers.push(reader);
            output_left_open = true;
        }
    }
    let left_running = if group_alive(pgid) {
        let job = jobs.adopt(pgid, &spec.command)?;
        let _ = adopted.set(job.clone());
        // The readers carry on into the job, until the last process goes.
        Some(job)
    } else {
        open_readers.iter().for_each(tokio::task::JoinHandle::abort);
        None
    };
    let take = |buf: Arc<Mutex<HeadTail>>| std::mem::replace(&mut *lock(&buf), HeadTail::new(0));
    Ok(Finished {
        exit: Some(status.into()),
        stdout: take(stdout),
        stderr: take(stderr),
        timed_out,
        cancelled,
        output_left_open,
        left_running,
        duration: started.elapsed(),
    })
}

/// Kills a process group when dropped, unless emptied first.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = kill_group(pgid, libc::SIGKILL);
        }
    }
}

/// Reads a stream until it ends, handing each chunk to `sink`.
async fn pump(stream: Option<impl AsyncRead + Unpin>, mut sink: impl FnMut(&[u8])) {
    let Some(mut stream) = stream else { return };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => sink(&buf[..n]),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind;
    // keep serving rather than poisoning every later call.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A background job's output: the newest bytes in memory, all of them
/// (up to a cap) in a log file.
#[derive(Debug)]
struct Ring {
    buf: VecDeque<u8>,
    /// Offset in the whole output of `buf[0]`.
    start: u64,
    /// The log file, while output still goes to it. It is opened for each
    /// chunk rather than held, so a job holds no descriptor for it.
    log: Option<PathBuf>,
    logged: u64,
}

impl Ring {
    fn end(&self) -> u64 {
        self.start + self.buf.len() as u64
    }

    fn push(&mut self, bytes: &[u8]) {
        if let Some(path) = &self.log {
            let room = JOB_LOG_BYTES.saturating_sub(self.logged);
            let n = (bytes.len() as u64).min(room) as usize;
            let written = std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .and_then(|mut log| {
                    if n == 0 {
                        writeln!(
                            log,
                            "\n[log file cap reached; further output is only kept in memory]"
                        )?;
                        return Err(std::io::ErrorKind::FileTooLarge.into());
                    }
                    log.write_all(&bytes[..n])
                });
            if written.is_err() {
                self.log = None;
            }
            self.logged += n as u64;
        }
        self.buf.extend(bytes);
        let overflow = self.buf.len().saturating_sub(JOB_RING_BYTES);
        self.buf.drain(..overflow);
        self.start += overflow as u64;
    }

    /// Bytes from offset `from` on, at most `max`.
    fn slice(&self, from: u64, max: usize) -> Vec<u8> {
        let skip = from.saturating_sub(self.start) as usize;
        self.buf.iter().skip(skip).take(max).copied().collect()
    }
}

/// A command started with `background=true`.
#[derive(Debug)]
pub struct Job {
    pub id: String,
    pub pid: u32,
    pub command: String,
    pub started: SystemTime,
    pub log_path: PathBuf,
    output: Mutex<Ring>,
    exit: Mutex<Option<(ExitInfo, Instant)>>,
    stdin: tokio::sync::Mutex<Option<ChildStdin>>,
    /// The job's pseudo-terminal, when it runs on one.
    pub terminal: Option<Arc<Terminal>>,
    /// Bumped on every chunk of output and on exit, to wake waiters.
    changed: watch::Sender<u64>,
}

/// A window of a job's output.
#[derive(Debug, Clone)]
pub struct OutputChunk {
    pub text: String,
    /// The offset the window starts at (later than asked if older output
    /// has left memory).
    pub from: u64,
    /// Offset to pass as `since` next time.
    pub next: u64,
    /// Bytes printed in all so far.
    pub total: u64,
    /// Bytes between `since` and `from` that are no longer in memory.
    pub dropped: u64,
}

impl Job {
    /// A running job `id` (`p1`, `p2`, ...) of process (group) `pid`, its
    /// output kept in memory and appended to `log_path`.
    fn new(
        id: String,
        pid: u32,
        command: &str,
        log_path: PathBuf,
        stdin: Option<ChildStdin>,
        terminal: Option<Arc<Terminal>>,
    ) -> Self {
        Job {
            id,
            pid,
            command: command.to_owned(),
            started: SystemTime::now(),
            output: Mutex::new(Ring {
                buf: VecDeque::new(),
                start: 0,
                log: Some(log_path.clone()),
                logged: 0,
            }),
            log_path,
            exit: Mutex::new(None),
            stdin: tokio::sync::Mutex::new(stdin),
            terminal,
            changed: watch::channel(0).0,
        }
    }

    /// How the job ended, or `None` while it runs.
    pub fn exit(&self) -> Option<ExitInfo> {
        lock(&self.exit).map(|(info, _)| info)
    }

    pub fn is_running(&self) -> bool {
        self.exit().is_none()
    }

    /// Bytes printed so far.
    pub fn total_output(&self) -> u64 {
        lock(&self.output).end()
    }

    /// Output from offset `since`, at most `max` bytes, cut at character
    /// boundaries: it neither starts nor ends inside a multi-byte
    /// character, except that a character longer than `max` is returned
    /// whole, so that reading on always gets somewhere. A `since` inside a
    /// character starts the window at that character's first byte (`from`
    /// says so); when that byte has left memory, at the next character.
    pub fn read(&self, since: u64, max: usize) -> OutputChunk {
        let ring = lock(&self.output);
        let total = ring.end();
        let since = since.min(total);
        let mut from = since.max(ring.start);
        if from == since {
            // Back up to the first byte of a character `since` falls inside.
            let back = since.saturating_sub(3).max(ring.start);
            let before = ring.slice(back, (since - back) as usize);
            from -= unfinished_char_len(&before) as u64;
        }
        // Up to 3 bytes more, to finish a character cut by `max`.
        let mut bytes = ring.slice(from, max.saturating_add(3));
        drop(ring);
        if from > since {
            // Memory dropped the output up to `from`, maybe mid-character:
            // start at the next character.
            let skip = continuation_bytes_at_start(&bytes);
            bytes.drain(..skip);
            from += skip as u64;
        }
        let mut keep = bytes.len().min(max);
        let unfinished = unfinished_char_len(&bytes[..keep]);
        if unfinished < keep {
            // Stop before a character that `max` or the output so far cuts:
            // the next read starts with it. Output that is over keeps it,
            // as it is.
            if keep < bytes.len() || self.is_running() {
                keep -= unfinished;
            }
        } else if unfinished > 0 {
            // One character longer than `max`: return it whole.
            let at_end = from + bytes.len() as u64 == total;
            match (keep + 1..=bytes.len()).find(|&k| unfinished_char_len(&bytes[..k]) == 0) {
                Some(whole) => keep = whole,
                // Its end is not written yet.
                None if at_end && self.is_running() => keep = 0,
                // It never will be: show what there is.
                None if at_end => keep = bytes.len(),
                None => {}
            }
        }
        bytes.truncate(keep);
        OutputChunk {
            text: String::from_utf8_lossy(&bytes).into_owned(),
            from,
            next: from + bytes.len() as u64,
            total,
            dropped: from.saturating_sub(since),
        }
    }

    /// Waits until output beyond `since` exists, the job exits, or
    /// `timeout` passes.
    pub async fn wait_for_output(&self, since: u64, timeout: Duration) {
        let mut rx = self.changed.subscribe();
        let _ = tokio::time::timeout(timeout, async {
            while self.total_output() <= since && self.is_running() {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }

    /// Waits until the job exits, or its output from `since` on matches
    /// `pattern`, or `cancel` fires. Returns the match's text, if any.
    pub async fn wait_until(
        &self,
        since: u64,
        pattern: Option<&regex::bytes::Regex>,
        cancel: &CancellationToken,
    ) -> Option<String> {
        let mut rx = self.changed.subscribe();
        let mut scan_from = since;
        loop {
            if let Some(re) = pattern {
                let ring = lock(&self.output);
                let from = scan_from.max(ring.start);
                let bytes = ring.slice(from, usize::MAX);
                let end = ring.end();
                drop(ring);
                if let Some(m) = re.find(&bytes) {
                    return Some(String::from_utf8_lossy(m.as_bytes()).into_owned());
                }
                // Rescan the last, unfinished line next time, so a match
                // split across two chunks of output is still found.
                let last_newline = bytes.iter().rposition(|&b| b == b'\n');
                scan_from = last_newline.map_or(from, |i| from + i as u64 + 1).min(end);
            }
            if !self.is_running() {
                return None;
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return None },
                () = cancel.cancelled() => return None,
            }
        }
    }

    /// Writes to the job's stdin; `close` closes it afterwards (EOF).
    pub async fn write_stdin(&self, data: &[u8], close: bool) -> Result<(), String> {
        if let Some(terminal) = &self.terminal {
            // A terminal has no end of input; Ctrl-D at a line's start is
            // what a person types for it.
            let mut bytes = data.to_vec();
            if close {
                bytes.push(0x04);
            }
            let _writing = self.stdin.lock().await;
            return match tokio::time::timeout(STDIN_WRITE_TIMEOUT, terminal.write(&bytes)).await {
                Ok(result) => result.map_err(|e| format!("writing to the terminal failed: {e}")),
                Err(_) => Err(format!(
                    "the process did not read its input within {} s (the terminal's buffer is \
                     full); part of the data may have been written",
                    STDIN_WRITE_TIMEOUT.as_secs()
                )),
            };
        }
        let mut stdin = self.stdin.lock().await;
        let Some(pipe) = stdin.as_mut() else {
            return Err("stdin of this process is already closed".to_owned());
        };
        use tokio::io::AsyncWriteExt;
        // A process that never reads its stdin fills the pipe; do not wait
        // on it forever (nor hold the lock that long).
        let written = tokio::time::timeout(STDIN_WRITE_TIMEOUT, async {
            pipe.write_all(data).await?;
            pipe.flush().await
        })
        .await;
        let written = match written {
            Ok(result) => result.map_err(|e| format!("writing to stdin failed: {e}")),
            Err(_) => Err(format!(
                "the process did not read its input within {} s (its stdin pipe is full); \
                 part of the data may have been written",
                STDIN_WRITE_TIMEOUT.as_secs()
            )),
        };
        if close || written.is_err() {
            *stdin = None;
        }
        written
    }

    /// Sends `signal` to the job's process group; for a job on a terminal,
    /// to every process of its session (a shell there puts each of its
    /// jobs in a group of its own).
    pub fn signal(&self, signal: i32) -> std::io::Result<()> {
        if self.terminal.is_some() {
            pty::kill_session(self.pid, signal)
        } else {
            kill_group(self.pid, signal)
        }
    }

    /// Waits until the job's emulated screen matches `pattern`, the job
    /// exits, or `cancel` fires. Returns the match's text, if any; `None`
    /// at once for a job without a terminal.
    pub async fn wait_until_screen(
        &self,
        pattern: &regex::bytes::Regex,
        cancel: &CancellationToken,
    ) -> Option<String> {
        let terminal = self.terminal.as_ref()?;
        let mut rx = self.changed.subscribe();
        loop {
            let shown = terminal.screen().rows.join("\n");
            if let Some(m) = pattern.find(shown.as_bytes()) {
                return Some(String::from_utf8_lossy(m.as_bytes()).into_owned());
            }
            if !self.is_running() {
                return None;
            }
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return None },
                () = cancel.cancelled() => return None,
            }
        }
    }

    /// Adds output to the job's ring and log, waking whoever waits on it.
    pub fn push_output(&self, bytes: &[u8]) {
        lock(&self.output).push(bytes);
        self.changed.send_modify(|v| *v += 1);
    }
}

/// Why a background job did not start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error(
        "{max} background processes are already running, the limit (--max-jobs); wait for one \
         to finish (process_wait) or stop one (process_kill), then start this one again"
    )]
    TooMany { max: usize },
    #[error("could not start the command: {0}")]
    Io(#[from] std::io::Error),
}

/// The background jobs of this server.
#[derive(Debug)]
pub struct Jobs {
    log_dir: PathBuf,
    /// Most jobs running at once.
    max_running: usize,
    inner: Mutex<JobsInner>,
}

#[derive(Debug, Default)]
struct JobsInner {
    next_id: u64,
    jobs: BTreeMap<u64, Arc<Job>>,
}

impl Jobs {
    /// Jobs whose logs go to `log_dir` (created if missing), at most
    /// `max_running` of them running at once.
    pub fn new(log_dir: PathBuf, max_running: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(&log_dir)?;
        Ok(Jobs {
            log_dir,
            max_running: usize::try_from(max_running).unwrap_or(usize::MAX),
            inner: Mutex::new(JobsInner::default()),
        })
    }

    /// Tracks the processes a foreground command left running in its
    /// process group `pgid` as a job: no stdin, its output whatever reaches
    /// [`Job::push_output`]. It counts as exited once the group is empty
    /// (checked every [`LEFTOVER_POLL`]); how its processes ended is unknown.
    pub fn adopt(&self, pgid: u32, command: &str) -> std::io::Result<Arc<Job>> {
        let number = {
            let mut inner = lock(&self.inner);
            inner.next_id += 1;
            inner.next_id
        };
        let id = format!("p{number}");
        let log_path = self.log_dir.join(format!("{id}.log"));
        std::fs::File::create(&log_path)?;
        let job = Arc::new(Job::new(id, pgid, command, log_path, None, None));
        let watcher = job.clone();
        tokio::spawn(async move {
            while group_alive(pgid) {
                tokio::time::sleep(LEFTOVER_POLL).await;
            }
            let unknown = ExitInfo {
                exit_code: None,
                signal: None,
            };
            *lock(&watcher.exit) = Some((unknown, Instant::now()));
            watcher.changed.send_modify(|v| *v += 1);
        });
        let mut inner = lock(&self.inner);
        // Pruned before the new job is in: one that ends at once must not
        // push out a finished job that should have been kept.
        prune(&mut inner.jobs, Instant::now());
        inner.jobs.insert(number, job.clone());
        Ok(job)
    }

    /// Starts `spec` detached: its own process group, stdin a pipe the
    /// model can write to, stdout and stderr one pipe (so their lines
    /// interleave as printed). A running job holds three descriptors here:
    /// its stdin, its output and its pidfd.
    ///
    /// # Errors
    /// [`SpawnError::TooMany`] when `max_running` jobs run already.
    pub fn spawn(&self, spec: &CommandSpec) -> Result<Arc<Job>, SpawnError> {
        // Held until the job is in the table, so two starts cannot both
        // take the last place.
        let mut inner = lock(&self.inner);
        if inner.jobs.values().filter(|j| j.is_running()).count() >= self.max_running {
            return Err(SpawnError::TooMany {
                max: self.max_running,
            });
        }
        inner.next_id += 1;
        let number = inner.next_id;
        let id = format!("p{number}");
        let log_path = self.log_dir.join(format!("{id}.log"));
        std::fs::File::create(&log_path)?;
        let mut terminal = None;
        let mut output = None;
        let mut command = spec.to_command()?;
        if let Some(size) = spec.terminal {
            let (controller, tty) = pty::open(size)?;
            command
                .stdin(Stdio::from(tty.try_clone()?))
                .stdout(Stdio::from(tty.try_clone()?))
                .stderr(Stdio::from(tty));
            terminal = Some(Arc::new(Terminal::new(controller, size)?));
        } else {
            // stdout and stderr share one pipe: their lines interleave as
            // printed, and the job holds one descriptor for both.
            let (reader, writer) = std::io::pipe()?;
            command
                .stdin(Stdio::piped())
                .stdout(writer.try_clone()?)
                .stderr(writer);
            output = Some(reader);
        }
        let mut child: Child = command.spawn()?;
        // Our copies of the terminal side (or the pipe's write end) go, so
        // that reading ends when the job's processes have all closed theirs.
        drop(command);
        let output = output
            .map(|r| tokio::net::unix::pipe::Receiver::from_owned_fd(r.into()))
            .transpose()?;
        let pid = child.id().unwrap_or(0);
        let job = Arc::new(Job::new(
            id,
            pid,
            &spec.command,
            log_path,
            child.stdin.take(),
            terminal.clone(),
        ));
        let readers = match terminal {
            Some(terminal) => {
                let mut output = job_output(job.clone());
                vec![tokio::spawn(async move {
                    let screen = terminal.clone();
                    terminal
                        .read_all(move |bytes| {
                            screen.feed(bytes);
                            output(bytes);
                        })
                        .await;
                })]
            }
            None => vec![tokio::spawn(pump(output, job_output(job.clone())))],
        };
        let watcher = job.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            for reader in readers {
                let _ = tokio::time::timeout(DRAIN_GRACE, reader).await;
            }
            let info = match status {
                Ok(status) => status.into(),
                Err(_) => ExitInfo {
                    exit_code: None,
                    signal: None,
                },
            };
            *lock(&watcher.exit) = Some((info, Instant::now()));
            watcher.changed.send_modify(|v| *v += 1);
            *watcher.stdin.lock().await = None;
        });
        prune(&mut inner.jobs, Instant::now());
        inner.jobs.insert(number, job.clone());
        Ok(job)
    }

    /// The job with this id.
    pub fn get(&self, id: &str) -> Option<Arc<Job>> {
        let number: u64 = id.trim().strip_prefix('p').unwrap_or(id).parse().ok()?;
        lock(&self.inner).jobs.get(&number).cloned()
    }

    /// Every job kept, oldest first.
    pub fn list(&self) -> Vec<Arc<Job>> {
        lock(&self.inner).jobs.values().cloned().collect()
    }

    /// Stops every job: SIGTERM, then SIGKILL for those still running after
    /// `grace`. Finished jobs' groups are signalled too: what a job's shell
    /// left behind in its group must not outlive the server.
    pub async fn shutdown(&self, grace: Duration) {
        let jobs = self.list();
        for job in &jobs {
            let _ = job.signal(libc::SIGTERM);
        }
        let running: Vec<_> = jobs.iter().filter(|j| j.is_running()).collect();
        let deadline = Instant::now() + grace;
        for job in &running {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut rx = job.changed.subscribe();
            let _ = tokio::time::timeout(left, async {
                while job.is_running() && rx.changed().await.is_ok() {}
            })
            .await;
            if job.is_running() {
                let _ = job.signal(libc::SIGKILL);
            }
        }
        for job in &jobs {
            let _ = job.signal(libc::SIGKILL);
        }
    }
}

/// Drops the oldest finished jobs beyond the count and age limits (at
/// `now`), deleting their logs.
fn prune(jobs: &mut BTreeMap<u64, Arc<Job>>, now: Instant) {
    let finished: Vec<(u64, Instant)> = jobs
        .iter()
        .filter_map(|(n, j)| lock(&j.exit).map(|(_, at)| (*n, at)))
        .collect();
    let excess = finished.len().saturating_sub(KEEP_FINISHED);
    for (i, (n, at)) in finished.into_iter().enumerate() {
        if (i < excess || now.saturating_duration_since(at) > KEEP_FINISHED_FOR)
            && let Some(job) = jobs.remove(&n)
        {
            let _ = std::fs::remove_file(&job.log_path);
        }
    }
}

/// Where a job's output goes: its ring and log, waking whoever waits on it.
fn job_output(job: Arc<Job>) -> impl FnMut(&[u8]) {
    move |bytes| job.push_output(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job that finished at `at`, with a log file in `dir`.
    fn finished(n: u64, at: Instant, dir: &Path) -> Arc<Job> {
        let log_path = dir.join(format!("p{n}.log"));
        std::fs::write(&log_path, "output").unwrap();
        let job = Job::new(format!("p{n}"), 0, "true", log_path, None, None);
        let exited = ExitInfo {
            exit_code: Some(0),
            signal: None,
        };
        *lock(&job.exit) = Some((exited, at));
        Arc::new(job)
    }

    #[test]
    fn finished_jobs_are_forgotten_an_hour_after_they_end_with_their_logs() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let mut jobs = BTreeMap::new();
        jobs.insert(1, finished(1, t0, dir.path()));
        jobs.insert(2, finished(2, t0 + Duration::from_secs(1800), dir.path()));
        let (old_log, new_log) = (jobs[&1].log_path.clone(), jobs[&2].log_path.clone());

        prune(&mut jobs, t0 + KEEP_FINISHED_FOR);
        assert_eq!(jobs.len(), 2, "pruned before the hour was over");
        prune(&mut jobs, t0 + KEEP_FINISHED_FOR + Duration::from_secs(1));
        assert_eq!(jobs.keys().copied().collect::<Vec<_>>(), [2]);
        assert!(!old_log.exists(), "the pruned job's log was kept");
        assert!(new_log.exists());
    }
}
