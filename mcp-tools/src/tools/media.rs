//! read_file for what is not plain text: images come back as MCP image
//! content, Jupyter notebooks as their cells rendered in order.
//!
//! Images (PNG, JPEG, GIF, WebP, told by their first bytes) are decoded
//! with the `image` crate, within pixel and memory limits, so a corrupt
//! file or a decompression bomb is refused; one whose longest side is over
//! the limit (1568 px by default, what Claude's vision guide recommends) is
//! scaled down. SVG is text and read as text.

use std::io::{Cursor, Read};

use base64::Engine as _;
use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::ToolContext;
use super::files::hex;
use crate::error::ToolError;
use crate::output::strip_ansi;
use crate::workspace::{WorkspacePath, op_error};
use mcp_tools_contract::files::{ImageInfo, NotebookInfo, ReadFileArgs, ReadFileOutput};

/// Widest or tallest image decoded, in pixels.
const MAX_DECODE_SIDE: u32 = 20_000;
/// Most memory one decode may take.
const MAX_DECODE_ALLOC: u64 = 512 * 1024 * 1024;
/// Images a notebook read returns at most, and their total encoded size.
const MAX_NOTEBOOK_IMAGES: usize = 8;
const MAX_NOTEBOOK_IMAGE_BYTES: usize = 4 * 1024 * 1024;

/// Limits for images, from the command line.
#[derive(Debug, Clone, Copy)]
pub struct ImageLimits {
    /// Largest image file read, in bytes.
    pub max_bytes: u64,
    /// Longest side of an image returned, in pixels; larger ones are scaled.
    pub max_side: u32,
}

/// An image ready to return.
struct Picture {
    data: Vec<u8>,
    info: ImageInfo,
}

/// read_file of an image or a notebook; `Ok(None)` for anything else.
pub(crate) fn read_media(
    ctx: &ToolContext,
    path: &WorkspacePath,
    args: &ReadFileArgs,
) -> Result<Option<CallToolResult>, ToolError> {
    let file = ctx.workspace.open_file(path)?;
    let size = file
        .metadata()
        .map_err(|e| op_error("reading", path, e))?
        .len();
    let mut head = Vec::with_capacity(16);
    (&file)
        .take(16)
        .read_to_end(&mut head)
        .map_err(|e| op_error("reading", path, e))?;
    let is_notebook = !args.raw
        && path
            .rel()
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("ipynb"));
    if mime_of(&head).is_none() && !is_notebook {
        return Ok(None);
    }
    let limits = ctx.image_limits;
    if size > limits.max_bytes {
        return Err(ToolError::InvalidArgument(format!(
            "'{}' is {size} bytes, above the {}-byte limit for images and notebooks \
             (--max-image-bytes)",
            path.display(),
            limits.max_bytes
        )));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    ctx.workspace
        .open_file(path)?
        .take(limits.max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| op_error("reading", path, e))?;
    if mime_of(&bytes).is_some() {
        return read_image(path, &bytes, limits).map(Some);
    }
    read_notebook(ctx, path, &bytes, args).map(Some)
}

/// The MIME type of an image format read_file returns as an image.
fn mime_of(head: &[u8]) -> Option<&'static str> {
    image::guess_format(head).ok().and_then(mime_of_format)
}

fn read_image(
    path: &WorkspacePath,
    bytes: &[u8],
    limits: ImageLimits,
) -> Result<CallToolResult, ToolError> {
    let shown = path.display();
    let picture = prepare(bytes, limits.max_side).map_err(|e| {
        ToolError::InvalidArgument(format!("'{shown}' is not a readable image: {e}"))
    })?;
    let info = &picture.info;
    let mut text = format!(
        "{shown}: {} image, {}x{} px, {} bytes",
        info.mime_type.trim_start_matches("image/").to_uppercase(),
        info.original_width,
        info.original_height,
        bytes.len()
    );
    if info.scaled {
        text.push_str(&format!(
            "; scaled down to {}x{} px (longest side at most {} px) as {}",
            info.width, info.height, limits.max_side, info.mime_type
        ));
    }
    let out = ReadFileOutput {
        image: Some(picture.info.clone()),
        ..ReadFileOutput::empty(shown, bytes.len() as u64, hex(&Sha256::digest(bytes)))
    };
    let data = base64::engine::general_purpose::STANDARD.encode(&picture.data);
    let mut result = CallToolResult::success(vec![
        ContentBlock::text(text),
        ContentBlock::image(data, picture.info.mime_type.clone()),
    ]);
    result.structured_content = serde_json::to_value(&out).ok();
    Ok(result)
}

/// Decodes an image (checking it whole), and scales it down when its
/// longest side is over `max_side`: JPEG stays JPEG, the rest become PNG.
fn prepare(bytes: &[u8], max_side: u32) -> Result<Picture, image::ImageError> {
    let mut reader = image::ImageReader::new(Cursor::new(bytes)).with_guessed_format()?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_DECODE_SIDE);
    limits.max_image_height = Some(MAX_DECODE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    let format = reader.format();
    let decoded = reader.decode()?;
    let (width, height) = (decoded.width(), decoded.height());
    let mime = format.and_then(mime_of_format).unwrap_or("image/png");
    if width.max(height) <= max_side {
        return Ok(Picture {
            data: bytes.to_vec(),
            info: ImageInfo {
                mime_type: mime.to_owned(),
                width,
                height,
                bytes: bytes.len(),
                scaled: false,
                original_width: width,
                original_height: height,
            },
        });
    }
    let scaled = decoded.resize(max_side, max_side, image::imageops::FilterType::Triangle);
    let mut data = Cursor::new(Vec::new());
    let out_mime = if mime == "image/jpeg" {
        image::DynamicImage::ImageRgb8(scaled.to_rgb8()).write_with_encoder(
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut data, 85),
        )?;
        "image/jpeg"
    } else {
        scaled.write_to(&mut data, image::ImageFormat::Png)?;
        "image/png"
    };
    let data = data.into_inner();
    Ok(Picture {
        info: ImageInfo {
            mime_type: out_mime.to_owned(),
            width: scaled.width(),
            height: scaled.height(),
            bytes: data.len(),
            scaled: true,
            original_width: width,
            original_height: height,
        },
        data,
    })
}

fn mime_of_format(format: image::ImageFormat) -> Option<&'static str> {
    match format {
        image::ImageFormat::Png => Some("image/png"),
        image::ImageFormat::Jpeg => Some("image/jpeg"),
        image::ImageFormat::Gif => Some("image/gif"),
        image::ImageFormat::WebP => Some("image/webp"),
        _ => None,
    }
}

/// A notebook cell's `source` or an output's `text`: a string, or a list
/// of strings to join.
fn joined(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts.iter().filter_map(Value::as_str).collect(),
        _ => String::new(),
    }
}

fn read_notebook(
    ctx: &ToolContext,
    path: &WorkspacePath,
    bytes: &[u8],
    args: &ReadFileArgs,
) -> Result<CallToolResult, ToolError> {
    let shown = path.display();
    let not_notebook = |why: String| {
        ToolError::InvalidArgument(format!(
            "'{shown}' is not a readable Jupyter notebook ({why}); read it as text with \
             run_command (e.g. cat), or fix its JSON"
        ))
    };
    let notebook: Value = serde_json::from_slice(bytes).map_err(|e| not_notebook(e.to_string()))?;
    let cells = notebook
        .get("cells")
        .and_then(Value::as_array)
        .ok_or_else(|| not_notebook("no \"cells\" list".to_owned()))?;
    let language = notebook
        .pointer("/metadata/kernelspec/language")
        .or_else(|| notebook.pointer("/metadata/language_info/name"))
        .and_then(Value::as_str)
        .unwrap_or("code");
    let total = cells.len();
    let offset = args.offset.unwrap_or(1);
    if offset == 0 || (offset > total && total > 0) {
        return Err(ToolError::InvalidArgument(format!(
            "offset counts cells in a notebook, from 1; '{shown}' has {total} cells"
        )));
    }
    let limit = args.limit.unwrap_or(usize::MAX);
    if limit == 0 {
        return Err(ToolError::InvalidArgument(
            "limit must be at least 1".to_owned(),
        ));
    }
    let budget = ctx.max_read_bytes as usize;
    let mut text = String::new();
    let mut pictures: Vec<ContentBlock> = Vec::new();
    let (mut image_bytes, mut left_out) = (0usize, 0usize);
    let mut end = offset.saturating_sub(1);
    for (i, cell) in cells.iter().enumerate().skip(offset - 1).take(limit) {
        let mut part = String::new();
        let kind = cell
            .get("cell_type")
            .and_then(Value::as_str)
            .unwrap_or("unknown");
        let source = joined(cell.get("source"));
        match kind {
            "code" => {
                let count = cell.get("execution_count").and_then(Value::as_u64);
                part.push_str(&format!(
                    "[cell {} · {language}{}]\n",
                    i + 1,
                    count.map(|c| format!(" · In [{c}]")).unwrap_or_default()
                ));
            }
            other => part.push_str(&format!("[cell {} · {other}]\n", i + 1)),
        }
        part.push_str(&source);
        if !source.ends_with('\n') {
            part.push('\n');
        }
        for output in cell
            .get("outputs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let kind = output
                .get("output_type")
                .and_then(Value::as_str)
                .unwrap_or("");
            let body = match kind {
                "stream" => {
                    let name = output
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("stdout");
                    format!("[{name}]\n{}", joined(output.get("text")))
                }
                "error" => {
                    let trace = output
                        .get("traceback")
                        .and_then(Value::as_array)
                        .map(|t| {
                            t.iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join("\n")
                        })
                        .unwrap_or_default();
                    format!("[error]\n{}", strip_ansi(&trace))
                }
                "execute_result" | "display_data" => {
                    let data = output.get("data");
                    let mut body = String::new();
                    for mime in ["image/png", "image/jpeg", "image/gif", "image/webp"] {
                        let Some(encoded) = data.and_then(|d| d.get(mime)) else {
                            continue;
                        };
                        let encoded: String = joined(Some(encoded)).split_whitespace().collect();
                        let picture = base64::engine::general_purpose::STANDARD
                            .decode(&encoded)
                            .ok()
                            .and_then(|raw| prepare(&raw, ctx.image_limits.max_side).ok());
                        match picture {
                            Some(p)
                                if pictures.len() < MAX_NOTEBOOK_IMAGES
                                    && image_bytes + p.data.len() <= MAX_NOTEBOOK_IMAGE_BYTES =>
                            {
                                image_bytes += p.data.len();
                                body.push_str(&format!(
                                    "[{mime} output {}x{}: image {} below]\n",
                                    p.info.width,
                                    p.info.height,
                                    pictures.len() + 1
                                ));
                                let b64 = base64::engine::general_purpose::STANDARD.encode(&p.data);
                                pictures.push(ContentBlock::image(b64, p.info.mime_type));
                            }
                            Some(_) => {
                                left_out += 1;
                                body.push_str(&format!(
                                    "[{mime} output left out: at most {MAX_NOTEBOOK_IMAGES} images \
                                     ({MAX_NOTEBOOK_IMAGE_BYTES} bytes) per read; page with offset/limit]\n"
                                ));
                            }
                            None => {
                                body.push_str(&format!("[{mime} output that cannot be decoded]\n"))
                            }
                        }
                        break;
                    }
                    if let Some(plain) = data.and_then(|d| d.get("text/plain")) {
                        body.push_str(&joined(Some(plain)));
                    } else if body.is_empty() {
                        let kinds: Vec<&str> = data
                            .and_then(Value::as_object)
                            .map(|m| m.keys().map(String::as_str).collect())
                            .unwrap_or_default();
                        body = format!("[output of type {}]", kinds.join(", "));
                    }
                    format!("[output]\n{body}")
                }
                other => format!("[{other} output]"),
            };
            part.push_str(&body);
            if !part.ends_with('\n') {
                part.push('\n');
            }
        }
        part.push('\n');
        if text.len() + part.len() > budget && end >= offset {
            break;
        }
        text.push_str(&part);
        end = i + 1;
    }
    let more = end < total;
    if more {
        text.push_str(&format!(
            "[cells {offset}-{end} of {total}; more remains: read on with offset={}]",
            end + 1
        ));
    } else if offset > 1 || args.limit.is_some() {
        text.push_str(&format!("[cells {offset}-{end} of {total}]"));
    } else {
        text.push_str(&format!("[{total} cells]"));
    }
    let images = pictures.len();
    let out = ReadFileOutput {
        content: text.clone(),
        start_line: if end >= offset { offset } else { 0 },
        end_line: end,
        total_lines: total,
        more,
        notebook: Some(NotebookInfo {
            cells: total,
            images,
            images_left_out: left_out,
        }),
        ..ReadFileOutput::empty(shown, bytes.len() as u64, hex(&Sha256::digest(bytes)))
    };
    let mut content = vec![ContentBlock::text(text)];
    content.extend(pictures);
    let mut result = CallToolResult::success(content);
    result.structured_content = serde_json::to_value(&out).ok();
    Ok(result)
}
