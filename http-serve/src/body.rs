//! The per-request side of [`crate::serve`]: a deadline on the request body,
//! and the count of requests in flight that keeps a busy connection from
//! being closed for room.

use std::convert::Infallible;
use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::{Request, Response};

use crate::connections::Slot;

/// The error a request body reports when it has not arrived whole within
/// [`crate::Limits::body_read_timeout`] of its head.
///
/// Handlers that read bodies themselves can tell it from other body errors
/// with [`BodyTimeout::caused`] and answer `408 Request Timeout`.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body did not arrive within {} s",
            self.0.as_secs_f64()
        )
    }
}

impl Error for BodyTimeout {}

impl BodyTimeout {
    /// True when `error` or one of its sources is a [`BodyTimeout`].
    pub fn caused(error: &(dyn Error + 'static)) -> bool {
        let mut next = Some(error);
        while let Some(e) = next {
            if e.is::<BodyTimeout>() {
                return true;
            }
            next = e.source();
        }
        false
    }
}

/// A request body that fails with [`BodyTimeout`] at its deadline.
struct Deadline {
    inner: Incoming,
    sleep: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = Box<dyn Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(this.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that holds a value (a guard) until the body has been
/// sent whole or dropped: how a handler counts a streamed response as in
/// progress until its stream ends.
pub struct Guarded<G> {
    inner: Body,
    _guard: G,
}

impl<G: Send + Unpin + 'static> Guarded<G> {
    /// `response` with `guard` held until its body is sent or dropped.
    pub fn wrap(response: Response<Body>, guard: G) -> Response<Body> {
        response.map(|inner| {
            Body::new(Guarded {
                inner,
                _guard: guard,
            })
        })
    }
}

impl<G: Unpin> http_body::Body for Guarded<G> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The hyper service of one connection: the router, with the request body
/// under a deadline and the request counted in flight.
pub(crate) struct Service {
    router: Router,
    slot: Slot,
    body_read_timeout: Duration,
}

impl Service {
    pub(crate) fn new(router: Router, slot: Slot, body_read_timeout: Duration) -> Self {
        Service {
            router,
            slot,
            body_read_timeout,
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = self.slot.request_started();
        let limit = self.body_read_timeout;
        let request = if http_body::Body::is_end_stream(request.body()) {
            request.map(Body::new)
        } else {
            request.map(|inner| {
                Body::new(Deadline {
                    inner,
                    sleep: Box::pin(tokio::time::sleep(limit)),
                    limit,
                })
            })
        };
        let mut router = self.router.clone();
        Box::pin(async move {
            let response = tower_service::Service::call(&mut router, request).await?;
            Ok(Guarded::wrap(response, in_flight))
        })
    }
}
