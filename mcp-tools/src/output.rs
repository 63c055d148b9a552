//! Bounded output: what a tool returns must fit in a model's context, and
//! what a command prints must not exhaust the server's memory.

use std::collections::VecDeque;

/// Keeps the first `head` and the last `tail` bytes of a stream of any
/// length, and counts what was dropped between them. Memory stays bounded
/// however much the stream carries.
#[derive(Debug)]
pub struct HeadTail {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    head_cap: usize,
    tail_cap: usize,
    total: u64,
}

impl HeadTail {
    /// Keeps at most `limit` bytes, half from the start and half from the end.
    pub fn new(limit: usize) -> Self {
        let head_cap = limit / 2;
        HeadTail {
            head: Vec::new(),
            tail: VecDeque::new(),
            head_cap,
            tail_cap: limit - head_cap,
            total: 0,
        }
    }

    pub fn push(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let room = self.head_cap - self.head.len();
        if room > 0 {
            let take = room.min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        if bytes.len() >= self.tail_cap {
            self.tail.clear();
            self.tail.extend(&bytes[bytes.len() - self.tail_cap..]);
            return;
        }
        let overflow = (self.tail.len() + bytes.len()).saturating_sub(self.tail_cap);
        self.tail.drain(..overflow);
        self.tail.extend(bytes);
    }

    /// Bytes seen in all.
    #[cfg(test)]
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes dropped from the middle.
    pub fn cut(&self) -> u64 {
        self.total - (self.head.len() + self.tail.len()) as u64
    }

    /// The kept text, with a marker where the middle was cut. Invalid UTF-8
    /// is shown lossily, one U+FFFD per invalid byte; a character split by
    /// the cut is dropped whole, so the cut adds no U+FFFD.
    pub fn render(&self) -> String {
        let cut = self.cut();
        let (a, b) = self.tail.as_slices();
        if cut == 0 {
            // Head and tail are one stream: a character may straddle them.
            return String::from_utf8_lossy(&[&self.head, a, b].concat()).into_owned();
        }
        let head = &self.head[..self.head.len() - unfinished_char_len(&self.head)];
        let tail = [a, b].concat();
        let tail = &tail[continuation_bytes_at_start(&tail)..];
        format!(
            "{}\n[... {cut} bytes cut from the middle ...]\n{}",
            String::from_utf8_lossy(head),
            String::from_utf8_lossy(tail)
        )
    }
}

/// Length of the character that `bytes` ends inside of: a UTF-8 lead byte
/// followed by fewer continuation bytes than it announces (0 when `bytes`
/// ends on a boundary, or in bytes that are invalid anyway).
pub fn unfinished_char_len(bytes: &[u8]) -> usize {
    let Some(back) = bytes.iter().rev().take(4).position(|b| b & 0xC0 != 0x80) else {
        return 0;
    };
    let start = bytes.len() - 1 - back;
    match std::str::from_utf8(&bytes[start..]) {
        Err(e) if e.error_len().is_none() => bytes.len() - start,
        _ => 0,
    }
}

/// Number of UTF-8 continuation bytes (at most 3) that `bytes` starts with:
/// the rest of a character whose start was cut off.
pub fn continuation_bytes_at_start(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take(3)
        .take_while(|b| *b & 0xC0 == 0x80)
        .count()
}

/// How much of a file is sniffed to tell text from binary.
pub const SNIFF_BYTES: usize = 8192;

/// A file is binary when its first bytes hold a NUL, as git and ripgrep judge.
pub fn looks_binary(prefix: &[u8]) -> bool {
    prefix[..prefix.len().min(SNIFF_BYTES)].contains(&0)
}

/// Cuts `line` to `max_chars` characters, marking the cut.
pub fn cap_line(line: &str, max_chars: usize) -> std::borrow::Cow<'_, str> {
    match line.char_indices().nth(max_chars) {
        None => std::borrow::Cow::Borrowed(line),
        Some((at, _)) => {
            let rest = line[at..].chars().count();
            std::borrow::Cow::Owned(format!("{}... [{rest} more characters]", &line[..at]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_tail_keeps_both_ends_and_counts_the_cut() {
        let mut ht = HeadTail::new(10);
        for chunk in [b"0123".as_slice(), b"456789abcdef", b"ghij"] {
            ht.push(chunk);
        }
        assert_eq!(ht.total(), 20);
        assert_eq!(ht.cut(), 10);
        assert_eq!(
            ht.render(),
            "01234\n[... 10 bytes cut from the middle ...]\nfghij"
        );
    }

    #[test]
    fn head_tail_small_input_is_whole() {
        let mut ht = HeadTail::new(100);
        ht.push(b"hello ");
        ht.push(b"world");
        assert_eq!(ht.render(), "hello world");
        assert_eq!(ht.cut(), 0);
    }

    #[test]
    fn head_tail_cuts_between_characters() {
        // "€" is 3 bytes: with a 4-byte head, the second one is split.
        let mut ht = HeadTail::new(8);
        ht.push("€€€€€€€€".as_bytes());
        let shown = ht.render();
        assert!(!shown.contains('\u{FFFD}'), "{shown:?}");
        assert!(
            shown.starts_with("€\n") && shown.ends_with("\n€"),
            "{shown:?}"
        );
        // Whole output split between head and tail is shown as one.
        let mut ht = HeadTail::new(8);
        ht.push("ab€€".as_bytes());
        assert_eq!(ht.render(), "ab€€");
    }

    #[test]
    fn unfinished_characters_are_found_at_either_end() {
        assert_eq!(unfinished_char_len(b"ab"), 0);
        assert_eq!(unfinished_char_len("a€".as_bytes()), 0);
        assert_eq!(unfinished_char_len(&"a€".as_bytes()[..3]), 2);
        assert_eq!(unfinished_char_len(&"😀".as_bytes()[..3]), 3);
        assert_eq!(unfinished_char_len(b"a\xff"), 0);
        assert_eq!(unfinished_char_len(b"\x80\x80\x80\x80"), 0);
        assert_eq!(continuation_bytes_at_start(&"😀".as_bytes()[1..]), 3);
        assert_eq!(continuation_bytes_at_start(b"\x80\x80\x80\x80"), 3);
        assert_eq!(continuation_bytes_at_start("é".as_bytes()), 0);
    }

    #[test]
    fn cap_line_marks_the_cut() {
        assert_eq!(cap_line("abc", 5), "abc");
        assert_eq!(cap_line("abcdef", 3), "abc... [3 more characters]");
    }
}

/// `t` as an RFC 3339 UTC timestamp to the second, e.g. `2026-11-26T12:00:00Z`.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn rfc3339_formats_known_instants() {
        use std::time::{Duration, UNIX_EPOCH};
        assert_eq!(super::rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_694_400);
        assert_eq!(super::rfc3339(t), "2026-11-26T12:00:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(super::rfc3339(leap), "2000-02-29T00:00:00Z");
    }
}

/// `text` without terminal escape sequences (CSI such as colours and
/// cursor moves, OSC such as window titles, and two-byte escapes), and with
/// the carriage returns a terminal puts before line feeds removed.
pub fn strip_ansi(text: &str) -> String {
    static ESCAPES: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[P^_][^\x1b]*\x1b\\|\x1b[ -/]*[0-~]|\r+(?:\n)",
        )
        .expect("a valid pattern")
    });
    ESCAPES
        .replace_all(
            text,
            |c: &regex::Captures<'_>| {
                if c[0].ends_with('\n') { "\n" } else { "" }
            },
        )
        .into_owned()
}

#[cfg(test)]
mod ansi_tests {
    #[test]
    fn strip_ansi_removes_escapes_and_keeps_text() {
        let raw = "\x1b[1;32mok\x1b[0m done\r\n\x1b]0;title\x07>>> \x1b[?2004h1+1\r\n";
        assert_eq!(super::strip_ansi(raw), "ok done\n>>> 1+1\n");
    }
}
