//! Multi-byte text at every place output is cut or paged: run_command's
//! head and tail, process_output's pages, ranged read_file's long lines and
//! grep's content lines. A cut never splits a character into U+FFFD, and
//! never loses a character it did not have to; invalid bytes show as one
//! U+FFFD each.

mod common;

use common::{Server, call, ok};
use serde_json::{Value, json};

/// Characters of every UTF-8 length.
const CHARS: [char; 3] = ['é', '€', '😀'];
/// Bytes run_command keeps of each stream: half from the start, half from the end.
const OUTPUT_LIMIT: usize = 30_000;
/// Characters of a line that a ranged read_file shows.
const READ_LINE_CHARS: usize = 2000;
/// Characters of a line that grep's content mode shows.
const GREP_LINE_CHARS: usize = 500;

/// `shift` ASCII bytes, then `ch` until the text has at least `bytes` bytes.
fn text_of(shift: usize, ch: char, bytes: usize) -> String {
    let mut s = "a".repeat(shift);
    while s.len() < bytes {
        s.push(ch);
    }
    s
}

/// A shell command that prints `text` to stdout (`printf` with octal escapes).
fn printf(text: &[u8]) -> String {
    let escaped: String = text.iter().map(|b| format!("\\{b:03o}")).collect();
    format!("printf '{escaped}'")
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// run_command keeps whole characters on both sides of its cut, whatever
/// the alignment of the cut within a character, and output that fits is
/// returned exactly, even where its head and tail meet inside a character.
#[tokio::test]
async fn run_command_cuts_between_characters() {
    let server = Server::start();
    let client = server.client().await;
    let half = OUTPUT_LIMIT / 2;
    for ch in CHARS {
        for shift in 0..4 {
            let full = text_of(shift, ch, OUTPUT_LIMIT + 1000);
            std::fs::write(server.path("out.txt"), &full).unwrap();
            let out = ok(&call(
                &client,
                "run_command",
                json!({"command": "cat out.txt; cat out.txt >&2"}),
            )
            .await);
            for stream in ["stdout", "stderr"] {
                let shown = out[stream].as_str().unwrap();
                let head = &full[..floor_boundary(&full, half)];
                let tail = &full[ceil_boundary(&full, full.len() - half)..];
                let what = format!("{stream}, {ch:?} shifted by {shift}");
                assert!(!shown.contains('\u{FFFD}'), "{what}: U+FFFD in the output");
                let middle = shown
                    .strip_prefix(head)
                    .and_then(|rest| rest.strip_suffix(tail))
                    .unwrap_or_else(|| panic!("{what}: head or tail lost a character"));
                assert!(!middle.contains(ch), "{what}: more than the limit kept");
            }

            // Fits, but longer than the head: head and tail meet mid-character.
            let fits = text_of(shift, ch, half + 100);
            std::fs::write(server.path("fits.txt"), &fits).unwrap();
            let out = ok(&call(&client, "run_command", json!({"command": "cat fits.txt"})).await);
            assert_eq!(out["stdout"], fits, "{ch:?} shifted by {shift}");
        }
    }
}

/// Invalid bytes on either side of run_command's cut are shown as U+FFFD,
/// one for each, and the valid text around them is kept.
#[tokio::test]
async fn run_command_shows_invalid_bytes_at_the_cut() {
    let server = Server::start();
    let client = server.client().await;
    let half = OUTPUT_LIMIT / 2;
    for shift in 0..4 {
        let mut full = "a".repeat(shift).into_bytes();
        while full.len() < OUTPUT_LIMIT + 1000 {
            full.extend_from_slice(b"\xffb\xfe");
        }
        std::fs::write(server.path("bad.bin"), &full).unwrap();
        let out = ok(&call(&client, "run_command", json!({"command": "cat bad.bin"})).await);
        let shown = out["stdout"].as_str().unwrap();
        let head = String::from_utf8_lossy(&full[..half]);
        let tail = String::from_utf8_lossy(&full[full.len() - half..]);
        assert!(shown.starts_with(&*head), "shift {shift}: head differs");
        assert!(shown.ends_with(&*tail), "shift {shift}: tail differs");
    }
    // Output short enough to be whole comes back lossily too.
    let out = ok(&call(
        &client,
        "run_command",
        json!({"command": printf(b"x\xffy")}),
    )
    .await);
    assert_eq!(out["stdout"], "x\u{FFFD}y");
}

async fn background(client: &common::Client, command: &str) -> String {
    let out = ok(&call(
        client,
        "run_command",
        json!({"command": command, "background": true}),
    )
    .await);
    out["id"].as_str().unwrap().to_owned()
}

/// Reads a finished job's output in pages of `max` bytes, from `since` to
/// the end; returns the pages.
async fn pages(client: &common::Client, id: &str, max: usize) -> Vec<String> {
    let mut since = 0;
    let mut pages = Vec::new();
    loop {
        let out = ok(&call(
            client,
            "process_output",
            json!({"id": id, "since": since, "max_chars": max}),
        )
        .await);
        let next = out["next_offset"].as_u64().unwrap();
        assert!(
            next > since || out["more"] == false,
            "max_chars {max}: stuck at {since}: {out}"
        );
        pages.push(out["output"].as_str().unwrap().to_owned());
        if out["more"] == false {
            return pages;
        }
        since = next;
    }
}

async fn wait_exit(client: &common::Client, id: &str) {
    let out = ok(&call(
        client,
        "process_wait",
        json!({"id": id, "timeout_ms": 20000}),
    )
    .await);
    assert_eq!(out["reason"], "exited", "{out}");
}

/// Paging a job's output with any page size, even one smaller than a
/// character, gives back the text exactly: no page starts or ends inside a
/// character, and every page makes progress.
#[tokio::test]
async fn process_output_pages_end_between_characters() {
    let server = Server::start();
    let client = server.client().await;
    for ch in CHARS {
        for shift in 0..4 {
            let text = text_of(shift, ch, 40);
            std::fs::write(server.path("t.txt"), &text).unwrap();
            let id = background(&client, "cat t.txt").await;
            wait_exit(&client, &id).await;
            for max in 1..=5 {
                let pages = pages(&client, &id, max).await;
                for page in &pages {
                    assert!(
                        !page.contains('\u{FFFD}'),
                        "{ch:?} shifted by {shift}, max_chars {max}: {pages:?}"
                    );
                }
                assert_eq!(pages.concat(), text, "{ch:?} shifted by {shift}, max {max}");
            }
        }
    }
}

/// A job that has printed only part of a character so far shows none of
/// it; the rest of the character comes with the next read.
#[tokio::test]
async fn process_output_holds_back_a_half_written_character() {
    let server = Server::start();
    let client = server.client().await;
    // '€' is e2 82 ac: print two bytes, wait for a line on stdin, then the third.
    let id = background(
        &client,
        r"printf 'x\342\202'; read line; printf '\254y'; sleep 0.1",
    )
    .await;
    let first = ok(&call(
        &client,
        "process_output",
        json!({"id": id, "since": 0, "wait_ms": 10000}),
    )
    .await);
    assert_eq!(first["output"], "x", "{first}");
    let since = first["next_offset"].as_u64().unwrap();
    ok(&call(&client, "process_input", json!({"id": id, "data": "go\n"})).await);
    wait_exit(&client, &id).await;
    let rest = ok(&call(&client, "process_output", json!({"id": id, "since": since})).await);
    assert_eq!(rest["output"], "€y", "{rest}");
}

/// Invalid bytes in a job's output come back as U+FFFD, one each, and do
/// not stop the paging.
#[tokio::test]
async fn process_output_pages_through_invalid_bytes() {
    let server = Server::start();
    let client = server.client().await;
    let bytes = b"a\xff\xfeb\x80c\xe2\x82";
    let id = background(&client, &printf(bytes)).await;
    wait_exit(&client, &id).await;
    for max in 1..=4 {
        let pages = pages(&client, &id, max).await;
        assert_eq!(
            pages.concat(),
            String::from_utf8_lossy(bytes),
            "max_chars {max}: {pages:?}"
        );
    }
}

/// The numbered lines of a ranged read_file, without their numbers.
fn read_lines(out: &Value) -> Vec<String> {
    out["content"]
        .as_str()
        .unwrap()
        .lines()
        .map(|l| l.split_once('\t').unwrap().1.to_owned())
        .collect()
}

/// A ranged read_file cuts long lines after whole characters, whether the
/// line is short enough to be read whole or so long that only its start is.
#[tokio::test]
async fn ranged_read_file_cuts_long_lines_between_characters() {
    let server = Server::start();
    let client = server.client().await;
    for ch in CHARS {
        for shift in 0..4 {
            // One line just over the character limit, one of 20 000 bytes.
            let short = text_of(shift, ch, (READ_LINE_CHARS + 10) * ch.len_utf8());
            let long = text_of(shift, ch, 20_000);
            std::fs::write(server.path("long.txt"), format!("{short}\n{long}\nend\n")).unwrap();
            let out = ok(&call(
                &client,
                "read_file",
                json!({"path": "long.txt", "offset": 1, "limit": 3}),
            )
            .await);
            let lines = read_lines(&out);
            for (shown, line) in lines.iter().zip([&short, &long]) {
                let kept: String = line.chars().take(READ_LINE_CHARS).collect();
                let what = format!("{ch:?} shifted by {shift}, line of {} bytes", line.len());
                assert!(!shown.contains('\u{FFFD}'), "{what}: U+FFFD");
                let marker = shown
                    .strip_prefix(&kept)
                    .unwrap_or_else(|| panic!("{what}: the first characters were not kept"));
                assert!(!marker.contains(ch), "{what}: more than the limit kept");
            }
            assert_eq!(lines[2], "end");
        }
    }
}

/// grep's content lines are cut after whole characters.
#[tokio::test]
async fn grep_content_lines_cut_between_characters() {
    let server = Server::start();
    let client = server.client().await;
    for ch in CHARS {
        for shift in 0..4 {
            let line = format!("{}NEEDLE", text_of(shift, ch, 2000 * ch.len_utf8()));
            std::fs::write(server.path("hay.txt"), format!("{line}\n")).unwrap();
            let out = ok(&call(
                &client,
                "grep",
                json!({"pattern": "NEEDLE", "output_mode": "content"}),
            )
            .await);
            let results = out["results"].as_array().unwrap();
            assert_eq!(results.len(), 1, "{out}");
            let shown = results[0].as_str().unwrap();
            let what = format!("{ch:?} shifted by {shift}");
            assert!(!shown.contains('\u{FFFD}'), "{what}: U+FFFD in {shown:?}");
            let kept: String = line.chars().take(GREP_LINE_CHARS).collect();
            assert!(
                shown.contains(&kept),
                "{what}: the first characters were not kept"
            );
        }
    }
}

/// When memory has dropped the start of a job's output at a point inside a
/// character, reading from before it starts at the next whole character.
#[tokio::test]
async fn process_output_resumes_at_a_character_after_dropped_output() {
    let server = Server::start();
    let client = server.client().await;
    // 1.2 MB of '€' (3 bytes each): more than the 1 MiB kept in memory,
    // which then starts 151 424 bytes in, one byte into a character.
    let id = background(&client, "yes € | tr -d '\\n' | head -c 1200000").await;
    wait_exit(&client, &id).await;
    let out = ok(&call(
        &client,
        "process_output",
        json!({"id": id, "since": 0, "max_chars": 30}),
    )
    .await);
    assert!(out["dropped"].as_u64().unwrap() > 0, "{out}");
    assert_eq!(out["from"].as_u64().unwrap() % 3, 0, "{out}");
    assert_eq!(out["output"], "€".repeat(10), "{out}");
}

/// A `since` given inside a character starts the window at that
/// character's first byte, for every character length and every byte
/// inside it: no U+FFFD, no lost character, and `from` says where the
/// window starts.
#[tokio::test]
async fn process_output_since_inside_a_character_starts_at_the_character() {
    let server = Server::start();
    let client = server.client().await;
    for ch in CHARS {
        let text = format!("ab{ch}cd");
        std::fs::write(server.path("t.txt"), &text).unwrap();
        let id = background(&client, "cat t.txt").await;
        wait_exit(&client, &id).await;
        for inside in 1..ch.len_utf8() {
            let since = 2 + inside;
            let out = ok(&call(&client, "process_output", json!({"id": id, "since": since})).await);
            assert_eq!(
                out["output"],
                format!("{ch}cd"),
                "{ch:?} since {since}: {out}"
            );
            assert_eq!(out["from"], 2, "{ch:?} since {since}: {out}");
            assert_eq!(out["dropped"], 0, "{ch:?} since {since}: {out}");
        }
    }
}
