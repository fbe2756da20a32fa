//! rswarm e2e harness: clusters of real `rswarm` node processes, each in its own
//! network namespace with its own address, killed, restarted and cut off on purpose.
//!
//! Needs root (namespaces) and iproute2; tests call [`skip_reason`] and return early
//! with a notice when either is missing.
//!
//! - `cargo test -p rswarm-e2e`: the harness's own tests (`tests/harness.rs`), the
//!   control-plane scenarios (`tests/control_plane/`) and the orchestration ones
//!   (`tests/orchestration/`, nodes with `--executor fake`) and real containers
//!   (`tests/containers/`). Nodes run `<target>/<profile>/rswarm`, built with its
//!   shim and test image program on first use, or `$RSWARM_BIN` if set (it needs
//!   the `fake-executor` feature for the orchestration scenarios).
//! - `cargo run --release -p rswarm-e2e --bin bench-control`: the control-plane
//!   benchmark (writes/s, latency, leader failover).
//! - `cargo run --release -p rswarm-e2e --bin bench-orchestration`: how long a dead
//!   worker's tasks are missing.
//! - `cargo run --release -p rswarm-e2e --bin bench-proxy`: the node proxy against
//!   HAProxy and nginx stream under wrk (no root; needs wrk, haproxy, nginx).
//! - `RSWARM_E2E_KEEP=1`: keep every cluster's data dirs and daemon logs (in
//!   `$TMPDIR/rswarm-e2e-kept-*`) instead of deleting them.
//!
//! # Layout
//! - [`cluster`]: [`Cluster`], a segment with nodes, and the waits tests compose
//!   (leader agreement, ready nodes); prints daemon logs when a test fails.
//! - [`node`]: [`Node`], one daemon: start (`init`, `join`, `daemon`), signals,
//!   network cuts, client commands through its control socket.
//! - [`network`]: the private L2 segment (hub namespace with a bridge, a veth per
//!   namespace) and removal of namespaces left by crashed runs.
//! - [`client`]: a tokio runtime whose threads live in the cluster's client
//!   namespace, for gRPC calls from the test process itself.
//! - [`binary`]: finds or builds the `rswarm` binary.
//! - [`services`]: services and their tasks as `service ps` shows them, and the
//!   waits orchestration scenarios compose.
//! - [`load`]: a bounded request loop that records every outcome.
//! - [`containers`]: the test image, and removing containers nodes leave behind.
//! - [`command`], [`wait`]: commands and polls with time limits.
//! - `sys`: the only unsafe code (setns, kill), kept to two calls.
#![deny(unsafe_code)]

pub mod bench;
pub mod binary;
pub mod client;
pub mod cluster;
pub mod command;
pub mod containers;
pub mod load;
pub mod network;
pub mod node;
pub mod services;
mod sys;
pub mod wait;

pub use client::ClientRuntime;
pub use cluster::{Cluster, FAKE_EXECUTOR, leader_addr, skip_reason};
pub use node::{Node, Role};
pub use wait::wait_until;
