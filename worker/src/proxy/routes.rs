//! TCP listeners that share a port: a wildcard listener (`0.0.0.0:P`, a port
//! published on every address) and specific ones on the same port (`VIP:P`, a
//! service's virtual IP whose target is `P`).
//!
//! Linux refuses to bind a specific address under a listening wildcard socket on
//! the same port, and the other way round, even with `SO_REUSEADDR`
//! (`SO_REUSEPORT` would allow it, but would also let any other socket of the
//! same user that sets it share the port and its connections unnoticed). So the
//! wildcard listener's socket serves both: each accepted connection goes to the
//! specific listener bound to the address it was made to, if there is one, as
//! the kernel itself would choose between two sockets, else to the wildcard
//! listener. A specific listener keeps its own backends and settings; only the
//! socket is shared.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, RwLock};

use tokio::net::TcpStream;

use super::config::{ListenerKey, Protocol};
use super::pool::ListenerShared;

/// The specific listeners a wildcard listener's socket serves, by address.
#[derive(Debug, Default)]
pub(super) struct Routes {
    /// A std lock: held only to look up or change an entry, never across an
    /// `.await`.
    by_addr: RwLock<HashMap<IpAddr, Arc<ListenerShared>>>,
}

impl Routes {
    /// Connections made to `addr` go to `shared`.
    pub fn insert(&self, addr: IpAddr, shared: Arc<ListenerShared>) {
        self.write().insert(addr, shared);
    }

    /// Connections made to `addr` go to the wildcard listener again.
    pub fn remove(&self, addr: IpAddr) {
        self.write().remove(&addr);
    }

    /// The specific listener for a connection the wildcard socket accepted:
    /// the one bound to the address the client connected to, if any. Costs a
    /// `getsockname` only while some specific listener shares the port.
    pub fn route(&self, client: &TcpStream) -> Option<Arc<ListenerShared>> {
        let by_addr = self
            .by_addr
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if by_addr.is_empty() {
            return None;
        }
        let local = client.local_addr().ok()?;
        by_addr.get(&local.ip()).cloned()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<IpAddr, Arc<ListenerShared>>> {
        self.by_addr
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Whether `key` is a wildcard TCP listener on a fixed port: one that may serve
/// specific listeners on its port.
pub(super) fn is_wildcard(key: ListenerKey) -> bool {
    key.protocol == Protocol::Tcp && key.bind.port() != 0 && key.bind.ip().is_unspecified()
}

/// The wildcard TCP listener (same port, same address family) whose socket would
/// take `key`'s connections, when `key` is a specific TCP listener on a fixed port.
pub(super) fn wildcard_of(key: ListenerKey) -> Option<ListenerKey> {
    if key.protocol != Protocol::Tcp || key.bind.port() == 0 || key.bind.ip().is_unspecified() {
        return None;
    }
    let any = match key.bind {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    Some(ListenerKey {
        bind: SocketAddr::new(any, key.bind.port()),
        protocol: Protocol::Tcp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(bind: &str) -> ListenerKey {
        ListenerKey {
            bind: bind.parse().unwrap(),
            protocol: Protocol::Tcp,
        }
    }

    #[test]
    fn a_specific_tcp_listener_falls_under_the_wildcard_of_its_port_and_family() {
        assert_eq!(wildcard_of(tcp("10.0.0.2:80")), Some(tcp("0.0.0.0:80")));
        assert_eq!(wildcard_of(tcp("[fd00::2]:80")), Some(tcp("[::]:80")));
        assert_eq!(wildcard_of(tcp("0.0.0.0:80")), None);
        assert_eq!(wildcard_of(tcp("10.0.0.2:0")), None);
        let udp = ListenerKey {
            protocol: Protocol::Udp,
            ..tcp("10.0.0.2:53")
        };
        assert_eq!(wildcard_of(udp), None);
        assert!(is_wildcard(tcp("0.0.0.0:80")) && is_wildcard(tcp("[::]:80")));
        assert!(!is_wildcard(tcp("0.0.0.0:0")) && !is_wildcard(tcp("10.0.0.2:80")));
        assert!(!is_wildcard(ListenerKey {
            protocol: Protocol::Udp,
            ..tcp("0.0.0.0:53")
        }));
    }
}
