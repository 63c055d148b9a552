//! Pseudo-terminals for background commands a model drives like a person:
//! the PTY pair, the screen as a terminal emulator shows it, and the bytes
//! named keys send.
//!
//! The PTY comes from the kernel through rustix (`posix_openpt`, then
//! `TIOCGPTPEER`); the command runs in its own session with the PTY as its
//! controlling terminal, so job control, Ctrl-C and `SIGWINCH` behave as in
//! a real terminal. The screen is emulated by `vt100`.

use std::os::fd::OwnedFd;
use std::sync::Mutex;

use tokio::io::unix::AsyncFd;

use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;

/// Columns and rows of a terminal started without a size.
pub const DEFAULT_COLS: u16 = 120;
pub const DEFAULT_ROWS: u16 = 40;
/// The largest terminal a model may ask for, in columns and rows.
pub const MAX_COLS: u16 = 1000;
pub const MAX_ROWS: u16 = 500;

/// A terminal size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TermSize {
    pub cols: u16,
    pub rows: u16,
}

impl TermSize {
    /// A size, checked: 1..=MAX_COLS columns and 1..=MAX_ROWS rows.
    pub fn new(cols: u16, rows: u16) -> Result<TermSize, String> {
        if !(1..=MAX_COLS).contains(&cols) || !(1..=MAX_ROWS).contains(&rows) {
            return Err(format!(
                "a terminal is 1 to {MAX_COLS} columns and 1 to {MAX_ROWS} rows; got {cols}x{rows}"
            ));
        }
        Ok(TermSize { cols, rows })
    }

    fn winsize(self) -> Winsize {
        Winsize {
            ws_row: self.rows,
            ws_col: self.cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        }
    }
}

impl Default for TermSize {
    fn default() -> Self {
        TermSize {
            cols: DEFAULT_COLS,
            rows: DEFAULT_ROWS,
        }
    }
}

/// Opens a PTY pair of `size`: the controller side (kept by the server)
/// and the terminal side (given to the command).
pub fn open(size: TermSize) -> std::io::Result<(OwnedFd, OwnedFd)> {
    let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    let controller = rustix::pty::openpt(flags).map_err(|e| {
        // A sandbox without terminal devices (no /dev/ptmx or devpts):
        // say so, rather than a bare "No such file or directory".
        let e = std::io::Error::from(e);
        std::io::Error::new(
            e.kind(),
            format!("no pseudo-terminal can be opened here (/dev/ptmx: {e}); run it without `pty`"),
        )
    })?;
    rustix::pty::grantpt(&controller)?;
    rustix::pty::unlockpt(&controller)?;
    let terminal = match rustix::pty::ioctl_tiocgptpeer(&controller, flags) {
        Ok(fd) => fd,
        // Kernels before 4.13: open the terminal side by its name.
        Err(_) => {
            let name = rustix::pty::ptsname(&controller, Vec::new())?;
            rustix::fs::open(
                name.as_c_str(),
                rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )?
        }
    };
    rustix::termios::tcsetwinsize(&terminal, size.winsize())?;
    Ok((controller, terminal))
}

/// setsid(1) (util-linux, or BusyBox), found on `PATH` once. A command on
/// a terminal is started as `setsid -c SHELL -c COMMAND`: setsid gives it a
/// session of its own, makes the PTY on its stdin the controlling terminal
/// (`TIOCSCTTY`) and execs the shell in the same process. A program does
/// this instead of a `pre_exec` hook, which would make the standard library
/// fork (copying the server's page tables) rather than use `posix_spawn`.
///
/// # Errors
/// `NotFound` when no `setsid` is on `PATH`.
pub fn setsid() -> std::io::Result<&'static std::path::Path> {
    static SETSID: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    SETSID
        .get_or_init(|| {
            let paths = std::env::var_os("PATH")?;
            std::env::split_paths(&paths)
                .map(|dir| dir.join("setsid"))
                .find(|path| path.is_file())
        })
        .as_deref()
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "a command on a terminal needs setsid (util-linux, or BusyBox) on PATH; \
                 run it without `pty`",
            )
        })
}

/// The server's side of a command's terminal: its screen, and the
/// controller end for input and resizing.
pub struct Terminal {
    controller: AsyncFd<OwnedFd>,
    screen: Mutex<vt100::Parser>,
}

/// What a person would see on a terminal now.
#[derive(Debug, Clone)]
pub struct Screen {
    /// One string per row, trailing blanks removed.
    pub rows: Vec<String>,
    pub size: TermSize,
    /// 0-based row and column of the cursor.
    pub cursor: (u16, u16),
    pub cursor_visible: bool,
    /// The program switched to the alternate screen (full-screen programs).
    pub alternate: bool,
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminal")
            .field("controller", self.controller.get_ref())
            .finish_non_exhaustive()
    }
}

impl Terminal {
    /// Wraps the controller end of a PTY of `size`. Must be called inside
    /// the tokio runtime.
    pub fn new(controller: OwnedFd, size: TermSize) -> std::io::Result<Terminal> {
        rustix::io::ioctl_fionbio(&controller, true)?;
        Ok(Terminal {
            // SAFETY: the Terminal owns the descriptor and neither replaces
            // nor closes it while the AsyncFd holds it.
            controller: unsafe { AsyncFd::register(controller)? },
            screen: Mutex::new(vt100::Parser::new(size.rows, size.cols, 0)),
        })
    }

    /// Reads what the command prints until every process has closed the
    /// terminal, handing each chunk to `sink`.
    pub async fn read_all(&self, mut sink: impl FnMut(&[u8])) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let Ok(mut ready) = self.controller.readable().await else {
                return;
            };
            match ready.try_io(|fd| Ok(rustix::io::read(fd.get_ref(), &mut buf[..])?)) {
                Ok(Ok(0)) => return,
                Ok(Ok(n)) => sink(&buf[..n]),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // EIO: the terminal side is closed by all.
                Ok(Err(_)) => return,
                Err(_would_block) => {}
            }
        }
    }

    /// Writes `bytes` as typed input, waiting while the terminal's buffer is
    /// full.
    pub async fn write(&self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let mut ready = self.controller.writable().await?;
            match ready.try_io(|fd| Ok(rustix::io::write(fd.get_ref(), bytes)?)) {
                Ok(Ok(n)) => bytes = &bytes[n..],
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
        Ok(())
    }

    /// Feeds output the command printed to the emulated screen.
    pub fn feed(&self, bytes: &[u8]) {
        lock(&self.screen).process(bytes);
    }

    /// The screen now.
    pub fn screen(&self) -> Screen {
        let parser = lock(&self.screen);
        let screen = parser.screen();
        let (rows, cols) = screen.size();
        Screen {
            rows: screen
                .rows(0, cols)
                .map(|r| r.trim_end().to_owned())
                .collect(),
            size: TermSize { cols, rows },
            cursor: screen.cursor_position(),
            cursor_visible: !screen.hide_cursor(),
            alternate: screen.alternate_screen(),
        }
    }

    /// Changes the terminal's size; the kernel sends SIGWINCH to the
    /// program in the foreground.
    pub fn resize(&self, size: TermSize) -> std::io::Result<()> {
        rustix::termios::tcsetwinsize(self.controller.get_ref(), size.winsize())?;
        lock(&self.screen)
            .screen_mut()
            .set_size(size.rows, size.cols);
        Ok(())
    }
}

/// Sends `signal` to every process whose session is `sid`: a shell on a
/// terminal runs each of its jobs in a process group of its own, so
/// signalling the shell's group would miss them.
pub fn kill_session(sid: u32, signal: i32) -> std::io::Result<()> {
    let mut reached = false;
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name: state ppid pgrp session ...
        let session = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(3))
            .and_then(|s| s.parse::<u32>().ok());
        // SAFETY: kill takes plain integers and touches no memory of ours.
        if session == Some(sid) && unsafe { libc::kill(pid, signal) } == 0 {
            reached = true;
        }
    }
    if reached {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(libc::ESRCH))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The bytes a terminal sends for a named key: `Enter`, `Tab`, `Escape`,
/// `Backspace`, `Delete`, `Up`/`Down`/`Left`/`Right`, `Home`, `End`,
/// `PageUp`, `PageDown`, `Insert`, `Space`, `F1`…`F12`, `C-<key>` for
/// Control (also `Ctrl-c`, `^C`) and `M-<key>` for Alt/Meta. Names are
/// case-insensitive, as in tmux's `send-keys`.
pub fn key_bytes(name: &str) -> Option<Vec<u8>> {
    let key = name.trim();
    let lower = key.to_ascii_lowercase();
    let ctrl = ["c-", "ctrl-", "ctrl+", "control-", "^"]
        .iter()
        .find_map(|p| {
            lower
                .strip_prefix(p)
                .map(|rest| &key[key.len() - rest.len()..])
        });
    if let Some(rest) = ctrl.filter(|r| !r.is_empty()) {
        return control(rest);
    }
    let meta = ["m-", "alt-", "alt+", "meta-"].iter().find_map(|p| {
        lower
            .strip_prefix(p)
            .map(|rest| &key[key.len() - rest.len()..])
    });
    if let Some(rest) = meta.filter(|r| !r.is_empty()) {
        let mut bytes = vec![0x1b];
        bytes.extend(key_bytes(rest).or_else(|| single(rest))?);
        return Some(bytes);
    }
    let seq: &[u8] = match lower.as_str() {
        "enter" | "return" | "cr" => b"\r",
        "tab" => b"\t",
        "btab" | "backtab" | "s-tab" | "shift-tab" => b"\x1b[Z",
        "escape" | "esc" => b"\x1b",
        "backspace" | "bspace" | "bs" => b"\x7f",
        "delete" | "del" | "dc" => b"\x1b[3~",
        "insert" | "ins" | "ic" => b"\x1b[2~",
        "up" => b"\x1b[A",
        "down" => b"\x1b[B",
        "right" => b"\x1b[C",
        "left" => b"\x1b[D",
        "home" => b"\x1b[H",
        "end" => b"\x1b[F",
        "pageup" | "pgup" | "ppage" => b"\x1b[5~",
        "pagedown" | "pgdn" | "npage" => b"\x1b[6~",
        "space" => b" ",
        "f1" => b"\x1bOP",
        "f2" => b"\x1bOQ",
        "f3" => b"\x1bOR",
        "f4" => b"\x1bOS",
        "f5" => b"\x1b[15~",
        "f6" => b"\x1b[17~",
        "f7" => b"\x1b[18~",
        "f8" => b"\x1b[19~",
        "f9" => b"\x1b[20~",
        "f10" => b"\x1b[21~",
        "f11" => b"\x1b[23~",
        "f12" => b"\x1b[24~",
        _ => return None,
    };
    Some(seq.to_vec())
}

/// One character typed as is (for `M-x`).
fn single(key: &str) -> Option<Vec<u8>> {
    let mut chars = key.chars();
    let c = chars.next()?;
    chars.next().is_none().then(|| c.to_string().into_bytes())
}

/// Control plus a key: `C-c` is 0x03, `C-[` is Escape, `C-?` is DEL.
fn control(key: &str) -> Option<Vec<u8>> {
    if key.eq_ignore_ascii_case("space") {
        return Some(vec![0]);
    }
    let mut chars = key.chars();
    let c = chars.next()?;
    if chars.next().is_some() {
        return None;
    }
    let byte = match c.to_ascii_uppercase() {
        c @ '@'..='_' => c as u8 & 0x1f,
        '?' => 0x7f,
        ' ' => 0,
        _ => return None,
    };
    Some(vec![byte])
}

#[cfg(test)]
mod tests {
    use super::key_bytes;

    #[test]
    fn names_keys_as_tmux_does() {
        assert_eq!(key_bytes("Enter").unwrap(), b"\r");
        assert_eq!(key_bytes("C-c").unwrap(), [3]);
        assert_eq!(key_bytes("ctrl-D").unwrap(), [4]);
        assert_eq!(key_bytes("^C").unwrap(), [3]);
        assert_eq!(key_bytes("Up").unwrap(), b"\x1b[A");
        assert_eq!(key_bytes("M-x").unwrap(), b"\x1bx");
        assert_eq!(key_bytes("C-["), Some(vec![0x1b]));
        assert_eq!(key_bytes("<Enter>"), None);
        assert_eq!(key_bytes("C-"), None);
    }
}
