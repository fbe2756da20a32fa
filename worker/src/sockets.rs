//! Sockets that share their port with the node's other listeners.
//!
//! The DNS server listens on the bridge gateway's port 53 and a service may
//! publish port 53 on `0.0.0.0`, UDP or TCP:
//! - UDP: Linux lets both bind only when each socket sets `SO_REUSEADDR` before
//!   binding, and then delivers a datagram to the socket bound to its exact
//!   destination address first, so the gateway's queries still reach the DNS
//!   server.
//! - TCP: Linux refuses a specific address under a listening wildcard one (and
//!   the other way round) even with `SO_REUSEADDR`; with `SO_REUSEPORT` on both
//!   it lets them listen side by side and gives a connection to the one bound
//!   to its exact destination first. Only TCP listeners on the DNS port set it:
//!   elsewhere it would let any other socket of the same user that sets it
//!   share a published port's connections unnoticed (the proxy shares its own
//!   ports between a wildcard and specific listeners by itself, see
//!   `proxy::routes`).

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};

/// The port of the node's DNS server, on the bridge gateway.
pub const DNS_PORT: u16 = 53;

/// Pending connections a TCP listener queues (the kernel caps it at
/// `net.core.somaxconn`).
const BACKLOG: i32 = 1024;

/// A non-blocking UDP socket bound to `addr` with `SO_REUSEADDR`; must be
/// called inside a tokio runtime.
pub fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// A TCP listener on `addr` with `SO_REUSEADDR` (as std's), and `SO_REUSEPORT`
/// on the DNS port, so that the DNS server on the gateway and a published TCP
/// port 53 on `0.0.0.0` can both listen; must be called inside a tokio runtime.
pub fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    bind_tcp_sharing(addr, addr.port() == DNS_PORT)
}

fn bind_tcp_sharing(addr: SocketAddr, share_port: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if share_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    TcpListener::from_std(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wildcard_and_a_specific_socket_share_a_port() {
        let wildcard = bind_udp("0.0.0.0:0".parse().unwrap()).unwrap();
        let port = wildcard.local_addr().unwrap().port();
        let specific = bind_udp(SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client
            .send_to(b"q", specific.local_addr().unwrap())
            .await
            .unwrap();
        let mut buf = [0u8; 4];
        let (n, from) = specific.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from), (&b"q"[..], client.local_addr().unwrap()));
    }

    #[tokio::test]
    async fn tcp_listeners_share_a_port_only_where_asked() {
        use tokio::io::AsyncWriteExt;
        let wildcard = bind_tcp_sharing("0.0.0.0:0".parse().unwrap(), true).unwrap();
        let port = wildcard.local_addr().unwrap().port();
        let specific = bind_tcp_sharing(SocketAddr::from(([127, 0, 0, 7], port)), true).unwrap();
        // Each connection goes to the listener bound to its exact address first.
        for (to, expect_specific) in [([127, 0, 0, 7], true), ([127, 0, 0, 1], false)] {
            let mut client = tokio::net::TcpStream::connect(SocketAddr::from((to, port)))
                .await
                .unwrap();
            client.write_all(b"x").await.unwrap();
            let (accepted, _) = if expect_specific {
                specific.accept().await.unwrap()
            } else {
                wildcard.accept().await.unwrap()
            };
            assert_eq!(
                accepted.local_addr().unwrap().ip(),
                std::net::IpAddr::from(to)
            );
        }
        // Without it, the usual refusal.
        let err = bind_tcp_sharing(SocketAddr::from(([127, 0, 0, 8], port)), false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let plain = bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = plain.local_addr().unwrap().port();
        assert!(bind_tcp(SocketAddr::from(([0, 0, 0, 0], port))).is_err());
    }
}
