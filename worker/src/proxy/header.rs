//! PROXY protocol headers (v1 text, v2 binary), as HAProxy's specification
//! `proxy-protocol.txt` defines them, sent to a backend before the client's bytes.

use std::net::{IpAddr, SocketAddr};

use super::config::ProxyProtocol;

/// The 12-byte signature every v2 header starts with.
const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];
/// Version 2, command PROXY (the connection was relayed for a client).
const V2_PROXY_COMMAND: u8 = 0x21;
/// Address family and transport bytes of v2.
const V2_TCP4: u8 = 0x11;
const V2_TCP6: u8 = 0x21;
const V2_UNSPEC: u8 = 0x00;

/// The header for a TCP connection from `client` that arrived at `local` (the
/// address the client connected to), or `None` when the listener sends none.
///
/// IPv4-mapped IPv6 addresses count as IPv4; when the two addresses are of
/// different families the header says the addresses are unknown (v1 `UNKNOWN`,
/// v2 `AF_UNSPEC`), as the specification asks.
pub fn encode(kind: ProxyProtocol, client: SocketAddr, local: SocketAddr) -> Option<Vec<u8>> {
    let client = canonical(client);
    let local = canonical(local);
    match kind {
        ProxyProtocol::None => None,
        ProxyProtocol::V1 => Some(v1(client, local)),
        ProxyProtocol::V2 => Some(v2(client, local)),
    }
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

fn v1(client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let family = match (client.ip(), local.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => "TCP4",
        (IpAddr::V6(_), IpAddr::V6(_)) => "TCP6",
        _ => return b"PROXY UNKNOWN\r\n".to_vec(),
    };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        client.ip(),
        local.ip(),
        client.port(),
        local.port()
    )
    .into_bytes()
}

fn v2(client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 36);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(V2_PROXY_COMMAND);
    let mut addresses = Vec::with_capacity(36);
    let family = match (client.ip(), local.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            addresses.extend_from_slice(&src.octets());
            addresses.extend_from_slice(&dst.octets());
            V2_TCP4
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            addresses.extend_from_slice(&src.octets());
            addresses.extend_from_slice(&dst.octets());
            V2_TCP6
        }
        _ => V2_UNSPEC,
    };
    if family != V2_UNSPEC {
        addresses.extend_from_slice(&client.port().to_be_bytes());
        addresses.extend_from_slice(&local.port().to_be_bytes());
    }
    out.push(family);
    // At most 36 bytes of addresses: the length always fits the u16 field.
    out.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
    out.extend_from_slice(&addresses);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn none_sends_nothing() {
        assert_eq!(
            encode(
                ProxyProtocol::None,
                addr("127.0.0.1:1"),
                addr("127.0.0.1:2")
            ),
            None
        );
    }

    #[test]
    fn v1_ipv4() {
        let header = encode(
            ProxyProtocol::V1,
            addr("127.0.2.10:51234"),
            addr("127.51.100.7:8080"),
        )
        .unwrap();
        assert_eq!(header, b"PROXY TCP4 127.0.2.10 127.51.100.7 51234 8080\r\n");
    }

    #[test]
    fn v1_ipv6_and_mapped_ipv4() {
        let header = encode(
            ProxyProtocol::V1,
            addr("[2001:db8::1]:4000"),
            addr("[::1]:80"),
        )
        .unwrap();
        assert_eq!(header, b"PROXY TCP6 2001:db8::1 ::1 4000 80\r\n");
        let mapped = encode(
            ProxyProtocol::V1,
            addr("[::ffff:127.0.0.11]:4000"),
            addr("127.0.0.12:80"),
        )
        .unwrap();
        assert_eq!(mapped, b"PROXY TCP4 127.0.0.11 127.0.0.12 4000 80\r\n");
        let mixed = encode(
            ProxyProtocol::V1,
            addr("[2001:db8::1]:4000"),
            addr("127.0.0.12:80"),
        )
        .unwrap();
        assert_eq!(mixed, b"PROXY UNKNOWN\r\n");
    }

    #[test]
    fn v2_ipv4() {
        let header = encode(
            ProxyProtocol::V2,
            addr("127.0.2.10:51234"),
            addr("127.51.100.7:8080"),
        )
        .unwrap();
        let mut expected = vec![
            0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54,
            0x0A, // signature
            0x21, // v2, PROXY
            0x11, // AF_INET, STREAM
            0x00, 0x0C, // 12 bytes of addresses
            127, 0, 2, 10, // source
            127, 51, 100, 7, // destination
        ];
        expected.extend_from_slice(&51234u16.to_be_bytes());
        expected.extend_from_slice(&8080u16.to_be_bytes());
        assert_eq!(header, expected);
    }

    #[test]
    fn v2_ipv6_and_mixed() {
        let header = encode(
            ProxyProtocol::V2,
            addr("[2001:db8::1]:4000"),
            addr("[::1]:80"),
        )
        .unwrap();
        assert_eq!(&header[12..16], &[0x21, 0x21, 0x00, 36]);
        let mut src = [0u8; 16];
        src[0] = 0x20;
        src[1] = 0x01;
        src[2] = 0x0d;
        src[3] = 0xb8;
        src[15] = 1;
        let mut dst = [0u8; 16];
        dst[15] = 1;
        assert_eq!(&header[16..32], &src);
        assert_eq!(&header[32..48], &dst);
        assert_eq!(&header[48..52], &[0x0F, 0xA0, 0x00, 0x50]);
        assert_eq!(header.len(), 52);

        let mixed = encode(
            ProxyProtocol::V2,
            addr("[2001:db8::1]:4000"),
            addr("127.0.0.12:80"),
        )
        .unwrap();
        assert_eq!(&mixed[12..], &[0x21, 0x00, 0x00, 0x00]);
    }
}
