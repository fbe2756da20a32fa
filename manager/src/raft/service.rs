//! The `RaftTransport` gRPC service: openraft's RPCs for the local member, writes
//! forwarded by followers, and join requests from new managers.

use std::sync::Arc;

use rswarm_proto::api::raft_transport_server::RaftTransport;
use rswarm_proto::api::{
    JoinRaftRequest, JoinRaftResponse, PingRequest, PingResponse, RaftPayload,
};
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status};

use super::forwarder::ProposeAnswer;
use super::node::{RaftError, Shared};
use super::{Proposals, decode, encode};

/// The gRPC server side of one Raft member (authorization is the daemon's interceptor).
pub struct RaftService {
    pub(crate) shared: Arc<Shared>,
}

fn decode_payload<T: serde::de::DeserializeOwned>(payload: &RaftPayload) -> Result<T, Status> {
    decode(&payload.data).map_err(|e| Status::invalid_argument(format!("bad Raft payload: {e}")))
}

fn encode_payload<T: serde::Serialize>(value: &T) -> Result<GrpcResponse<RaftPayload>, Status> {
    let data = encode(value).map_err(|e| Status::internal(format!("cannot encode reply: {e}")))?;
    Ok(GrpcResponse::new(RaftPayload { data }))
}

#[tonic::async_trait]
impl RaftTransport for RaftService {
    async fn append_entries(
        &self,
        request: GrpcRequest<RaftPayload>,
    ) -> Result<GrpcResponse<RaftPayload>, Status> {
        let rpc = decode_payload(request.get_ref())?;
        let result = self.shared.raft.append_entries(rpc).await;
        encode_payload(&result)
    }

    async fn vote(
        &self,
        request: GrpcRequest<RaftPayload>,
    ) -> Result<GrpcResponse<RaftPayload>, Status> {
        let rpc = decode_payload(request.get_ref())?;
        let result = self.shared.raft.vote(rpc).await;
        encode_payload(&result)
    }

    async fn install_snapshot(
        &self,
        request: GrpcRequest<RaftPayload>,
    ) -> Result<GrpcResponse<RaftPayload>, Status> {
        let rpc = decode_payload(request.get_ref())?;
        let result = self.shared.raft.install_snapshot(rpc).await;
        encode_payload(&result)
    }

    async fn propose(
        &self,
        request: GrpcRequest<RaftPayload>,
    ) -> Result<GrpcResponse<RaftPayload>, Status> {
        let proposals: Proposals = decode_payload(request.get_ref())?;
        let answer: ProposeAnswer = self.shared.batcher.write_all(proposals.requests).await;
        encode_payload(&answer)
    }

    async fn join_raft(
        &self,
        request: GrpcRequest<JoinRaftRequest>,
    ) -> Result<GrpcResponse<JoinRaftResponse>, Status> {
        let req = request.into_inner();
        tracing::info!(raft_id = req.raft_id, node_id = %req.node_id, addr = %req.addr, "Raft join requested");
        if req.addr.is_empty() {
            return Err(Status::invalid_argument(
                "join needs the joining manager's addr",
            ));
        }
        match self.shared.add_voter(req.raft_id, &req.addr).await {
            Ok(()) => Ok(GrpcResponse::new(JoinRaftResponse {})),
            Err(RaftError::NotLeader {
                leader: Some((leader_id, addr)),
            }) if leader_id != self.shared.raft_id => {
                // The named leader serves it, or forwards again if leadership moved meanwhile.
                let mut client = self
                    .shared
                    .peers
                    .client(&addr)
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                tokio::time::timeout(self.shared.rpc_timeout * 6, client.join_raft(req))
                    .await
                    .map_err(|_| {
                        Status::deadline_exceeded("join forwarded to the leader timed out")
                    })?
            }
            Err(e @ RaftError::NotLeader { .. }) => Err(Status::unavailable(e.to_string())),
            Err(e) => Err(Status::internal(e.to_string())),
        }
    }

    async fn ping(
        &self,
        _request: GrpcRequest<PingRequest>,
    ) -> Result<GrpcResponse<PingResponse>, Status> {
        Ok(GrpcResponse::new(PingResponse {
            node_id: self.shared.node_id.clone(),
            raft_id: self.shared.raft_id,
        }))
    }
}
