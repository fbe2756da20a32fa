//! rswarm manager: the cluster's desired state and the services around it.
//!
//! # Layout
//! - [`store`]: the in-memory store of nodes, services, tasks and the cluster
//!   object; the Raft state machine's contents, with transactional reads and watches.
//! - [`ca`]: the cluster's root CA; signs node and admin certificates.
#![forbid(unsafe_code)]

pub mod ca;
pub mod store;
