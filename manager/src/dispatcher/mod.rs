//! The dispatcher (leader only): node sessions. Every node sends a heartbeat each
//! period; a node whose heartbeats stop for [`MISSED_HEARTBEATS`] periods is marked
//! down. After a leader change, every node gets a full grace period before that, since
//! the new leader has not heard from anyone yet.
//!
//! A non-leader answers `unavailable` with the leader's address in the
//! `rswarm-leader` metadata key, so the node moves its session there.

mod assignments;
mod stream;
#[cfg(test)]
mod tests;

pub use assignments::assigned_to;
pub(crate) use stream::LeaderWatch;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rswarm_proto::api::dispatcher_server::Dispatcher;
use rswarm_proto::api::{
    AssignmentsMessage, AssignmentsRequest, EndpointsMessage, EndpointsRequest, HeartbeatRequest,
    HeartbeatResponse, NetworkPeer, NodeNetwork, NodeRole, NodeState, NodeStatus,
    UpdateTaskStatusRequest, UpdateTaskStatusResponse,
};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use crate::controlapi::{RaftView, manager_addrs, now_ms};
use crate::network;
use crate::store::{Proposer, Store, StoreAction, update};

/// Heartbeats missed before a node is marked down.
pub const MISSED_HEARTBEATS: u32 = 3;
/// Metadata key carrying the leader's address in a redirect.
pub const LEADER_METADATA: &str = "rswarm-leader";

/// Node sessions on the leader.
pub struct DispatcherService<P, R> {
    /// This manager's store.
    store: Store,
    /// Where node status changes are written.
    proposer: Arc<P>,
    /// To know whether this manager leads.
    raft: Arc<R>,
    /// Expected interval between a node's heartbeats.
    period: Duration,
    /// When each node was last heard from, and since when this manager leads.
    // A std mutex: held only for map updates, never across an `.await`.
    sessions: Mutex<Sessions>,
}

#[derive(Default)]
struct Sessions {
    /// Term-independent: reset whenever leadership is (re)gained.
    leading_since: Option<Instant>,
    last_seen: HashMap<String, Instant>,
}

impl<P: Proposer + 'static, R: RaftView> DispatcherService<P, R> {
    /// A dispatcher expecting a heartbeat from every node each `period`.
    pub fn new(store: Store, proposer: Arc<P>, raft: Arc<R>, period: Duration) -> Self {
        DispatcherService {
            store,
            proposer,
            raft,
            period,
            sessions: Mutex::new(Sessions::default()),
        }
    }

    fn is_leader(&self) -> bool {
        let s = self.raft.status();
        s.leader == Some(s.self_id)
    }

    fn not_leader(&self) -> Status {
        let s = self.raft.status();
        let leader_addr = s
            .leader
            .and_then(|l| s.voters.iter().find(|(id, _)| *id == l))
            .map(|(_, addr)| addr.clone());
        let mut status = Status::unavailable(match &leader_addr {
            Some(addr) => format!("this manager is not the leader; the leader is at {addr}"),
            None => "no leader is elected right now".to_owned(),
        });
        if let Some(value) = leader_addr.and_then(|a| a.parse().ok()) {
            status.metadata_mut().insert(LEADER_METADATA, value);
        }
        status
    }

    /// Marks nodes down whose heartbeats stopped. Runs until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.period / 2);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if !self.is_leader() {
                self.lock().leading_since = None;
                continue;
            }
            self.reconcile_roles().await;
            let expired = self.expired_nodes(Instant::now());
            for node_id in expired {
                warn!(node.id = %node_id, "heartbeats missed: marking node down");
                let result = self
                    .set_state(&node_id, NodeState::Down, "heartbeat failure", None)
                    .await;
                if let Err(err) = result {
                    warn!(node.id = %node_id, %err, "could not mark node down");
                }
            }
        }
    }

    /// Carries out `node promote` / `node demote` on the group's side: a demoted
    /// manager leaves the Raft group, then its record says worker; a promoted node's
    /// record says manager once it has joined the group as a voter.
    async fn reconcile_roles(&self) {
        let status = self.raft.status();
        let is_voter = |raft_id: u64| status.voters.iter().any(|(id, _)| *id == raft_id);
        let changes: Vec<(String, NodeRole, Option<u64>)> = self.store.view(|tx| {
            tx.nodes()
                .filter_map(|n| {
                    let desired = n.spec.as_ref().map_or(0, |s| s.desired_role);
                    let raft_id = n.manager_status.as_ref().map(|m| m.raft_id);
                    if desired == n.role {
                        return None;
                    }
                    if desired == NodeRole::Worker as i32 {
                        Some((n.id.clone(), NodeRole::Worker, raft_id))
                    } else if raft_id.is_some_and(is_voter) {
                        Some((n.id.clone(), NodeRole::Manager, raft_id))
                    } else {
                        None
                    }
                })
                .collect()
        });
        for (node_id, role, raft_id) in changes {
            if role == NodeRole::Worker
                && let Some(raft_id) = raft_id.filter(|id| is_voter(*id))
            {
                if status.voters.len() <= 1 {
                    continue;
                }
                info!(node.id = %node_id, raft_id, "demotion: removing the manager from the Raft group");
                if let Err(err) = self.raft.remove_voter(raft_id).await {
                    warn!(node.id = %node_id, %err, "demotion: cannot leave the Raft group yet");
                    continue;
                }
            }
            let result = update(&self.store, self.proposer.as_ref(), |tx| {
                let Some(node) = tx.node(&node_id) else {
                    return Ok(vec![]);
                };
                let mut node = node.clone();
                node.role = role as i32;
                if role == NodeRole::Worker {
                    node.manager_status = None;
                }
                node.meta.get_or_insert_default().updated_at = now_ms();
                Ok::<_, crate::store::ProposeError>(vec![StoreAction::UpdateNode(node)])
            })
            .await;
            match result {
                Ok(()) => info!(node.id = %node_id, role = ?role, "node role changed"),
                Err(err) => warn!(node.id = %node_id, %err, "cannot record the node's new role"),
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Nodes recorded ready whose last heartbeat (or this leadership's start) is older
    /// than the allowed silence.
    fn expired_nodes(&self, now: Instant) -> Vec<String> {
        let allowed = self.period * MISSED_HEARTBEATS;
        let mut sessions = self.lock();
        let since = *sessions.leading_since.get_or_insert(now);
        let ready: Vec<String> = self.store.view(|tx| {
            tx.nodes()
                .filter(|n| {
                    n.status.as_ref().is_some_and(|s| {
                        s.state == NodeState::Ready as i32 || s.state == NodeState::Unknown as i32
                    })
                })
                .map(|n| n.id.clone())
                .collect()
        });
        ready
            .into_iter()
            .filter(|id| {
                let last = sessions
                    .last_seen
                    .get(id)
                    .copied()
                    .unwrap_or(since)
                    .max(since);
                now.duration_since(last) > allowed
            })
            .collect()
    }

    async fn set_state(
        &self,
        node_id: &str,
        state: NodeState,
        message: &str,
        report: Option<&HeartbeatRequest>,
    ) -> Result<(), Status> {
        update(&self.store, self.proposer.as_ref(), |tx| {
            let Some(node) = tx.node(node_id) else {
                return Ok(vec![]);
            };
            let mut node = node.clone();
            let old = node.status.clone().unwrap_or_default();
            let addr = report
                .map(|r| r.addr.clone())
                .filter(|a| !a.is_empty())
                .unwrap_or(old.addr.clone());
            let description = report.and_then(|r| r.description.clone());
            // A node that stopped reporting serves nothing: no port errors either.
            let port_errors = report.map_or_else(Vec::new, |r| r.port_errors.clone());
            let unchanged = old.state == state as i32
                && old.addr == addr
                && old.port_errors == port_errors
                && description
                    .as_ref()
                    .is_none_or(|d| Some(d) == node.description.as_ref());
            let mut actions = Vec::new();
            // Only a live node gets a subnet, so a record of a node that never came
            // up does not hold one.
            if report.is_some()
                && network::node_subnet(&node).is_none()
                && let Some(cluster) = tx.cluster()
                && !cluster.network_pool.is_empty()
            {
                match network::parse_pool(&cluster.network_pool) {
                    Ok(pool) => match network::free_subnet(&pool, tx.nodes()) {
                        Some(subnet) => {
                            info!(node.id = %node_id, %subnet, "task subnet allocated");
                            node.network = Some(NodeNetwork { subnet });
                            // Rewriting the cluster object makes concurrent
                            // allocations conflict on its version.
                            actions.push(StoreAction::UpdateCluster(cluster.clone()));
                        }
                        None => {
                            warn!(node.id = %node_id, pool = %cluster.network_pool, "the task network pool is full")
                        }
                    },
                    Err(err) => warn!(%err, "the cluster's task network pool is unusable"),
                }
            }
            if unchanged && actions.is_empty() {
                return Ok(vec![]);
            }
            node.status = Some(NodeStatus {
                state: state as i32,
                message: message.to_owned(),
                addr,
                port_errors,
            });
            if let Some(d) = description {
                node.description = Some(d);
            }
            node.meta.get_or_insert_default().updated_at = now_ms();
            actions.push(StoreAction::UpdateNode(node));
            Ok::<_, crate::store::ProposeError>(actions)
        })
        .await
        .map_err(|e| Status::unavailable(e.to_string()))
    }
}

impl<P: Proposer + 'static, R: RaftView> DispatcherService<P, R> {
    /// Checks the caller is a member node and this manager leads; returns its id.
    fn session_node<T>(&self, req: &Request<T>) -> Result<String, Status> {
        let peer = rswarm_proto::tls::require_node(req)?;
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        if self.store.view(|tx| tx.node(&peer.node_id).is_none()) {
            return Err(Status::permission_denied(format!(
                "node {} has been removed from the cluster",
                peer.node_id
            )));
        }
        Ok(peer.node_id)
    }

    /// Records observed task states: only the node running a task reports it, and
    /// states only move forward. One batch becomes one Raft entry. A status is
    /// stamped with the time the leader received it, not the worker's: the
    /// orchestrator measures monitor periods and restart delays against its own
    /// clock, which a worker's may be ahead of or behind.
    async fn record_status(
        &self,
        node_id: &str,
        req: UpdateTaskStatusRequest,
    ) -> Result<(), Status> {
        let received = now_ms();
        update(&self.store, self.proposer.as_ref(), |tx| {
            let mut actions = Vec::new();
            for u in &req.updates {
                let (Some(task), Some(status)) = (tx.task(&u.task_id), u.status.as_ref()) else {
                    continue;
                };
                if task.node_id != node_id {
                    warn!(node.id = %node_id, task.id = %u.task_id, "status for a task of another node ignored");
                    continue;
                }
                let current = task.status.as_ref().map_or(0, |s| s.state);
                let mut status = status.clone();
                // A report repeated (after a reconnect, say) is no change.
                status.timestamp = task.status.as_ref().map_or(0, |s| s.timestamp);
                if status.state < current || task.status.as_ref() == Some(&status) {
                    continue;
                }
                status.timestamp = received;
                let mut task = task.clone();
                task.status = Some(status);
                task.meta.get_or_insert_default().updated_at = now_ms();
                actions.push(StoreAction::UpdateTask(task));
            }
            Ok::<_, crate::store::ProposeError>(actions)
        })
        .await
        .map_err(Status::from)
    }
}

/// The stream type of the endpoints RPC.
pub type EndpointsStream =
    Pin<Box<dyn Stream<Item = Result<EndpointsMessage, Status>> + Send + 'static>>;

/// The stream type of the assignments RPC.
pub type AssignmentsStream =
    Pin<Box<dyn Stream<Item = Result<AssignmentsMessage, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl<P: Proposer + 'static, R: RaftView> Dispatcher for DispatcherService<P, R> {
    type AssignmentsStream = AssignmentsStream;
    type EndpointsStream = EndpointsStream;

    async fn endpoints(
        &self,
        req: Request<EndpointsRequest>,
    ) -> Result<Response<Self::EndpointsStream>, Status> {
        self.session_node(&req)?;
        // Every node's stream computes the same table from its own watch: simple,
        // and cheap for clusters of tens of nodes; a shared table would be the next
        // step for hundreds.
        let (initial, watch) = self.store.view_and_watch(crate::endpoints::table);
        let (out, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(crate::endpoints::stream(
            self.store.clone(),
            self.raft.clone(),
            initial,
            watch,
            out,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn assignments(
        &self,
        req: Request<AssignmentsRequest>,
    ) -> Result<Response<Self::AssignmentsStream>, Status> {
        let node_id = self.session_node(&req)?;
        let (initial, watch) = self.store.view_and_watch_node_tasks(&node_id, |tx| {
            tx.tasks()
                .filter(|t| assigned_to(t, &node_id))
                .cloned()
                .collect::<Vec<_>>()
        });
        let (out, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(assignments::stream(
            self.store.clone(),
            self.raft.clone(),
            node_id,
            initial,
            watch,
            out,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn update_task_status(
        &self,
        req: Request<UpdateTaskStatusRequest>,
    ) -> Result<Response<UpdateTaskStatusResponse>, Status> {
        let node_id = self.session_node(&req)?;
        self.record_status(&node_id, req.into_inner()).await?;
        Ok(Response::new(UpdateTaskStatusResponse {}))
    }

    async fn heartbeat(
        &self,
        req: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let peer = rswarm_proto::tls::require_node(&req)?;
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        let node = self.store.view(|tx| tx.node(&peer.node_id).cloned());
        let Some(node) = node else {
            return Err(Status::permission_denied(format!(
                "node {} has been removed from the cluster",
                peer.node_id
            )));
        };
        self.lock()
            .last_seen
            .insert(peer.node_id.clone(), Instant::now());
        let was = node.status.as_ref().map_or(0, |s| s.state);
        let report = req.into_inner();
        self.set_state(&peer.node_id, NodeState::Ready, "", Some(&report))
            .await?;
        if was != NodeState::Ready as i32 {
            info!(node.id = %peer.node_id, "node is ready");
        }
        let (subnet, peers) = self.store.view(|tx| {
            let subnet = tx
                .node(&peer.node_id)
                .and_then(network::node_subnet)
                .unwrap_or_default()
                .to_owned();
            let peers = network::peers_of(&peer.node_id, tx.nodes())
                .into_iter()
                .map(|p| NetworkPeer {
                    node_id: p.node_id,
                    underlay: p.underlay,
                    subnet: p.subnet,
                })
                .collect::<Vec<_>>();
            (subnet, peers)
        });
        let status = self.raft.status();
        Ok(Response::new(HeartbeatResponse {
            period_ms: self.period.as_millis() as u64,
            manager_addrs: manager_addrs(&status.voters, status.leader),
            desired_role: node.spec.as_ref().map_or(0, |s| s.desired_role),
            subnet,
            peers,
        }))
    }
}
