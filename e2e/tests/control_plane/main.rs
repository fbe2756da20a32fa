//! Control-plane behaviour of real `rswarm` nodes, each in its own network namespace:
//! cluster formation, leader failover, restart from disk, partitions, join and TLS
//! refusals.
//!
//! Root only (network namespaces); skipped with a notice otherwise.
//!
//! # Layout
//! - `support`: running a scenario on a cluster, and CLI helpers.
//! - `formation`: managers and workers form a cluster; workers refuse control calls.
//! - `failover`: leader kill, full restart, cut-off leader.
//! - `refusals`: wrong join tokens, TCP clients without a certificate, double init.

mod failover;
mod formation;
mod refusals;
mod support;
