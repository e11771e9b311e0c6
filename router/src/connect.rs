//! The proxy client's connector: request URIs name an instance by index
//! (`http://instance-3/...`), and the connector opens a TCP connection or a
//! Unix socket to that instance's client listener, within the connect
//! timeout. Naming instances rather than addresses keeps one connection pool
//! per instance in the HTTP client.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::Uri;
use hyper_util::{
    client::legacy::connect::{Connected, Connection},
    rt::TokioIo,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpStream, UnixStream},
};

use super::table::Address;

const HOST_PREFIX: &str = "instance-";

/// The URI authority that names instance `index`.
pub fn authority(index: usize) -> String {
    format!("{HOST_PREFIX}{index}")
}

#[derive(Clone)]
pub struct Connector {
    addresses: Arc<Vec<Address>>,
    timeout: Duration,
}

impl Connector {
    pub fn new(addresses: Vec<Address>, timeout: Duration) -> Self {
        Self { addresses: Arc::new(addresses), timeout }
    }
}

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let address = uri
            .host()
            .and_then(|host| host.strip_prefix(HOST_PREFIX))
            .and_then(|index| index.parse::<usize>().ok())
            .and_then(|index| self.addresses.get(index).cloned());
        let timeout = self.timeout;
        Box::pin(async move {
            let address = address.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not an instance of this router"))?;
            let connect = async {
                match &address {
                    Address::Tcp { host, port } => {
                        let stream = TcpStream::connect((host.as_str(), *port)).await?;
                        stream.set_nodelay(true)?;
                        Ok(Stream::Tcp(stream))
                    }
                    Address::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path).await?)),
                }
            };
            match tokio::time::timeout(timeout, connect).await {
                Ok(stream) => stream.map(TokioIo::new),
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, format!("no connection to {address} within {timeout:?}"))),
            }
        })
    }
}

/// A connection to an instance.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Unix(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Unix(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            Self::Unix(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Unix(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}
