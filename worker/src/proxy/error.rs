//! The proxy's errors.

use std::io;
use std::net::SocketAddr;

use super::config::Protocol;

/// What can go wrong in the proxy; per-listener errors also show in
/// [`super::ProxyStatus`] while the other listeners keep working.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The listener's address could not be bound (port taken, address not on this
    /// host); retried every second and on every configuration change.
    #[error("cannot listen on {protocol} {addr}: {source}")]
    Bind {
        /// The listener's protocol.
        protocol: Protocol,
        /// The address that could not be bound.
        addr: SocketAddr,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A wildcard listener's port is held by another program on some address of
    /// this host (the proxy's own listeners on that port keep serving).
    #[error("cannot listen on {protocol} {addr}: another program listens on {}", list(.holders))]
    PortHeld {
        /// The listener's protocol.
        protocol: Protocol,
        /// The address that could not be bound.
        addr: SocketAddr,
        /// Where the other program listens.
        holders: Vec<SocketAddr>,
    },
    /// The configuration names the same address and protocol twice.
    #[error("{protocol} {addr} is configured more than once; only the first one is served")]
    DuplicateListener {
        /// The listener's protocol.
        protocol: Protocol,
        /// The address named twice.
        addr: SocketAddr,
    },
    /// Every backend of the listener was tried and none accepted the connection.
    #[error("no backend of {listener} accepted the connection ({tried} tried)")]
    NoBackend {
        /// The listener's address.
        listener: SocketAddr,
        /// How many backends were tried.
        tried: usize,
    },
}

fn list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
