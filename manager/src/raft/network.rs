//! Outgoing Raft RPCs: openraft's requests postcard-encoded in `RaftPayload` messages,
//! over one cached tonic channel per peer address.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, RPCTypes};
use rswarm_proto::api::RaftPayload;
use rswarm_proto::api::raft_transport_client::RaftTransportClient;
use tonic::transport::Channel;

use super::append::Appends;
use super::{NodeId, TypeConfig, decode, encode};

/// Largest gRPC message accepted or sent on the Raft transport (append batches and
/// snapshot chunks stay well below it).
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Creates a channel to a peer's address; the daemon's connector sets up mTLS.
///
/// Called once per address (the channel is cached) under a lock, so it must return at
/// once: build a lazy channel (`connect_lazy`), do not connect eagerly.
pub type Connector = Arc<dyn Fn(&str) -> Result<Channel, ConnectError> + Send + Sync>;

/// A connector could not create a channel to a peer.
#[derive(Clone, Debug, thiserror::Error)]
#[error("cannot connect to manager at {addr}: {reason}")]
pub struct ConnectError {
    /// The peer's address.
    pub addr: String,
    /// What went wrong.
    pub reason: String,
}

/// The channel cache shared by the Raft network and the node's forwarding.
pub(crate) struct Peers {
    connector: Connector,
    channels: Mutex<HashMap<String, Channel>>,
}

impl Peers {
    pub(crate) fn new(connector: Connector) -> Peers {
        Peers {
            connector,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// The cached channel to `addr`, created on first use.
    pub(crate) fn channel(&self, addr: &str) -> Result<Channel, ConnectError> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ch) = channels.get(addr) {
            return Ok(ch.clone());
        }
        let ch = (self.connector)(addr)?;
        channels.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    /// A gRPC client on the cached channel to `addr`.
    pub(crate) fn client(&self, addr: &str) -> Result<RaftTransportClient<Channel>, ConnectError> {
        Ok(RaftTransportClient::new(self.channel(addr)?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }
}

/// Creates openraft's per-peer network clients.
pub struct NetworkFactory {
    pub(crate) self_id: NodeId,
    pub(crate) peers: Arc<Peers>,
    /// Pause before retrying an unreachable peer (the Raft heartbeat interval).
    pub(crate) retry: Duration,
    /// Time limit of an AppendEntries RPC that carries entries.
    pub(crate) append_ttl: Duration,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Network {
        Network {
            peer: Peer {
                self_id: self.self_id,
                target,
                addr: node.addr.clone(),
                peers: self.peers.clone(),
            },
            retry: self.retry,
            appends: Appends::new(self.append_ttl),
        }
    }
}

/// openraft's client for one peer.
pub struct Network {
    peer: Peer,
    retry: Duration,
    appends: Appends,
}

/// Where RPCs to one peer go; cheap to clone into a task.
#[derive(Clone)]
pub(crate) struct Peer {
    self_id: NodeId,
    target: NodeId,
    addr: String,
    peers: Arc<Peers>,
}

/// Which RPC to call.
#[derive(Clone, Copy)]
pub(crate) enum Rpc {
    Append,
    Vote,
    Snapshot,
}

impl Peer {
    /// Sends one postcard-encoded request and decodes the postcard response `Result<T, E>`.
    pub(crate) async fn call<Req, T, E>(
        &self,
        rpc: Rpc,
        req: &Req,
        ttl: Duration,
    ) -> Result<T, RPCError<NodeId, BasicNode, E>>
    where
        Req: serde::Serialize,
        T: serde::de::DeserializeOwned,
        E: serde::de::DeserializeOwned + std::error::Error,
    {
        let data = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut client = self
            .peers
            .client(&self.addr)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let payload = RaftPayload { data };
        let fut = async {
            match rpc {
                Rpc::Append => client.append_entries(payload).await,
                Rpc::Vote => client.vote(payload).await,
                Rpc::Snapshot => client.install_snapshot(payload).await,
            }
        };
        let action = match rpc {
            Rpc::Append => RPCTypes::AppendEntries,
            Rpc::Vote => RPCTypes::Vote,
            Rpc::Snapshot => RPCTypes::InstallSnapshot,
        };
        let resp = match tokio::time::timeout(ttl, fut).await {
            Err(_) => {
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.self_id,
                    target: self.target,
                    timeout: ttl,
                }));
            }
            Ok(Err(status)) => return Err(status_to_rpc_error(status)),
            Ok(Ok(resp)) => resp.into_inner(),
        };
        let result: Result<T, E> =
            decode(&resp.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// Unavailable peers are `Unreachable`, so that openraft backs off before retrying;
/// anything else is a network error retried at the normal pace.
fn status_to_rpc_error<E: std::error::Error>(
    status: tonic::Status,
) -> RPCError<NodeId, BasicNode, E> {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
            RPCError::Unreachable(Unreachable::new(&status))
        }
        _ => RPCError::Network(NetworkError::new(&status)),
    }
}

impl RaftNetwork<TypeConfig> for Network {
    /// openraft's default waits 500 ms after a failed RPC, so a manager that comes
    /// back would hear from the leader only after half an election window and might
    /// stand for election itself. Retry at the heartbeat interval instead.
    fn backoff(&self) -> openraft::network::Backoff {
        openraft::network::Backoff::new(std::iter::repeat(self.retry))
    }

    /// Empty heartbeats keep openraft's time limit (its heartbeat interval); entries
    /// go through [`Appends`], which gives them longer.
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.appends.send(&self.peer, rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.peer.call(Rpc::Snapshot, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.peer.call(Rpc::Vote, &rpc, option.hard_ttl()).await
    }
}
