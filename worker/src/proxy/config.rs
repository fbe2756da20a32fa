//! What the proxy is told to serve: listeners and, per listener, the tasks behind it.
//!
//! The whole configuration is replaced at once through a watch channel; the proxy
//! works out the difference with what it runs (see [`super::Proxy::run`]).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Default time a connect to a backend may take before the backend counts as failed.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default time connections to a draining or removed backend may still run.
pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(10);
/// Default time a backend that failed a connect is left out of the balancing.
pub const DEFAULT_FAILURE_PAUSE: Duration = Duration::from_secs(3);
/// Default time a UDP session without traffic in either direction is kept.
pub const DEFAULT_UDP_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything the node's proxy serves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyConfig {
    /// The listeners; a listener is identified by its bind address and protocol.
    pub listeners: Vec<ListenerSpec>,
}

/// The transport a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP: one backend connection per client connection.
    Tcp,
    /// UDP: one session (own connected socket to a backend) per client address.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// How a listener picks the backend of a new connection or session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Balance {
    /// Each new connection goes to the next backend in turn.
    #[default]
    RoundRobin,
    /// Each new connection goes to the backend with the fewest open connections
    /// (ties broken by the round-robin position).
    LeastConn,
}

/// The PROXY protocol header sent to the backend before the client's bytes, so the
/// backend sees the client's address. TCP listeners only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProxyProtocol {
    /// No header: the backend sees the proxy's address.
    #[default]
    None,
    /// The text header (`PROXY TCP4 src dst sport dport\r\n`).
    V1,
    /// The binary header.
    V2,
}

/// One task behind a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// The task's id; together with `addr` it identifies the backend across updates,
    /// so its counters, pause and drain survive a new configuration.
    pub id: String,
    /// Where the task listens.
    pub addr: SocketAddr,
    /// The task is being stopped: no new connections; open ones may run until the
    /// drain deadline and are then closed.
    pub draining: bool,
    /// This backend's drain deadline (its task's stop grace period), if it is not
    /// the listener's.
    pub drain_deadline: Option<Duration>,
}

impl Backend {
    /// A backend that takes new connections.
    pub fn new(id: impl Into<String>, addr: SocketAddr) -> Self {
        Backend {
            id: id.into(),
            addr,
            draining: false,
            drain_deadline: None,
        }
    }
}

/// One listening socket and how it balances over its backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// The address to listen on: `0.0.0.0:P` for a published port, `VIP:PORT` for a
    /// service's virtual IP.
    pub bind: SocketAddr,
    /// TCP or UDP; the same address may have one listener of each.
    pub protocol: Protocol,
    /// How new connections pick a backend.
    pub balance: Balance,
    /// The header sent to backends first (ignored, with a warning, for UDP).
    pub proxy_protocol: ProxyProtocol,
    /// The tasks behind the listener (ingress: every running task of the service on
    /// every node; host mode: the one local task).
    pub backends: Vec<Backend>,
    /// A connect that takes longer fails and the client is retried on another backend.
    pub connect_timeout: Duration,
    /// How long connections to a draining or removed backend (or a removed
    /// listener) may still run before they are closed.
    pub drain_deadline: Duration,
    /// A TCP backend whose connect (or first write) failed gets no new
    /// connections until a probe, sent every `failure_pause`, connects to it;
    /// a UDP backend whose send failed gets none for this long.
    pub failure_pause: Duration,
    /// UDP only: a session with no datagram either way for this long is closed.
    pub udp_idle_timeout: Duration,
}

impl ListenerSpec {
    /// A round-robin listener without PROXY header and with the default timings.
    pub fn new(bind: SocketAddr, protocol: Protocol, backends: Vec<Backend>) -> Self {
        ListenerSpec {
            bind,
            protocol,
            balance: Balance::RoundRobin,
            proxy_protocol: ProxyProtocol::None,
            backends,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            drain_deadline: DEFAULT_DRAIN_DEADLINE,
            failure_pause: DEFAULT_FAILURE_PAUSE,
            udp_idle_timeout: DEFAULT_UDP_IDLE_TIMEOUT,
        }
    }

    /// The identity of the listener across configurations.
    pub fn key(&self) -> ListenerKey {
        ListenerKey {
            bind: self.bind,
            protocol: self.protocol,
        }
    }
}

/// What identifies a listener: a new configuration with the same key updates the
/// running listener in place (backends, balance, timings) instead of rebinding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerKey {
    /// The bind address.
    pub bind: SocketAddr,
    /// The protocol.
    pub protocol: Protocol,
}

impl fmt::Display for ListenerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.protocol, self.bind)
    }
}
