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
//!   to its exact destination first. TCP listeners on the DNS port set it.
//!
//! The same holds for the port a manager's daemon listens on (4242 by default,
//! on `0.0.0.0`) and a service whose target port it is: the proxy's listener
//! on `VIP:4242` must listen beside the daemon's. The daemon's wildcard
//! listener ([`listen_daemon`]) and the proxy's specific listeners on that port
//! set `SO_REUSEPORT` too; since Linux would then also let another program of
//! the same user listen on `0.0.0.0:4242` and take half of the daemon's
//! connections, the daemon checks after listening that no other program holds
//! a socket listening on its port (once: a program that sets `SO_REUSEPORT`
//! on that port later is not noticed). The proxy is told the daemon's port on
//! every node, workers too, so a worker promoted later can listen beside its
//! VIP listeners.
//!
//! Elsewhere `SO_REUSEPORT` is not set: it would let any other socket of the
//! same user that sets it share a published port's connections unnoticed (the
//! proxy shares its own ports between a wildcard and specific listeners by
//! itself, see `proxy::routes`).

pub(crate) mod holders;

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, UdpSocket};
use tracing::warn;

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

/// A TCP listener of the node on `addr`, with `SO_REUSEADDR` (as std's), and
/// `SO_REUSEPORT` where it must listen beside another of the node's listeners:
/// on the DNS port (the DNS server on the gateway, a published port 53 on
/// `0.0.0.0`), and at a specific address on `daemon_port`, the port the node's
/// daemon listens on when it is a manager (a VIP listener beside the daemon's
/// `0.0.0.0`). Must be called inside a tokio runtime.
pub fn bind_tcp(addr: SocketAddr, daemon_port: Option<u16>) -> io::Result<TcpListener> {
    let beside_daemon = Some(addr.port()) == daemon_port && !addr.ip().is_unspecified();
    bind_tcp_sharing(addr, addr.port() == DNS_PORT || beside_daemon)
}

/// The daemon's TCP listener on `addr`. On a wildcard address it sets
/// `SO_REUSEPORT`, so the proxy's VIP listeners on the same port can listen
/// beside it (see the module's notes), and then refuses, as a plain bind
/// would, if another program listens on that port too. Must be called inside
/// a tokio runtime.
pub fn listen_daemon(addr: SocketAddr) -> io::Result<TcpListener> {
    if !addr.ip().is_unspecified() {
        return bind_tcp_sharing(addr, false);
    }
    let listener = bind_tcp_sharing(addr, true)?;
    let port = listener.local_addr()?.port();
    let others = match holders::others_listening_on(port) {
        // Those its connections could go to: of its family, or dual-stack.
        Ok(others) => others
            .into_iter()
            .filter(|other| other.is_ipv4() == addr.is_ipv4() || other.ip().is_unspecified())
            .collect::<Vec<_>>(),
        Err(err) => {
            warn!(%addr, %err, "cannot tell whether another program shares the daemon's port");
            Vec::new()
        }
    };
    if !others.is_empty() {
        let list: Vec<String> = others.iter().map(ToString::to_string).collect();
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("another program listens on {}", list.join(", ")),
        ));
    }
    Ok(listener)
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

    /// Checks that a connection to `specific`'s address goes to it and one to
    /// another loopback address on the port goes to `wildcard`, which listens on
    /// `0.0.0.0` beside it.
    async fn exact_address_wins(specific: &TcpListener, wildcard: &TcpListener) {
        use tokio::io::AsyncWriteExt;
        let specific_addr = specific.local_addr().unwrap();
        let other = SocketAddr::from(([127, 0, 0, 1], specific_addr.port()));
        for (to, listener) in [(specific_addr, specific), (other, wildcard)] {
            let mut client = tokio::net::TcpStream::connect(to).await.unwrap();
            client.write_all(b"x").await.unwrap();
            let (accepted, _) = listener.accept().await.unwrap();
            assert_eq!(accepted.local_addr().unwrap(), to);
        }
    }

    #[tokio::test]
    async fn tcp_listeners_share_a_port_only_where_asked() {
        let wildcard = bind_tcp_sharing("0.0.0.0:0".parse().unwrap(), true).unwrap();
        let port = wildcard.local_addr().unwrap().port();
        let specific = bind_tcp_sharing(SocketAddr::from(([127, 0, 0, 7], port)), true).unwrap();
        exact_address_wins(&specific, &wildcard).await;
        // Without it, the usual refusal.
        let err = bind_tcp_sharing(SocketAddr::from(([127, 0, 0, 8], port)), false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let plain = bind_tcp("127.0.0.1:0".parse().unwrap(), None).unwrap();
        let port = plain.local_addr().unwrap().port();
        assert!(bind_tcp(SocketAddr::from(([0, 0, 0, 0], port)), None).is_err());
    }

    #[tokio::test]
    async fn vip_listeners_share_the_daemons_port_and_nothing_else_does() {
        let daemon = listen_daemon("0.0.0.0:0".parse().unwrap()).unwrap();
        let port = daemon.local_addr().unwrap().port();
        let vip = bind_tcp(SocketAddr::from(([127, 0, 0, 9], port)), Some(port)).unwrap();
        exact_address_wins(&vip, &daemon).await;
        // A wildcard listener on the daemon's port (a published port) does not
        // share it, nor does a specific one that is not told the daemon's port.
        let refused = [
            bind_tcp(SocketAddr::from(([0, 0, 0, 0], port)), Some(port)),
            bind_tcp(SocketAddr::from(([127, 0, 0, 10], port)), None),
        ];
        for result in refused {
            assert_eq!(result.unwrap_err().kind(), io::ErrorKind::AddrInUse);
        }
        // The other way round, as on a worker promoted to manager: the daemon
        // listens beside the proxy's VIP listener, which it knows for its own.
        let vip = bind_tcp_sharing("127.0.0.12:0".parse().unwrap(), true).unwrap();
        let port = vip.local_addr().unwrap().port();
        listen_daemon(SocketAddr::from(([0, 0, 0, 0], port))).unwrap();
        // On a specific address the daemon's listener is a plain one.
        let specific = listen_daemon("127.0.0.11:0".parse().unwrap()).unwrap();
        let port = specific.local_addr().unwrap().port();
        let err = bind_tcp_sharing(SocketAddr::from(([0, 0, 0, 0], port)), true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    /// A child process that holds a socket until it is dropped.
    struct Holder(std::process::Child);

    impl Drop for Holder {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[tokio::test]
    async fn the_daemon_refuses_a_port_another_program_shares_with_it() {
        // Another program listening on 0.0.0.0:P with SO_REUSEPORT: a child
        // process inherits the socket and this process closes its copy.
        let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        socket.set_reuse_port(true).unwrap();
        socket
            .bind(&SocketAddr::from(([0, 0, 0, 0], 0)).into())
            .unwrap();
        socket.listen(16).unwrap();
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        socket.set_cloexec(false).unwrap();
        let _holder = Holder(
            std::process::Command::new("sleep")
                .arg("60")
                .spawn()
                .unwrap(),
        );
        drop(socket);
        let err = listen_daemon(addr).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(
            err.to_string(),
            format!("another program listens on 0.0.0.0:{}", addr.port())
        );
    }
}
