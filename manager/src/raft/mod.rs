//! The managers' Raft group: openraft 0.9 with the log in redb, snapshots in files, and
//! a tonic transport whose messages carry postcard-encoded openraft types.
//!
//! # Layout
//! - [`log_store`]: the durable Raft log, vote and committed id (redb).
//! - [`state_machine`]: applies committed batches to the [`Store`] and keeps snapshots.
//! - [`network`]: outgoing Raft RPCs over cached tonic channels.
//! - [`service`]: the `RaftTransport` gRPC server (Raft RPCs, forwarded writes, joins).
//! - [`node`]: [`RaftNode`], the handle the node daemon uses; it is also the store's
//!   `Proposer` and the control API's `RaftView`.

use std::io::Cursor;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::{StoreAction, StoreError};

mod adapters;
mod append;
mod batcher;
mod forwarder;
pub mod log_store;
mod membership;
pub mod network;
pub mod node;
pub mod service;
pub mod state_machine;

#[cfg(test)]
mod tests;

pub use network::{ConnectError, Connector};
pub use node::{ForwardError, Leader, ProposeError, RaftError, RaftNode};

/// One proposed write: a batch of store actions applied atomically.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Request {
    /// The actions, applied all or nothing at the entry's log index.
    pub actions: Vec<StoreAction>,
}

/// The outcome of applying one [`Request`]: a rejected batch is a normal outcome.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Response {
    /// `Err` when the store refused the batch (nothing of it was applied).
    pub result: Result<(), StoreError>,
}

/// The payload of one Raft log entry: independent proposals gathered by the leader
/// while earlier entries were in flight (group commit), so that one append, one fsync
/// and one replication round serve many writers.
///
/// Each request is applied on its own, in order, at the entry's index: a refused one
/// does not affect the others.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Proposals {
    /// The proposals, in the order they are applied.
    pub requests: Vec<Request>,
}

/// The outcome of one log entry: a [`Response`] per request of its [`Proposals`]
/// (none for blank and membership entries).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Responses {
    /// In the order of the entry's requests.
    pub responses: Vec<Response>,
}

openraft::declare_raft_types!(
    /// openraft's type configuration for the managers' group.
    pub TypeConfig:
        D = Proposals,
        R = Responses,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle of this crate's type configuration.
pub type Raft = openraft::Raft<TypeConfig>;
/// A node id inside the Raft group.
pub type NodeId = u64;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id.
pub type LogId = openraft::LogId<NodeId>;
/// A vote.
pub type Vote = openraft::Vote<NodeId>;
/// Openraft's storage error.
pub type StorageError = openraft::StorageError<NodeId>;
/// A membership as stored in the log or a snapshot.
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
/// Openraft's metrics for this group.
pub type RaftMetrics = openraft::RaftMetrics<NodeId, openraft::BasicNode>;

/// Tunables of the Raft group (the `RaftSettings` of the cluster object).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftSettings {
    /// Interval between the leader's heartbeats.
    pub heartbeat_ms: u64,
    /// Lower bound of the randomized election timeout.
    pub election_min_ms: u64,
    /// Upper bound of the randomized election timeout.
    pub election_max_ms: u64,
    /// A snapshot is built after this many log entries since the previous one.
    pub snapshot_every: u64,
}

impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings {
            heartbeat_ms: 100,
            election_min_ms: 500,
            election_max_ms: 1000,
            snapshot_every: 5000,
        }
    }
}

impl From<&rswarm_proto::api::RaftSettings> for RaftSettings {
    /// Fields left at zero (unset in the cluster object) take the default.
    fn from(p: &rswarm_proto::api::RaftSettings) -> Self {
        let d = RaftSettings::default();
        let or = |v: u64, default: u64| if v == 0 { default } else { v };
        RaftSettings {
            heartbeat_ms: or(p.heartbeat_ms, d.heartbeat_ms),
            election_min_ms: or(p.election_min_ms, d.election_min_ms),
            election_max_ms: or(p.election_max_ms, d.election_max_ms),
            snapshot_every: or(p.snapshot_interval, d.snapshot_every),
        }
    }
}

impl From<&RaftSettings> for rswarm_proto::api::RaftSettings {
    fn from(s: &RaftSettings) -> Self {
        rswarm_proto::api::RaftSettings {
            heartbeat_ms: s.heartbeat_ms,
            election_min_ms: s.election_min_ms,
            election_max_ms: s.election_max_ms,
            snapshot_interval: s.snapshot_every,
        }
    }
}

impl RaftSettings {
    /// The timeout of a forwarded proposal or a join request.
    pub(crate) fn rpc_timeout(&self) -> Duration {
        Duration::from_millis(self.election_max_ms.saturating_mul(10).max(5_000))
    }

    /// The time limit of an AppendEntries RPC that carries entries: long enough for a
    /// follower on a loaded machine to decode and fsync a bounded batch, short enough
    /// that a hung request is retried before the follower's election timer runs out
    /// twice.
    pub(crate) fn append_timeout(&self) -> Duration {
        Duration::from_millis(self.election_max_ms.max(1000).saturating_mul(2))
    }

    /// openraft's `(heartbeat_interval, election_timeout_min, election_timeout_max)`
    /// for our settings.
    ///
    /// Our `election_min_ms..election_max_ms` is the window, after its last contact
    /// with the leader, in which a follower stands for election. openraft 0.9 differs
    /// in three ways, which this mapping undoes:
    /// - it acts on a tick of 1.5 × its heartbeat interval, and sends heartbeats only
    ///   on ticks: its interval is set to 2/3 of ours so that both happen every
    ///   `heartbeat_ms`;
    /// - a follower that knows a leader waits the *leader lease* (openraft's
    ///   `election_timeout_max`) plus its own randomized timeout (drawn once from
    ///   openraft's min..max), and refuses votes during the lease: passing our
    ///   numbers through would make a failover take 1.5–2 s;
    /// - so the lease is half of our max less one tick, and openraft's min is what
    ///   remains of our min above the lease (at least one openraft heartbeat, which
    ///   it requires).
    ///
    /// With the defaults (100 ms, 500–1000 ms) a follower stands 517–1000 ms after
    /// the leader's last heartbeat, tick included.
    pub fn openraft_timings(&self) -> (u64, u64, u64) {
        let heartbeat = (self.heartbeat_ms * 2 / 3).max(1);
        let lease = self.election_max_ms.saturating_sub(self.heartbeat_ms) / 2;
        let min = self
            .election_min_ms
            .saturating_sub(lease)
            .max(heartbeat + 1);
        (heartbeat, min, lease)
    }

    /// Builds and validates the openraft configuration.
    pub fn to_config(&self) -> Result<openraft::Config, Box<openraft::ConfigError>> {
        let (heartbeat_interval, election_timeout_min, election_timeout_max) =
            self.openraft_timings();
        let config = openraft::Config {
            cluster_name: "rswarm".to_string(),
            heartbeat_interval,
            election_timeout_min,
            election_timeout_max,
            // A snapshot chunk is written to the receiver's buffer; a few seconds per chunk
            // is ample on a LAN and still detects a stuck peer.
            install_snapshot_timeout: self.election_max_ms.max(1000) * 4,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            snapshot_max_chunk_size: 1024 * 1024,
            // Keep some entries behind the snapshot so that a briefly lagging follower
            // catches up from the log instead of receiving a whole snapshot.
            max_in_snapshot_log_to_keep: self.snapshot_every / 5,
            // Purge in batches: every purge is an fsynced transaction.
            purge_batch_size: (self.snapshot_every / 10).clamp(1, 256),
            max_payload_entries: 256,
            ..Default::default()
        };
        config.validate().map_err(Box::new)
    }
}

/// Encodes a value with postcard.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_stdvec(value)
}

/// Decodes a postcard value.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

#[cfg(test)]
mod settings_tests {
    use super::RaftSettings;

    #[test]
    fn default_settings_make_a_valid_config() {
        let config = RaftSettings::default().to_config().expect("valid");
        // Ticks (and heartbeats) every 66 × 3/2 = 99 ms; lease 450 ms + a timeout of
        // 67..450 ms + up to one tick: a follower stands 517..999 ms after the
        // leader's last heartbeat.
        assert_eq!(config.heartbeat_interval, 66);
        assert_eq!(config.election_timeout_min, 67);
        assert_eq!(config.election_timeout_max, 450);
        assert_eq!(config.max_in_snapshot_log_to_keep, 1000);
        assert_eq!(config.purge_batch_size, 256);
    }

    #[test]
    fn inverted_election_timeouts_are_rejected() {
        let settings = RaftSettings {
            election_min_ms: 1000,
            election_max_ms: 500,
            ..RaftSettings::default()
        };
        assert!(settings.to_config().is_err());
    }

    #[test]
    fn unset_proto_fields_take_defaults() {
        let proto = rswarm_proto::api::RaftSettings {
            heartbeat_ms: 50,
            ..Default::default()
        };
        let settings = RaftSettings::from(&proto);
        assert_eq!(settings.heartbeat_ms, 50);
        assert_eq!(settings.election_max_ms, 1000);
        assert_eq!(
            rswarm_proto::api::RaftSettings::from(&settings).heartbeat_ms,
            50
        );
    }
}
