//! rswarm worker agent: what every node (worker or manager) runs to take part in
//! the cluster.
//!
//! # Layout
//! - [`session`]: the node's session with the leader's dispatcher (heartbeats,
//!   following the leader across failovers, the managers' addresses).
//! - [`tasks`]: the task runners: the assignment set, one runner per task driving
//!   it through the executor, and the batching of status reports.
//! - [`dispatch`]: the assignment stream in and batched status reports out, to
//!   the leader the session follows.
//! - [`images`]: the node's image source: the managers' image service, leader first.
//! - [`logs`]: answering the leader's log requests for this node's tasks.
//! - [`volumes`]: the node's named volumes on its local socket.
//! - [`proxy`]: the node's userspace load-balancing proxy (published ports,
//!   service VIPs), configured through a watch channel.
//! - [`dns`]: the node-local DNS server (the cluster's names from a watch
//!   channel, the rest forwarded to the host's resolvers).
//! - [`endpoints`]: the cluster's endpoint table, streamed from the leader.
//! - [`mesh`]: the endpoint table turned into the proxy's listeners, the node's
//!   VIPs and the DNS server's names.
//! - [`sockets`]: binding the UDP sockets the proxy and the DNS server share a
//!   port on.
//! - [`control`]: the control API as a worker's local socket answers it: every call
//!   is refused with the managers' addresses.
#![forbid(unsafe_code)]

pub mod control;
pub mod dispatch;
pub mod dns;
pub mod endpoints;
pub mod images;
pub mod logs;
pub mod mesh;
pub mod proxy;
pub mod session;
pub mod sockets;
pub mod tasks;
pub mod volumes;
