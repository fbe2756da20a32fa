//! Following a service's rollout after `service create` or `service update`: whether
//! its tasks have converged, are still on their way, or keep failing.
//!
//! [`assess`] is the decision, a pure function of the task list; [`watch`] polls the
//! control API and prints the progress.

mod watch;

pub use watch::{Watch, watch};

use std::collections::{BTreeMap, BTreeSet};

use rswarm_proto::api::{ServiceSpec, Task, TaskState};
use rswarm_proto::rollout::{DEFAULT_MONITOR_MS, is_current};

use crate::output::names;

/// A slot that saw this many failed or rejected tasks is considered to keep failing:
/// the rollout is given up rather than waited out.
pub const FAILURE_LIMIT: usize = 3;

/// How many tasks the service should have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// `N` slots, one running task each.
    Replicated(u64),
    /// One running task on every eligible node.
    Global,
}

/// One slot (or node, for a global service) as the progress shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotLine {
    /// `1/3`, or the node id for a global service.
    pub label: String,
    /// The current task's state, with its error if it has one (`pending: no
    /// suitable node (...)`); `new` before the slot has a task. A slot without a live
    /// task shows its newest task.
    pub text: String,
    /// Whether the current task is running (and, for an update, made from the new
    /// spec).
    pub running: bool,
    /// A global task of the previous spec on a node the managers do not update
    /// now (see [`Target::held`]): done with this update without being replaced.
    pub held: bool,
}

/// A task that failed or was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Task id.
    pub task_id: String,
    /// The slot (or node) label, as in [`SlotLine::label`].
    pub label: String,
    /// `failed` or `rejected`.
    pub state: &'static str,
    /// Why, as the worker or manager wrote it.
    pub error: String,
}

/// Where the rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every slot's current task is running (or, in an update of a global
    /// service, is held on its node: [`SlotLine::held`]).
    Converged,
    /// A global service with no task and no node it may run on.
    NoEligibleNode,
    /// Still on its way.
    InProgress,
    /// A slot saw [`FAILURE_LIMIT`] or more failed or rejected tasks; the labels of
    /// such slots.
    Failing(Vec<String>),
}

/// The state of a rollout at one look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// One line per slot, in slot (or node id) order.
    pub lines: Vec<SlotLine>,
    /// Every failed or rejected task, by slot, newest first within a slot.
    pub failures: Vec<Failure>,
    /// The decision.
    pub verdict: Verdict,
}

impl Assessment {
    /// How many slots run their task.
    pub fn running(&self) -> usize {
        self.lines.iter().filter(|l| l.running).count()
    }

    /// The lines of tasks kept on the previous spec (see [`SlotLine::held`]).
    pub fn held(&self) -> impl Iterator<Item = &SlotLine> {
        self.lines.iter().filter(|l| l.held)
    }
}

/// What an update is followed against.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The new spec.
    pub spec: &'a ServiceSpec,
    /// The time of the look, in Unix ms.
    pub now_ms: u64,
    /// For a global service: the nodes the managers keep a task on but place no
    /// new one (paused, or not ready without being down), each with why. The
    /// managers do not replace a task of the previous spec there until the node
    /// is active and ready again, so the update does not wait for it.
    pub held: &'a BTreeMap<String, String>,
}

impl Target<'_> {
    /// How long a new task must have run to count, as the managers wait for it.
    fn monitor_ms(&self) -> u64 {
        self.spec
            .update_config
            .map_or(DEFAULT_MONITOR_MS, |c| c.monitor_ms)
    }
}

/// Decides where a rollout stands from the service's tasks (all of them, history
/// included). `eligible_nodes` is how many nodes a global service may run on, when
/// known; it only matters while the service has no task. After an update to
/// `target`, a slot counts once its task made from the new spec has run for the
/// update's monitor period, and only the failures of such tasks count (earlier
/// ones belong to the spec replaced).
pub fn assess(
    expect: Expect,
    tasks: &[Task],
    eligible_nodes: Option<usize>,
    target: Option<Target<'_>>,
) -> Assessment {
    let current = |t: &Task| target.is_none_or(|target| is_current(t, target.spec));
    // How much longer a running task of the new spec is watched, in ms.
    let watched_for = |t: &Task| {
        target.map_or(0, |target| {
            let since = t.status.as_ref().map_or(0, |s| s.timestamp);
            since
                .saturating_add(target.monitor_ms())
                .saturating_sub(target.now_ms)
        })
    };
    let mut groups: BTreeMap<(u64, &str), Vec<&Task>> = BTreeMap::new();
    for task in tasks {
        let key = match expect {
            Expect::Replicated(_) => (task.slot, ""),
            Expect::Global => (0, task.node_id.as_str()),
        };
        groups.entry(key).or_default().push(task);
    }
    for group in groups.values_mut() {
        group.sort_by_key(|t| std::cmp::Reverse((created_at(t), t.id.clone())));
    }
    // The groups shown, in slot (or node id) order, with their labels: a
    // replicated slot by its place among the slots (`1/3`, `2/3`...).
    let shown_groups: BTreeMap<(u64, &str), String> = match expect {
        Expect::Replicated(n) => replicated_slots(&groups, n)
            .into_iter()
            .enumerate()
            .map(|(i, slot)| ((slot, ""), format!("{}/{n}", i + 1)))
            .collect(),
        // Only nodes with a live task: the others were drained, left or never fit.
        Expect::Global => groups
            .iter()
            .filter(|(_, group)| group.iter().any(|t| is_live(t)))
            .map(|(key, _)| (*key, key.1.to_string()))
            .collect(),
    };
    let mut lines = Vec::new();
    for (key, label) in &shown_groups {
        let group = groups.get(key).map(Vec::as_slice).unwrap_or_default();
        let live = group.iter().find(|t| is_live(t));
        // Without a live task, the newest one tells what became of a slot its
        // restart policy finished with; any other slot without one is waiting
        // for its task (its history belongs to a task stopped earlier).
        let shown = live.or(group.first().filter(|_| is_finished(group)));
        let state = shown.map_or(TaskState::New as i32, |t| observed(t));
        let mut text = names::task_state(state).to_string();
        if let Some(err) = shown.map(|t| error(t)).filter(|e| !e.is_empty()) {
            text = format!("{text}: {err}");
        }
        let outdated = live.is_some_and(|t| !current(t));
        let running = live.is_some_and(|t| observed(t) == TaskState::Running as i32);
        let watched = live.map_or(0, |t| watched_for(t));
        let held_because = target
            .filter(|_| outdated && expect == Expect::Global)
            .and_then(|target| target.held.get(key.1));
        if let Some(why) = held_because {
            text.push_str(&format!(
                " (previous spec, kept while the node is {why}: replaced once it is active and ready)"
            ));
        } else if outdated {
            text.push_str(" (previous spec, to be replaced)");
        } else if running && watched > 0 {
            text.push_str(&format!(
                " (watched {:.1}s more before it counts)",
                watched as f64 / 1000.0
            ));
        }
        lines.push(SlotLine {
            label: label.clone(),
            text,
            running: !outdated && running && watched == 0,
            held: held_because.is_some(),
        });
    }
    let mut failures = Vec::new();
    let mut failing = Vec::new();
    for (key, group) in &groups {
        // Failures count in the slots watched, or on any node of a global service.
        let label = match (shown_groups.get(key), expect) {
            (Some(label), _) => label.clone(),
            (None, Expect::Global) => key.1.to_string(),
            (None, Expect::Replicated(_)) => continue,
        };
        let failed: Vec<Failure> = group
            .iter()
            .filter(|t| is_failure(observed(t)) && current(t))
            .map(|t| Failure {
                task_id: t.id.clone(),
                label: label.clone(),
                state: names::task_state(observed(t)),
                error: error(t).to_string(),
            })
            .collect();
        if failed.len() >= FAILURE_LIMIT {
            failing.push(label);
        }
        failures.extend(failed);
    }
    let verdict = if !failing.is_empty() {
        Verdict::Failing(failing)
    } else if lines.iter().all(|l| l.running || l.held)
        && match expect {
            Expect::Replicated(n) => lines.len() as u64 == n,
            Expect::Global => !lines.is_empty(),
        }
    {
        Verdict::Converged
    } else if expect == Expect::Global && lines.is_empty() && eligible_nodes == Some(0) {
        Verdict::NoEligibleNode
    } else {
        Verdict::InProgress
    };
    Assessment {
        lines,
        failures,
        verdict,
    }
}

/// The slots a replicated service of `n` tasks is watched by: those in use (a live
/// task, or a task its restart policy finished with), and while fewer than `n`, the
/// lowest free numbers, where the managers create the missing tasks. More than `n`
/// in use means a scale down the managers have not carried out yet.
fn replicated_slots(groups: &BTreeMap<(u64, &str), Vec<&Task>>, n: u64) -> BTreeSet<u64> {
    let mut slots: BTreeSet<u64> = groups
        .iter()
        .filter(|((slot, _), group)| {
            *slot != 0 && (group.iter().any(|t| is_live(t)) || is_finished(group))
        })
        .map(|((slot, _), _)| *slot)
        .collect();
    let mut next = 1;
    while (slots.len() as u64) < n {
        slots.insert(next);
        next += 1;
    }
    slots
}

/// Whether the restart policy finished with the group: a task desired COMPLETE
/// marks it.
fn is_finished(group: &[&Task]) -> bool {
    group
        .iter()
        .any(|t| t.desired_state == TaskState::Complete as i32)
}

/// A task the managers still want running (desired RUNNING or earlier), as opposed
/// to history.
fn is_live(task: &Task) -> bool {
    task.desired_state <= TaskState::Running as i32
}

fn is_failure(state: i32) -> bool {
    state == TaskState::Failed as i32 || state == TaskState::Rejected as i32
}

/// The observed state (NEW when never reported).
fn observed(task: &Task) -> i32 {
    task.status
        .as_ref()
        .map_or(TaskState::New as i32, |s| s.state)
}

fn error(task: &Task) -> &str {
    task.status.as_ref().map_or("", |s| s.err.as_str())
}

/// When the task was created (0 if unknown), to tell the current task from history.
fn created_at(task: &Task) -> u64 {
    task.meta.as_ref().map_or(0, |m| m.created_at)
}

#[cfg(test)]
mod tests;
