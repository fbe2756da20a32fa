//! UDP sockets that share their port with the node's other listeners.
//!
//! The DNS server listens on the bridge gateway's port 53 and a service may
//! publish UDP port 53 on `0.0.0.0`: Linux lets both bind only when each socket
//! sets `SO_REUSEADDR` before binding, and then delivers a datagram to the
//! socket bound to its exact destination address first, so the gateway's
//! queries still reach the DNS server. (TCP listeners get `SO_REUSEADDR` from
//! std already; Linux still refuses a specific address under a listening
//! wildcard one, so TCP port 53 cannot be published on a node with a task
//! network.)

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

/// A non-blocking UDP socket bound to `addr` with `SO_REUSEADDR`; must be
/// called inside a tokio runtime.
pub fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
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
}
