//! `rswarm service ps`.

use std::cmp::Reverse;
use std::collections::HashMap;

use rswarm_proto::api::Task;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{names, plain_table, render};

/// One task as `service ps` shows it; also its JSON shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskRow {
    /// Task id.
    pub id: String,
    /// `SERVICE.SLOT`, or `SERVICE.NODE_ID` for a global service's task.
    pub name: String,
    /// The slot (0 for a global service's task).
    pub slot: u64,
    /// The image the task runs (after an update, old and new tasks differ).
    pub image: String,
    /// Id of the node the task is assigned to; empty while unassigned.
    pub node: String,
    /// What the managers want of the task (`running`, `shutdown`...).
    pub desired_state: &'static str,
    /// What the task was last reported doing.
    pub state: &'static str,
    /// When it entered that state (RFC 3339, UTC); `None` if never reported.
    pub since: Option<String>,
    /// Why the task is pending or failed; empty if nothing went wrong.
    pub error: String,
    /// The task's address on the task network; empty without one.
    pub address: String,
    /// Unix milliseconds of the state change, for the table's "5 seconds ago".
    #[serde(skip)]
    pub since_ms: u64,
    /// Whether an earlier row is the same slot's newer task (the table indents it).
    #[serde(skip)]
    pub history: bool,
}

/// Builds the rows: by service, then slot (node for global tasks), newest first
/// within a slot, as docker lists them. `fallback_name` names tasks whose service
/// name is not recorded.
pub fn task_rows(tasks: &[Task], fallback_name: &str) -> Vec<TaskRow> {
    let mut sorted: Vec<&Task> = tasks.iter().collect();
    sorted.sort_by_key(|t| {
        (
            t.service_name.clone(),
            t.slot,
            group_node(t).to_string(),
            Reverse(created_at(t)),
            t.id.clone(),
        )
    });
    let mut previous: Option<(String, u64, String)> = None;
    sorted
        .into_iter()
        .map(|task| {
            let group = (
                task.service_name.clone(),
                task.slot,
                group_node(task).to_string(),
            );
            let history = previous.as_ref() == Some(&group);
            previous = Some(group);
            let service = if task.service_name.is_empty() {
                fallback_name
            } else {
                &task.service_name
            };
            let status = task.status.clone().unwrap_or_default();
            TaskRow {
                id: task.id.clone(),
                name: match task.slot {
                    0 => format!("{service}.{}", task.node_id),
                    slot => format!("{service}.{slot}"),
                },
                slot: task.slot,
                image: task
                    .spec
                    .as_ref()
                    .and_then(|s| s.container.as_ref())
                    .map(|c| c.image.clone())
                    .unwrap_or_default(),
                node: task.node_id.clone(),
                desired_state: names::task_state(task.desired_state),
                state: names::task_state(status.state),
                since: rfc3339(status.timestamp),
                error: status.err,
                address: status.address,
                since_ms: status.timestamp,
                history,
            }
        })
        .collect()
}

/// A global task's group is its node; a replicated one's is its slot alone.
fn group_node(task: &Task) -> &str {
    if task.slot == 0 { &task.node_id } else { "" }
}

/// When the task was created, or failing that, last changed state.
fn created_at(task: &Task) -> u64 {
    task.meta
        .as_ref()
        .map(|m| m.created_at)
        .filter(|&at| at != 0)
        .or_else(|| task.status.as_ref().map(|s| s.timestamp))
        .unwrap_or(0)
}

/// Unix milliseconds as RFC 3339 in UTC; `None` for 0 (never set) or out of range.
pub fn rfc3339(unix_ms: u64) -> Option<String> {
    if unix_ms == 0 {
        return None;
    }
    let nanos = i128::from(unix_ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

/// Docker's humanized duration (`Less than a second`, `5 seconds`, `About a
/// minute`, `3 hours`, `2 weeks`...).
pub fn human_duration(ms: u64) -> String {
    let seconds = ms / 1000;
    let minutes = seconds / 60;
    // Hours are rounded, as docker does, so 90 minutes reads "2 hours".
    let hours = (ms + 1_800_000) / 3_600_000;
    match () {
        _ if seconds < 1 => "Less than a second".into(),
        _ if seconds == 1 => "1 second".into(),
        _ if seconds < 60 => format!("{seconds} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", ms / 3_600_000 / 24 / 365),
    }
}

/// `Running 5 seconds ago`: the state and how long it has held, at `now_ms`.
pub fn current_state(state: &str, since_ms: u64, now_ms: u64) -> String {
    let state = names::capitalize(state);
    if since_ms == 0 {
        return state;
    }
    let age = human_duration(now_ms.saturating_sub(since_ms)).to_lowercase();
    format!("{state} {age} ago")
}

/// Docker's `service ps` table, at `now_ms`. NODE shows the hostname from
/// `hostnames` (node id → hostname), or the id of a node it does not know; a slot's
/// older tasks are marked `\_` under its current one.
pub fn tasks_table(rows: &[TaskRow], hostnames: &HashMap<String, String>, now_ms: u64) -> String {
    let mut table = plain_table(&[
        "ID",
        "NAME",
        "IMAGE",
        "NODE",
        "DESIRED STATE",
        "CURRENT STATE",
        "ERROR",
    ]);
    for row in rows {
        let name = if row.history {
            format!(" \\_ {}", row.name)
        } else {
            row.name.clone()
        };
        table.add_row(vec![
            row.id.clone(),
            name,
            row.image.clone(),
            hostnames
                .get(&row.node)
                .cloned()
                .unwrap_or_else(|| row.node.clone()),
            names::capitalize(row.desired_state),
            current_state(row.state, row.since_ms, now_ms),
            row.error.clone(),
        ]);
    }
    render(&table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rswarm_proto::api::{Meta, TaskState, TaskStatus};
    use serde_json::json;

    /// 2026-01-01T00:00:00Z.
    const T0: u64 = 1_767_225_600_000;

    fn task(id: &str, slot: u64, node: &str, created: u64, state: TaskState) -> Task {
        Task {
            id: id.into(),
            meta: Some(Meta {
                created_at: created,
                ..Default::default()
            }),
            service_name: "web".into(),
            slot,
            node_id: node.into(),
            spec: Some(rswarm_proto::api::TaskSpec {
                container: Some(rswarm_proto::api::ContainerSpec {
                    image: "nginx:1".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            desired_state: if state == TaskState::Running {
                TaskState::Running.into()
            } else {
                TaskState::Shutdown.into()
            },
            status: Some(TaskStatus {
                state: state.into(),
                timestamp: created + 500,
                err: if state == TaskState::Failed {
                    "exit code 1".into()
                } else {
                    String::new()
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn fixture() -> Vec<TaskRow> {
        task_rows(
            &[
                task("t2-old", 2, "n1", T0, TaskState::Failed),
                task("t1", 1, "n2", T0 + 1000, TaskState::Running),
                task("t2", 2, "n1", T0 + 2000, TaskState::Running),
            ],
            "unused",
        )
    }

    #[test]
    fn sorted_by_slot_then_newest_first() {
        let rows = fixture();
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["t1", "t2", "t2-old"]);
        let history: Vec<bool> = rows.iter().map(|r| r.history).collect();
        assert_eq!(history, [false, false, true]);
    }

    #[test]
    fn json_shape() {
        assert_eq!(
            serde_json::to_value(&fixture()[2]).unwrap(),
            json!({"id": "t2-old", "name": "web.2", "slot": 2, "image": "nginx:1", "node": "n1",
                   "desired_state": "shutdown", "state": "failed",
                   "since": "2026-01-01T00:00:00.5Z", "error": "exit code 1",
                   "address": ""})
        );
    }

    #[test]
    fn global_tasks_are_named_by_node() {
        let mut global = task("g1", 0, "node-9", T0, TaskState::Running);
        global.service_name.clear();
        let rows = task_rows(&[global], "agent");
        assert_eq!(rows[0].name, "agent.node-9");
    }

    #[test]
    fn table() {
        let hostnames = HashMap::from([("n1".to_string(), "alpha".to_string())]);
        let text = tasks_table(&fixture(), &hostnames, T0 + 7_000);
        let lines: Vec<&str> = text.lines().collect();
        for column in [
            "ID",
            "NAME",
            "IMAGE",
            "NODE",
            "DESIRED STATE",
            "CURRENT STATE",
            "ERROR",
        ] {
            assert!(lines[0].contains(column), "{text}");
        }
        assert!(lines[1].starts_with("t1 "), "{text}");
        assert!(lines[1].contains(" nginx:1 "), "{text}");
        assert!(lines[1].contains(" n2 "), "{text}");
        assert!(lines[1].contains("Running 5 seconds ago"), "{text}");
        assert!(lines[2].contains(" alpha "), "{text}");
        assert!(lines[3].contains(r" \_ web.2 "), "{text}");
        assert!(lines[3].contains("Shutdown"), "{text}");
        assert!(lines[3].contains("Failed 6 seconds ago"), "{text}");
        assert!(lines[3].ends_with("exit code 1"), "{text}");
    }

    #[test]
    fn humanized() {
        let cases = [
            (0, "Less than a second"),
            (1_500, "1 second"),
            (59_000, "59 seconds"),
            (61_000, "About a minute"),
            (45 * 60_000, "45 minutes"),
            (65 * 60_000, "About an hour"),
            (90 * 60_000, "2 hours"),
            (47 * 3_600_000, "47 hours"),
            (3 * 86_400_000, "3 days"),
            (20 * 86_400_000, "2 weeks"),
            (90 * 86_400_000, "3 months"),
            (800 * 86_400_000, "2 years"),
        ];
        for (ms, text) in cases {
            assert_eq!(human_duration(ms), text, "{ms}");
        }
        assert_eq!(current_state("running", 0, T0), "Running");
        assert_eq!(
            current_state("pending", T0, T0 + 300),
            "Pending less than a second ago"
        );
        // A clock behind the manager's does not underflow.
        assert_eq!(
            current_state("running", T0 + 5, T0),
            "Running less than a second ago"
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), None);
        assert_eq!(rfc3339(T0).as_deref(), Some("2026-01-01T00:00:00Z"));
    }
}
