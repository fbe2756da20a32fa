//! The join endpoint: hands out the root CA certificate and signs a joining node's
//! certificate request when its join token is valid.
//!
//! These are the only calls served to clients without a certificate. Everything the
//! joining node learns here it checks itself: the CA against the token's digest before
//! trusting it, then the server against that CA.

use std::sync::Arc;

use rand::Rng;
use rswarm_proto::api::node_ca_server::NodeCa;
use rswarm_proto::api::{
    GetRootCaRequest, GetRootCaResponse, IssueNodeCertificateRequest, IssueNodeCertificateResponse,
    ManagerStatus, Meta, Node, NodeAvailability, NodeDescription, NodeRole, NodeSpec, NodeState,
    NodeStatus, RenewNodeCertificateRequest,
};
use rswarm_proto::tls::{JoinToken, Role};
use tonic::{Request, Response, Status};
use tracing::info;

use crate::ca::RootCa;
use crate::controlapi::manager_addrs;
use crate::controlapi::{RaftView, new_id, now_ms};
use crate::store::{Proposer, Store, StoreAction, update};

/// The node CA service.
pub struct NodeCaService<P, R> {
    /// This manager's copy of the store (holds the CA and the token secrets).
    store: Store,
    /// Where the new node's record is written.
    proposer: Arc<P>,
    /// For the managers' addresses and Raft ids in use.
    raft: Arc<R>,
}

impl<P, R> NodeCaService<P, R> {
    /// The service over `store`.
    pub fn new(store: Store, proposer: Arc<P>, raft: Arc<R>) -> Self {
        NodeCaService {
            store,
            proposer,
            raft,
        }
    }
}

impl<P: Proposer + 'static, R: RaftView> NodeCaService<P, R> {
    fn issue(
        &self,
        req: &IssueNodeCertificateRequest,
    ) -> Result<(Node, String, String, Role), Status> {
        let token: JoinToken = req
            .token
            .parse()
            .map_err(|e| Status::invalid_argument(format!("invalid join token: {e}")))?;
        if req.hostname.trim().is_empty() {
            return Err(Status::invalid_argument(
                "the joining node sent no hostname",
            ));
        }
        if req.advertise_addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(Status::invalid_argument(format!(
                "invalid advertise address {:?}: expected IP:PORT",
                req.advertise_addr
            )));
        }
        let cluster = self.store.view(|tx| tx.cluster().cloned()).ok_or_else(|| {
            Status::unavailable("this manager has not caught up with the cluster")
        })?;
        token
            .verify_ca(&cluster.ca_cert_pem)
            .map_err(|e| Status::permission_denied(format!("join token refused: {e}")))?;
        let role = if token.secret_matches(&cluster.manager_token_secret) {
            Role::Manager
        } else if token.secret_matches(&cluster.worker_token_secret) {
            Role::Worker
        } else {
            return Err(Status::permission_denied(
                "join token refused: its secret is not a current worker or manager token \
                 (it may have been rotated; get a fresh one with `rswarm join-token`)",
            ));
        };
        let ca = RootCa::from_pem(&cluster.ca_cert_pem, &cluster.ca_key_pem)
            .map_err(|e| Status::internal(format!("the cluster CA is unusable: {e}")))?;
        let node_id = new_id();
        let cert_pem = ca
            .sign_node_csr(&req.csr_pem, &node_id, role, &cluster.id)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let node_role = match role {
            Role::Manager => NodeRole::Manager,
            _ => NodeRole::Worker,
        };
        let manager_status = (role == Role::Manager).then(|| ManagerStatus {
            raft_id: self.new_raft_id(),
            addr: req.advertise_addr.clone(),
        });
        let now = now_ms();
        let node = Node {
            id: node_id,
            meta: Some(Meta {
                version: 0,
                created_at: now,
                updated_at: now,
            }),
            spec: Some(NodeSpec {
                desired_role: node_role as i32,
                availability: NodeAvailability::Active as i32,
                labels: Default::default(),
            }),
            role: node_role as i32,
            description: Some(NodeDescription {
                hostname: req.hostname.clone(),
                nano_cpus: req.nano_cpus,
                memory_bytes: req.memory_bytes,
                os: "linux".into(),
                arch: std::env::consts::ARCH.into(),
            }),
            status: Some(NodeStatus {
                state: NodeState::Unknown as i32,
                message: "joined; waiting for its first heartbeat".into(),
                addr: req.advertise_addr.clone(),
                port_errors: Vec::new(),
            }),
            manager_status,
            // Allocated at its first heartbeat.
            network: None,
        };
        Ok((node, cert_pem, cluster.id, role))
    }

    /// A Raft id no other manager uses (0 is reserved by openraft conventions here).
    fn new_raft_id(&self) -> u64 {
        let used: Vec<u64> = self
            .raft
            .status()
            .voters
            .iter()
            .map(|(id, _)| *id)
            .collect();
        let mut rng = rand::rng();
        loop {
            let id: u64 = rng.random_range(1..u64::MAX >> 1);
            if !used.contains(&id) {
                return id;
            }
        }
    }
}

#[tonic::async_trait]
impl<P: Proposer + 'static, R: RaftView> NodeCa for NodeCaService<P, R> {
    async fn get_root_ca_certificate(
        &self,
        _req: Request<GetRootCaRequest>,
    ) -> Result<Response<GetRootCaResponse>, Status> {
        let cert_pem = self
            .store
            .view(|tx| tx.cluster().map(|c| c.ca_cert_pem.clone()))
            .ok_or_else(|| {
                Status::unavailable("this manager has not caught up with the cluster")
            })?;
        Ok(Response::new(GetRootCaResponse { cert_pem }))
    }

    async fn issue_node_certificate(
        &self,
        req: Request<IssueNodeCertificateRequest>,
    ) -> Result<Response<IssueNodeCertificateResponse>, Status> {
        let req = req.into_inner();
        let (node, cert_pem, cluster_id, role) = self.issue(&req)?;
        let node_id = node.id.clone();
        let raft_id = node.manager_status.as_ref().map_or(0, |m| m.raft_id);
        self.proposer
            .propose(vec![StoreAction::CreateNode(node)])
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        info!(node.id = %node_id, role = %role, hostname = %req.hostname, "node joined");
        let status = self.raft.status();
        Ok(Response::new(IssueNodeCertificateResponse {
            node_id,
            cert_pem,
            role: if role == Role::Manager { 1 } else { 0 },
            cluster_id,
            manager_addrs: manager_addrs(&status.voters, status.leader),
            raft_id,
        }))
    }

    async fn renew_node_certificate(
        &self,
        req: Request<RenewNodeCertificateRequest>,
    ) -> Result<Response<IssueNodeCertificateResponse>, Status> {
        let peer = rswarm_proto::tls::require_node(&req)?;
        let csr_pem = req.into_inner().csr_pem;
        let fresh_raft_id = self.new_raft_id();
        // A node promoted to manager gets its Raft id with its new certificate.
        update(&self.store, self.proposer.as_ref(), |tx| {
            let node = tx.node(&peer.node_id).ok_or_else(|| {
                Status::permission_denied(format!(
                    "node {} has been removed from the cluster",
                    peer.node_id
                ))
            })?;
            let wants_manager = node
                .spec
                .as_ref()
                .is_some_and(|s| s.desired_role == NodeRole::Manager as i32);
            if !wants_manager || node.manager_status.is_some() {
                return Ok(vec![]);
            }
            let mut node = node.clone();
            node.manager_status = Some(ManagerStatus {
                raft_id: fresh_raft_id,
                addr: node
                    .status
                    .as_ref()
                    .map(|s| s.addr.clone())
                    .unwrap_or_default(),
            });
            node.meta.get_or_insert_default().updated_at = now_ms();
            Ok::<_, Status>(vec![StoreAction::UpdateNode(node)])
        })
        .await?;
        let (node, cluster) = self
            .store
            .view(|tx| (tx.node(&peer.node_id).cloned(), tx.cluster().cloned()));
        let (Some(node), Some(cluster)) = (node, cluster) else {
            return Err(Status::permission_denied(format!(
                "node {} has been removed from the cluster",
                peer.node_id
            )));
        };
        let desired = node.spec.as_ref().map_or(0, |s| s.desired_role);
        let role = if desired == NodeRole::Manager as i32 {
            Role::Manager
        } else {
            Role::Worker
        };
        let ca = RootCa::from_pem(&cluster.ca_cert_pem, &cluster.ca_key_pem)
            .map_err(|e| Status::internal(format!("the cluster CA is unusable: {e}")))?;
        let cert_pem = ca
            .sign_node_csr(&csr_pem, &node.id, role, &cluster.id)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        info!(node.id = %node.id, role = %role, "node certificate renewed");
        let status = self.raft.status();
        Ok(Response::new(IssueNodeCertificateResponse {
            node_id: node.id.clone(),
            cert_pem,
            role: desired,
            cluster_id: cluster.id,
            manager_addrs: manager_addrs(&status.voters, status.leader),
            raft_id: node.manager_status.map_or(0, |m| m.raft_id),
        }))
    }
}
