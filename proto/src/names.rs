//! Names derived from stored objects, the same on every node and in every client.

use crate::api::Task;

/// The name a task is known by: `SERVICE.SLOT`, or `SERVICE.NODE` for a global
/// service's task; also its default hostname and what the service's DNS entries
/// and the proxy's logs call it.
pub fn task_name(task: &Task) -> String {
    let service = if task.service_name.is_empty() {
        "task"
    } else {
        &task.service_name
    };
    if task.slot > 0 {
        format!("{service}.{}", task.slot)
    } else if !task.node_id.is_empty() {
        format!("{service}.{}", task.node_id)
    } else {
        format!("{service}.{}", task.id)
    }
}
