//! The text encodings of workspace files: UTF-8, and the Unicode encodings
//! a byte-order mark names (UTF-8 with BOM, UTF-16 LE and BE with BOM, as
//! PowerShell's `>` and Windows Notepad write). Decoding is encoding_rs's,
//! as in ripgrep; every file tool reads through [`Encoding::reader`] or
//! [`Encoding::decode`] and writes back through [`Encoding::encode`], so a
//! file keeps its encoding and BOM across an edit.

use std::io::Read;

/// How a file's text is stored, told by its byte-order mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8 without a BOM (and any file without a BOM).
    Utf8,
    /// UTF-8 after the BOM `EF BB BF`.
    Utf8Bom,
    /// UTF-16 little-endian after the BOM `FF FE`.
    Utf16Le,
    /// UTF-16 big-endian after the BOM `FE FF`.
    Utf16Be,
}

impl Encoding {
    /// The encoding a file's first bytes name by their BOM (UTF-8 if none).
    pub fn sniff(prefix: &[u8]) -> Encoding {
        match encoding_rs::Encoding::for_bom(prefix) {
            Some((e, _)) if e == encoding_rs::UTF_8 => Encoding::Utf8Bom,
            Some((e, _)) if e == encoding_rs::UTF_16LE => Encoding::Utf16Le,
            Some((e, _)) if e == encoding_rs::UTF_16BE => Encoding::Utf16Be,
            _ => Encoding::Utf8,
        }
    }

    /// The encoding of the file `file`, from its first bytes; reads with
    /// `pread`, so the file's position does not move.
    pub fn of_file(file: &std::fs::File) -> std::io::Result<Encoding> {
        use std::os::unix::fs::FileExt;
        let mut head = [0u8; 3];
        let mut n = 0;
        while n < head.len() {
            match file.read_at(&mut head[n..], n as u64)? {
                0 => break,
                k => n += k,
            }
        }
        Ok(Encoding::sniff(&head[..n]))
    }

    /// The name tools report: `utf-8`, `utf-8-bom`, `utf-16le`, `utf-16be`.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Utf8Bom => "utf-8-bom",
            Encoding::Utf16Le => "utf-16le",
            Encoding::Utf16Be => "utf-16be",
        }
    }

    /// The byte-order mark written before the text.
    pub fn bom(self) -> &'static [u8] {
        match self {
            Encoding::Utf8 => b"",
            Encoding::Utf8Bom => b"\xEF\xBB\xBF",
            Encoding::Utf16Le => b"\xFF\xFE",
            Encoding::Utf16Be => b"\xFE\xFF",
        }
    }

    /// A reader of `inner`'s text as UTF-8, without the BOM. UTF-8 bytes
    /// pass through unchanged (invalid ones too, for the caller to judge);
    /// UTF-16 is transcoded, unpaired surrogates becoming U+FFFD.
    pub fn reader<R: Read>(inner: R) -> impl Read {
        encoding_rs_io::DecodeReaderBytesBuilder::new()
            .bom_sniffing(true)
            .strip_bom(true)
            .utf8_passthru(true)
            .build(inner)
    }

    /// The text of a whole file's bytes, without its BOM. `None` when the
    /// bytes are not valid in the encoding their BOM names (or, without a
    /// BOM, not valid UTF-8).
    pub fn decode(bytes: &[u8]) -> Option<(String, Encoding)> {
        let encoding = Encoding::sniff(bytes);
        let body = &bytes[encoding.bom().len()..];
        let text = match encoding {
            Encoding::Utf8 | Encoding::Utf8Bom => std::str::from_utf8(body).ok()?.to_owned(),
            Encoding::Utf16Le => encoding_rs::UTF_16LE
                .decode_without_bom_handling_and_without_replacement(body)?
                .into_owned(),
            Encoding::Utf16Be => encoding_rs::UTF_16BE
                .decode_without_bom_handling_and_without_replacement(body)?
                .into_owned(),
        };
        Some((text, encoding))
    }

    /// `text` as this encoding's bytes, BOM first. A BOM character at the
    /// start of `text` is not written twice.
    pub fn encode(self, text: &str) -> Vec<u8> {
        let text = if self == Encoding::Utf8 {
            text
        } else {
            text.strip_prefix('\u{FEFF}').unwrap_or(text)
        };
        let mut out = self.bom().to_vec();
        match self {
            Encoding::Utf8 | Encoding::Utf8Bom => out.extend_from_slice(text.as_bytes()),
            Encoding::Utf16Le => out.extend(text.encode_utf16().flat_map(u16::to_le_bytes)),
            Encoding::Utf16Be => out.extend(text.encode_utf16().flat_map(u16::to_be_bytes)),
        }
        out
    }
}

/// A reader that hashes every byte read through it.
pub struct HashingReader<R> {
    pub inner: R,
    pub hasher: sha2::Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The encoding and line ending (true: CRLF) of a file whose first bytes
/// are `head`, for writing it back the way it was.
pub fn sniff_format(head: &[u8]) -> (Encoding, bool) {
    let mut decoded = Vec::new();
    let _ = Encoding::reader(head).read_to_end(&mut decoded);
    (
        Encoding::sniff(head),
        uses_crlf(&String::from_utf8_lossy(&decoded)),
    )
}

/// The line ending text uses: CRLF when its first line break is `\r\n`.
pub fn uses_crlf(text: &str) -> bool {
    text.find('\n').is_some_and(|i| text[..i].ends_with('\r'))
}

/// `text` with bare `\n` line breaks turned into `\r\n`; text that has any
/// `\r` already is left as written.
pub fn to_crlf(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\r') {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(text.replace('\n', "\r\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_encoding_round_trips_with_its_bom() {
        for encoding in [
            Encoding::Utf8,
            Encoding::Utf8Bom,
            Encoding::Utf16Le,
            Encoding::Utf16Be,
        ] {
            let bytes = encoding.encode("héllo\r\nwörld 𝄞\n");
            assert!(bytes.starts_with(encoding.bom()));
            let (text, found) = Encoding::decode(&bytes).unwrap();
            assert_eq!((text.as_str(), found), ("héllo\r\nwörld 𝄞\n", encoding));
            let mut streamed = String::new();
            Encoding::reader(bytes.as_slice())
                .read_to_string(&mut streamed)
                .unwrap();
            assert_eq!(streamed, text, "{encoding:?}");
        }
    }

    #[test]
    fn invalid_text_does_not_decode() {
        assert!(Encoding::decode(b"a\xFFb").is_none());
        // An unpaired surrogate in UTF-16LE.
        assert!(Encoding::decode(b"\xFF\xFE\x00\xD8a\x00").is_none());
    }
}
