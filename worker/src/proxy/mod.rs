//! The node's userspace load-balancing proxy: published ports (ingress and host
//! mode) and service VIPs, TCP and UDP, without IPVS.
//!
//! The proxy serves whatever [`ProxyConfig`] its watch channel holds: listeners are
//! bound and unbound as the configuration says, and a listener whose address and
//! protocol stay the same is updated in place — its backend list is swapped as one
//! snapshot, so applying a configuration costs a few allocations and open
//! connections are not disturbed.
//!
//! Per listener: round-robin or least-conn; a backend that refuses or times out a
//! connect is held out of the balancing and the client is retried on the next one
//! (it sees no error); a probe connects to the held backend every
//! `failure_pause` and ends the hold once one succeeds (no client's connection
//! is spent on finding out; UDP backends, which a probe cannot check, are
//! paused for `failure_pause` instead); a draining or removed backend gets no new connections and
//! its open ones are closed at `drain_deadline`; optional PROXY protocol v1/v2
//! header towards the backends.
//!
//! # Layout
//! - [`config`]: what to serve ([`ProxyConfig`], [`ListenerSpec`], [`Backend`]).
//! - [`status`]: what is served ([`ProxyStatus`]), including bind errors.
//! - `runner`: [`Proxy::run`], the reconciliation of listeners with the config.
//! - `pool`: a listener's backend snapshot and the balancing.
//! - `routes`: specific TCP listeners served by the wildcard listener's socket
//!   on their port.
//! - `backend`: one backend's counters, hold (or pause) and drain.
//! - `tcp`, `udp`: the relaying; `buffers`: relay buffers reused across connections.
//! - `header`: PROXY protocol encoding.
//! - [`connector`]: the connect seam ([`Connector`]), for tests that need a
//!   connect to hang.

pub mod config;
pub mod connector;
pub mod status;

mod backend;
mod buffers;
mod error;
mod header;
mod pool;
mod routes;
mod runner;
mod tcp;
mod udp;
mod uring;

#[cfg(test)]
mod tests;

pub use config::{
    Backend, Balance, ListenerKey, ListenerSpec, Protocol, ProxyConfig, ProxyProtocol,
};
pub use connector::{Connector, TcpConnector};
pub use error::ProxyError;
pub use runner::{Engine, Proxy, ProxyThread};
pub use status::{ListenerState, ListenerStatus, ProxyStats, ProxyStatus};
