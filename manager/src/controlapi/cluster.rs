//! `cluster status` and join tokens.

use futures::future::join_all;
use rswarm_proto::api::{ClusterStatus, JoinTokenRequest, JoinTokenResponse, ManagerInfo};
use rswarm_proto::tls::{JoinToken, new_secret};

use super::{ControlApi, ControlError, RaftView, now_ms};
use crate::store::{Proposer, ReadTx, StoreAction, update};

/// The managers' addresses, leader first, for join commands and failover lists.
pub fn manager_addrs(voters: &[(u64, String)], leader: Option<u64>) -> Vec<String> {
    let mut sorted: Vec<&(u64, String)> = voters.iter().collect();
    sorted.sort_by_key(|(id, _)| (Some(*id) != leader, *id));
    sorted.into_iter().map(|(_, addr)| addr.clone()).collect()
}

/// The join token of `role` for the cluster in `tx`.
pub fn join_token(tx: &ReadTx<'_>, manager: bool) -> Result<String, ControlError> {
    let cluster = tx.cluster().ok_or(ControlError::NoCluster)?;
    let secret = if manager {
        &cluster.manager_token_secret
    } else {
        &cluster.worker_token_secret
    };
    let digest = rswarm_proto::tls::ca_digest(&cluster.ca_cert_pem)
        .map_err(|e| ControlError::Refused(format!("the cluster CA is unusable: {e}")))?;
    Ok(JoinToken {
        ca_digest: digest,
        secret: secret.clone(),
    }
    .to_string())
}

impl<P: Proposer, R: RaftView> ControlApi<P, R> {
    pub(super) async fn cluster_status(&self) -> Result<ClusterStatus, ControlError> {
        let status = self.raft.status();
        let (cluster_id, node_ids) = self.store.view(|tx| {
            let ids: Vec<(u64, String)> = tx
                .nodes()
                .filter_map(|n| n.manager_status.as_ref().map(|m| (m.raft_id, n.id.clone())))
                .collect();
            (tx.cluster().map(|c| c.id.clone()).unwrap_or_default(), ids)
        });
        let node_of = |raft_id: u64| {
            node_ids
                .iter()
                .find(|(id, _)| *id == raft_id)
                .map(|(_, node)| node.clone())
                .unwrap_or_default()
        };
        // Ping the other managers concurrently; each ping is bounded by its own timeout.
        let reachable = join_all(status.voters.iter().map(|(id, addr)| {
            let this = *id == status.self_id;
            async move { this || self.raft.ping(addr).await }
        }))
        .await;
        let managers = status
            .voters
            .iter()
            .zip(reachable)
            .map(|((raft_id, addr), reachable)| ManagerInfo {
                raft_id: *raft_id,
                node_id: node_of(*raft_id),
                addr: addr.clone(),
                leader: status.leader == Some(*raft_id),
                reachable,
            })
            .collect();
        Ok(ClusterStatus {
            cluster_id,
            raft_term: status.term,
            last_applied: status.last_applied,
            managers,
            node_id: node_of(status.self_id),
        })
    }

    pub(super) async fn join_token(
        &self,
        req: JoinTokenRequest,
    ) -> Result<JoinTokenResponse, ControlError> {
        let manager = match req.role.as_str() {
            "manager" => true,
            "worker" => false,
            other => {
                return Err(ControlError::Refused(format!(
                    "unknown join token role {other:?}: expected worker or manager"
                )));
            }
        };
        if req.rotate {
            let secret = new_secret();
            update(&self.store, self.proposer.as_ref(), |tx| {
                let mut cluster = tx.cluster().ok_or(ControlError::NoCluster)?.clone();
                if manager {
                    cluster.manager_token_secret = secret.clone();
                } else {
                    cluster.worker_token_secret = secret.clone();
                }
                if let Some(meta) = cluster.meta.as_mut() {
                    meta.updated_at = now_ms();
                }
                Ok::<_, ControlError>(vec![StoreAction::UpdateCluster(cluster)])
            })
            .await?;
        }
        let status = self.raft.status();
        let token = self.store.view(|tx| join_token(tx, manager))?;
        Ok(JoinTokenResponse {
            token,
            manager_addrs: manager_addrs(&status.voters, status.leader),
        })
    }
}
