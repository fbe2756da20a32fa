//! Forwarding a query that is not the cluster's to the upstream resolvers: the
//! client's bytes as they are, under an id of our own, over UDP (and again over
//! TCP when a TCP client's answer came back truncated).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tracing::debug;

use super::error::DnsError;

/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;
/// The size of a DNS header.
const HEADER_LEN: usize = 12;
/// The QR bit (a response) in the header's third byte.
const QR: u8 = 0x80;
/// The TC bit (truncated) in the header's third byte.
const TC: u8 = 0x02;

/// The first upstream's answer to `query` (a whole DNS message of at least a
/// header), with the client's id; the upstreams are tried in turn, each for at
/// most `timeout` (twice that when a truncated answer is retried over TCP).
pub(super) async fn forward(
    query: &[u8],
    upstreams: &[SocketAddr],
    timeout: Duration,
    over_tcp: bool,
) -> Result<Vec<u8>, DnsError> {
    if query.len() < HEADER_LEN {
        return Err(DnsError::ShortQuery { len: query.len() });
    }
    let client_id = [query[0], query[1]];
    let mut last = DnsError::NoUpstreams;
    for &upstream in upstreams {
        match exchange(query, upstream, timeout, over_tcp).await {
            Ok(mut reply) => {
                reply[..2].copy_from_slice(&client_id);
                return Ok(reply);
            }
            Err(err) => {
                debug!(%err, "upstream failed; trying the next one");
                last = err;
            }
        }
    }
    Err(last)
}

/// One upstream's answer, under a fresh id.
async fn exchange(
    query: &[u8],
    upstream: SocketAddr,
    timeout: Duration,
    over_tcp: bool,
) -> Result<Vec<u8>, DnsError> {
    let id: u16 = rand::random();
    let mut query = query.to_vec();
    query[..2].copy_from_slice(&id.to_be_bytes());
    let timed_out = || DnsError::UpstreamTimeout { upstream, timeout };
    let reply = tokio::time::timeout(timeout, over_udp(&query, upstream, id))
        .await
        .map_err(|_| timed_out())??;
    if !over_tcp || reply[2] & TC == 0 {
        return Ok(reply);
    }
    debug!(%upstream, "truncated upstream answer; asking again over TCP");
    tokio::time::timeout(timeout, over_tcp_stream(&query, upstream, id))
        .await
        .map_err(|_| timed_out())?
}

/// Sends `query` from a socket of its own, connected to `upstream` (so only its
/// datagrams are read), and waits for the datagram answering `id`.
async fn over_udp(query: &[u8], upstream: SocketAddr, id: u16) -> Result<Vec<u8>, DnsError> {
    let io = |source| DnsError::Upstream { upstream, source };
    let socket = UdpSocket::bind(local_for(upstream)).await.map_err(io)?;
    socket.connect(upstream).await.map_err(io)?;
    socket.send(query).await.map_err(io)?;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let len = socket.recv(&mut buf).await.map_err(io)?;
        if answers(&buf[..len], id) {
            buf.truncate(len);
            return Ok(buf);
        }
        debug!(%upstream, len, "ignored a datagram that does not answer the query");
    }
}

/// Sends `query` on a TCP connection of its own and reads one answer.
async fn over_tcp_stream(query: &[u8], upstream: SocketAddr, id: u16) -> Result<Vec<u8>, DnsError> {
    let io = |source| DnsError::Upstream { upstream, source };
    let len = u16::try_from(query.len()).map_err(|_| DnsError::BadReply { upstream })?;
    let mut stream = TcpStream::connect(upstream).await.map_err(io)?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await.map_err(io)?;
    let len = stream.read_u16().await.map_err(io)?;
    let mut reply = vec![0u8; usize::from(len)];
    stream.read_exact(&mut reply).await.map_err(io)?;
    if answers(&reply, id) {
        Ok(reply)
    } else {
        Err(DnsError::BadReply { upstream })
    }
}

/// Whether `reply` is a response with `id`.
fn answers(reply: &[u8], id: u16) -> bool {
    reply.len() >= HEADER_LEN && reply[..2] == id.to_be_bytes() && reply[2] & QR != 0
}

/// The address to send from: any of the upstream's family, or the loopback
/// itself for a loopback upstream (so a test's traffic never leaves it).
fn local_for(upstream: SocketAddr) -> SocketAddr {
    let ip = match upstream {
        SocketAddr::V4(v4) if v4.ip().is_loopback() => (*v4.ip()).into(),
        SocketAddr::V6(v6) if v6.ip().is_loopback() => (*v6.ip()).into(),
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    SocketAddr::new(ip, 0)
}
