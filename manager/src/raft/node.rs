//! [`RaftNode`]: the handle the node daemon uses to run this manager's Raft member.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use openraft::error::ForwardToLeader;
use rswarm_proto::api::JoinRaftRequest;
use rswarm_proto::api::raft_transport_server::RaftTransportServer;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::batcher::Batcher;
use super::forwarder::Forwarder;
use super::log_store::{LogStore, LogStoreError};
use super::network::{MAX_MESSAGE_BYTES, NetworkFactory, Peers};
use super::service::RaftService;
use super::state_machine::{StateMachine, StateMachineError};
use super::{Connector, NodeId, Raft, RaftMetrics, RaftSettings, Request, Response};
use crate::store::{Store, StoreAction, StoreError};

/// How long a proposal waits for a leader to be elected before giving up.
const NO_LEADER_WAIT: Duration = Duration::from_secs(5);
/// Longest pause between two attempts while no leader is known.
const MAX_RETRY_DELAY: Duration = Duration::from_millis(200);

/// A known leader: its Raft id and address.
pub type Leader = (NodeId, String);

/// Errors of the Raft node's lifecycle and membership operations.
#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    /// The Raft directory cannot be created.
    #[error("cannot create Raft directory {path}: {source}")]
    Dir {
        /// The directory.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The log database cannot be opened.
    #[error(transparent)]
    LogStore(#[from] LogStoreError),
    /// The state machine (snapshots) cannot be opened.
    #[error(transparent)]
    StateMachine(#[from] StateMachineError),
    /// The settings do not form a valid openraft configuration.
    #[error("invalid Raft settings: {0}")]
    Config(String),
    /// openraft refused to start or stopped.
    #[error("Raft failed: {0}")]
    Fatal(String),
    /// The group cannot be initialized (e.g. it already is).
    #[error("cannot initialize the Raft group: {0}")]
    Initialize(String),
    /// A membership change must run on the leader.
    #[error("this manager is not the Raft leader (known leader: {leader:?})")]
    NotLeader {
        /// The leader, when one is known.
        leader: Option<Leader>,
    },
    /// openraft rejected a membership change.
    #[error("Raft membership change failed: {0}")]
    Membership(String),
    /// A join request sent to another manager failed.
    #[error("cannot join the Raft group via {addr}: {reason}")]
    Join {
        /// The manager asked.
        addr: String,
        /// What went wrong.
        reason: String,
    },
}

/// Why a proposal has no outcome.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// No leader was elected within the wait.
    #[error("no Raft leader elected within {0:?}")]
    NoLeader(Duration),
    /// The request may or may not have been applied: the leader failed mid-way.
    #[error(
        "forwarding the proposal to leader {leader_id} at {addr} failed, outcome unknown: {reason}"
    )]
    Forward {
        /// The leader's Raft id.
        leader_id: NodeId,
        /// The leader's address.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// This node is the leader but the batch was not committed in time; it may still be.
    #[error("proposal not committed within {0:?}, outcome unknown")]
    Timeout(Duration),
    /// The local Raft stopped.
    #[error("Raft stopped: {0}")]
    Fatal(String),
}

/// The answer of a node that cannot commit a forwarded request itself.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// This node is not the leader; the leader is given when known.
    #[error("not the Raft leader (known leader: {leader:?})")]
    NotLeader {
        /// The leader's Raft id and address.
        leader: Option<Leader>,
    },
    /// The node's Raft stopped.
    #[error("Raft stopped: {0}")]
    Fatal(String),
}

/// A batch committed and applied by the leader: its log index and the store's verdict.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Committed {
    /// The entry's log index.
    pub(crate) index: u64,
    /// The store's verdict.
    pub(crate) response: Response,
}

/// State shared by the node handle and its gRPC service.
pub(crate) struct Shared {
    pub(crate) raft: Raft,
    pub(crate) raft_id: NodeId,
    pub(crate) node_id: String,
    pub(crate) store: Store,
    pub(crate) peers: Arc<Peers>,
    /// Membership changes run one at a time: openraft rejects overlapping ones.
    pub(crate) membership_lock: tokio::sync::Mutex<()>,
    pub(crate) rpc_timeout: Duration,
    /// Gathers local and forwarded proposals into log entries.
    pub(crate) batcher: Batcher,
    /// Carries this member's proposals to the leader while it is a follower.
    pub(crate) forwarder: Forwarder,
}

pub(crate) fn leader_of(f: &ForwardToLeader<NodeId, BasicNode>) -> Option<Leader> {
    f.leader_id
        .zip(f.leader_node.as_ref().map(|n| n.addr.clone()))
}

impl Shared {
    /// Commits `req` if this node is the leader (in the next entry, with the other
    /// proposals that arrive meanwhile).
    pub(crate) async fn write_local(&self, req: Request) -> Result<Committed, ForwardError> {
        self.batcher.write(req).await
    }

    /// The current leader, as this node knows it.
    pub(crate) fn leader(&self) -> Option<Leader> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let addr = m.membership_config.membership().get_node(&id)?.addr.clone();
        Some((id, addr))
    }
}

/// A running Raft member of the managers' group. Cheap to clone.
#[derive(Clone)]
pub struct RaftNode {
    shared: Arc<Shared>,
}

impl RaftNode {
    /// Opens the log and snapshots in `dir` (creating them), loads the newest snapshot
    /// into a new store and starts openraft as member `raft_id`.
    pub async fn open(
        dir: &Path,
        raft_id: NodeId,
        node_id: String,
        settings: &RaftSettings,
        connector: Connector,
    ) -> Result<RaftNode, RaftError> {
        let config = Arc::new(
            settings
                .to_config()
                .map_err(|e| RaftError::Config(e.to_string()))?,
        );
        let dir = dir.to_path_buf();
        let store = Store::new();
        let sm_store = store.clone();
        let (log, sm) = tokio::task::spawn_blocking(move || -> Result<_, RaftError> {
            std::fs::create_dir_all(&dir).map_err(|source| RaftError::Dir {
                path: dir.display().to_string(),
                source,
            })?;
            let log = LogStore::open(&dir.join("raft-log.redb"))?;
            let sm = StateMachine::open(&dir, sm_store)?;
            Ok((log, sm))
        })
        .await
        .map_err(|e| RaftError::Fatal(e.to_string()))??;
        let peers = Arc::new(Peers::new(connector));
        let network = NetworkFactory {
            self_id: raft_id,
            peers: peers.clone(),
            retry: Duration::from_millis(settings.heartbeat_ms),
            append_ttl: settings.append_timeout(),
        };
        let raft = Raft::new(raft_id, config, network, log, sm)
            .await
            .map_err(|e| RaftError::Fatal(e.to_string()))?;
        let batcher = Batcher::start(raft.clone());
        let forwarder = Forwarder::start(peers.clone(), settings.rpc_timeout());
        tracing::info!(raft_id, node_id, "Raft member started");
        Ok(RaftNode {
            shared: Arc::new(Shared {
                raft,
                raft_id,
                node_id,
                store,
                peers,
                membership_lock: tokio::sync::Mutex::new(()),
                rpc_timeout: settings.rpc_timeout(),
                batcher,
                forwarder,
            }),
        })
    }

    /// Creates a one-member group with this node reachable at `addr` (`rswarm init`).
    pub async fn initialize(&self, addr: &str) -> Result<(), RaftError> {
        let members = BTreeMap::from([(self.shared.raft_id, BasicNode::new(addr))]);
        self.shared
            .raft
            .initialize(members)
            .await
            .map_err(|e| RaftError::Initialize(e.to_string()))
    }

    /// Asks the manager at `via_addr` (any member; followers forward to the leader) to
    /// add this node, reachable at `own_addr`, as a voter. Returns once it is one.
    pub async fn join_via(&self, via_addr: &str, own_addr: &str) -> Result<(), RaftError> {
        let join_err = |reason: String| RaftError::Join {
            addr: via_addr.to_string(),
            reason,
        };
        let mut client = self
            .shared
            .peers
            .client(via_addr)
            .map_err(|e| join_err(e.to_string()))?;
        let req = JoinRaftRequest {
            node_id: self.shared.node_id.clone(),
            raft_id: self.shared.raft_id,
            addr: own_addr.to_string(),
        };
        // Catching up as a learner can take a while on a large log.
        tokio::time::timeout(self.shared.rpc_timeout * 6, client.join_raft(req))
            .await
            .map_err(|_| join_err("timed out".to_string()))?
            .map_err(|s| join_err(s.message().to_string()))?;
        Ok(())
    }

    /// Replicates `actions` as one batch and returns the store's verdict on it.
    ///
    /// Followers forward to the leader. While no leader is known (an election is under
    /// way) it retries for up to 5 s.
    pub async fn propose(
        &self,
        actions: Vec<StoreAction>,
    ) -> Result<Result<(), StoreError>, ProposeError> {
        let req = Request { actions };
        let deadline = Instant::now() + NO_LEADER_WAIT;
        let mut delay = Duration::from_millis(20);
        loop {
            // Bounded: a leader cut off from its quorum would otherwise wait indefinitely.
            let local = tokio::time::timeout(
                self.shared.rpc_timeout,
                self.shared.write_local(req.clone()),
            )
            .await
            .map_err(|_| ProposeError::Timeout(self.shared.rpc_timeout))?;
            let leader = match local {
                Ok(committed) => return Ok(committed.response.result),
                Err(ForwardError::Fatal(reason)) => return Err(ProposeError::Fatal(reason)),
                Err(ForwardError::NotLeader { leader }) => leader,
            };
            if let Some((leader_id, addr)) = leader
                && leader_id != self.shared.raft_id
                && let Some(committed) = self
                    .shared
                    .forwarder
                    .forward(leader_id, &addr, req.clone())
                    .await?
            {
                self.wait_applied(committed.index).await;
                return Ok(committed.response.result);
            }
            if Instant::now() >= deadline {
                return Err(ProposeError::NoLeader(NO_LEADER_WAIT));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RETRY_DELAY);
        }
    }

    /// Waits until this member applied `index`, so that a caller reads its own write in
    /// the local store. The verdict is known either way: a slow follower only logs.
    async fn wait_applied(&self, index: u64) {
        let waited = self
            .shared
            .raft
            .wait(Some(self.shared.rpc_timeout))
            .applied_index_at_least(Some(index), "forwarded proposal applied locally")
            .await;
        if let Err(e) = waited {
            tracing::warn!(index, error = %e, "forwarded proposal not yet applied locally");
        }
    }

    /// The replicated store this member applies committed entries to.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// The openraft handle (metrics, triggers).
    pub fn raft(&self) -> &Raft {
        &self.shared.raft
    }

    /// A client of the manager at `addr` on the cached channel.
    pub(crate) fn peer_client(
        &self,
        addr: &str,
    ) -> Result<
        rswarm_proto::api::raft_transport_client::RaftTransportClient<tonic::transport::Channel>,
        super::ConnectError,
    > {
        self.shared.peers.client(addr)
    }

    /// This member's Raft id.
    pub fn raft_id(&self) -> NodeId {
        self.shared.raft_id
    }

    /// A snapshot of openraft's metrics.
    pub fn metrics(&self) -> RaftMetrics {
        self.shared.raft.metrics().borrow().clone()
    }

    /// Whether this member is the leader.
    pub fn is_leader(&self) -> bool {
        self.shared.raft.metrics().borrow().current_leader == Some(self.shared.raft_id)
    }

    /// The current leader's Raft id and address, when known.
    pub fn leader(&self) -> Option<Leader> {
        self.shared.leader()
    }

    /// The group's members: Raft id, address and whether it votes (else a learner).
    pub fn members(&self) -> Vec<(NodeId, String, bool)> {
        let membership = self
            .shared
            .raft
            .metrics()
            .borrow()
            .membership_config
            .clone();
        let membership = membership.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| (*id, node.addr.clone(), voters.contains(id)))
            .collect()
    }

    /// Removes a member from the group. Must run on the leader.
    pub async fn remove_member(&self, raft_id: NodeId) -> Result<(), RaftError> {
        self.shared.remove_member(raft_id).await
    }

    /// Adds (or promotes) a voter. Must run on the leader.
    pub async fn add_voter(&self, raft_id: NodeId, addr: &str) -> Result<(), RaftError> {
        self.shared.add_voter(raft_id, addr).await
    }

    /// Stops openraft; the log database is closed once its tasks have ended.
    pub async fn shutdown(&self) -> Result<(), RaftError> {
        self.shared
            .raft
            .shutdown()
            .await
            .map_err(|e| RaftError::Fatal(e.to_string()))
    }

    /// The gRPC service other managers reach this member through.
    pub fn service(&self) -> RaftTransportServer<RaftService> {
        RaftTransportServer::new(RaftService {
            shared: self.shared.clone(),
        })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}
