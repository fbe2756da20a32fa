//! How the proxy opens a connection to a backend; a seam so tests can make a
//! connect hang or fail without needing unroutable addresses.

use std::io;
use std::net::SocketAddr;

use async_trait::async_trait;
use tokio::net::TcpStream;

/// Opens TCP connections to backends. The proxy bounds every call with the
/// listener's connect timeout, so an implementation may take as long as it likes.
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// Connects to `addr`.
    async fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream>;
}

/// The real connector: a plain TCP connect with `TCP_NODELAY` set, since the proxy
/// relays whatever it reads at once and small writes must not wait.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpConnector;

#[async_trait]
impl Connector for TcpConnector {
    async fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}
