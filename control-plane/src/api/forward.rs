//! Client traffic to sandboxes whose provider gives them no address of
//! their own (the local provider: each sandbox has its own network
//! namespace). The control plane's address is the one route in, so nothing
//! inside a sandbox can occupy an address a client uses:
//!
//! - `/sandboxes/{id}/mcp` carries MCP (streamable HTTP) to the sandbox's
//!   mcp-tools. It needs the sandbox's token (`Authorization: Bearer`),
//!   checked here before anything reaches the sandbox, and again by mcp-tools.
//! - `http://{port}-{id}.localhost:{api port}/...` (or under the domain of
//!   `--public-url`, [`crate::public_url`]) carries a browser to a
//!   server listening on `port` inside the sandbox (E2B's
//!   `{port}-{id}.e2b.app` scheme). Each sandbox and port is an origin of its
//!   own, apart from the API's, so a page served by a tenant never sees the
//!   API's cookies or keys.
//!
//! Requests are forwarded as they are (HTTP/1.1, bodies and answers
//! streamed, so MCP's server-sent events flow), on a fresh connection each.
//! An upgrade a sandbox's server accepts (`101`, e.g. a WebSocket: the
//! browser editor needs them) becomes a byte stream both ways.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};
use crate::error::{Error, ProviderError};
use crate::provider::{Route, RouteStream};

/// Headers that describe one hop, not the request (RFC 9110 section 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// The sandbox and port a `{port}-{id}.localhost[:port]` or
/// `{port}-{id}.{domain}[:port]` host names, if it names one (`host` in
/// lower case). Ids are letters, digits and `-`, as the control plane makes
/// them.
pub fn parse_port_host<'a>(host: &'a str, domain: &str) -> Option<(u16, &'a str)> {
    let name = host.rsplit_once(':').map_or(host, |(name, _)| name);
    let label = name
        .strip_suffix(".localhost")
        .or_else(|| name.strip_suffix(domain)?.strip_suffix('.'))?;
    let (port, id) = label.split_once('-')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let plain = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    plain.then_some((port, id))
}

/// Runs before routing: a request for a `{port}-{id}.localhost` host goes to
/// that sandbox's port, and nothing of the API answers on such a host.
pub async fn port_hosts(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase);
    let domain = state.public_url.port_domain();
    let Some((port, id)) = host.as_deref().and_then(|h| parse_port_host(h, domain)) else {
        return next.run(req).await;
    };
    let id = id.to_string();
    match state.sandboxes.open_route(&id, Route::Port(port)).await {
        Ok(stream) => forward(stream, req, None).await,
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `/sandboxes/{id}/mcp` (and anything under it): MCP to the sandbox.
pub async fn mcp(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    req: Request,
) -> Response {
    let token = match state.sandboxes.route_token(&id) {
        Ok(token) => token,
        Err(e) => return ApiError::from(e).into_response(),
    };
    if !bearer_matches(req.headers(), &token) {
        let mut resp = (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({ "error": {
                "code": "unauthorized",
                "message": "send the sandbox's token: Authorization: Bearer TOKEN",
            }})),
        )
            .into_response();
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp;
    }
    match state.sandboxes.open_route(&id, Route::Mcp).await {
        Ok(stream) => forward(stream, req, Some("/mcp")).await,
        Err(e) => ApiError::from(e).into_response(),
    }
}

fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .unwrap_or("");
    !token.is_empty() && bool::from(presented.as_bytes().ct_eq(token.as_bytes()))
}

/// Whether `headers` ask to switch protocols (RFC 9110 section 7.8):
/// `Connection: upgrade` and an `Upgrade` header.
fn asks_upgrade(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade && headers.contains_key(header::UPGRADE)
}

/// Removes the hop-by-hop headers, except what carries an upgrade when one
/// is asked for (then `Connection` names only it).
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Sends `req` over `stream` and gives back the answer, its body streamed.
/// With `path`, the request's path is replaced by it (the query is kept).
async fn forward(stream: RouteStream, mut req: Request, path: Option<&str>) -> Response {
    let upgrade = asks_upgrade(req.headers());
    let client_side = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    if let Some(path) = path {
        let pq = match parts.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        };
        parts.uri = pq.parse().unwrap_or_else(|_| Uri::from_static("/"));
    } else {
        parts.uri = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/")
            .parse()
            .unwrap_or_else(|_| Uri::from_static("/"));
    }
    let upgrade_value = parts.headers.get(header::UPGRADE).cloned();
    strip_hop_by_hop(&mut parts.headers, upgrade);
    if let Some(value) = upgrade_value.filter(|_| upgrade) {
        parts.headers.insert(header::UPGRADE, value);
    }
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(e) => return bad_gateway(&format!("the sandbox did not take the connection: {e}")),
        };
    // The connection lives as long as the answer's body is read (or the
    // upgraded stream is used).
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    match sender.send_request(Request::from_parts(parts, body)).await {
        Ok(mut resp) => {
            let switched = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
            let sandbox_side = match client_side {
                Some(client_side) if switched => Some((client_side, hyper::upgrade::on(&mut resp))),
                _ => None,
            };
            let (mut parts, body) = resp.into_parts();
            let upgrade_value = parts.headers.get(header::UPGRADE).cloned();
            strip_hop_by_hop(&mut parts.headers, sandbox_side.is_some());
            if let Some((client_side, sandbox_side)) = sandbox_side {
                if let Some(value) = upgrade_value {
                    parts.headers.insert(header::UPGRADE, value);
                }
                tokio::spawn(splice(client_side, sandbox_side));
                return Response::from_parts(parts, Body::empty());
            }
            Response::from_parts(parts, Body::new(body))
        }
        Err(e) => bad_gateway(&format!("the sandbox did not answer: {e}")),
    }
}

/// Once both sides have switched protocols, copies bytes both ways until
/// either closes.
async fn splice(client: hyper::upgrade::OnUpgrade, sandbox: hyper::upgrade::OnUpgrade) {
    let (Ok(client), Ok(sandbox)) = tokio::join!(client, sandbox) else {
        return;
    };
    let _ =
        tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(sandbox)).await;
}

fn bad_gateway(message: &str) -> Response {
    ApiError::from(Error::from(ProviderError::failed(message))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_hosts_name_a_port_and_a_sandbox() {
        let domain = "sandboxes.example.com";
        assert_eq!(
            parse_port_host("3000-sb-0123abcd.localhost:8080", domain),
            Some((3000, "sb-0123abcd"))
        );
        assert_eq!(parse_port_host("80-x.localhost", domain), Some((80, "x")));
        assert_eq!(
            parse_port_host("80-x.sandboxes.example.com", domain),
            Some((80, "x"))
        );
        assert_eq!(
            parse_port_host("8000-sb-1.sandboxes.example.com:443", domain),
            Some((8000, "sb-1"))
        );
        for not in [
            "localhost:8080",
            "127.0.0.1:8080",
            "0-sb.localhost",
            "70000-sb.localhost",
            "3000-.localhost",
            "3000-sb.localhost.evil.com",
            "3000-s_b.localhost",
            "x-sb.localhost",
            "sandboxes.example.com",
            "3000-sbsandboxes.example.com",
            "3000-sb.x.sandboxes.example.com",
            "3000-sb.example.com",
        ] {
            assert_eq!(parse_port_host(not, domain), None, "{not}");
        }
    }

    #[test]
    fn only_the_sandbox_token_passes() {
        let mut h = HeaderMap::new();
        assert!(!bearer_matches(&h, "tok"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer tok"),
        );
        assert!(bearer_matches(&h, "tok"));
        assert!(!bearer_matches(&h, "tok2"));
        assert!(!bearer_matches(&h, ""));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic tok"));
        assert!(!bearer_matches(&h, "tok"));
    }
}
