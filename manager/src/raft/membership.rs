//! Membership changes of the Raft group: joins, promotions and removals.

use std::collections::{BTreeMap, BTreeSet};

use openraft::error::ClientWriteError;
use openraft::{BasicNode, ChangeMembers};

use super::NodeId;
use super::node::{RaftError, Shared, leader_of};

impl Shared {
    fn membership_err(
        &self,
        e: openraft::error::RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
    ) -> RaftError {
        match e {
            openraft::error::RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                RaftError::NotLeader {
                    leader: leader_of(&f),
                }
            }
            other => RaftError::Membership(other.to_string()),
        }
    }

    /// `NotLeader` unless this member leads. Checked before openraft is asked:
    /// on a follower whose newest membership entry is not committed yet, openraft
    /// answers a change with "already undergoing a configuration change" rather
    /// than with the leader to forward it to.
    fn ensure_leader(&self) -> Result<(), RaftError> {
        let leader = self.raft.metrics().borrow().current_leader;
        if leader == Some(self.raft_id) {
            Ok(())
        } else {
            Err(RaftError::NotLeader {
                leader: self.leader(),
            })
        }
    }

    /// Makes `raft_id` at `addr` a voter; a no-op when it already is one. Leader only.
    pub(crate) async fn add_voter(&self, raft_id: NodeId, addr: &str) -> Result<(), RaftError> {
        let _guard = self.membership_lock.lock().await;
        self.ensure_leader()?;
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let membership = membership.membership();
        let is_voter = membership.voter_ids().any(|id| id == raft_id);
        let known_addr = membership.get_node(&raft_id).map(|n| n.addr.clone());
        if is_voter && known_addr.as_deref() == Some(addr) {
            return Ok(());
        }
        let node = BasicNode::new(addr);
        match known_addr {
            None => {
                // Blocking: the learner first catches up, so that promoting it does not
                // stall commits while it replays the log. Bounded, because an unreachable
                // learner never catches up; a retry finds it known and promotes it.
                let wait = self.rpc_timeout * 6;
                tokio::time::timeout(wait, self.raft.add_learner(raft_id, node, true))
                    .await
                    .map_err(|_| {
                        RaftError::Membership(format!(
                            "learner {raft_id} at {addr} did not catch up within {wait:?}"
                        ))
                    })?
                    .map_err(|e| self.membership_err(e))?;
            }
            Some(old) if old != addr => {
                let nodes = BTreeMap::from([(raft_id, node)]);
                self.raft
                    .change_membership(ChangeMembers::SetNodes(nodes), false)
                    .await
                    .map_err(|e| self.membership_err(e))?;
            }
            Some(_) => {}
        }
        if !is_voter {
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([raft_id])), false)
                .await
                .map_err(|e| self.membership_err(e))?;
        }
        tracing::info!(raft_id, addr, "added Raft voter");
        Ok(())
    }

    /// Removes `raft_id` from the group (voter or learner). Leader only.
    pub(crate) async fn remove_member(&self, raft_id: NodeId) -> Result<(), RaftError> {
        let _guard = self.membership_lock.lock().await;
        self.ensure_leader()?;
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let membership = membership.membership();
        let ids = BTreeSet::from([raft_id]);
        let change = if membership.voter_ids().any(|id| id == raft_id) {
            // `retain = false` also removes the node itself, not only its vote.
            ChangeMembers::RemoveVoters(ids)
        } else if membership.get_node(&raft_id).is_some() {
            ChangeMembers::RemoveNodes(ids)
        } else {
            return Ok(());
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(|e| self.membership_err(e))?;
        tracing::info!(raft_id, "removed Raft member");
        Ok(())
    }
}
