//! `read_file` and `write_file`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The arguments of `read_file`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct ReadFileArgs {
    /// File path, relative to the workspace root.
    pub path: String,
    /// First line to return, 1-based.
    pub offset: Option<usize>,
    /// Most lines to return (default 2000).
    pub limit: Option<usize>,
    /// Prefix each line with its number, like `cat -n`. Default: true when
    /// offset or limit is given, false for a whole-file read.
    pub line_numbers: Option<bool>,
    /// Read a notebook as its JSON (e.g. for edit_file).
    #[serde(default)]
    pub raw: bool,
}

/// What `read_file` returns: a window of a text file's lines (or a
/// notebook's cells), or an image's description (the image itself is image
/// content beside it).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ReadFileOutput {
    /// The path read, relative to the workspace root.
    pub path: String,
    /// The lines returned, numbered if asked.
    pub content: String,
    /// First line returned (1-based).
    pub start_line: usize,
    /// Last line returned (0 when none).
    pub end_line: usize,
    /// Lines in the whole file (cells of a notebook).
    pub total_lines: usize,
    /// More lines follow `end_line`; read them with `offset = end_line + 1`.
    pub more: bool,
    /// Size of the file in bytes.
    pub size: u64,
    /// SHA-256 of the whole file, for edit_file's `expected_sha256`.
    pub sha256: String,
    /// The file uses CRLF line endings (shown here without the CR).
    pub crlf: bool,
    /// The file is not valid UTF-8; invalid bytes are shown as U+FFFD.
    pub lossy: bool,
    /// Of a text file: utf-8, utf-8-bom, utf-16le or utf-16be; edit_file
    /// and write_file keep it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// Lines longer than 2000 characters that were cut.
    pub cut_lines: usize,
    /// For an image (returned as image content; `content` is empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageInfo>,
    /// For a notebook, whose line fields count cells.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notebook: Option<NotebookInfo>,
}

impl ReadFileOutput {
    /// A result for `path` (a file of `size` bytes whose SHA-256 is
    /// `sha256`, in hex) with no content yet.
    pub fn empty(path: String, size: u64, sha256: String) -> Self {
        ReadFileOutput {
            path,
            content: String::new(),
            start_line: 0,
            end_line: 0,
            total_lines: 0,
            more: false,
            size,
            sha256,
            crlf: false,
            lossy: false,
            encoding: None,
            cut_lines: 0,
            image: None,
            notebook: None,
        }
    }
}

/// The image returned: its type, size in pixels and bytes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ImageInfo {
    /// `image/png`, `image/jpeg`, `image/gif` or `image/webp`.
    pub mime_type: String,
    /// Width returned, in pixels.
    pub width: u32,
    /// Height returned, in pixels.
    pub height: u32,
    /// Size of the image returned, in bytes (before base64).
    pub bytes: usize,
    /// Scaled down from the original size.
    pub scaled: bool,
    /// Width of the file's image, in pixels.
    pub original_width: u32,
    /// Height of the file's image, in pixels.
    pub original_height: u32,
}

/// A notebook's cell count, and its output images returned and left out
/// (over the cap).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NotebookInfo {
    /// Cells in the notebook.
    pub cells: usize,
    /// Output images returned as image content.
    pub images: usize,
    /// Output images left out (over the count or size cap).
    pub images_left_out: usize,
}

/// The arguments of `write_file`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct WriteFileArgs {
    /// File path, relative to the workspace root. Parent folders are created.
    pub path: String,
    /// The whole new content of the file (may be empty).
    pub content: String,
}

/// What `write_file` returns.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WriteFileOutput {
    /// The path written, relative to the workspace root.
    pub path: String,
    /// Bytes in the file now (after encoding).
    pub bytes_written: usize,
    /// The file did not exist before.
    pub created: bool,
    /// utf-8, utf-8-bom, utf-16le or utf-16be: an existing file's is kept.
    pub encoding: String,
    /// Written with CRLF line endings, as the file had them.
    pub crlf: bool,
}
