//! Node commands: update, promote, demote, remove.

use rswarm_proto::api::{Node, NodeRole, NodeState, RemoveNodeRequest, UpdateNodeRequest};
use rswarm_proto::validate::{parse_availability, parse_label, parse_label_key};

use super::{ControlApi, ControlError, RaftView, now_ms, resolve};
use crate::store::{Proposer, StoreAction, update};

fn role_name(role: i32) -> &'static str {
    if role == NodeRole::Manager as i32 {
        "manager"
    } else {
        "worker"
    }
}

impl<P: Proposer, R: RaftView> ControlApi<P, R> {
    pub(super) async fn update_node(&self, req: UpdateNodeRequest) -> Result<Node, ControlError> {
        // Parse everything before touching the store: bad input writes nothing.
        let availability = match req.availability.as_str() {
            "" => None,
            value => Some(parse_availability(value)?),
        };
        let add = req
            .label_add
            .iter()
            .map(|l| parse_label(l))
            .collect::<Result<Vec<_>, _>>()?;
        let rm = req
            .label_rm
            .iter()
            .map(|k| parse_label_key(k))
            .collect::<Result<Vec<_>, _>>()?;
        let id = self
            .store
            .view(|tx| resolve::node(tx, &req.reference).map(|n| n.id.clone()))?;
        update(&self.store, self.proposer.as_ref(), |tx| {
            let mut node = tx
                .node(&id)
                .ok_or_else(|| ControlError::NotFound {
                    kind: crate::store::Kind::Node,
                    reference: req.reference.clone(),
                })?
                .clone();
            let spec = node.spec.get_or_insert_default();
            if let Some(a) = availability {
                spec.availability = a as i32;
            }
            for key in &rm {
                if spec.labels.remove(key).is_none() {
                    return Err(ControlError::Refused(format!(
                        "node {} has no label {key:?} to remove",
                        node.id
                    )));
                }
            }
            for (k, v) in &add {
                spec.labels.insert(k.clone(), v.clone());
            }
            node.meta.get_or_insert_default().updated_at = now_ms();
            Ok(vec![StoreAction::UpdateNode(node)])
        })
        .await?;
        Ok(self
            .store
            .view(|tx| tx.node(&id).cloned())
            .unwrap_or_default())
    }

    /// Records the role the operator wants; the node and the leader carry it out
    /// (certificate renewal, Raft membership).
    pub(super) async fn set_desired_role(
        &self,
        reference: &str,
        role: NodeRole,
    ) -> Result<Node, ControlError> {
        let id = self
            .store
            .view(|tx| resolve::node(tx, reference).map(|n| n.id.clone()))?;
        if role == NodeRole::Worker {
            self.check_demotion(&id).await?;
        }
        update(&self.store, self.proposer.as_ref(), |tx| {
            let mut node = resolve::node(tx, &id)?.clone();
            let spec = node.spec.get_or_insert_default();
            if spec.desired_role == role as i32 {
                return Ok(vec![]);
            }
            spec.desired_role = role as i32;
            node.meta.get_or_insert_default().updated_at = now_ms();
            Ok::<_, ControlError>(vec![StoreAction::UpdateNode(node)])
        })
        .await?;
        Ok(self
            .store
            .view(|tx| tx.node(&id).cloned())
            .unwrap_or_default())
    }

    /// A demotion must leave at least one manager and keep a reachable majority.
    async fn check_demotion(&self, id: &str) -> Result<(), ControlError> {
        let raft_id = self.store.view(|tx| {
            tx.node(id)
                .and_then(|n| n.manager_status.as_ref())
                .map(|m| m.raft_id)
        });
        let Some(raft_id) = raft_id else {
            return Ok(());
        };
        let status = self.raft.status();
        let remaining: Vec<&(u64, String)> = status
            .voters
            .iter()
            .filter(|(v, _)| *v != raft_id)
            .collect();
        if remaining.is_empty() {
            return Err(ControlError::Refused(format!(
                "node {id} is the last manager of the cluster and cannot be demoted"
            )));
        }
        let mut reachable = 0;
        for (v, addr) in &remaining {
            if *v == status.self_id || self.raft.ping(addr).await {
                reachable += 1;
            }
        }
        let quorum = remaining.len() / 2 + 1;
        if reachable < quorum {
            return Err(ControlError::Refused(format!(
                "demoting node {id} would leave {reachable} reachable managers of {}: \
                 the cluster would lose quorum ({quorum} needed)",
                remaining.len()
            )));
        }
        Ok(())
    }

    pub(super) async fn remove_node(&self, req: RemoveNodeRequest) -> Result<(), ControlError> {
        update(&self.store, self.proposer.as_ref(), |tx| {
            let node = resolve::node(tx, &req.reference)?;
            let spec = node.spec.clone().unwrap_or_default();
            if node.role == NodeRole::Manager as i32
                || spec.desired_role == NodeRole::Manager as i32
            {
                return Err(ControlError::Refused(format!(
                    "node {} is a cluster {}: demote it first (rswarm node demote {})",
                    node.id,
                    role_name(NodeRole::Manager as i32),
                    node.id
                )));
            }
            let state = node.status.as_ref().map_or(0, |s| s.state);
            if state == NodeState::Ready as i32 && !req.force {
                return Err(ControlError::Refused(format!(
                    "node {} is not down and can't be removed; use --force to remove it anyway",
                    node.id
                )));
            }
            let mut actions = vec![StoreAction::RemoveNode {
                id: node.id.clone(),
            }];
            // Its tasks go with it: the orchestrator replaces them elsewhere.
            actions.extend(
                tx.tasks()
                    .filter(|t| t.node_id == node.id)
                    .map(|t| StoreAction::RemoveTask { id: t.id.clone() }),
            );
            Ok(actions)
        })
        .await
    }
}
