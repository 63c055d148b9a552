//! The V4A patch format of OpenAI's Codex CLI, as its published
//! `apply_patch` instructions define it:
//!
//! ```text
//! *** Begin Patch
//! *** Add File: <path>          then "+" lines: the new file
//! *** Delete File: <path>
//! *** Update File: <path>
//! *** Move to: <new path>       optional, right after Update File
//! @@ <anchor line>              optional anchor(s); a bare "@@" starts a hunk
//!  context / -removed / +added  lines of the hunk
//! *** End of File               optional: the hunk ends the file
//! *** End Patch
//! ```
//!
//! As Codex does, marker lines may carry stray surrounding whitespace, the
//! first hunk of an update may omit its `@@`, and an empty line in a hunk is
//! an empty context line.

use super::{FileChange, Hunk, ParseError, Patch, patch_lines};

const BEGIN: &str = "*** Begin Patch";
const END: &str = "*** End Patch";
const ADD: &str = "*** Add File: ";
const DELETE: &str = "*** Delete File: ";
const UPDATE: &str = "*** Update File: ";
const MOVE: &str = "*** Move to: ";
const END_OF_FILE: &str = "*** End of File";

/// True when `line` opens a V4A patch.
pub fn starts_patch(line: &str) -> bool {
    line.trim() == BEGIN
}

/// Parses a whole V4A patch, from `*** Begin Patch` to `*** End Patch`.
/// Text after `*** End Patch` is refused, as is a patch without it (a
/// patch cut short must not be half applied).
pub fn parse(text: &str) -> Result<Patch, ParseError> {
    let lines = patch_lines(text);
    let mut at = lines.iter().position(|l| !l.trim().is_empty()).unwrap_or(0);
    if !starts_patch(lines.get(at).copied().unwrap_or("")) {
        return Err(ParseError::new(at + 1, format!("expected {BEGIN:?}")));
    }
    at += 1;
    let mut files = Vec::new();
    loop {
        let Some(&line) = lines.get(at) else {
            return Err(ParseError::new(
                at,
                format!("the patch ends without {END:?} (was it cut short?)"),
            ));
        };
        let marker = line.trim();
        if marker == END {
            if let Some(extra) = lines[at + 1..].iter().position(|l| !l.trim().is_empty()) {
                return Err(ParseError::new(
                    at + 2 + extra,
                    format!("text after {END:?}; send one patch per call"),
                ));
            }
            return Ok(Patch { files });
        }
        if let Some(path) = marker.strip_prefix(ADD.trim_end()) {
            let path = file_path(path, at)?;
            at += 1;
            let mut body = Vec::new();
            while let Some(l) = lines.get(at) {
                if l.trim_start().starts_with("***") {
                    break;
                }
                let Some(content) = l.strip_prefix('+') else {
                    return Err(ParseError::new(
                        at + 1,
                        format!(
                            "every line of an added file starts with '+' (in {path}): {}",
                            shorten(l)
                        ),
                    ));
                };
                body.push(content.to_owned());
                at += 1;
            }
            files.push(FileChange::Add {
                path,
                lines: body,
                no_final_newline: false,
                mode: None,
            });
        } else if let Some(path) = marker.strip_prefix(DELETE.trim_end()) {
            files.push(FileChange::Delete {
                path: file_path(path, at)?,
            });
            at += 1;
        } else if let Some(path) = marker.strip_prefix(UPDATE.trim_end()) {
            let path = file_path(path, at)?;
            at += 1;
            let mut move_to = None;
            if let Some(dest) = lines
                .get(at)
                .and_then(|l| l.trim().strip_prefix(MOVE.trim_end()))
            {
                move_to = Some(file_path(dest, at)?);
                at += 1;
            }
            let (hunks, next) = parse_hunks(&lines, at, &path)?;
            if hunks.is_empty() && move_to.is_none() {
                return Err(ParseError::new(
                    at + 1,
                    format!("*** Update File: {path} has no hunk (add @@ and -/+ lines)"),
                ));
            }
            at = next;
            files.push(FileChange::Update {
                path,
                move_to,
                hunks,
                mode: None,
            });
        } else if marker.is_empty() {
            at += 1;
        } else {
            return Err(ParseError::new(
                at + 1,
                format!(
                    "expected a file header (*** Add File: / *** Update File: / \
                     *** Delete File: <path>) or {END:?}, found: {}",
                    shorten(line)
                ),
            ));
        }
    }
}

/// The hunks of one `*** Update File:` section, starting at line index
/// `at`. Returns them and the index of the next file header.
fn parse_hunks(
    lines: &[&str],
    mut at: usize,
    path: &str,
) -> Result<(Vec<Hunk>, usize), ParseError> {
    let mut hunks = Vec::new();
    let mut hunk: Option<Hunk> = None;
    while let Some(&line) = lines.get(at) {
        let trimmed = line.trim();
        if trimmed.starts_with("***") && trimmed != END_OF_FILE {
            break;
        }
        if trimmed == END_OF_FILE {
            match hunk.as_mut() {
                Some(h) => h.at_eof = true,
                None => return Err(ParseError::new(at + 1, "*** End of File outside a hunk")),
            }
            hunks.extend(hunk.take());
            at += 1;
            continue;
        }
        if let Some(anchor) = trimmed.strip_prefix("@@") {
            // "@@ a" right after "@@ b" (nothing in between) narrows the
            // search: both anchors belong to the hunk that follows.
            let current = match hunk.take() {
                Some(h) if h.old.is_empty() && h.new.is_empty() => h,
                done => {
                    hunks.extend(done);
                    Hunk::default()
                }
            };
            let mut current = current;
            let anchor = anchor.trim();
            if !anchor.is_empty() {
                current.anchors.push(anchor.to_owned());
            }
            current.header = if current.anchors.is_empty() {
                format!("hunk {} (@@)", hunks.len() + 1)
            } else {
                format!(
                    "hunk {} (@@ {})",
                    hunks.len() + 1,
                    current.anchors.join(" @@ ")
                )
            };
            hunk = Some(current);
            at += 1;
            continue;
        }
        let h = hunk.get_or_insert_with(|| Hunk {
            header: format!("hunk {} (@@)", hunks.len() + 1),
            ..Hunk::default()
        });
        match line.chars().next() {
            Some(' ') | None => {
                let text = line.get(1..).unwrap_or("").to_owned();
                h.context_of.push(Some(h.old.len()));
                h.old.push(text.clone());
                h.new.push(text);
            }
            Some('-') => {
                h.old.push(line[1..].to_owned());
                h.removed += 1;
            }
            Some('+') => {
                h.new.push(line[1..].to_owned());
                h.context_of.push(None);
                h.added += 1;
            }
            _ => {
                return Err(ParseError::new(
                    at + 1,
                    format!(
                        "in {path}: a hunk line starts with ' ' (context), '-' or '+', found: {}",
                        shorten(line)
                    ),
                ));
            }
        }
        at += 1;
    }
    hunks.extend(hunk);
    if let Some(empty) = hunks.iter().find(|h| h.old.is_empty() && h.new.is_empty()) {
        return Err(ParseError::new(
            at,
            format!("in {path}: {} has no lines", empty.header),
        ));
    }
    Ok((hunks, at))
}

fn file_path(raw: &str, at: usize) -> Result<String, ParseError> {
    let path = raw.trim();
    if path.is_empty() {
        return Err(ParseError::new(at + 1, "a file header without a path"));
    }
    Ok(path.to_owned())
}

/// A line quoted for an error message, cut to a readable length.
pub(crate) fn shorten(line: &str) -> String {
    let cut: String = line.chars().take(120).collect();
    if cut.len() < line.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_operation() {
        let patch = parse(
            "*** Begin Patch\n*** Add File: a.txt\n+one\n+two\n*** Delete File: b.txt\n\
             *** Update File: c.txt\n*** Move to: d.txt\n@@ fn main\n ctx\n-old\n+new\n\
             *** End of File\n*** End Patch\n",
        )
        .unwrap();
        assert_eq!(patch.files.len(), 3);
        let FileChange::Update { hunks, move_to, .. } = &patch.files[2] else {
            panic!("update expected")
        };
        assert_eq!(move_to.as_deref(), Some("d.txt"));
        assert_eq!(hunks[0].anchors, ["fn main"]);
        assert_eq!(hunks[0].old, ["ctx", "old"]);
        assert_eq!(hunks[0].new, ["ctx", "new"]);
        assert!(hunks[0].at_eof);
    }

    #[test]
    fn refuses_a_patch_cut_short() {
        let err = parse("*** Begin Patch\n*** Add File: a\n+x\n").unwrap_err();
        assert!(err.message.contains("cut short"), "{err}");
    }

    #[test]
    fn first_hunk_may_omit_its_marker_and_markers_may_be_padded() {
        let patch =
            parse("  *** Begin Patch \n*** Update File: a\n-x\n+y\n  *** End Patch  \n").unwrap();
        assert_eq!(patch.files.len(), 1);
    }
}
