//! Asking a sandbox's servers whether they answer: mcp-tools' `/health`
//! over its socket, or any path on a port through its route.

use std::path::Path;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;

use super::RouteStream;

/// How long a health check over the socket may take.
pub(super) const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// [`healthy`], asked again for up to a second: the socket exists from
/// mcp-tools' bind(2), a moment before it listens.
pub(super) async fn healthy_soon(socket: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        if healthy(socket).await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// True when the mcp-tools at `socket` answers `GET /health` with success.
pub(super) async fn healthy(socket: &Path) -> bool {
    let check = async {
        let stream = tokio::net::UnixStream::connect(socket).await.ok()?;
        Some(get_succeeds(Box::new(stream), "sandbox", "/health").await)
    };
    matches!(
        tokio::time::timeout(HEALTH_TIMEOUT, check).await,
        Ok(Some(true))
    )
}

/// True when `GET path` with `Host: host` over `stream` answers with success.
pub(super) async fn get_succeeds(stream: RouteStream, host: &str, path: &str) -> bool {
    let check = async {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = axum::http::Request::get(path)
            .header(axum::http::header::HOST, host)
            .body(axum::body::Body::empty())
            .ok()?;
        let resp = sender.send_request(req).await.ok()?;
        Some(resp.status().is_success())
    };
    check.await == Some(true)
}
