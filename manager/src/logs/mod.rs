//! Task logs, gathered from the nodes through the leader.
//!
//! - [`broker`]: the leader's matching of client requests with node streams.
//! - [`service`]: the `Logs` gRPC service (clients, node subscriptions, publishing).

mod broker;
mod service;
#[cfg(test)]
mod tests;

pub use broker::{LogBroker, LogPlan, Publisher};
pub use service::{LeaderLink, LogService, plan_for};
