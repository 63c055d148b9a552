//! Serves an axum [`Router`] over TCP or a Unix socket so that clients that
//! misbehave cannot take the server down.
//!
//! `axum::serve` sets no timer, which turns off hyper's header-read timeout,
//! and admits connections until the process runs out of file descriptors;
//! then nothing is accepted any more, `/health` included. [`serve`] adds:
//!
//! - a **header-read timeout** that is also the **idle keep-alive timeout**:
//!   hyper starts it whenever a connection waits for a request head, before
//!   the first request and between requests;
//! - a **body-read timeout**: a request body must arrive whole within it,
//!   counted from the request head (see [`BodyTimeout`]);
//! - a **connection budget**: over it, the oldest connection that has no
//!   request in flight is closed to make room (a half-sent request head
//!   costs the server nothing to drop), and when every connection is busy
//!   the newcomer gets a fast `503` instead of stalling the accept loop.
//!
//! What is legitimately long is spared: once a request head is read, a
//! response may take as long as it needs (an SSE stream, a ten-minute tool
//! call), and a connection with a request in flight is never closed for room.
//!
//! [`raise_open_files_limit`] lifts the soft `RLIMIT_NOFILE` to the hard one,
//! and [`Limits::connection_budget`] keeps half the descriptors for files and
//! processes.

mod body;
mod connections;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};

pub use body::{BodyTimeout, Guarded};
use connections::{Admission, Connections};

/// Most `503` answers being sent at once.
const MAX_REFUSALS: usize = 64;

/// What [`serve`] allows each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest wait for a whole request head: on a new connection, and
    /// between requests on a kept-alive one (so it is the idle timeout too).
    pub header_read_timeout: Duration,
    /// Longest a request body may take to arrive, counted from its head.
    pub body_read_timeout: Duration,
    /// Most connections open at once; see [`Limits::connection_budget`].
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

impl Limits {
    /// `max_connections` lowered to half of `open_files` (the soft
    /// `RLIMIT_NOFILE`), so that connections alone never use up the
    /// descriptors that files, pipes and child processes need.
    pub fn connection_budget(mut self, open_files: u64) -> Self {
        let half = usize::try_from(open_files / 2).unwrap_or(usize::MAX);
        self.max_connections = self.max_connections.min(half).max(1);
        self
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the soft
/// limit now in force (the default soft limit, 1024, is a few hundred
/// clients).
///
/// # Errors
/// When `getrlimit`/`setrlimit` fail; the limit is then unchanged.
pub fn raise_open_files_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(limit.rlim_cur)
}

/// A listening socket [`serve`] accepts connections from: a
/// [`TcpListener`] or a [`UnixListener`].
pub trait Listener: Send {
    /// An accepted connection.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// The next connection.
    ///
    /// # Errors
    /// What `accept(2)` reports, e.g. `EMFILE` when out of descriptors.
    fn accept(&self) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

impl Listener for TcpListener {
    type Io = tokio::net::TcpStream;

    /// Every accepted socket gets `TCP_NODELAY`: without it each small
    /// response waits ~40 ms for the client's delayed ACK.
    async fn accept(&self) -> io::Result<Self::Io> {
        let (stream, _) = TcpListener::accept(self).await?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

impl Listener for UnixListener {
    type Io = tokio::net::UnixStream;

    async fn accept(&self) -> io::Result<Self::Io> {
        Ok(UnixListener::accept(self).await?.0)
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets the
/// requests in flight finish (connections are told to close once their
/// response is sent) and returns when every connection has closed.
///
/// # Errors
/// Never for a single connection's fault; only when the listener itself
/// fails for good.
pub async fn serve<L: Listener>(
    listener: L,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let connections = Arc::new(Connections::new(limits.max_connections));
    // Each refusal holds its socket for up to a second; past this many at
    // once, connections over the budget are closed without an answer.
    let refusals = Arc::new(tokio::sync::Semaphore::new(MAX_REFUSALS));
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(stream) => stream,
                Err(e) => {
                    on_accept_error(&connections, &e).await;
                    continue;
                }
            },
        };
        match connections.admit() {
            Admission::Admitted(slot) => {
                tokio::spawn(serve_connection(stream, router.clone(), limits, slot));
            }
            Admission::Full => {
                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                    tokio::spawn(async move {
                        refuse(stream).await;
                        drop(permit);
                    });
                }
            }
        }
    }
    drop(listener);
    connections.stop_all();
    connections.wait_empty().await;
    Ok(())
}

/// Serves one connection until it closes, is chosen to make room, or the
/// server stops (then it finishes the request in flight first).
async fn serve_connection(
    stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
    router: Router,
    limits: Limits,
    slot: connections::Slot,
) {
    let service = body::Service::new(router, slot.clone(), limits.body_read_timeout);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    // Upgrades (WebSocket) are allowed: the control plane passes them on to
    // servers in sandboxes (a browser editor needs them).
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let stop = slot.stopping();
    tokio::pin!(stop);
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!("connection closed: {e}");
                }
                return;
            }
            // Dropping the connection closes the socket; nothing was in flight.
            () = slot.evicted() => return,
            () = &mut stop, if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

/// Answers a connection over the budget with a `503` and closes it. The
/// request head is read first (briefly, and at most 16 KiB of it): a client
/// answered before it has sent its request may report a broken connection
/// instead of the answer.
async fn refuse(mut stream: impl AsyncRead + AsyncWrite + Unpin) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const BODY: &str = "503 Service Unavailable: too many connections; retry shortly\n";
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let mut head = Vec::with_capacity(1024);
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        let mut buf = [0u8; 4096];
        while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what else the client sent before closing: closing a socket
        // with unread data sends a reset, which can discard the answer.
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        io::Result::Ok(())
    })
    .await;
}

/// Out of descriptors: close an idle connection to make room and pause
/// accepting briefly, instead of spinning on the same error.
async fn on_accept_error(connections: &Connections, error: &io::Error) {
    let exhausted = matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
    if exhausted {
        tracing::warn!("out of file descriptors accepting a connection; closing an idle one");
        connections.evict_idle();
        tokio::time::sleep(Duration::from_millis(20)).await;
    } else {
        tracing::debug!("accept failed: {error}");
    }
}
