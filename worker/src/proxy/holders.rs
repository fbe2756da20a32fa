//! Who else listens on a TCP port in this network namespace, read from
//! `/proc/net/tcp` and `/proc/net/tcp6`: a wildcard listener that cannot bind
//! tells whether only this proxy's own specific listeners hold its port (they
//! make room for it) or another program does (they keep serving, and the error
//! names that program's address).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The kernel's code for a listening socket (`TCP_LISTEN`).
const LISTEN: &str = "0A";

/// The local addresses of the TCP sockets listening on `port`; `None` when the
/// tables cannot be read.
pub(super) fn tcp_listeners_on(port: u16) -> Option<Vec<SocketAddr>> {
    let mut found = Vec::new();
    for (path, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        match std::fs::read_to_string(path) {
            Ok(text) => found.extend(parse(&text, v6).filter(|addr| addr.port() == port)),
            // Without IPv6 there is no tcp6 table.
            Err(_) if v6 => {}
            Err(_) => return None,
        }
    }
    Some(found)
}

/// The listening sockets' local addresses in one table.
fn parse(text: &str, v6: bool) -> impl Iterator<Item = SocketAddr> + '_ {
    text.lines().skip(1).filter_map(move |line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1)?;
        let state = fields.nth(1)?;
        if state != LISTEN {
            return None;
        }
        let (ip, port) = local.split_once(':')?;
        let port = u16::from_str_radix(port, 16).ok()?;
        Some(SocketAddr::new(address(ip, v6)?, port))
    })
}

/// An address as the kernel prints it: 32-bit words in hex, each in the
/// machine's byte order.
fn address(hex: &str, v6: bool) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        let digits = hex.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(digits, 16).ok()?.to_ne_bytes())
    };
    if v6 {
        if hex.len() != 32 {
            return None;
        }
        let mut bytes = [0u8; 16];
        for i in 0..4 {
            bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
        }
        Some(IpAddr::V6(Ipv6Addr::from(bytes)))
    } else if hex.len() == 8 {
        Some(IpAddr::V4(Ipv4Addr::from(word(0)?)))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_listening_sockets_of_a_table() {
        // As printed on a little-endian machine.
        let table = "  sl  local_address rem_address   st tx_queue rx_queue\n   \
             0: 0100007F:1F90 00000000:0000 0A 00000000:00000000\n   \
             1: 0100007F:1F90 0100007F:D431 01 00000000:00000000\n   \
             2: 00000000:0035 00000000:0000 0A 00000000:00000000\n";
        if cfg!(target_endian = "little") {
            let found: Vec<SocketAddr> = parse(table, false).collect();
            assert_eq!(
                found,
                [
                    "127.0.0.1:8080".parse::<SocketAddr>().unwrap(),
                    "0.0.0.0:53".parse().unwrap()
                ]
            );
            let v6 = "  sl  local_address remote_address st\n   \
                 0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A\n";
            let found: Vec<SocketAddr> = parse(v6, true).collect();
            assert_eq!(found, ["[::1]:80".parse::<SocketAddr>().unwrap()]);
        }
    }

    #[test]
    fn finds_a_socket_listening_here() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let found = tcp_listeners_on(addr.port()).unwrap();
        assert!(found.contains(&addr), "{found:?}");
        drop(listener);
        assert!(!tcp_listeners_on(addr.port()).unwrap().contains(&addr));
    }
}
