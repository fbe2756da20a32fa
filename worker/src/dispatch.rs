//! The node's side of the dispatcher's task traffic: the assignment stream from
//! the leader feeds the [`TaskManager`]; the runners' status reports go back to
//! the leader in batches. Both follow the leader the heartbeat session found.

use std::collections::HashMap;
use std::time::Duration;

use rswarm_proto::api::dispatcher_client::DispatcherClient;
use rswarm_proto::api::{
    AssignmentsRequest, AssignmentsType, TaskStatusUpdate, UpdateTaskStatusRequest,
};
use rswarm_proto::tls::{Identity, node_channel};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tracing::{debug, info, warn};

use crate::tasks::{StatusBatcher, StatusUpdate, TaskManager};

/// Pause before reconnecting a stream or resending a batch.
const RETRY: Duration = Duration::from_millis(100);
/// Longest a status report waits to be batched with others.
const BATCH_DELAY: Duration = Duration::from_millis(20);
/// Most task statuses in one report.
const BATCH_TASKS: usize = 500;

/// Channels to managers, one per address (never one per request).
pub(crate) struct Channels {
    /// The node's certificate and the cluster CA.
    identity: Identity,
    /// Manager address → its channel.
    cache: HashMap<String, Channel>,
}

impl Channels {
    /// No channel yet.
    pub(crate) fn new(identity: Identity) -> Self {
        Channels {
            identity,
            cache: HashMap::new(),
        }
    }

    /// A client of the manager at `addr`, on its cached channel.
    pub(crate) fn client(&mut self, addr: &str) -> Option<DispatcherClient<Channel>> {
        if let Some(c) = self.cache.get(addr) {
            return Some(DispatcherClient::new(c.clone()));
        }
        match node_channel(addr, &self.identity) {
            Ok(c) => {
                self.cache.insert(addr.to_owned(), c.clone());
                Some(DispatcherClient::new(c))
            }
            Err(err) => {
                warn!(manager = addr, %err, "cannot build a channel to manager");
                None
            }
        }
    }
}

/// Waits until a leader is known; None on shutdown or when the session ends.
pub(crate) async fn leader(
    leader: &mut watch::Receiver<Option<String>>,
    shutdown: &CancellationToken,
) -> Option<String> {
    loop {
        if let Some(addr) = leader.borrow_and_update().clone() {
            return Some(addr);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            changed = leader.changed() => if changed.is_err() { return None },
        }
    }
}

/// Feeds the leader's assignment stream into `tasks` until `shutdown`.
pub async fn assignments(
    identity: Identity,
    mut leader_rx: watch::Receiver<Option<String>>,
    tasks: TaskManager,
    shutdown: CancellationToken,
) {
    let mut channels = Channels::new(identity);
    while let Some(addr) = leader(&mut leader_rx, &shutdown).await {
        let Some(mut client) = channels.client(&addr) else {
            tokio::time::sleep(RETRY).await;
            continue;
        };
        let opened = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = client.assignments(AssignmentsRequest {}) => r,
        };
        let mut stream = match opened {
            Ok(s) => s.into_inner(),
            Err(status) => {
                debug!(manager = %addr, %status, "assignment stream refused");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        info!(manager = %addr, "assignment stream open");
        // A new leader may have missed reports sent to the old one: resend the
        // last status of every task (states only move forward, so repeats are
        // harmless).
        let resync: Vec<TaskStatusUpdate> = tasks
            .statuses()
            .into_iter()
            .map(|StatusUpdate { task_id, status }| TaskStatusUpdate {
                task_id,
                status: Some(status),
            })
            .collect();
        if !resync.is_empty()
            && let Err(status) = client
                .update_task_status(UpdateTaskStatusRequest { updates: resync })
                .await
        {
            debug!(manager = %addr, %status, "status resync refused");
        }
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => return,
                m = stream.message() => m,
            };
            match msg {
                Ok(Some(m)) if m.r#type == AssignmentsType::Complete as i32 => {
                    tasks.set_assignments(m.changed)
                }
                Ok(Some(m)) => tasks.update_assignments(m.changed, m.removed),
                Ok(None) => break,
                Err(status) => {
                    debug!(manager = %addr, %status, "assignment stream ended");
                    break;
                }
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Sends the runners' status reports to the leader in batches until `shutdown`; a
/// batch the leader did not take is sent again (states only move forward, so a
/// repeat is harmless).
pub async fn report(
    identity: Identity,
    mut leader_rx: watch::Receiver<Option<String>>,
    mut batcher: StatusBatcher,
    shutdown: CancellationToken,
) {
    let mut channels = Channels::new(identity);
    loop {
        let batch = tokio::select! {
            _ = shutdown.cancelled() => return,
            b = batcher.next_batch() => match b { Some(b) => b, None => return },
        };
        let updates: Vec<TaskStatusUpdate> = batch
            .into_iter()
            .map(|StatusUpdate { task_id, status }| TaskStatusUpdate {
                task_id,
                status: Some(status),
            })
            .collect();
        loop {
            let Some(addr) = leader(&mut leader_rx, &shutdown).await else {
                return;
            };
            let sent = match channels.client(&addr) {
                Some(mut client) => client
                    .update_task_status(UpdateTaskStatusRequest {
                        updates: updates.clone(),
                    })
                    .await
                    .map_err(|s| s.to_string()),
                None => Err("no channel".to_owned()),
            };
            match sent {
                Ok(_) => break,
                Err(err) => {
                    debug!(manager = %addr, %err, "status report not taken; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(RETRY) => {}
                    }
                }
            }
        }
    }
}

/// The batcher for a task manager's status channel, with rswarm's settings.
pub fn batcher(rx: tokio::sync::mpsc::UnboundedReceiver<StatusUpdate>) -> StatusBatcher {
    StatusBatcher::new(rx, BATCH_DELAY, BATCH_TASKS)
}
