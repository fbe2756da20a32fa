//! How the proxy opens a connection to a backend; a seam so tests can make a
//! connect hang or fail without needing unroutable addresses.

use std::io;
use std::net::SocketAddr;

use async_trait::async_trait;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpStream;

/// Opens TCP connections to backends. The proxy bounds every call with the
/// listener's connect timeout, so an implementation may take as long as it likes.
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// Connects to `addr`.
    async fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream>;
}

/// The real connector: a non-blocking TCP connect with `TCP_NODELAY` set, since
/// the proxy relays whatever it reads at once and small writes must not wait.
///
/// To a backend on this node (the bridge, loopback) the handshake has usually
/// completed inside `connect(2)` already; the stream is then returned at once,
/// instead of one event-loop turn later when the runtime would first see the
/// socket writable. Otherwise it waits for the connect to finish, as
/// `TcpStream::connect` does.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpConnector;

#[async_trait]
impl Connector for TcpConnector {
    async fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::STREAM.nonblocking(),
            Some(Protocol::TCP),
        )?;
        socket.set_tcp_nodelay(true)?;
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(err) if err.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(err) => return Err(err),
        }
        let stream = TcpStream::from_std(socket.into())?;
        if stream.peer_addr().is_err() {
            // Still connecting (or failed): writable means done either way.
            stream.writable().await?;
            if let Some(err) = stream.take_error()? {
                return Err(err);
            }
            stream.peer_addr()?;
        }
        Ok(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connects_with_nodelay_and_reports_a_refused_port() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = TcpConnector.connect(addr).await.unwrap();
        assert_eq!(stream.peer_addr().unwrap(), addr);
        assert!(stream.nodelay().unwrap());
        let (accepted, from) = listener.accept().await.unwrap();
        assert_eq!(from, stream.local_addr().unwrap());
        drop((accepted, listener));
        // The port is closed now: the connect fails with the kernel's answer.
        let err = TcpConnector.connect(addr).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }
}
