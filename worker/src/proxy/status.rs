//! What the proxy reports about its listeners after every configuration change.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use super::config::Protocol;

/// The state of every configured listener, in configuration order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyStatus {
    /// How many configurations have been applied (0 before the first).
    pub generation: u64,
    /// One entry per configured listener.
    pub listeners: Vec<ListenerStatus>,
}

impl ProxyStatus {
    /// The status of the listener on `bind` with `protocol`, if configured.
    pub fn listener(&self, bind: SocketAddr, protocol: Protocol) -> Option<&ListenerStatus> {
        self.listeners
            .iter()
            .find(|listener| listener.bind == bind && listener.protocol == protocol)
    }

    /// Why each listener that does not serve does not, in configuration order
    /// (each error names its protocol and address).
    pub fn errors(&self) -> Vec<String> {
        self.listeners
            .iter()
            .filter_map(|listener| match &listener.state {
                ListenerState::Failed { error } => Some(error.clone()),
                ListenerState::Listening { .. } => None,
            })
            .collect()
    }
}

/// One listener's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerStatus {
    /// The configured bind address.
    pub bind: SocketAddr,
    /// The protocol.
    pub protocol: Protocol,
    /// Listening, or why not.
    pub state: ListenerState,
}

/// Whether a listener serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerState {
    /// Bound and serving.
    Listening {
        /// The bound address (the actual port when the configuration said 0).
        local: SocketAddr,
    },
    /// Not serving; bind failures are retried every second.
    Failed {
        /// The error, naming the address.
        error: String,
    },
}

/// Counters of the proxy's relaying, readable at any time
/// ([`Proxy::stats`](super::Proxy::stats)).
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// TCP connections whose copy moved to io_uring after their first exchange.
    io_uring_copies: AtomicU64,
}

impl ProxyStats {
    /// TCP connections whose copy moved to io_uring so far.
    pub fn io_uring_copies(&self) -> u64 {
        self.io_uring_copies.load(Ordering::Relaxed)
    }

    pub(super) fn count_io_uring_copy(&self) {
        self.io_uring_copies.fetch_add(1, Ordering::Relaxed);
    }
}
