//! Bearer-token check for /mcp.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

/// Where the expected token comes from.
#[derive(Debug)]
pub enum TokenSource {
    /// Given at start (flag or environment).
    Fixed(String),
    /// Read from this file on every request, so a rotation takes effect at
    /// once. No cache: a stamp of size and modification time misses a
    /// token of the same length written within one clock tick, and the
    /// file is a few bytes.
    File(PathBuf),
}

impl TokenSource {
    pub fn file(path: PathBuf) -> Self {
        TokenSource::File(path)
    }

    /// The token in force now; `None` when the token file is missing or
    /// empty, which refuses every request.
    pub fn current(&self) -> Option<String> {
        match self {
            TokenSource::Fixed(token) => Some(token.clone()),
            TokenSource::File(path) => {
                let token = std::fs::read_to_string(path).ok()?;
                Some(token.trim().to_owned()).filter(|t| !t.is_empty())
            }
        }
    }

    /// True when `presented` equals the current token, compared in
    /// constant time.
    pub fn accepts(&self, presented: &str) -> bool {
        match self.current() {
            Some(expected) => bool::from(expected.as_bytes().ct_eq(presented.as_bytes())),
            None => false,
        }
    }
}

/// Axum middleware: 401 unless the request carries `Authorization: Bearer
/// <token>`. Without a bearer token the answer names the scheme
/// (`WWW-Authenticate: Bearer`); with a wrong one it says the token is
/// invalid (`Bearer error="invalid_token"`, RFC 6750 §3.1), so clients
/// report a bad token instead of starting an OAuth flow.
pub async fn require_bearer(
    State(tokens): State<Arc<TokenSource>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let (message, challenge) = match presented {
        Some(token) if tokens.accepts(token) => return next.run(request).await,
        Some(_) => (
            "401 Unauthorized: the bearer token is not valid for this server\n",
            r#"Bearer error="invalid_token", error_description="the token is not valid for this server""#,
        ),
        None => (
            "401 Unauthorized: send Authorization: Bearer <token>\n",
            "Bearer",
        ),
    };
    let mut response = (StatusCode::UNAUTHORIZED, message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}
