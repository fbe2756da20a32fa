//! The scheduler's loop (leader only): places every pending task, batching the
//! placements of a burst of events into a few bounded Raft entries.

use std::sync::Arc;
use std::time::Duration;

use rswarm_proto::api::{Task, TaskState, TaskStatus};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{Snapshot, schedule};
use crate::controlapi::{RaftView, now_ms};
use crate::leading::{debounce, while_leading};
use crate::store::{Event, Object, Proposer, Store, StoreAction};

/// swarmkit's debounce: 50 ms of quiet, at most 1 s.
const QUIET: Duration = Duration::from_millis(50);
const CAP: Duration = Duration::from_secs(1);
/// Pause before retrying after a proposal failed (a task changed under the plan).
const RETRY: Duration = Duration::from_millis(50);
/// Most placements proposed as one batch: a burst of thousands of new tasks is
/// written as several bounded Raft entries instead of one huge one.
const CHUNK: usize = 2048;

/// The scheduler.
pub struct Scheduler<P, R> {
    /// This manager's store.
    store: Store,
    /// Where placements are written.
    proposer: Arc<P>,
    /// Whether this manager leads.
    raft: Arc<R>,
}

/// A task waiting for a node: meant to run, not yet assigned.
fn is_pending(t: &Task) -> bool {
    t.desired_state <= TaskState::Running as i32
        && t.status.as_ref().map_or(0, |s| s.state) < TaskState::Assigned as i32
}

/// Whether an event can make a pending task placeable (or create one).
fn relevant(e: &Event) -> bool {
    matches!(
        e,
        Event::Created(Object::Task(_) | Object::Node(_))
            | Event::Updated(Object::Task(_) | Object::Node(_))
            | Event::Removed(Object::Task(_))
            | Event::Reset
    )
}

impl<P: Proposer + 'static, R: RaftView> Scheduler<P, R> {
    /// A scheduler over `store`.
    pub fn new(store: Store, proposer: Arc<P>, raft: Arc<R>) -> Self {
        Scheduler {
            store,
            proposer,
            raft,
        }
    }

    /// Runs while this manager leads, until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let raft = self.raft.clone();
        while_leading(raft, shutdown, |term| self.lead(term)).await;
    }

    async fn lead(&self, term: CancellationToken) {
        let (_, mut watch) = self.store.view_and_watch(|_| ());
        let mut again = true;
        loop {
            if again {
                again = !self.tick().await;
            }
            let wait = if again {
                RETRY
            } else {
                Duration::from_secs(3600)
            };
            tokio::select! {
                _ = term.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                e = watch.recv() => {
                    let Some(first) = e else { return };
                    let (events, open) = debounce(&mut watch, first, QUIET, CAP).await;
                    again |= events.iter().any(relevant);
                    if !open {
                        return;
                    }
                }
            }
        }
    }

    /// One scheduling pass; false if its batch must be retried.
    async fn tick(&self) -> bool {
        let now = now_ms();
        let actions = self.store.view(|tx| {
            let pending: Vec<Task> = tx.tasks().filter(|t| is_pending(t)).cloned().collect();
            if pending.is_empty() {
                return Vec::new();
            }
            let snapshot = Snapshot::from_store(tx);
            let plan = schedule(&snapshot, &pending);
            let index: std::collections::HashMap<&str, &Task> =
                pending.iter().map(|t| (t.id.as_str(), t)).collect();
            let by_id = |id: &str| index.get(id).copied();
            let mut actions = Vec::new();
            for a in &plan.assignments {
                let Some(task) = by_id(&a.task_id) else {
                    continue;
                };
                let mut task = task.clone();
                task.node_id = a.node_id.clone();
                task.status = Some(TaskStatus {
                    state: TaskState::Assigned as i32,
                    timestamp: now,
                    message: "scheduler assigned task to node".into(),
                    ..Default::default()
                });
                actions.push(StoreAction::UpdateTask(task));
            }
            for u in &plan.unplaced {
                let Some(task) = by_id(&u.task_id) else {
                    continue;
                };
                let status = task.status.clone().unwrap_or_default();
                if status.state == TaskState::Pending as i32 && status.err == u.reason {
                    continue;
                }
                let mut task = task.clone();
                task.status = Some(TaskStatus {
                    state: TaskState::Pending as i32,
                    timestamp: now,
                    message: "pending task scheduling".into(),
                    err: u.reason.clone(),
                    ..Default::default()
                });
                actions.push(StoreAction::UpdateTask(task));
            }
            actions
        });
        if actions.is_empty() {
            return true;
        }
        let n = actions.len();
        // Each chunk is checked and applied on its own: a refused one leaves its tasks
        // pending for the next pass, and the others' placements stay valid (the plan
        // counted the refused tasks' resources, which only errs on the safe side).
        let mut chunks = Vec::new();
        let mut actions = actions.into_iter().peekable();
        while actions.peek().is_some() {
            chunks.push(actions.by_ref().take(CHUNK).collect::<Vec<_>>());
        }
        let results =
            futures::future::join_all(chunks.into_iter().map(|c| self.proposer.propose(c))).await;
        let mut ok = true;
        for err in results.into_iter().filter_map(Result::err) {
            // The batch carries the versions it read: a task that changed since
            // makes its chunk fail whole, and the next pass plans on fresh state.
            warn!(%err, "scheduler: batch refused; planning again");
            ok = false;
        }
        if ok {
            debug!(tasks = n, "scheduler committed a batch");
        }
        ok
    }
}
