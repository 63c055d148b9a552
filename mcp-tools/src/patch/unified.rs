//! Unified diffs as `diff -u` and `git diff` write them (GNU diffutils'
//! "Detailed Unified" format, with git's extended headers): several files,
//! `/dev/null` for created and deleted files, `rename from`/`rename to`,
//! `new file mode`/`old mode`/`new mode`, `\ No newline at end of file`,
//! and C-quoted paths (`"a/with space\303\251"`). Binary patches are
//! refused: they cannot be reviewed or applied as text.

use super::{FileChange, Hunk, ParseError, Patch, patch_lines, v4a::shorten};

/// One file's section of a diff, as gathered from its header lines.
#[derive(Debug, Default)]
struct Section {
    /// Paths from `diff --git a/x b/y`.
    git_paths: Option<(String, String)>,
    old: Option<String>,
    new: Option<String>,
    rename_from: Option<String>,
    rename_to: Option<String>,
    new_file_mode: Option<u32>,
    deleted: bool,
    new_mode: Option<u32>,
    hunks: Vec<Hunk>,
    /// 1-based line of the section's first header, for errors.
    line: usize,
}

/// Parses a unified diff. Text before the first file header (a commit
/// message, `git format-patch` mail headers) is skipped.
pub fn parse(text: &str) -> Result<Patch, ParseError> {
    let lines = patch_lines(text);
    let mut sections: Vec<Section> = Vec::new();
    let mut at = 0;
    while at < lines.len() {
        let line = lines[at];
        if let Some(rest) = line.strip_prefix("diff --git ") {
            sections.push(Section {
                git_paths: Some(git_header_paths(rest).ok_or_else(|| {
                    ParseError::new(
                        at + 1,
                        format!("cannot read the paths of {}", shorten(line)),
                    )
                })?),
                line: at + 1,
                ..Section::default()
            });
        } else if line.starts_with("--- ")
            && lines.get(at + 1).is_some_and(|l| l.starts_with("+++ "))
        {
            // A new section unless this `---` belongs to a `diff --git`
            // header that has not had its own yet.
            let open = sections
                .last()
                .is_some_and(|s| s.git_paths.is_some() && s.old.is_none() && s.hunks.is_empty());
            if !open {
                sections.push(Section {
                    line: at + 1,
                    ..Section::default()
                });
            }
            let section = sections.last_mut().expect("pushed above");
            section.old = Some(header_path(&line[4..], at)?);
            section.new = Some(header_path(&lines[at + 1][4..], at + 1)?);
            at += 2;
            continue;
        } else if line.starts_with("@@ ") || line == "@@" {
            let Some(section) = sections.last_mut().filter(|s| s.old.is_some()) else {
                return Err(ParseError::new(
                    at + 1,
                    "a hunk (@@) before any file header (--- a/file and +++ b/file)",
                ));
            };
            let (mut hunk, next) = parse_hunk(&lines, at)?;
            hunk.header = format!("hunk {} ({})", section.hunks.len() + 1, hunk.header);
            section.hunks.push(hunk);
            at = next;
            continue;
        } else if line.starts_with("GIT binary patch") || line.starts_with("Binary files ") {
            let path = sections
                .last()
                .and_then(|s| s.git_paths.as_ref().map(|p| p.1.clone()).or(s.new.clone()))
                .unwrap_or_else(|| "a file".to_owned());
            return Err(ParseError::new(
                at + 1,
                format!(
                    "binary patches are not supported ({path}); write binary files with \
                     run_command (e.g. base64 -d > file)"
                ),
            ));
        } else if let Some(section) = sections
            .last_mut()
            .filter(|s| s.git_paths.is_some() && s.hunks.is_empty())
        {
            // git's extended header lines.
            if let Some(p) = line.strip_prefix("rename from ") {
                section.rename_from = Some(unquote(p).ok_or_else(|| bad_quote(at, line))?);
            } else if let Some(p) = line.strip_prefix("rename to ") {
                section.rename_to = Some(unquote(p).ok_or_else(|| bad_quote(at, line))?);
            } else if let Some(m) = line.strip_prefix("new file mode ") {
                section.new_file_mode = Some(mode(m, at)?);
            } else if line.starts_with("deleted file mode ") {
                section.deleted = true;
            } else if let Some(m) = line.strip_prefix("new mode ") {
                section.new_mode = Some(mode(m, at)?);
            } else if line.starts_with("copy from ") || line.starts_with("copy to ") {
                return Err(ParseError::new(
                    at + 1,
                    "copies (git diff -C) are not supported; write the diff without -C",
                ));
            }
        }
        at += 1;
    }
    let files = sections
        .into_iter()
        .map(into_change)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Patch { files })
}

fn into_change(s: Section) -> Result<FileChange, ParseError> {
    let strip =
        |p: &str, prefix: &str| -> String { p.strip_prefix(prefix).unwrap_or(p).to_owned() };
    // `--- a/x` / `+++ b/y` name paths with git's prefixes; `diff -u`
    // names them as given. Strip a/ and b/ only when both sides carry them.
    let prefixed = |old: &str, new: &str| {
        (old == "/dev/null" || old.starts_with("a/"))
            && (new == "/dev/null" || new.starts_with("b/"))
    };
    let (old, new) = match (&s.old, &s.new, &s.git_paths) {
        (Some(o), Some(n), _) if prefixed(o, n) => (strip(o, "a/"), strip(n, "b/")),
        (Some(o), Some(n), _) => (o.clone(), n.clone()),
        (_, _, Some((o, n))) => (
            s.rename_from.clone().unwrap_or_else(|| o.clone()),
            s.rename_to.clone().unwrap_or_else(|| n.clone()),
        ),
        _ => return Err(ParseError::new(s.line, "a file section without paths")),
    };
    let created = old == "/dev/null"
        || (s.new_file_mode.is_some() && s.hunks.iter().all(|h| h.old.is_empty()));
    let deleted = new == "/dev/null" || s.deleted;
    if created {
        let mut lines = Vec::new();
        let mut no_final_newline = false;
        for h in &s.hunks {
            lines.extend(h.new.iter().cloned());
            no_final_newline = h.new_no_newline;
        }
        return Ok(FileChange::Add {
            path: new,
            lines,
            no_final_newline,
            mode: s.new_file_mode,
        });
    }
    if deleted {
        return Ok(FileChange::Delete { path: old });
    }
    let move_to = (old != new).then(|| new.clone());
    if s.hunks.is_empty() && move_to.is_none() && s.new_mode.is_none() {
        return Err(ParseError::new(
            s.line,
            format!("the section for {old} changes nothing (no hunk, rename or mode)"),
        ));
    }
    Ok(FileChange::Update {
        path: old,
        move_to,
        hunks: s.hunks,
        mode: s.new_mode,
    })
}

/// Parses the hunk whose `@@ -a,b +c,d @@` header is at `lines[at]`, reading
/// as many lines as its counts say. Returns it and the next line's index.
fn parse_hunk(lines: &[&str], at: usize) -> Result<(Hunk, usize), ParseError> {
    let header = lines[at];
    let ranges = header
        .strip_prefix("@@ ")
        .and_then(|r| r.split_once(" @@"))
        .map(|(r, _)| r);
    let parsed = ranges.and_then(|r| {
        let (old, new) = r.split_once(' ')?;
        Some((
            range(old.strip_prefix('-')?)?,
            range(new.strip_prefix('+')?)?,
        ))
    });
    let Some(((old_start, mut old_left), (_, mut new_left))) = parsed else {
        return Err(ParseError::new(
            at + 1,
            format!(
                "a unified hunk header reads \"@@ -start,count +start,count @@\", found {}",
                shorten(header)
            ),
        ));
    };
    let mut hunk = Hunk {
        header: header
            .split_once(" @@")
            .map_or(header, |(h, _)| h)
            .to_owned()
            + " @@",
        // `-0,0` (an empty old side) inserts after line 0.
        old_start: Some(if old_left == 0 {
            old_start + 1
        } else {
            old_start
        }),
        ..Hunk::default()
    };
    let mut i = at + 1;
    let mut last_kind = ' ';
    while old_left > 0 || new_left > 0 || lines.get(i).is_some_and(|l| l.starts_with('\\')) {
        let Some(&line) = lines.get(i) else {
            return Err(ParseError::new(
                i,
                format!(
                    "{} ends early: {old_left} old and {new_left} new lines are missing",
                    hunk.header
                ),
            ));
        };
        let (kind, text) = match line.chars().next() {
            // Some tools strip the space of an empty context line.
            None => (' ', ""),
            Some(c) => (c, &line[1..]),
        };
        match kind {
            ' ' if old_left > 0 && new_left > 0 => {
                hunk.context_of.push(Some(hunk.old.len()));
                hunk.old.push(text.to_owned());
                hunk.new.push(text.to_owned());
                old_left -= 1;
                new_left -= 1;
            }
            '-' if old_left > 0 => {
                hunk.old.push(text.to_owned());
                hunk.removed += 1;
                old_left -= 1;
            }
            '+' if new_left > 0 => {
                hunk.new.push(text.to_owned());
                hunk.context_of.push(None);
                hunk.added += 1;
                new_left -= 1;
            }
            '\\' => {
                match last_kind {
                    '-' => hunk.old_no_newline = true,
                    '+' => hunk.new_no_newline = true,
                    _ => {
                        hunk.old_no_newline = true;
                        hunk.new_no_newline = true;
                    }
                }
                i += 1;
                continue;
            }
            _ => {
                return Err(ParseError::new(
                    i + 1,
                    format!(
                        "{} does not match its line counts ({old_left} old and {new_left} new \
                         lines still expected), found {}",
                        hunk.header,
                        shorten(line)
                    ),
                ));
            }
        }
        last_kind = kind;
        i += 1;
    }
    Ok((hunk, i))
}

/// `start,count` or `start` (count 1).
fn range(r: &str) -> Option<(usize, usize)> {
    match r.split_once(',') {
        Some((s, c)) => Some((s.parse().ok()?, c.parse().ok()?)),
        None => Some((r.parse().ok()?, 1)),
    }
}

fn mode(text: &str, at: usize) -> Result<u32, ParseError> {
    u32::from_str_radix(text.trim(), 8)
        .map(|m| m & 0o7777)
        .map_err(|_| ParseError::new(at + 1, format!("not an octal file mode: {}", shorten(text))))
}

/// The path of a `---`/`+++` line: quoted or not, without the timestamp
/// `diff -u` puts after a tab.
fn header_path(text: &str, at: usize) -> Result<String, ParseError> {
    let text = text.trim_end();
    if text.starts_with('"') {
        return unquote(text).ok_or_else(|| bad_quote(at, text));
    }
    let path = text.split('\t').next().unwrap_or(text).trim_end();
    if path.is_empty() {
        return Err(ParseError::new(at + 1, "a file header without a path"));
    }
    Ok(path.to_owned())
}

/// The two paths of `diff --git a/x b/y` (either may be quoted), without
/// their a/ and b/ prefixes.
fn git_header_paths(rest: &str) -> Option<(String, String)> {
    let (old, new) = if rest.starts_with('"') {
        let end = closing_quote(rest)?;
        (
            unquote(&rest[..=end])?,
            unquote(rest[end + 1..].trim_start())?,
        )
    } else if let Some(body) = rest.strip_suffix('"') {
        let start = body.rfind(" \"")?;
        (rest[..start].to_owned(), unquote(&rest[start + 1..])?)
    } else {
        // Unquoted: "a/x b/x"; the halves are the same length when the
        // path is unchanged, which settles paths with spaces.
        let half = rest.len() / 2;
        let same_path = rest.len() % 2 == 1
            && half >= 2
            && rest.is_char_boundary(half)
            && rest.as_bytes()[half] == b' '
            && rest.get(2..half) == rest.get(half + 3..);
        if same_path {
            (rest[..half].to_owned(), rest[half + 1..].to_owned())
        } else {
            let (o, n) = rest.split_once(" b/")?;
            (o.to_owned(), format!("b/{n}"))
        }
    };
    let strip = |p: &str, prefix: &str| p.strip_prefix(prefix).unwrap_or(p).to_owned();
    Some((strip(&old, "a/"), strip(&new, "b/")))
}

fn closing_quote(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// Undoes git's C-style quoting of a path (`"tab\there \303\251"`); an
/// unquoted path is returned as is.
fn unquote(text: &str) -> Option<String> {
    let text = text.trim();
    let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) else {
        return Some(text.to_owned());
    };
    let mut bytes = Vec::with_capacity(inner.len());
    let mut it = inner.bytes().peekable();
    while let Some(b) = it.next() {
        if b != b'\\' {
            bytes.push(b);
            continue;
        }
        let e = it.next()?;
        bytes.push(match e {
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'a' => 0x07,
            b'b' => 0x08,
            b'f' => 0x0c,
            b'v' => 0x0b,
            b'"' | b'\\' => e,
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    let d = it.next_if(|d| (b'0'..=b'7').contains(d))?;
                    v = v * 8 + u32::from(d - b'0');
                }
                u8::try_from(v).ok()?
            }
            _ => return None,
        });
    }
    String::from_utf8(bytes).ok()
}

fn bad_quote(at: usize, line: &str) -> ParseError {
    ParseError::new(
        at + 1,
        format!("cannot read the quoted path in {}", shorten(line)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_git_diff_with_rename_mode_and_no_newline() {
        let diff = "diff --git a/old.txt b/new.txt\nsimilarity index 80%\nrename from old.txt\n\
                    rename to new.txt\nindex 1..2 100644\n--- a/old.txt\n+++ b/new.txt\n\
                    @@ -1,2 +1,2 @@\n keep\n-x\n\\ No newline at end of file\n+y\n\
                    diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n\
                    diff --git \"a/sp ace\\303\\251\" \"b/sp ace\\303\\251\"\nnew file mode 100644\n\
                    --- /dev/null\n+++ \"b/sp ace\\303\\251\"\n@@ -0,0 +1 @@\n+hi\n";
        let patch = parse(diff).unwrap();
        assert_eq!(patch.files.len(), 3);
        let FileChange::Update {
            path,
            move_to,
            hunks,
            ..
        } = &patch.files[0]
        else {
            panic!()
        };
        assert_eq!(
            (path.as_str(), move_to.as_deref()),
            ("old.txt", Some("new.txt"))
        );
        assert!(hunks[0].old_no_newline && !hunks[0].new_no_newline);
        assert_eq!(
            patch.files[1],
            FileChange::Update {
                path: "run.sh".into(),
                move_to: None,
                hunks: vec![],
                mode: Some(0o755)
            }
        );
        let FileChange::Add { path, lines, .. } = &patch.files[2] else {
            panic!()
        };
        assert_eq!(
            (path.as_str(), lines.as_slice()),
            ("sp aceé", &["hi".to_owned()][..])
        );
    }

    #[test]
    fn refuses_binary_patches() {
        let diff = "diff --git a/x.png b/x.png\nindex 1..2 100644\nBinary files a/x.png and b/x.png differ\n";
        assert!(parse(diff).unwrap_err().message.contains("binary"));
    }

    #[test]
    fn reads_plain_diff_u_with_timestamps() {
        let diff =
            "--- f.txt\t2024-01-01 00:00:00\n+++ f.txt\t2024-01-02 00:00:00\n@@ -1 +1 @@\n-a\n+b\n";
        let patch = parse(diff).unwrap();
        assert_eq!(patch.files[0].path(), "f.txt");
    }
}
