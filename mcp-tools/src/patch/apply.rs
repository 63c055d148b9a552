//! Applying hunks to a file's text.
//!
//! Each hunk's old lines are searched for in the file, strictest match
//! first, as Codex's `apply_patch` does: exact, then ignoring trailing
//! whitespace, then ignoring surrounding whitespace, then also treating
//! typographic dashes, quotes and spaces as their ASCII forms. Context
//! lines keep the file's own text; only removed and added lines change.
//! When a hunk is not found, the error names the closest near-match.

use super::Hunk;

/// A text file as lines, with what is needed to write it back unchanged
/// apart from the edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    pub lines: Vec<String>,
    /// Lines end with `\r\n`.
    pub crlf: bool,
    /// The last line ends with a newline.
    pub final_newline: bool,
    /// The file starts with a UTF-8 byte order mark.
    pub bom: bool,
}

impl Text {
    /// Splits `text` into lines; the line ending is taken from the first line.
    pub fn parse(text: &str) -> Text {
        let (bom, text) = match text.strip_prefix('\u{feff}') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let crlf = text
            .split_once('\n')
            .is_some_and(|(l, _)| l.ends_with('\r'));
        let final_newline = text.ends_with('\n');
        let body = text.strip_suffix('\n').unwrap_or(text);
        let lines = if text.is_empty() {
            Vec::new()
        } else {
            body.split('\n')
                .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
                .collect()
        };
        Text {
            lines,
            crlf,
            final_newline,
            bom,
        }
    }

    /// A new file's text: `\n` endings, a final newline unless told.
    pub fn new_file(lines: Vec<String>, no_final_newline: bool) -> Text {
        Text {
            final_newline: !no_final_newline && !lines.is_empty(),
            lines,
            crlf: false,
            bom: false,
        }
    }

    /// The file's bytes.
    pub fn render(&self) -> String {
        let eol = if self.crlf { "\r\n" } else { "\n" };
        let mut out = String::new();
        if self.bom {
            out.push('\u{feff}');
        }
        out.push_str(&self.lines.join(eol));
        if self.final_newline && !self.lines.is_empty() {
            out.push_str(eol);
        }
        out
    }
}

/// Why a hunk could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HunkError {
    /// A V4A `@@ <anchor>` line is not in the file (after the previous hunk).
    AnchorNotFound { hunk: String, anchor: String },
    /// The hunk's old lines are not in the file.
    NoMatch {
        hunk: String,
        /// The hunk's first old line.
        first: String,
        near: Option<Box<NearMatch>>,
    },
}

/// The place a hunk nearly matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NearMatch {
    /// 1-based file line where the near-match starts.
    pub line: usize,
    /// Hunk lines that match there, of `of`.
    pub matched: usize,
    pub of: usize,
    /// 1-based file line of the first difference.
    pub differs_at: usize,
    /// The hunk's line that did not match.
    pub expected: String,
    /// What the file has there (None past its end).
    pub found: Option<String>,
}

impl std::fmt::Display for HunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HunkError::AnchorNotFound { hunk, anchor } => write!(
                f,
                "{hunk}: the @@ line {anchor:?} is not in the file (after the previous hunk)"
            ),
            HunkError::NoMatch { hunk, first, near } => {
                write!(
                    f,
                    "{hunk}: its context and removed lines are not in the file"
                )?;
                match near {
                    Some(n) => {
                        write!(
                            f,
                            "; nearest match at line {} ({} of {} lines match): line {} should be {:?}",
                            n.line, n.matched, n.of, n.differs_at, n.expected
                        )?;
                        match &n.found {
                            Some(found) => write!(f, " but is {found:?}"),
                            None => write!(f, " but the file ends before it"),
                        }
                    }
                    None => write!(f, "; not even its first line {first:?} was found"),
                }
            }
        }
    }
}

/// Comparison levels, strictest first.
const LEVELS: usize = 4;

fn same(a: &str, b: &str, level: usize) -> bool {
    match level {
        0 => a == b,
        1 => a.trim_end() == b.trim_end(),
        2 => a.trim() == b.trim(),
        _ => a
            .trim()
            .chars()
            .map(ascii_form)
            .eq(b.trim().chars().map(ascii_form)),
    }
}

/// Typographic punctuation and odd spaces as their ASCII look-alikes.
fn ascii_form(c: char) -> char {
    match c {
        '\u{2010}'..='\u{2015}' | '\u{2212}' => '-',
        '\u{2018}'..='\u{201B}' => '\'',
        '\u{201C}'..='\u{201F}' => '"',
        '\u{00A0}' | '\u{2002}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}' => ' ',
        c => c,
    }
}

fn matches_at(lines: &[String], pattern: &[String], at: usize, level: usize) -> bool {
    pattern
        .iter()
        .zip(&lines[at..])
        .all(|(p, l)| same(l, p, level))
}

/// Where `pattern` occurs in `lines` at or after `from`: the strictest level
/// that finds it wins; within a level, the end of the file when `at_eof`,
/// else the place nearest `hint` (0-based), else the first.
fn seek(
    lines: &[String],
    pattern: &[String],
    from: usize,
    at_eof: bool,
    hint: Option<usize>,
) -> Option<usize> {
    if pattern.len() > lines.len().saturating_sub(from) {
        return None;
    }
    let last = lines.len() - pattern.len();
    for level in 0..LEVELS {
        if at_eof && matches_at(lines, pattern, last, level) {
            return Some(last);
        }
        let mut found = (from..=last).filter(|&i| matches_at(lines, pattern, i, level));
        let best = match hint {
            Some(h) => found.min_by_key(|&i| i.abs_diff(h)),
            None => found.next(),
        };
        if best.is_some() {
            return best;
        }
    }
    None
}

/// Where `pattern` nearly occurs: the start with the most lines matching
/// at the loosest level (ties go to the place nearest `near`).
fn nearest(lines: &[String], pattern: &[String], near: usize) -> Option<NearMatch> {
    // Bounded work: a huge file and hunk get no suggestion, not a stall.
    if lines.len().saturating_mul(pattern.len()) > 20_000_000 || pattern.is_empty() {
        return None;
    }
    // Every start where the hunk fits, or the first line when none does.
    let starts = (lines.len() + 1).saturating_sub(pattern.len()).max(1);
    let mut best: Option<(usize, usize)> = None;
    for i in 0..starts {
        let score = pattern
            .iter()
            .zip(lines.get(i..).unwrap_or(&[]))
            .filter(|(p, l)| same(l, p, LEVELS - 1))
            .count();
        let better = match best {
            None => score > 0,
            Some((b, s)) => score > s || (score == s && i.abs_diff(near) < b.abs_diff(near)),
        };
        if better {
            best = Some((i, score));
        }
    }
    let (start, matched) = best?;
    let j = (0..pattern.len()).find(|&j| {
        lines
            .get(start + j)
            .is_none_or(|l| !same(l, &pattern[j], LEVELS - 1))
    })?;
    Some(NearMatch {
        line: start + 1,
        matched,
        of: pattern.len(),
        differs_at: start + j + 1,
        expected: pattern[j].clone(),
        found: lines.get(start + j).cloned(),
    })
}

/// Applies `hunks`, in order, to `text`. Nothing changes unless every hunk
/// applies.
pub fn apply_hunks(text: &mut Text, hunks: &[Hunk]) -> Result<(), HunkError> {
    let lines = &text.lines;
    let mut cursor = 0;
    // (start, old length, new lines) in the original numbering.
    let mut edits: Vec<(usize, usize, Vec<String>)> = Vec::new();
    let mut final_newline = text.final_newline;
    for hunk in hunks {
        for anchor in &hunk.anchors {
            let found = (cursor..lines.len()).find(|&i| same(&lines[i], anchor, LEVELS - 1));
            let Some(i) = found else {
                return Err(HunkError::AnchorNotFound {
                    hunk: hunk.header.clone(),
                    anchor: anchor.clone(),
                });
            };
            cursor = i + 1;
        }
        let hint = hunk.old_start.map(|s| s.saturating_sub(1));
        let (start, old_len, new) = if hunk.old.is_empty() {
            // Pure addition: after the anchor, at the header's line, or
            // at the end of the file.
            let at = if !hunk.anchors.is_empty() {
                cursor
            } else if let Some(h) = hint {
                h.clamp(cursor, lines.len())
            } else {
                lines.len()
            };
            (at, 0, hunk.new.clone())
        } else {
            let mut old = hunk.old.as_slice();
            let mut new = hunk.new.as_slice();
            let mut at = seek(lines, old, cursor, hunk.at_eof, hint);
            // A trailing empty context line is often an artefact of how
            // the patch was written; try without it.
            if at.is_none() && old.last().is_some_and(String::is_empty) {
                old = &old[..old.len() - 1];
                if new.last().is_some_and(String::is_empty) {
                    new = &new[..new.len() - 1];
                }
                at = seek(lines, old, cursor, hunk.at_eof, hint);
            }
            let Some(at) = at else {
                return Err(HunkError::NoMatch {
                    hunk: hunk.header.clone(),
                    first: hunk.old[0].clone(),
                    near: nearest(lines, &hunk.old, hint.unwrap_or(cursor)).map(Box::new),
                });
            };
            // Context lines keep the file's text (whitespace, punctuation).
            let new = new
                .iter()
                .enumerate()
                .map(
                    |(k, line)| match hunk.context_of.get(k).copied().flatten() {
                        Some(j) if j < old.len() => lines[at + j].clone(),
                        _ => line.clone(),
                    },
                )
                .collect::<Vec<String>>();
            (at, old.len(), new)
        };
        if start + old_len == lines.len() {
            if hunk.new_no_newline {
                final_newline = false;
            } else if hunk.old_no_newline || lines.is_empty() {
                final_newline = true;
            }
        }
        cursor = start + old_len;
        edits.push((start, old_len, new));
    }
    for (start, old_len, new) in edits.into_iter().rev() {
        text.lines.splice(start..start + old_len, new);
    }
    text.final_newline = final_newline;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hunk(old: &[&str], new: &[&str], context_of: &[Option<usize>]) -> Hunk {
        Hunk {
            header: "hunk 1".into(),
            old: old.iter().map(|s| (*s).to_owned()).collect(),
            new: new.iter().map(|s| (*s).to_owned()).collect(),
            context_of: context_of.to_vec(),
            ..Hunk::default()
        }
    }

    #[test]
    fn keeps_crlf_bom_and_missing_final_newline() {
        let mut t = Text::parse("\u{feff}a\r\nb\r\nc");
        apply_hunks(&mut t, &[hunk(&["b"], &["B"], &[None])]).unwrap();
        assert_eq!(t.render(), "\u{feff}a\r\nB\r\nc");
    }

    #[test]
    fn tolerates_trailing_space_and_unicode_punctuation_and_keeps_context_text() {
        let mut t = Text::parse("let s = \u{201C}hi\u{201D};  \nold\n");
        let h = hunk(
            &["let s = \"hi\";", "old"],
            &["let s = \"hi\";", "new"],
            &[Some(0), None],
        );
        apply_hunks(&mut t, &[h]).unwrap();
        assert_eq!(t.render(), "let s = \u{201C}hi\u{201D};  \nnew\n");
    }

    #[test]
    fn names_the_nearest_match() {
        let mut t = Text::parse("one\ntwo\nthree\nfour\n");
        let err = apply_hunks(&mut t, &[hunk(&["two", "THREE"], &["x"], &[])]).unwrap_err();
        let HunkError::NoMatch {
            near: Some(near), ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!((near.line, near.differs_at), (2, 3));
        assert_eq!(near.found.as_deref(), Some("three"));
    }

    #[test]
    fn end_of_file_hunks_match_the_end() {
        let mut t = Text::parse("x\nend\nx\nend\n");
        let mut h = hunk(&["end"], &["END"], &[]);
        h.at_eof = true;
        apply_hunks(&mut t, &[h]).unwrap();
        assert_eq!(t.render(), "x\nend\nx\nEND\n");
    }
}
