//! The orchestrator's decision: what it takes for a service to have its desired tasks.
//!
//! [`reconcile`] is a pure function of a service, its tasks, the nodes and the time.
//! It owns one thing only: which tasks should exist and their `desired_state`. It
//! never changes a task's spec or observed status (those are the user's and the
//! worker's), and it never places a replicated task (that is the scheduler's job).
//!
//! Tasks are grouped: by slot (`N` numbered slots) for a replicated service, by node for a global
//! one. In each group at most one task is *live* (desired state RUNNING or earlier);
//! the others are history. The decision is idempotent: applying its [`Actions`] and
//! calling it again at the same time yields no action, so the caller may run it on
//! every change without risk of creating tasks twice.
//!
//! Restart bookkeeping lives in the tasks themselves, which is what keeps the function
//! pure and lets a new leader carry on where the old one stopped:
//! - a crashed task stays desired RUNNING until its restart is due; the restart marks
//!   it SHUTDOWN and creates its successor in the same batch;
//! - a task the restart policy will not restart gets desired COMPLETE, which marks its
//!   group as finished: no new task is created for it;
//! - the back-off step is read back from the gap between a failed task's end and its
//!   successor's creation, so it survives history trimming.

pub mod run;
pub use run::Orchestrator;
mod group;
mod restart;
mod rollout;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_global;
#[cfg(test)]
mod tests_prop;
#[cfg(test)]
mod tests_restart;
#[cfg(test)]
mod tests_rollout;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rswarm_proto::api::{Meta, Node, Service, Task, TaskState, TaskStatus, service_spec};
use rswarm_proto::validate::{Constraint, parse_constraint};

use crate::store::StoreAction;

/// How many ended tasks each slot (or node, for a global service) keeps, so that
/// `service ps` can show recent failures.
pub const HISTORY_PER_GROUP: usize = 5;

/// The observed state a new task starts in; the scheduler moves it on.
const NEW_TASK_STATE: TaskState = TaskState::New;

/// What the orchestrator wants written to bring one service to its desired state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Actions {
    /// Tasks to add (desired RUNNING, observed NEW).
    pub create: Vec<Task>,
    /// Existing tasks with a new `desired_state` (and `meta.updated_at`); nothing else
    /// differs from the task as read, `meta.version` included.
    pub update: Vec<Task>,
    /// Ids of ended tasks to delete: history beyond what is kept.
    pub remove: Vec<String>,
    /// The earliest time (Unix ms) a delayed restart is due: reconcile again then.
    pub wake_at: Option<u64>,
}

impl Actions {
    /// Whether nothing is to be written (a pending `wake_at` is not a write).
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.remove.is_empty()
    }

    /// The writes as one store batch: updates, then creations, then removals.
    pub fn into_store_actions(self) -> Vec<StoreAction> {
        let mut out = Vec::with_capacity(self.update.len() + self.create.len() + self.remove.len());
        out.extend(self.update.into_iter().map(StoreAction::UpdateTask));
        out.extend(self.create.into_iter().map(StoreAction::CreateTask));
        out.extend(
            self.remove
                .into_iter()
                .map(|id| StoreAction::RemoveTask { id }),
        );
        out
    }
}

/// Applies `actions` to a local list of tasks, as the store would.
pub fn apply_to(tasks: &mut Vec<Task>, actions: &Actions) {
    for updated in &actions.update {
        if let Some(task) = tasks.iter_mut().find(|t| t.id == updated.id) {
            *task = updated.clone();
        }
    }
    tasks.extend(actions.create.iter().cloned());
    tasks.retain(|t| !actions.remove.contains(&t.id));
}

/// Decides the writes that bring `service` to its desired tasks. `tasks` are all of
/// the service's tasks, `nodes` all the cluster's nodes, `now` the time in Unix ms.
pub fn reconcile(service: &Service, tasks: &[Task], nodes: &[Node], now: u64) -> Actions {
    let nodes: HashMap<&str, &Node> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let mut plan = Plan::new(service, now);
    match service.spec.as_ref().and_then(|s| s.mode.as_ref()) {
        Some(service_spec::Mode::Global(_)) => reconcile_global(&mut plan, tasks, &nodes),
        Some(service_spec::Mode::Replicated(r)) => {
            reconcile_replicated(&mut plan, tasks, &nodes, r.replicas)
        }
        // A service without a mode wants nothing: wind its tasks down.
        None => reconcile_replicated(&mut plan, tasks, &nodes, 0),
    }
    plan.finish(tasks)
}

fn reconcile_replicated(plan: &mut Plan<'_>, tasks: &[Task], nodes: &HashMap<&str, &Node>, n: u64) {
    let mut slots = group_by(tasks, |t| t.slot);
    // A task is replaced at once, with no restart delay, when its node is gone, down
    // or drained: the task did nothing wrong.
    let lost = |t: &Task| {
        is_orphaned(t)
            || (!t.node_id.is_empty()
                && nodes
                    .get(t.node_id.as_str())
                    .is_none_or(|node| !node.keeps_tasks()))
    };
    let wanted = wanted_slots(&slots, n, &lost);
    for slot in &wanted {
        slots.entry(*slot).or_default();
    }
    let mut kept = Vec::with_capacity(wanted.len());
    for (slot, group) in &slots {
        if wanted.contains(slot) {
            let decided = group::reconcile(plan, group, *slot, "", true, &lost);
            kept.push(rollout::Group::new(*slot, "", true, group, decided));
        } else {
            group::stop(plan, group);
        }
    }
    rollout::roll(plan, &kept);
    for (slot, group) in &slots {
        let keep = if wanted.contains(slot) {
            plan.retention()
        } else {
            0
        };
        plan.keep_history(group, keep);
    }
}

/// The `n` slots a replicated service keeps. A slot stays in use while it has a live
/// task or its restart policy finished with it; slot numbers never change. With more
/// slots in use than wanted (a scale down), the slots whose task runs healthy are
/// kept before those still on their way, so that a scale down never stops a running
/// task while a pending one survives; among equals the lower slot numbers stay. With
/// fewer, new slots take the lowest free numbers.
fn wanted_slots(
    slots: &BTreeMap<u64, Vec<&Task>>,
    n: u64,
    lost: &dyn Fn(&Task) -> bool,
) -> BTreeSet<u64> {
    let mut in_use: Vec<(u64, (bool, i32))> = slots
        .iter()
        .filter(|(slot, _)| **slot != 0)
        .filter_map(|(slot, group)| group::occupancy(group, lost).map(|rank| (*slot, rank)))
        .collect();
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    // Best first: healthy, furthest along, lowest slot.
    in_use.sort_by(|(sa, ra), (sb, rb)| rb.cmp(ra).then(sa.cmp(sb)));
    in_use.truncate(n);
    let mut wanted: BTreeSet<u64> = in_use.into_iter().map(|(slot, _)| slot).collect();
    let mut next = 1;
    while wanted.len() < n {
        wanted.insert(next);
        next += 1;
    }
    wanted
}

fn reconcile_global(plan: &mut Plan<'_>, tasks: &[Task], nodes: &HashMap<&str, &Node>) {
    let constraints = plan.constraints();
    let mut by_node = group_by(tasks, |t| t.node_id.clone());
    for id in nodes.keys() {
        by_node.entry((*id).to_string()).or_default();
    }
    let fits = |node: &Node| {
        constraints
            .as_ref()
            .is_some_and(|cs| cs.iter().all(|c| c.matches(node)))
    };
    let mut kept = Vec::with_capacity(by_node.len());
    let mut groups = Vec::with_capacity(by_node.len());
    for (node_id, group) in &by_node {
        let node = nodes.get(node_id.as_str()).copied();
        // An existing task may stay on a node that is not down, not drained and still
        // satisfies the constraints; a new one also needs the node ready and active.
        let can_keep = node.is_some_and(|node| node.keeps_tasks() && fits(node));
        let can_place = can_keep && node.is_some_and(Node::takes_new_tasks);
        // A slot number means a task of a replicated past: it has no place here.
        let (strays, group): (Vec<&Task>, Vec<&Task>) = group.iter().partition(|t| t.slot != 0);
        group::stop(plan, &strays);
        if can_keep {
            let decided = group::reconcile(plan, &group, 0, node_id, can_place, &is_orphaned);
            kept.push(rollout::Group::new(0, node_id, can_place, &group, decided));
        } else {
            group::stop(plan, &group);
        }
        groups.push((node.is_some(), strays, group));
    }
    rollout::roll(plan, &kept);
    for (known, strays, group) in &groups {
        // A node that left the cluster keeps no history: nobody will look for it.
        let retention = if *known { plan.retention() } else { 0 };
        plan.keep_history(strays, 0);
        plan.keep_history(group, retention);
    }
}

/// Groups tasks by `key`, each group oldest first.
fn group_by<K: Ord>(tasks: &[Task], key: impl Fn(&Task) -> K) -> BTreeMap<K, Vec<&Task>> {
    let mut groups: BTreeMap<K, Vec<&Task>> = BTreeMap::new();
    for task in tasks {
        groups.entry(key(task)).or_default().push(task);
    }
    for group in groups.values_mut() {
        group.sort_by(|a, b| age_key(a).cmp(&age_key(b)));
    }
    groups
}

/// Orders a group oldest first. The key must not depend on anything the decision
/// changes (such as the desired state), or a second call would see another order.
fn age_key(task: &Task) -> (u64, &str) {
    (created_at(task), task.id.as_str())
}

/// The observed state (NEW when never reported).
pub(crate) fn observed(task: &Task) -> i32 {
    task.status
        .as_ref()
        .map_or(TaskState::New as i32, |s| s.state)
}

/// Desired RUNNING or earlier: the task is meant to run.
pub(crate) fn is_live(task: &Task) -> bool {
    task.desired_state <= TaskState::Running as i32
}

/// Ended by itself as far as the worker could tell (not lost with its node).
fn has_exited(task: &Task) -> bool {
    [
        TaskState::Complete,
        TaskState::Shutdown,
        TaskState::Failed,
        TaskState::Rejected,
    ]
    .iter()
    .any(|s| observed(task) == *s as i32)
}

/// Marked lost by the managers (its node went away) or removed under the worker.
fn is_orphaned(task: &Task) -> bool {
    observed(task) == TaskState::Orphaned as i32 || observed(task) == TaskState::Remove as i32
}

fn created_at(task: &Task) -> u64 {
    task.meta.as_ref().map_or(0, |m| m.created_at)
}

/// The decision being built for one service.
struct Plan<'a> {
    service: &'a Service,
    now: u64,
    create: Vec<Task>,
    /// New desired state by task id.
    desired: BTreeMap<String, i32>,
    remove: Vec<String>,
    wake_at: Option<u64>,
}

impl<'a> Plan<'a> {
    fn new(service: &'a Service, now: u64) -> Self {
        Self {
            service,
            now,
            create: Vec::new(),
            desired: BTreeMap::new(),
            remove: Vec::new(),
            wake_at: None,
        }
    }

    fn policy(&self) -> Option<&'a rswarm_proto::api::RestartPolicy> {
        let task = self.service.spec.as_ref()?.task.as_ref()?;
        task.restart_policy.as_ref()
    }

    /// Ended tasks kept per group: enough to count `max_attempts` restarts, or the
    /// usual history.
    fn retention(&self) -> usize {
        let attempts = self.policy().map_or(0, |p| p.max_attempts);
        HISTORY_PER_GROUP.max(usize::try_from(attempts).unwrap_or(usize::MAX))
    }

    /// The placement constraints, `None` when one does not parse: such a service
    /// fits no node (the control API refuses them, so this is a corrupt store).
    fn constraints(&self) -> Option<Vec<Constraint>> {
        let task = self.service.spec.as_ref().and_then(|s| s.task.as_ref());
        let exprs = task
            .and_then(|t| t.placement.as_ref())
            .map(|p| &p.constraints);
        exprs
            .into_iter()
            .flatten()
            .map(|c| parse_constraint(c).ok())
            .collect()
    }

    /// The desired state `task` will have once the plan is applied.
    fn desired_of(&self, task: &Task) -> i32 {
        self.desired
            .get(&task.id)
            .copied()
            .unwrap_or(task.desired_state)
    }

    fn set_desired(&mut self, task: &Task, state: TaskState) {
        if task.desired_state != state as i32 {
            self.desired.insert(task.id.clone(), state as i32);
        }
    }

    fn wake(&mut self, at: u64) {
        self.wake_at = Some(self.wake_at.map_or(at, |w| w.min(at)));
    }

    fn create(&mut self, slot: u64, node_id: &str) {
        let spec = self.service.spec.as_ref();
        self.create.push(Task {
            id: crate::controlapi::new_id(),
            meta: Some(Meta {
                version: 0,
                created_at: self.now,
                updated_at: self.now,
            }),
            service_id: self.service.id.clone(),
            slot,
            node_id: node_id.to_string(),
            spec: spec.and_then(|s| s.task.clone()),
            desired_state: TaskState::Running as i32,
            status: Some(TaskStatus {
                state: NEW_TASK_STATE as i32,
                timestamp: self.now,
                ..TaskStatus::default()
            }),
            service_name: spec.map(|s| s.name.clone()).unwrap_or_default(),
            // Always recorded, so that `None` tells a task from before the record.
            endpoint: Some(spec.and_then(|s| s.endpoint.clone()).unwrap_or_default()),
        });
    }

    /// Removes the group's ended tasks beyond the `keep` newest. A task the worker may
    /// still be running (assigned, not yet reported ended) is never removed: its
    /// worker learns of the shutdown through it. Nor is the task that marks a wanted
    /// group as finished: without it the group would be filled again; nor a wanted
    /// group's newest task that got a node.
    fn keep_history(&mut self, group: &[&Task], keep: usize) {
        let ended = group
            .iter()
            .rev()
            .filter(|t| self.desired_of(t) > TaskState::Running as i32);
        // The newest task that got a node tells a rolling update the group was
        // placed once (see `rollout::Group::placed`).
        let newest_placed = group.iter().rev().find(|t| rollout::placed(t));
        let removable = |t: &Task| {
            let marker = keep > 0 && self.desired_of(t) == TaskState::Complete as i32;
            let evidence = keep > 0 && newest_placed.is_some_and(|p| p.id == t.id);
            !marker
                && !evidence
                && (observed(t) >= TaskState::Complete as i32
                    || observed(t) < TaskState::Assigned as i32)
        };
        let doomed: Vec<String> = ended
            .skip(keep)
            .filter(|t| removable(t))
            .map(|t| t.id.clone())
            .collect();
        self.remove.extend(doomed);
    }

    fn finish(mut self, tasks: &[Task]) -> Actions {
        // A removed task needs no new desired state.
        for id in &self.remove {
            self.desired.remove(id);
        }
        let update = tasks
            .iter()
            .filter_map(|t| {
                let state = *self.desired.get(&t.id)?;
                let mut task = t.clone();
                task.desired_state = state;
                if let Some(meta) = task.meta.as_mut() {
                    meta.updated_at = self.now;
                }
                Some(task)
            })
            .collect();
        Actions {
            create: self.create,
            update,
            remove: self.remove,
            wake_at: self.wake_at,
        }
    }
}
