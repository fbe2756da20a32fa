//! Orchestration by real `rswarm` nodes whose tasks are simulated (`--executor
//! fake`; the image name picks a task's behaviour): placement, scaling, node loss
//! and drain, a worker rejoining, restarts of crashing tasks, leader failover,
//! rejected images, rolling updates.
//!
//! Root only (network namespaces); skipped with a notice otherwise.
//!
//! # Layout
//! - `support`: running a scenario on a fake-executor cluster.
//! - `placement`: create, scale up and down, drain and reactivate a node.
//! - `recovery`: a worker killed and cut off, a worker cut off and reconnected, the
//!   leader killed.
//! - `failures`: crashing tasks and their restart policy, missing images.
//! - `images_logs`: images replicated between managers, service logs from nodes.
//! - `updates`: rolling updates, one that fails and the one that fixes it.

mod failures;
mod images_logs;
mod placement;
mod recovery;
mod support;
mod updates;
