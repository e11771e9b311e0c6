//! Accepting and serving HTTP/1.1 connections with limits on slow clients:
//! a connection must finish each request's headers within
//! `http_timeouts.header` of its start or of its previous response (which
//! closes silent, drip-fed and idle keep-alive connections alike), and
//! shutdown waits at most `http_timeouts.shutdown_grace` for requests in
//! flight. Body deadlines belong to whoever reads the body.
//!
//! Used by every instance's listeners (`weft_api::server`, which re-exports
//! this crate as `server::connections`) and by `weft router`, which is why
//! it is a crate of its own. Owns no routing: it hands each request, with
//! the peer's address as `ConnectInfo`, to the axum router it was given.
//!
//! `tls`: TLS on a listener, for both.
//!
//! May call: `weft_core::config` (the timeouts, the certificate's paths).

pub mod tls;

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, extract::ConnectInfo, serve::Listener};
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tower::ServiceExt;

/// How long a listener's connections may take; see the module doc.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub shutdown_grace: Duration,
}

impl ConnectionLimits {
    pub fn from_config(config: &weft_core::config::Config) -> Self {
        Self { header_timeout: config.http_timeouts.header.0, shutdown_grace: config.http_timeouts.shutdown_grace.0 }
    }
}

/// Serves `listener` with `router` until `stop` completes, then stops
/// accepting and gives the open connections `shutdown_grace` to finish.
pub async fn serve<L>(mut listener: L, router: Router, limits: ConnectionLimits, stop: impl Future<Output = ()>)
where
    L: Listener,
    L::Addr: Clone + Send + Sync + 'static,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let graceful = GracefulShutdown::new();
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            () = &mut stop => break,
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer.clone()));
            let router = router.clone();
            let (request, read_to_end) = track_body(request);
            async move {
                let mut response = router.oneshot(request).await.unwrap_or_else(|never: Infallible| match never {});
                // A handler that answered without reading the whole body (a
                // refused token, a body too large) leaves the connection
                // unusable; saying so keeps clients from reusing it.
                if !read_to_end.load(Ordering::Acquire) {
                    response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
                }
                Ok::<_, Infallible>(response)
            }
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(io), service));
        connections.spawn(async move {
            // A client that goes away or times out is routine, not an error of ours.
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection closed");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(grace = ?limits.shutdown_grace, "requests still in flight after the shutdown grace period; closing their connections");
    }
    connections.shutdown().await;
}

/// The request with a body that records when it has been read to its end.
fn track_body(request: http::Request<Incoming>) -> (http::Request<axum::body::Body>, Arc<AtomicBool>) {
    let read_to_end = Arc::new(AtomicBool::new(request.body().is_end_stream()));
    let flag = read_to_end.clone();
    (request.map(|inner| axum::body::Body::new(TrackedBody { inner, read_to_end: flag })), read_to_end)
}

struct TrackedBody {
    inner: Incoming,
    read_to_end: Arc<AtomicBool>,
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.read_to_end.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Small responses go out at once: without it, a response written in two
/// parts can wait for the peer's delayed acknowledgement (Nagle).
pub fn no_delay(stream: &mut tokio::net::TcpStream) {
    let _ = stream.set_nodelay(true);
}

/// Raises this process's open-file limit to its hard limit, as Synapse does
/// at start-up: each connection holds a descriptor, and the usual soft limit
/// of 1,024 lets a thousand idle connections starve everyone else.
pub fn raise_file_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        if limit.rlim_cur < limit.rlim_max {
            let before = limit.rlim_cur;
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                tracing::debug!(before, after = limit.rlim_max, "raised the open-file limit");
            }
        }
    }
}
