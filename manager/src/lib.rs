//! rswarm manager: the cluster's desired state and the services around it.
//!
//! # Layout
//! - [`store`]: the in-memory store of nodes, services, tasks and the cluster
//!   object; the Raft state machine's contents, with transactional reads and watches.
//! - [`controlapi`]: the control API served to `rswarm` clients.
//! - [`ca`]: the cluster's root CA; signs node and admin certificates.
//! - [`nodeca`]: the join endpoint: root CA and certificates for valid join tokens.
//! - [`dispatcher`]: node heartbeats on the leader; nodes that stop are marked down.
//! - [`endpoints`]: the service endpoint table streamed to every node's proxy
//!   and DNS server.
//! - [`raft`]: the managers' Raft group replicating the store, and its transport.
//! - [`orchestrator`]: the reconcile decision keeping each service at its desired tasks.
//! - [`scheduler`]: the placement decision: which node each pending task goes to.
//! - [`images`]: image import, records, replication between managers, blob serving.
//! - [`logs`]: task logs gathered from the nodes through the leader.
//! - [`network`]: the task network pool, node subnets and overlay peers.
//! - [`leading`]: running the leader-only loops (orchestrator, scheduler).
//! - [`node`]: a running manager: Raft plus its services on one mTLS listener.
#![forbid(unsafe_code)]

pub mod ca;
pub mod controlapi;
pub mod dispatcher;
pub mod endpoints;
pub mod images;
pub mod leading;
pub mod logs;
pub mod network;
pub mod node;
pub mod nodeca;
pub mod orchestrator;
pub mod raft;
pub mod scheduler;
pub mod store;
