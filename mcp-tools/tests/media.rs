//! read_file on images and notebooks, through the real binary.

mod common;

use base64::Engine as _;
use common::*;
use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::json;

fn png(path: &std::path::Path, width: u32, height: u32) {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    img.save(path).unwrap();
}

/// The image blocks of a result: (mime type, decoded image).
fn images(result: &CallToolResult) -> Vec<(String, image::DynamicImage)> {
    result
        .content
        .iter()
        .filter_map(|c| match c {
            ContentBlock::Image(img) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(&img.data)
                    .unwrap();
                Some((
                    img.mime_type.clone(),
                    image::load_from_memory(&bytes).unwrap(),
                ))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn an_image_comes_back_as_image_content_of_the_declared_size() {
    let server = Server::start();
    png(&server.path("shot.png"), 64, 48);
    let jpeg = image::RgbImage::from_pixel(30, 20, image::Rgb([200, 10, 10]));
    jpeg.save(server.path("photo.jpg")).unwrap();
    let client = server.client().await;

    let result = call(&client, "read_file", json!({"path": "shot.png"})).await;
    let out = ok(&result);
    let got = images(&result);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "image/png");
    assert_eq!((got[0].1.width(), got[0].1.height()), (64, 48));
    assert_eq!(
        (
            out["image"]["width"].as_u64(),
            out["image"]["height"].as_u64()
        ),
        (Some(64), Some(48))
    );
    assert_eq!(out["image"]["scaled"], false);
    let size = std::fs::metadata(server.path("shot.png")).unwrap().len();
    assert_eq!(out["size"].as_u64(), Some(size));
    assert_eq!(out["image"]["bytes"].as_u64(), Some(size));
    assert!(text(&result).contains("64x48"), "{}", text(&result));

    let result = call(&client, "read_file", json!({"path": "photo.jpg"})).await;
    let got = images(&result);
    assert_eq!(got[0].0, "image/jpeg");
    assert_eq!((got[0].1.width(), got[0].1.height()), (30, 20));

    // GIF and WebP too, told by their bytes, not their names.
    let small = image::RgbaImage::from_pixel(12, 7, image::Rgba([0, 90, 0, 255]));
    small
        .save_with_format(server.path("anim.dat"), image::ImageFormat::Gif)
        .unwrap();
    small
        .save_with_format(server.path("pic.webp"), image::ImageFormat::WebP)
        .unwrap();
    for (path, mime) in [("anim.dat", "image/gif"), ("pic.webp", "image/webp")] {
        let result = call(&client, "read_file", json!({"path": path})).await;
        let out = ok(&result);
        let got = images(&result);
        assert_eq!(got[0].0, mime, "{path}");
        assert_eq!((got[0].1.width(), got[0].1.height()), (12, 7), "{path}");
        assert_eq!(out["image"]["mime_type"], mime);
    }
}

#[tokio::test]
async fn a_large_image_is_scaled_down_and_says_so() {
    let server = Server::start();
    let big = image::RgbImage::from_pixel(6000, 4000, image::Rgb([1, 2, 3]));
    big.save(server.path("big.png")).unwrap();
    let client = server.client().await;
    let result = call(&client, "read_file", json!({"path": "big.png"})).await;
    let out = ok(&result);
    let got = images(&result);
    assert_eq!((got[0].1.width(), got[0].1.height()), (1568, 1045));
    assert_eq!(out["image"]["scaled"], true);
    assert_eq!(out["image"]["original_width"], 6000);
    assert_eq!(
        (
            out["image"]["width"].as_u64(),
            out["image"]["height"].as_u64()
        ),
        (Some(1568), Some(1045))
    );
    assert!(
        text(&result).contains("scaled down to 1568x1045"),
        "{}",
        text(&result)
    );
}

#[tokio::test]
async fn the_scale_limit_and_byte_cap_are_flags() {
    let server = Server::start_with(Options {
        extra_args: vec![
            "--image-max-side".into(),
            "100".into(),
            "--max-image-bytes".into(),
            "20000".into(),
        ],
        ..Options::default()
    });
    png(&server.path("mid.png"), 400, 200);
    let noisy = image::RgbImage::from_fn(300, 300, |x, y| {
        image::Rgb([((x * 7) ^ (y * 13)) as u8, (x * y) as u8, (x + y) as u8])
    });
    noisy.save(server.path("noisy.png")).unwrap();
    assert!(std::fs::metadata(server.path("noisy.png")).unwrap().len() > 20000);
    let client = server.client().await;
    let result = call(&client, "read_file", json!({"path": "mid.png"})).await;
    ok(&result);
    let got = images(&result);
    assert_eq!((got[0].1.width(), got[0].1.height()), (100, 50));
    let msg = err(&call(&client, "read_file", json!({"path": "noisy.png"})).await);
    assert!(msg.contains("20000-byte limit"), "{msg}");
}

#[tokio::test]
async fn corrupt_images_are_refused_and_svg_and_other_binaries_keep_their_ways() {
    let server = Server::start();
    png(&server.path("ok.png"), 50, 50);
    let mut bytes = std::fs::read(server.path("ok.png")).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(server.path("broken.png"), &bytes).unwrap();
    std::fs::write(
        server.path("pic.svg"),
        "<svg xmlns=\"http://www.w3.org/2000/svg\"/>\n",
    )
    .unwrap();
    std::fs::write(server.path("blob.bin"), [0u8, 1, 2, 3, 0, 5]).unwrap();
    let client = server.client().await;
    let msg = err(&call(&client, "read_file", json!({"path": "broken.png"})).await);
    assert!(msg.contains("not a readable image"), "{msg}");
    let svg = ok(&call(&client, "read_file", json!({"path": "pic.svg"})).await);
    assert!(
        svg["content"].as_str().unwrap().starts_with("<svg"),
        "{svg}"
    );
    let msg = err(&call(&client, "read_file", json!({"path": "blob.bin"})).await);
    assert!(msg.contains("binary"), "{msg}");
}

fn notebook() -> serde_json::Value {
    let mut png_bytes = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_pixel(8, 6, image::Rgb([0, 0, 255]))
        .write_to(&mut png_bytes, image::ImageFormat::Png)
        .unwrap();
    let png_b64 = base64::engine::general_purpose::STANDARD.encode(png_bytes.into_inner());
    json!({
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}},
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": ["# Analysis\n", "Some *notes*."]},
            {"cell_type": "code", "execution_count": 1, "metadata": {}, "source": "print(6 * 7)",
             "outputs": [{"output_type": "stream", "name": "stdout", "text": ["42\n"]}]},
            {"cell_type": "code", "execution_count": 2, "metadata": {}, "source": ["plot()"],
             "outputs": [{"output_type": "display_data", "metadata": {},
                          "data": {"image/png": png_b64, "text/plain": ["<Figure size 8x6>"]}}]},
            {"cell_type": "code", "execution_count": 3, "metadata": {}, "source": "1/0",
             "outputs": [{"output_type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero",
                          "traceback": ["\u{1b}[0;31mZeroDivisionError\u{1b}[0m: division by zero"]}]}
        ]
    })
}

#[tokio::test]
async fn a_notebook_renders_its_cells_outputs_and_images_in_order() {
    let server = Server::start();
    std::fs::write(
        server.path("nb.ipynb"),
        serde_json::to_string_pretty(&notebook()).unwrap(),
    )
    .unwrap();
    let client = server.client().await;
    let result = call(&client, "read_file", json!({"path": "nb.ipynb"})).await;
    let out = ok(&result);
    let shown = text(&result);
    let order = [
        "# Analysis",
        "Some *notes*.",
        "print(6 * 7)",
        "[stdout]\n42",
        "plot()",
        "<Figure size 8x6>",
        "ZeroDivisionError: division by zero",
    ];
    let mut at = 0;
    for part in order {
        let found = shown[at..]
            .find(part)
            .unwrap_or_else(|| panic!("{part:?} missing or out of order in:\n{shown}"));
        at += found + part.len();
    }
    assert!(!shown.contains('\u{1b}'), "escapes left in: {shown}");
    assert!(!shown.contains("nbformat"), "raw JSON shown: {shown}");
    let got = images(&result);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].1.width(), got[0].1.height()), (8, 6));
    assert_eq!(out["notebook"]["cells"], 4);
    assert_eq!(out["more"], false);

    // Ranged reads page by cell.
    let page = ok(&call(
        &client,
        "read_file",
        json!({"path": "nb.ipynb", "offset": 2, "limit": 1}),
    )
    .await);
    let content = page["content"].as_str().unwrap();
    assert!(
        content.contains("print(6 * 7)")
            && !content.contains("Analysis")
            && !content.contains("plot()"),
        "{content}"
    );
    assert_eq!(
        (page["start_line"].as_u64(), page["end_line"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(page["more"], true);
    assert!(content.contains("offset=3"), "{content}");

    // The raw JSON is still there for edit_file.
    let raw = ok(&call(
        &client,
        "read_file",
        json!({"path": "nb.ipynb", "raw": true}),
    )
    .await);
    assert!(raw["content"].as_str().unwrap().contains("\"nbformat\": 4"));
    ok(&call(
        &client,
        "edit_file",
        json!({"path": "nb.ipynb", "old_string": "print(6 * 7)", "new_string": "print(6 * 9)"}),
    )
    .await);
    let again = call(&client, "read_file", json!({"path": "nb.ipynb"})).await;
    assert!(text(&again).contains("print(6 * 9)"));

    std::fs::write(server.path("bad.ipynb"), "{not json").unwrap();
    let msg = err(&call(&client, "read_file", json!({"path": "bad.ipynb"})).await);
    assert!(msg.contains("not a readable Jupyter notebook"), "{msg}");
}
