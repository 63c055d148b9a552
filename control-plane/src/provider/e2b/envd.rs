//! What the control plane does inside a new or resumed E2B sandbox: writes
//! mcp-tools' token file through envd, E2B's agent in every sandbox (its
//! `/files` API, `X-Access-Token`), and waits until mcp-tools answers
//! `/health` through E2B's proxy.

use std::time::{Duration, Instant};

use reqwest::Url;

use super::api::{E2bApi, Retry};
use crate::error::{ProviderError, Result};
use crate::ids::ProviderId;
use crate::provider::Running;

/// The user that owns mcp-tools' token folder in the template.
const SANDBOX_USER: &str = "user";
/// How long a new or resumed sandbox's mcp-tools may take to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes `token` to `path` in the sandbox whose envd answers at `envd`
/// (`https://49983-{id}.{domain}`), as the template's user. Writing the same
/// file again is harmless, so a fault of a VM that has just started is
/// retried like any safe call.
pub async fn upload_token(
    api: &E2bApi,
    sandbox: &ProviderId,
    envd: &str,
    access_token: Option<&str>,
    path: &str,
    token: &str,
) -> Result<()> {
    let mut url = Url::parse(&format!("{envd}/files"))
        .map_err(|e| ProviderError::failed(format!("envd URL {envd:?}: {e}")))?;
    url.query_pairs_mut()
        .append_pair("path", path)
        .append_pair("username", SANDBOX_USER);
    // A multipart form with the field `file`: what every envd version takes.
    let boundary = format!(
        "control-plane-{}",
        crate::random::hex(12).unwrap_or_else(|_| "boundary".into())
    );
    let mut body = Vec::with_capacity(token.len() + 256);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"token\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(token.as_bytes());
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let content_type = format!("multipart/form-data; boundary={boundary}");

    let what = "token upload to envd";
    let answer = api
        .send(what, Retry::Safe, || {
            // No API key: envd is the sandbox's, not E2B's API.
            let req = api
                .http()
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, &content_type)
                .body(body.clone());
            match access_token {
                Some(t) => req.header("X-Access-Token", t),
                None => req,
            }
        })
        .await?;
    if answer.status.is_success() {
        return Ok(());
    }
    let text: String = String::from_utf8_lossy(&answer.body)
        .chars()
        .take(200)
        .collect();
    Err(ProviderError::failed(format!(
        "envd of sandbox {sandbox} refused the token upload ({}): {}",
        answer.status,
        text.trim()
    ))
    .into())
}

/// Waits until the sandbox's mcp-tools answers `/health` through E2B's proxy.
pub async fn wait_ready(api: &E2bApi, running: &Running) -> Result<()> {
    let health = format!("{}/health", running.endpoint.url.trim_end_matches("/mcp"));
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last: String;
    loop {
        let mut req = api.http().get(&health).timeout(Duration::from_secs(5));
        for (k, v) in &running.endpoint.headers {
            req = req.header(k, v);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("status {}", r.status().as_u16()),
            Err(e) => last = api.transport_error("health check", &e).to_string(),
        }
        if Instant::now() > deadline {
            return Err(ProviderError::timeout(format!(
                "mcp-tools in E2B sandbox {} did not answer within {}s ({last}); \
                 is the template built from sandbox-template/?",
                running.provider_id,
                READY_TIMEOUT.as_secs()
            ))
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
