//! [`RaftNode`] as the store's [`Proposer`] and the control API's [`RaftView`].

use std::time::Duration;

use rswarm_proto::api::PingRequest;

use super::RaftNode;
use crate::controlapi::{RaftStatus, RaftView};
use crate::store::{ProposeError as StoreProposeError, Proposer, StoreAction};

/// How long a ping of another manager may take before it counts as down.
const PING_TIMEOUT: Duration = Duration::from_millis(500);

impl Proposer for RaftNode {
    async fn propose(&self, actions: Vec<StoreAction>) -> Result<(), StoreProposeError> {
        match RaftNode::propose(self, actions).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(rejected)) => Err(StoreProposeError::Rejected(rejected)),
            Err(e) => Err(StoreProposeError::Unavailable(e.to_string())),
        }
    }
}

impl RaftView for RaftNode {
    fn status(&self) -> RaftStatus {
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership();
        RaftStatus {
            term: metrics.current_term,
            last_applied: metrics.last_applied.map_or(0, |l| l.index),
            leader: metrics.current_leader,
            self_id: self.raft_id(),
            voters: membership
                .voter_ids()
                .filter_map(|id| Some((id, membership.get_node(&id)?.addr.clone())))
                .collect(),
        }
    }

    async fn ping(&self, addr: &str) -> bool {
        let Ok(mut client) = self.peer_client(addr) else {
            return false;
        };
        matches!(
            tokio::time::timeout(PING_TIMEOUT, client.ping(PingRequest {})).await,
            Ok(Ok(_))
        )
    }

    async fn remove_voter(&self, raft_id: u64) -> Result<(), String> {
        self.remove_member(raft_id).await.map_err(|e| e.to_string())
    }
}
