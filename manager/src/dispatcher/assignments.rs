//! The assignment stream: each node's tasks, the full set first, then increments
//! batched per Raft entry, until this manager stops leading.

use std::collections::BTreeMap;

use rswarm_proto::api::{AssignmentsMessage, AssignmentsType, Task, TaskState};
use tokio::sync::mpsc;
use tonic::Status;

use super::stream::LeaderWatch;
use crate::controlapi::RaftView;
use crate::store::{Event, Object, Store, Watch};

/// Whether `task` belongs in `node_id`'s assignment set: placed there and past
/// the scheduler (a task still pending has nothing for the node to do).
pub fn assigned_to(task: &Task, node_id: &str) -> bool {
    task.node_id == node_id
        && task
            .status
            .as_ref()
            .is_some_and(|s| s.state >= TaskState::Assigned as i32)
}

fn complete(store: &Store, node_id: &str) -> AssignmentsMessage {
    store.view(|tx| AssignmentsMessage {
        r#type: AssignmentsType::Complete as i32,
        changed: tx
            .tasks()
            .filter(|t| assigned_to(t, node_id))
            .cloned()
            .collect(),
        removed: vec![],
    })
}

/// Streams `node_id`'s assignments into `out` until the node disconnects, the
/// watch ends or `raft` shows another leader.
pub async fn stream<R: RaftView>(
    store: Store,
    raft: std::sync::Arc<R>,
    node_id: String,
    initial: Vec<Task>,
    watch: Watch,
    out: mpsc::Sender<Result<AssignmentsMessage, Status>>,
) {
    let first = AssignmentsMessage {
        r#type: AssignmentsType::Complete as i32,
        changed: initial,
        removed: vec![],
    };
    if out.send(Ok(first)).await.is_err() {
        return;
    }
    let mut changed: BTreeMap<String, Task> = BTreeMap::new();
    let mut removed: Vec<String> = Vec::new();
    let mut events = LeaderWatch::new(watch);
    loop {
        let event = events.next(raft.as_ref(), &out).await;
        let msg = match event {
            None => return,
            Some(Event::Created(Object::Task(t)) | Event::Updated(Object::Task(t))) => {
                if assigned_to(&t, &node_id) {
                    removed.retain(|id| *id != t.id);
                    changed.insert(t.id.clone(), t);
                }
                continue;
            }
            Some(Event::Removed(Object::Task(t))) => {
                if t.node_id == node_id {
                    changed.remove(&t.id);
                    removed.push(t.id);
                }
                continue;
            }
            Some(Event::Reset) => {
                changed.clear();
                removed.clear();
                complete(&store, &node_id)
            }
            Some(Event::Commit(_)) if !changed.is_empty() || !removed.is_empty() => {
                AssignmentsMessage {
                    r#type: AssignmentsType::Incremental as i32,
                    changed: std::mem::take(&mut changed).into_values().collect(),
                    removed: std::mem::take(&mut removed),
                }
            }
            Some(_) => continue,
        };
        if out.send(Ok(msg)).await.is_err() {
            return;
        }
    }
}
