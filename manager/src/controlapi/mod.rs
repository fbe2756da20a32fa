//! The control API (`rswarm` clients → any manager).
//!
//! Reads are served from this manager's store; writes are validated here (a clear
//! error and nothing written on bad input) and proposed through Raft, where the store
//! re-checks them when applied (names stay unique even under concurrent creates).

mod cluster;
mod error;
mod nodes;
mod ports;
pub mod resolve;
mod services;
#[cfg(test)]
mod tests;

pub use cluster::{join_token, manager_addrs};
pub use error::ControlError;

use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rswarm_proto::api::control_server::Control;
use rswarm_proto::api::*;
use tonic::{Request, Response, Status};

use crate::store::{Proposer, Store};

/// What the control API needs to know about the Raft group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RaftStatus {
    /// Current term.
    pub term: u64,
    /// Index of the last entry applied to this manager's store.
    pub last_applied: u64,
    /// The leader's Raft id, if one is known.
    pub leader: Option<u64>,
    /// This manager's Raft id.
    pub self_id: u64,
    /// Voters: Raft id and address.
    pub voters: Vec<(u64, String)>,
}

/// The Raft group as seen from this manager.
pub trait RaftView: Send + Sync + 'static {
    /// Current status.
    fn status(&self) -> RaftStatus;
    /// Whether the manager at `addr` answers, within a short timeout.
    fn ping(&self, addr: &str) -> impl Future<Output = bool> + Send;
    /// Removes a voter from the group (leader only): the step that carries out a
    /// demotion.
    fn remove_voter(&self, raft_id: u64) -> impl Future<Output = Result<(), String>> + Send;
}

/// The control service.
pub struct ControlApi<P, R> {
    /// This manager's copy of the store.
    store: Store,
    /// Where writes go.
    proposer: Arc<P>,
    /// Raft status for `cluster status` and manager addresses.
    raft: Arc<R>,
}

impl<P, R> ControlApi<P, R> {
    /// A control API over `store`, writing through `proposer`.
    pub fn new(store: Store, proposer: Arc<P>, raft: Arc<R>) -> Self {
        ControlApi {
            store,
            proposer,
            raft,
        }
    }
}

/// Unix milliseconds now; timestamps are set by the proposer so that every manager
/// applies the same values.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A new object id: 25 lowercase base-36 characters, like Swarm's (and a valid DNS
/// label, which certificates need for node ids).
pub fn new_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    (0..25)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn authorize<T>(req: &Request<T>) -> Result<(), Status> {
    rswarm_proto::tls::require_manager_or_admin(req).map(|_| ())
}

#[tonic::async_trait]
impl<P: Proposer + 'static, R: RaftView> Control for ControlApi<P, R> {
    async fn get_cluster_status(
        &self,
        req: Request<GetClusterStatusRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        authorize(&req)?;
        Ok(Response::new(self.cluster_status().await?))
    }

    async fn list_nodes(
        &self,
        req: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        authorize(&req)?;
        let nodes = self.store.view(|tx| tx.nodes().cloned().collect());
        Ok(Response::new(ListNodesResponse { nodes }))
    }

    async fn get_node(&self, req: Request<GetNodeRequest>) -> Result<Response<Node>, Status> {
        authorize(&req)?;
        let reference = req.into_inner().reference;
        let node = self
            .store
            .view(|tx| resolve::node(tx, &reference).cloned())?;
        Ok(Response::new(node))
    }

    async fn update_node(&self, req: Request<UpdateNodeRequest>) -> Result<Response<Node>, Status> {
        authorize(&req)?;
        Ok(Response::new(self.update_node(req.into_inner()).await?))
    }

    async fn promote_node(&self, req: Request<GetNodeRequest>) -> Result<Response<Node>, Status> {
        authorize(&req)?;
        let node = self
            .set_desired_role(&req.into_inner().reference, NodeRole::Manager)
            .await?;
        Ok(Response::new(node))
    }

    async fn demote_node(&self, req: Request<GetNodeRequest>) -> Result<Response<Node>, Status> {
        authorize(&req)?;
        let node = self
            .set_desired_role(&req.into_inner().reference, NodeRole::Worker)
            .await?;
        Ok(Response::new(node))
    }

    async fn remove_node(
        &self,
        req: Request<RemoveNodeRequest>,
    ) -> Result<Response<RemoveNodeResponse>, Status> {
        authorize(&req)?;
        self.remove_node(req.into_inner()).await?;
        Ok(Response::new(RemoveNodeResponse {}))
    }

    async fn create_service(
        &self,
        req: Request<CreateServiceRequest>,
    ) -> Result<Response<Service>, Status> {
        authorize(&req)?;
        let spec = req.into_inner().spec.unwrap_or_default();
        Ok(Response::new(self.create_service(spec).await?))
    }

    async fn list_services(
        &self,
        req: Request<ListServicesRequest>,
    ) -> Result<Response<ListServicesResponse>, Status> {
        authorize(&req)?;
        Ok(Response::new(self.list_services()))
    }

    async fn get_service(
        &self,
        req: Request<GetServiceRequest>,
    ) -> Result<Response<Service>, Status> {
        authorize(&req)?;
        let reference = req.into_inner().reference;
        let service = self
            .store
            .view(|tx| resolve::service(tx, &reference).cloned())?;
        Ok(Response::new(service))
    }

    async fn remove_service(
        &self,
        req: Request<GetServiceRequest>,
    ) -> Result<Response<RemoveServiceResponse>, Status> {
        authorize(&req)?;
        self.remove_service(&req.into_inner().reference).await?;
        Ok(Response::new(RemoveServiceResponse {}))
    }

    async fn update_service(
        &self,
        req: Request<UpdateServiceRequest>,
    ) -> Result<Response<Service>, Status> {
        authorize(&req)?;
        let req = req.into_inner();
        let spec = req.spec.unwrap_or_default();
        let service = self
            .update_service(&req.reference, req.version, spec)
            .await?;
        Ok(Response::new(service))
    }

    async fn scale_service(
        &self,
        req: Request<ScaleServiceRequest>,
    ) -> Result<Response<Service>, Status> {
        authorize(&req)?;
        let req = req.into_inner();
        Ok(Response::new(
            self.scale_service(&req.reference, req.replicas).await?,
        ))
    }

    async fn list_tasks(
        &self,
        req: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        authorize(&req)?;
        Ok(Response::new(self.list_tasks(&req.into_inner())?))
    }

    async fn get_join_token(
        &self,
        req: Request<JoinTokenRequest>,
    ) -> Result<Response<JoinTokenResponse>, Status> {
        authorize(&req)?;
        Ok(Response::new(self.join_token(req.into_inner()).await?))
    }
}
