//! Task networking on a node, kernel side: a bridge per node holding the
//! gateway of the node's task subnet, a VXLAN overlay to the other nodes, and a
//! veth per task into the task's own network namespace. Everything goes
//! through netlink (`rtnetlink`), nothing shells out.
//!
//! # Addressing and the overlay
//! Every node's bridge and every VXLAN device share one VNI, so all the
//! bridges form a single L2 segment over the overlay. Each node owns one
//! subnet (a /24 of the cluster pool) and holds its first host on the bridge;
//! its tasks use that address as their default gateway. Traffic between nodes
//! is routed, not switched: for each peer a node has a route
//! `peer-subnet via peer-gateway dev bridge onlink`, and resolves the peer's
//! gateway by ARP, which the VXLAN device floods to every peer through one
//! all-zero-MAC FDB entry per peer (no multicast, no learning from the
//! overlay). So a node only ever needs one neighbour entry per peer, a task
//! never ARPs across the overlay, and removing a peer (its FDB entry and its
//! route) cuts it off even though the L2 segment had been shared. A single
//! route for the whole pool would work as well but then nodes ARP for every
//! remote task and a removed peer's tasks stay reachable until their
//! neighbour entries expire. The MAC behind an address never moves: the bridge
//! and each task's `eth0` get theirs from their address ([`cidr::mac_for`]).
//!
//! # Layout
//! - [`cidr`]: [`Ipv4Net`], pools, subnets, gateways.
//! - [`node`]: [`NodeNetwork`], desired state to kernel: bridge, VXLAN, peers.
//! - [`attach`]: a task's veth, address and routes ([`Attachment`]).
//! - [`netns`]: namespace files and running code inside a namespace.
//! - [`tasks`]: [`TaskNetwork`], which address each task holds.
//! - [`plan`]: what to add and remove for a peer list (pure, unit-tested).
//! - `nl`: the netlink requests themselves.

pub mod attach;
pub mod cidr;
pub mod netns;
pub mod node;
pub mod plan;
pub mod tasks;
mod vips;

mod nl;
#[cfg(test)]
mod tests;

use std::io;
use std::path::{Path, PathBuf};

pub use attach::{AttachSpec, Attachment, host_veth_name};
pub use cidr::Ipv4Net;
pub use netns::{NETNS_DIR, create_netns, delete_netns, in_netns, run_in_netns};
pub use node::{NodeNetwork, NodeNetworkConfig, Peer};
pub use tasks::TaskNetwork;

/// Errors of the network module.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The kernel refused a netlink request.
    #[error("netlink: cannot {op} {subject}: {source}")]
    Netlink {
        /// What was asked.
        op: &'static str,
        /// Which object (link name, prefix, address).
        subject: String,
        /// The kernel's answer.
        source: rtnetlink::Error,
    },
    /// A file operation failed.
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A system call (namespace, mount) failed.
    #[error("cannot {op}: {source}")]
    Sys {
        /// What was being done.
        op: &'static str,
        /// The errno.
        source: nix::Error,
    },
    /// The configuration or the request cannot work (bad name, overlapping
    /// subnets, a missing underlay address, a foreign link in the way).
    #[error("network configuration: {0}")]
    Config(String),
    /// A namespace thread could not run.
    #[error("{0}")]
    Thread(String),
}

impl NetError {
    fn io(what: &'static str, path: &Path, source: io::Error) -> Self {
        NetError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }

    fn sys(op: &'static str, source: nix::Error) -> Self {
        NetError::Sys { op, source }
    }
}
