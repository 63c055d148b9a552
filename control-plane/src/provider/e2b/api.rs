//! E2B's REST API as calls: one [`E2bApi::send`] that every request goes
//! through (the API's and envd's), with one retry policy, and the mapping
//! of E2B's answers to the control plane's errors.
//!
//! The API key is sent as a header only, to the API only: it is in no URL,
//! log line or error message, and a redirect (which would carry it
//! elsewhere) is never followed.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode, Url};

use super::wire;
use crate::error::{Error, ProviderError, Result, StartError};
use crate::ids::ProviderId;

/// Attempts of a call, the first included.
const ATTEMPTS: u32 = 4;
/// First retry delay; it doubles each time, with jitter.
const BACKOFF: Duration = Duration::from_millis(150);
/// Largest page E2B's list gives.
const PAGE_LIMIT: u32 = 100;
/// A list longer than this many pages is taken for a server that never ends it.
const MAX_PAGES: usize = 10_000;

/// Whether a call may be sent again after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Repeating it does no harm (reads, delete, timeout, connect, a file
    /// upload): sent again on 5xx and transport faults.
    Safe,
    /// It must happen at most once (create, pause): sent again only when it
    /// surely never left (the connection was refused).
    Once,
}

/// An answer of any status.
pub struct Answer {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: reqwest::header::HeaderMap,
    /// Its body.
    pub body: Vec<u8>,
}

/// A call that got no usable answer.
pub struct Failure {
    /// What to tell the caller.
    pub error: Error,
    /// Whether the request may have reached the server (and so, for a
    /// create, whether a sandbox may exist).
    pub maybe_sent: bool,
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Self {
        f.error
    }
}

/// A client of E2B's API at one base URL, with one key.
pub struct E2bApi {
    http: reqwest::Client,
    key: String,
    base: Url,
    timeout: Duration,
}

impl E2bApi {
    /// A client of the API at `base` sending `key`; each call may take
    /// `timeout` (creates and connects twice that).
    pub fn new(key: String, base: Url, timeout: Duration) -> Result<Self, StartError> {
        if reqwest::header::HeaderValue::from_str(&key).is_err() {
            return Err(StartError::Config(
                "E2B_API_KEY has characters a header cannot carry".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(timeout)
            .user_agent(concat!("control-plane/", env!("CARGO_PKG_VERSION")))
            // A redirect would carry X-API-Key to wherever it points (reqwest
            // drops only its own credential headers on another host), and
            // E2B's API does not redirect: a 3xx is an error like any other.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| StartError::Config(format!("http client: {e}")))?;
        Ok(E2bApi {
            http,
            key,
            base,
            timeout,
        })
    }

    /// The HTTP client, for requests to a sandbox's own ports (which get
    /// no API key).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The API's base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `path` under the API's base URL.
    pub fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}{path}"));
        url
    }

    /// `/sandboxes/{id}{tail}` under the base URL: a [`ProviderId`] cannot
    /// change the path.
    fn sandbox_url(&self, id: &ProviderId, tail: &str) -> Url {
        self.url(&format!("/sandboxes/{id}{tail}"))
    }

    /// A request to the API, with the key.
    fn request(&self, method: Method, url: Url, timeout: Duration) -> RequestBuilder {
        self.http
            .request(method, url)
            .header("X-API-Key", &self.key)
            .timeout(timeout)
    }

    /// Sends the request `build` makes (once per attempt), repeating it as
    /// `retry` allows, with backoff and jitter between attempts. `what`
    /// names the call in errors and logs.
    pub async fn send(
        &self,
        what: &str,
        retry: Retry,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Answer, Failure> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = match build().send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    match resp.bytes().await {
                        Ok(body) => Ok(Answer {
                            status,
                            headers,
                            body: body.to_vec(),
                        }),
                        Err(e) => Err(Failure {
                            error: self.transport_error(what, &e),
                            maybe_sent: true,
                        }),
                    }
                }
                Err(e) => Err(Failure {
                    error: self.transport_error(what, &e),
                    // A refused connection never carried the request.
                    maybe_sent: !e.is_connect(),
                }),
            };
            let again = attempt < ATTEMPTS
                && match &outcome {
                    Ok(a) => retry == Retry::Safe && a.status.is_server_error(),
                    Err(f) => retry == Retry::Safe || !f.maybe_sent,
                };
            if !again {
                return outcome;
            }
            match &outcome {
                Ok(a) => tracing::debug!(status = a.status.as_u16(), "E2B {what}: retrying"),
                Err(f) => tracing::debug!("E2B {what}: retrying after: {}", f.error),
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    /// Sends an API call with a JSON body (or none).
    async fn call(
        &self,
        what: &str,
        retry: Retry,
        method: Method,
        url: Url,
        body: Option<&impl serde::Serialize>,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        self.send(what, retry, || {
            let req = self.request(method.clone(), url.clone(), timeout);
            match body {
                Some(b) => req.json(b),
                None => req,
            }
        })
        .await
    }

    /// `POST /sandboxes`. Never repeated once it may have reached E2B: the
    /// caller learns from [`Failure::maybe_sent`] whether a VM may exist.
    pub async fn create(&self, body: &wire::NewSandbox<'_>) -> Result<Answer, Failure> {
        // Creating a VM takes longer than other calls.
        let timeout = self.timeout * 2;
        let url = self.url("/sandboxes");
        self.call(
            "create",
            Retry::Once,
            Method::POST,
            url,
            Some(body),
            timeout,
        )
        .await
    }

    /// One sandbox's details; `None` when E2B has no such sandbox.
    pub async fn detail(&self, id: &ProviderId) -> Result<Option<wire::ListedSandbox>> {
        let url = self.sandbox_url(id, "");
        let a = self
            .call(
                "get sandbox",
                Retry::Safe,
                Method::GET,
                url,
                None::<&()>,
                self.timeout,
            )
            .await?;
        match a.status {
            StatusCode::OK => serde_json::from_slice(&a.body)
                .map(Some)
                .map_err(|e| malformed("sandbox detail", e)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.error("get sandbox", &a)),
        }
    }

    /// Every running or paused sandbox whose metadata has all of `filter`,
    /// following `X-Next-Token` to the last page.
    pub async fn list(&self, filter: &[(&str, &str)]) -> Result<Vec<wire::ListedSandbox>> {
        // E2B's `metadata` parameter is itself a query string.
        let metadata = {
            let mut q = Url::parse("http://x/").expect("static URL");
            q.query_pairs_mut().extend_pairs(filter);
            q.query().unwrap_or("").to_string()
        };
        let mut all = Vec::new();
        let mut next: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut url = self.url("/v2/sandboxes");
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("metadata", &metadata);
                q.append_pair("state", "running,paused");
                q.append_pair("limit", &PAGE_LIMIT.to_string());
                if let Some(t) = &next {
                    q.append_pair("nextToken", t);
                }
            }
            let what = "list sandboxes";
            let a = self
                .call(
                    what,
                    Retry::Safe,
                    Method::GET,
                    url,
                    None::<&()>,
                    self.timeout,
                )
                .await?;
            if a.status != StatusCode::OK {
                return Err(self.error(what, &a));
            }
            let page: Vec<wire::ListedSandbox> =
                serde_json::from_slice(&a.body).map_err(|e| malformed("sandbox list", e))?;
            all.extend(page);
            next = a
                .headers
                .get("x-next-token")
                .and_then(|v| v.to_str().ok())
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if next.is_none() {
                return Ok(all);
            }
        }
        Err(ProviderError::failed(format!(
            "E2B's sandbox list did not end after {MAX_PAGES} pages"
        ))
        .into())
    }

    /// `DELETE /sandboxes/{id}`; a sandbox already gone is what it wants.
    pub async fn kill(&self, id: &ProviderId) -> Result<()> {
        let what = "delete sandbox";
        let url = self.sandbox_url(id, "");
        let a = self
            .call(
                what,
                Retry::Safe,
                Method::DELETE,
                url,
                None::<&()>,
                self.timeout,
            )
            .await?;
        match a.status {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            _ => Err(self.error(what, &a)),
        }
    }

    /// `POST /sandboxes/{id}/pause`, answered as it came: a 409 may mean it
    /// is paused already.
    pub async fn pause(&self, id: &ProviderId) -> Result<Answer> {
        let url = self.sandbox_url(id, "/pause");
        Ok(self
            .call(
                "pause",
                Retry::Once,
                Method::POST,
                url,
                None::<&()>,
                self.timeout * 2,
            )
            .await?)
    }

    /// `POST /sandboxes/{id}/connect`: resumes a paused sandbox (once),
    /// leaves a running one running, and sets its timeout.
    pub async fn connect(&self, id: &ProviderId, timeout_secs: u64) -> Result<wire::Sandbox> {
        let url = self.sandbox_url(id, "/connect");
        let body = wire::Timeout {
            timeout: timeout_secs,
        };
        let a = self
            .call(
                "connect",
                Retry::Safe,
                Method::POST,
                url,
                Some(&body),
                self.timeout * 2,
            )
            .await?;
        if !matches!(a.status, StatusCode::OK | StatusCode::CREATED) {
            return Err(self.error("connect", &a));
        }
        serde_json::from_slice(&a.body).map_err(|e| malformed("answer to connect", e))
    }

    /// `GET /sandboxes/{id}/metrics?start=SINCE`: the samples E2B took since
    /// Unix second `since`, in its order.
    pub async fn metrics(&self, id: &ProviderId, since: i64) -> Result<Vec<wire::SandboxMetric>> {
        let what = "get sandbox metrics";
        let mut url = self.sandbox_url(id, "/metrics");
        url.query_pairs_mut()
            .append_pair("start", &since.max(0).to_string());
        let a = self
            .call(
                what,
                Retry::Safe,
                Method::GET,
                url,
                None::<&()>,
                self.timeout,
            )
            .await?;
        if a.status != StatusCode::OK {
            return Err(self.error(what, &a));
        }
        serde_json::from_slice(&a.body).map_err(|e| malformed("sandbox metrics", e))
    }

    /// `POST /sandboxes/{id}/timeout`.
    pub async fn set_timeout(&self, id: &ProviderId, timeout_secs: u64) -> Result<()> {
        let what = "set timeout";
        let url = self.sandbox_url(id, "/timeout");
        let body = wire::Timeout {
            timeout: timeout_secs,
        };
        let a = self
            .call(
                what,
                Retry::Safe,
                Method::POST,
                url,
                Some(&body),
                self.timeout,
            )
            .await?;
        if a.status.is_success() {
            Ok(())
        } else {
            Err(self.error(what, &a))
        }
    }

    /// The error for a request that got no answer.
    pub fn transport_error(&self, what: &str, e: &reqwest::Error) -> Error {
        // The URL is left out: it says nothing the reader needs, and a
        // sandbox's address is no business of a log line.
        if e.is_timeout() {
            return ProviderError::timeout(format!("E2B did not answer {what} in time")).into();
        }
        let kind = if e.is_connect() {
            "cannot connect"
        } else {
            "the connection failed"
        };
        let detail = std::error::Error::source(e)
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        ProviderError::failed(self.scrub(format!("E2B {what}: {kind}{detail}"))).into()
    }

    /// Never let the key through, whatever a message quotes.
    fn scrub(&self, text: String) -> String {
        if self.key.len() >= 4 && text.contains(&self.key) {
            text.replace(&self.key, "<redacted>")
        } else {
            text
        }
    }

    /// The `message` of E2B's error body (or the start of whatever came).
    pub fn message(&self, a: &Answer) -> String {
        let message = serde_json::from_slice::<wire::ErrorBody>(&a.body)
            .ok()
            .and_then(|e| e.message)
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(&a.body);
                text.chars().take(200).collect()
            });
        self.scrub(message)
    }

    /// Turns a non-success answer into the control plane's error.
    pub fn error(&self, what: &str, a: &Answer) -> Error {
        let message = self.message(a);
        let status = a.status.as_u16();
        match status {
            400 => ProviderError::refused(format!("E2B refused {what}: {message}")),
            401 | 403 => ProviderError::failed(format!(
                "E2B refused the API key for {what} ({status}): check E2B_API_KEY ({message})"
            )),
            404 => ProviderError::lost(format!(
                "E2B no longer has this sandbox ({what}: {message}); it was killed or \
                 its timeout passed: delete it and create a new one"
            )),
            409 => ProviderError::busy(format!("E2B refused {what}: {message}")),
            429 => ProviderError::busy(format!(
                "E2B refused {what}: the E2B team's limit of concurrent sandboxes (or of \
                 creates per second) is reached; pause or delete sandboxes, or ask E2B for \
                 a higher limit ({message})"
            )),
            _ if a.status.is_server_error() => {
                ProviderError::failed(format!("E2B failed {what} ({status}): {message}"))
            }
            _ => ProviderError::failed(format!(
                "E2B answered {what} with an unexpected {status}: {message}"
            )),
        }
        .into()
    }
}

/// The error for an answer of E2B that does not parse.
pub fn malformed(what: &str, e: serde_json::Error) -> Error {
    ProviderError::failed(format!("E2B's {what} is malformed: {e}")).into()
}

/// Delay before retry `attempt` (1-based): doubling, with full jitter in its
/// upper half so that many clients do not retry in step.
fn backoff(attempt: u32) -> Duration {
    let base = BACKOFF * 2u32.saturating_pow(attempt.saturating_sub(1).min(6));
    base.mul_f64(0.5 + crate::random::fraction() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_jittered() {
        for attempt in 1..=4 {
            let full = BACKOFF * 2u32.pow(attempt - 1);
            let d = backoff(attempt);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
    }
}
