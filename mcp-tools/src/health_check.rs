//! `mcp-tools health`: asks a running server's /health, for readiness
//! checks in images that have no curl.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Returns Ok when `GET {url}/health` answers 200 with status "ok".
pub async fn check(url: &str, timeout: Duration) -> anyhow::Result<()> {
    tokio::time::timeout(timeout, get_health(url))
        .await
        .with_context(|| format!("no answer from {url} within {} ms", timeout.as_millis()))?
}

async fn get_health(url: &str) -> anyhow::Result<()> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("only http:// URLs are supported, got {url}");
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let addr = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let mut stream = TcpStream::connect(&addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let request = format!("GET /health HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream
        .take(64 * 1024)
        .read_to_end(&mut response)
        .await
        .context("reading the answer")?;
    let response = String::from_utf8_lossy(&response);
    let status_line = response.lines().next().unwrap_or_default();
    if status_line.split_whitespace().nth(1) != Some("200") {
        bail!("{url}/health answered {status_line:?}");
    }
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    if !body.contains(r#""status":"ok""#) {
        bail!("{url}/health did not say ok: {body}");
    }
    Ok(())
}
