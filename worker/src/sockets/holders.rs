//! Who else listens on a TCP port in this network namespace, read from
//! `/proc/net/tcp` and `/proc/net/tcp6`: a proxy wildcard listener that cannot
//! bind tells whether only the proxy's own specific listeners hold its port
//! (they make room for it) or another program does (they keep serving, and the
//! error names that program's address); the daemon's listener, which lets the
//! VIPs' listeners share its port, checks that no other program shares it.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The kernel's code for a listening socket (`TCP_LISTEN`).
const LISTEN: &str = "0A";

/// A listening TCP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Listening {
    /// Its local address.
    pub addr: SocketAddr,
    /// Its inode, which names it among a process's open files.
    pub inode: u64,
    /// Connections waiting in its accept queue (the table's `rx_queue` of a
    /// listening socket).
    pub queued: usize,
}

/// The TCP sockets listening on `port`; `None` when the tables cannot be read.
pub(crate) fn tcp_listeners_on(port: u16) -> Option<Vec<Listening>> {
    let mut found = Vec::new();
    for (path, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        match std::fs::read_to_string(path) {
            Ok(text) => found.extend(parse(&text, v6).filter(|l| l.addr.port() == port)),
            // Without IPv6 there is no tcp6 table.
            Err(_) if v6 => {}
            Err(_) => return None,
        }
    }
    Some(found)
}

/// The TCP sockets listening on `port` that this process does not hold.
pub(crate) fn others_listening_on(port: u16) -> io::Result<Vec<SocketAddr>> {
    let listening =
        tcp_listeners_on(port).ok_or_else(|| io::Error::other("cannot read /proc/net/tcp"))?;
    let own = own_sockets()?;
    Ok(listening
        .into_iter()
        .filter(|l| !own.contains(&l.inode))
        .map(|l| l.addr)
        .collect())
}

/// The inodes of the sockets this process has open (`socket:[INODE]` links in
/// `/proc/self/fd`).
fn own_sockets() -> io::Result<HashSet<u64>> {
    let mut inodes = HashSet::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        // A descriptor closed since the listing has no link any more.
        let Ok(target) = std::fs::read_link(entry?.path()) else {
            continue;
        };
        let inode = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse::<u64>().ok());
        inodes.extend(inode);
    }
    Ok(inodes)
}

/// The listening sockets of one table.
fn parse(text: &str, v6: bool) -> impl Iterator<Item = Listening> + '_ {
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
    text.lines().skip(1).filter_map(move |line| {
        let fields: Vec<&str> = line.split_whitespace().take(10).collect();
        let [_, local, _, state, queues, _, _, _, _, inode] = fields[..] else {
            return None;
        };
        if state != LISTEN {
            return None;
        }
        let (ip, port) = local.split_once(':')?;
        let port = u16::from_str_radix(port, 16).ok()?;
        let (_, rx) = queues.split_once(':')?;
        Some(Listening {
            addr: SocketAddr::new(address(ip, v6)?, port),
            inode: inode.parse().ok()?,
            queued: usize::from_str_radix(rx, 16).ok()?,
        })
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
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when \
             retrnsmt   uid  timeout inode\n   \
             0: 0100007F:1F90 00000000:0000 0A 00000000:0000000C 00:00000000 00000000     0        0 4711 1 0\n   \
             1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 4712 1 0\n   \
             2: 00000000:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1 0\n   \
             3: 00000000:0036 00000000:0000 0A\n";
        if cfg!(target_endian = "little") {
            let found: Vec<Listening> = parse(table, false).collect();
            assert_eq!(
                found,
                [
                    Listening {
                        addr: "127.0.0.1:8080".parse().unwrap(),
                        inode: 4711,
                        queued: 12
                    },
                    Listening {
                        addr: "0.0.0.0:53".parse().unwrap(),
                        inode: 99,
                        queued: 0
                    }
                ]
            );
            let v6 = "  sl  local_address remote_address st\n   \
                 0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A \
                 00000000:00000000 00:00000000 00000000     0        0 7 1 0\n";
            let found: Vec<Listening> = parse(v6, true).collect();
            assert_eq!(
                found,
                [Listening {
                    addr: "[::1]:80".parse().unwrap(),
                    inode: 7,
                    queued: 0
                }]
            );
        }
    }

    #[test]
    fn finds_a_socket_listening_here_and_knows_it_is_ours() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let found = tcp_listeners_on(addr.port()).unwrap();
        assert!(found.iter().any(|l| l.addr == addr), "{found:?}");
        assert_eq!(others_listening_on(addr.port()).unwrap(), []);
        drop(listener);
        // A process another test spawns holds a copy of every descriptor
        // between its fork and its exec: the socket may outlive the drop by
        // that long.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            let found = tcp_listeners_on(addr.port()).unwrap();
            if !found.iter().any(|l| l.addr == addr) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{found:?}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
