//! Text in the encodings people have: UTF-16 LE/BE and UTF-8 with a BOM are
//! read, searched, described and edited as text, and keep their encoding,
//! BOM and line endings when written.

mod common;

use common::{Server, call, ok, text};
use serde_json::json;

fn utf16le(text: &str) -> Vec<u8> {
    let mut out = vec![0xFF, 0xFE];
    out.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    out
}

fn utf16be(text: &str) -> Vec<u8> {
    let mut out = vec![0xFE, 0xFF];
    out.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
    out
}

fn utf8bom(text: &str) -> Vec<u8> {
    let mut out = vec![0xEF, 0xBB, 0xBF];
    out.extend_from_slice(text.as_bytes());
    out
}

const TEXT: &str = "Name: café\r\nTOKEN=abc\r\nlast line\r\n";

/// What PowerShell's `>` and Notepad write is read, searched and described
/// as text, with its encoding named.
#[tokio::test]
async fn bom_marked_files_are_text() {
    let server = Server::start();
    let client = server.client().await;
    let files = [
        ("le.txt", utf16le(TEXT), "utf-16le"),
        ("be.txt", utf16be(TEXT), "utf-16be"),
        ("bom.txt", utf8bom(TEXT), "utf-8-bom"),
    ];
    for (name, bytes, encoding) in &files {
        std::fs::write(server.path(name), bytes).unwrap();
        let out = ok(&call(&client, "read_file", json!({"path": name})).await);
        assert_eq!(out["content"], TEXT, "{name}");
        assert_eq!(out["encoding"], *encoding);
        assert_eq!(out["total_lines"], 3);
        assert_eq!(out["size"], bytes.len());
        use sha2::Digest;
        let sha: String = sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(out["sha256"], sha, "the hash is of the file's bytes");

        let out = ok(&call(
            &client,
            "read_file",
            json!({"path": name, "offset": 2, "limit": 1}),
        )
        .await);
        assert_eq!(out["content"], "     2\tTOKEN=abc\n");

        let out = ok(&call(&client, "file_info", json!({"path": name})).await);
        assert_eq!(out["is_binary"], false, "{name}");
        assert_eq!(out["encoding"], *encoding);
        assert_eq!(out["line_count"], 3);

        let out = ok(&call(
            &client,
            "grep",
            json!({"pattern": "TOKEN=\\w+", "path": name, "output_mode": "content"}),
        )
        .await);
        assert_eq!(out["results"], json!([format!("{name}:2:TOKEN=abc")]));
    }
    let out = ok(&call(&client, "file_info", json!({"path": "le.txt"})).await);
    assert_eq!(out["encoding"], "utf-16le");
}

/// edit_file and write_file keep the file's encoding, BOM and CRLF.
#[tokio::test]
async fn edits_and_writes_keep_encoding_bom_and_line_endings() {
    let server = Server::start();
    let client = server.client().await;
    type Encode = fn(&str) -> Vec<u8>;
    let cases: [(&str, Encode); 3] = [
        ("le.txt", utf16le),
        ("be.txt", utf16be),
        ("bom.txt", utf8bom),
    ];
    for (name, encode) in cases {
        std::fs::write(server.path(name), encode(TEXT)).unwrap();
        let out = ok(&call(
            &client,
            "edit_file",
            json!({"path": name, "old_string": "TOKEN=abc\nlast", "new_string": "TOKEN=xyz\nfinal"}),
        )
        .await);
        let expected = encode("Name: café\r\nTOKEN=xyz\r\nfinal line\r\n");
        assert_eq!(
            std::fs::read(server.path(name)).unwrap(),
            expected,
            "{name}"
        );
        use sha2::Digest;
        let sha: String = sha2::Sha256::digest(&expected)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(out["sha256"], sha);

        let result = call(
            &client,
            "write_file",
            json!({"path": name, "content": "new\nbody\n"}),
        )
        .await;
        ok(&result);
        assert_eq!(
            std::fs::read(server.path(name)).unwrap(),
            encode("new\r\nbody\r\n"),
            "{name}: {}",
            text(&result)
        );
    }
    // A new file is plain UTF-8, as written.
    ok(&call(
        &client,
        "write_file",
        json!({"path": "new.txt", "content": "a\nb\n"}),
    )
    .await);
    assert_eq!(std::fs::read(server.path("new.txt")).unwrap(), b"a\nb\n");
}
