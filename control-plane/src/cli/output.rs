//! What the commands share for printing: JSON, shell quoting, times, and a
//! spinner while the control plane works.

use std::io::{IsTerminal, Write};
use std::time::Duration;

/// Seconds from now until Unix time `at` (0 if it passed).
pub(super) fn seconds_until(at: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    (at - now).max(0)
}

/// Prints `v` as pretty JSON on stdout.
pub(super) fn print_json<T: serde::Serialize>(v: &T) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot print JSON: {e}"),
    }
}

/// Quotes `s` for a POSIX shell when it needs it.
pub(super) fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Shows a spinner on stderr while `fut` runs, when stderr is a terminal.
pub(super) async fn with_spinner<T>(label: &str, fut: impl std::future::Future<Output = T>) -> T {
    if !std::io::stderr().is_terminal() {
        return fut.await;
    }
    let label = label.to_string();
    let spinner = tokio::spawn(async move {
        let frames = ['|', '/', '-', '\\'];
        let mut i = 0;
        loop {
            eprint!("\r{} {label}...", frames[i % frames.len()]);
            let _ = std::io::stderr().flush();
            i += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let out = fut.await;
    spinner.abort();
    eprint!("\r\x1b[2K");
    let _ = std::io::stderr().flush();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_leaves_plain_words_and_quotes_the_rest() {
        assert_eq!(shell_quote("ls"), "ls");
        assert_eq!(shell_quote("a/b.txt"), "a/b.txt");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }
}
