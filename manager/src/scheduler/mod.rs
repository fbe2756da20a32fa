//! The scheduler's placement decision: which node each pending task goes to.
//!
//! [`schedule`] is a pure function of a [`Snapshot`] and the pending tasks: no clock,
//! no I/O, the same input gives the same [`Plan`]. A node may take a task if it
//! passes every [`Filter`] (ready and active, constraints, CPU, memory, host ports,
//! replicas per node); among those, the task goes to the node with the fewest tasks
//! of its service, then the fewest tasks overall, then the smallest id. Each
//! placement is counted before the next task is placed, so a batch spreads evenly.
//!
//! A plan is computed on a snapshot that may be stale by the time it is committed;
//! [`recheck`] replays it against a newer snapshot and drops the assignments that no
//! longer fit, so a plan never overcommits a node.
//!
//! Tasks that already name a node (global services) are only checked against it.

pub mod run;
pub use run::Scheduler;
mod filter;
mod snapshot;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use filter::{
    ConstraintFilter, CpuFilter, Filter, HostPortFilter, MaxReplicasFilter, MemoryFilter, Pipeline,
    ReadyFilter,
};
pub use snapshot::{HostPort, NodeInfo, Snapshot, counts_against_node, host_ports, reservations};

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use rswarm_proto::api::Task;

/// The outcome of scheduling: where tasks go, and why the others stay pending.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Placements, in the order they were decided.
    pub assignments: Vec<Assignment>,
    /// Tasks no node can take now.
    pub unplaced: Vec<Unplaced>,
}

/// One task placed on one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// The task's id.
    pub task_id: String,
    /// The chosen node's id.
    pub node_id: String,
}

/// One task left pending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unplaced {
    /// The task's id.
    pub task_id: String,
    /// Why, for the task's status message, e.g. `no suitable node (2 nodes not
    /// available for new tasks, 1 node has insufficient memory)`.
    pub reason: String,
}

/// What makes two tasks interchangeable for placement: the same service (hence the
/// same host ports and per-service counts) and the same requirements. Tasks of one
/// service differ only while the service is being updated.
#[derive(PartialEq, Eq, Hash)]
struct GroupKey<'a> {
    /// The service's id.
    service_id: &'a str,
    /// Reserved CPU and memory.
    reservations: (u64, u64),
    /// Placement constraints as written.
    constraints: &'a [String],
    /// `max_replicas_per_node`, 0 for unlimited.
    max_replicas_per_node: u64,
}

impl<'a> GroupKey<'a> {
    fn of(task: &'a Task) -> GroupKey<'a> {
        let placement = task.spec.as_ref().and_then(|s| s.placement.as_ref());
        GroupKey {
            service_id: &task.service_id,
            reservations: reservations(task),
            constraints: placement.map_or(&[], |p| p.constraints.as_slice()),
            max_replicas_per_node: placement.map_or(0, |p| p.max_replicas_per_node),
        }
    }
}

/// A unit of scheduling work.
enum Unit<'a> {
    /// A task that already names its node.
    Pinned(&'a Task),
    /// Interchangeable tasks, in their input order.
    Group(Vec<&'a Task>),
}

/// Splits `pending` into units, ordered by their first task's position.
fn units(pending: &[Task]) -> Vec<Unit<'_>> {
    let mut units = Vec::new();
    let mut groups: HashMap<GroupKey<'_>, usize> = HashMap::new();
    for task in pending {
        if !task.node_id.is_empty() {
            units.push(Unit::Pinned(task));
            continue;
        }
        let at = *groups.entry(GroupKey::of(task)).or_insert_with(|| {
            units.push(Unit::Group(Vec::new()));
            units.len() - 1
        });
        if let Unit::Group(tasks) = &mut units[at] {
            tasks.push(task);
        }
    }
    units
}

/// Places every task of `pending`, in order (grouped by service and requirements),
/// on `snapshot` plus the placements decided before it.
pub fn schedule(snapshot: &Snapshot, pending: &[Task]) -> Plan {
    let mut state = snapshot.clone();
    let mut plan = Plan::default();
    let mut pipelines = Pipelines::default();
    for unit in units(pending) {
        match unit {
            Unit::Group(tasks) => place_group(&mut state, &tasks, &mut plan),
            Unit::Pinned(task) => match fit(&mut state, &mut pipelines, task, &task.node_id) {
                Ok(()) => plan.assignments.push(Assignment {
                    task_id: task.id.clone(),
                    node_id: task.node_id.clone(),
                }),
                Err(misfit) => plan.unplaced.push(Unplaced {
                    task_id: task.id.clone(),
                    reason: match misfit {
                        Misfit::Invalid(reason) => reason,
                        Misfit::UnknownNode => {
                            format!(
                                "no suitable node (node {} is not in the cluster)",
                                task.node_id
                            )
                        }
                        Misfit::Filter(why) => format!("no suitable node ({why})"),
                    },
                }),
            },
        }
    }
    plan
}

/// The spread order of a candidate node: fewest tasks of the service, then fewest
/// tasks, then smallest index (smallest id). Wrapped in `Reverse` for a min-heap.
fn rank(node: &NodeInfo, service_id: &str, index: usize) -> Reverse<(usize, usize, usize)> {
    Reverse((
        node.service_task_count(service_id),
        node.task_count(),
        index,
    ))
}

/// Places interchangeable tasks. The nodes that pass the filters are computed once
/// and kept in a heap by rank; placing a task changes only the chosen node, which
/// is ranked again if it still passes. So each task costs O(log nodes), and the
/// choice equals a full scan over every node.
fn place_group(state: &mut Snapshot, tasks: &[&Task], plan: &mut Plan) {
    let Some(&first) = tasks.first() else {
        return;
    };
    let unplace_rest = |plan: &mut Plan, from: usize, reason: &str| {
        plan.unplaced.extend(tasks[from..].iter().map(|t| Unplaced {
            task_id: t.id.clone(),
            reason: reason.to_owned(),
        }));
    };
    let pipeline = match Pipeline::for_task(state, first) {
        Ok(pipeline) => pipeline,
        Err(err) => return unplace_rest(plan, 0, &err.to_string()),
    };
    let service_id = first.service_id.as_str();
    let mut heap: BinaryHeap<_> = state
        .nodes()
        .iter()
        .enumerate()
        .filter(|(_, node)| pipeline.passes(node, first))
        .map(|(i, node)| rank(node, service_id, i))
        .collect();
    for (k, &task) in tasks.iter().enumerate() {
        let Some(Reverse((_, _, index))) = heap.pop() else {
            // Nothing changes until this group is done, so the rest share the reason.
            let reason = pipeline.explain(state.nodes(), task);
            return unplace_rest(plan, k, &reason);
        };
        state.add_task_at(index, task);
        let node = &state.nodes()[index];
        plan.assignments.push(Assignment {
            task_id: task.id.clone(),
            node_id: node.id().to_owned(),
        });
        if pipeline.passes(node, task) {
            heap.push(rank(node, service_id, index));
        }
    }
}

/// Why a task does not fit the node it names.
enum Misfit {
    /// The task's spec is invalid (a constraint that does not parse).
    Invalid(String),
    /// The node is not in the snapshot.
    UnknownNode,
    /// A filter rules the node out; its explanation for one node.
    Filter(String),
}

/// Filter pipelines built so far, one per group of interchangeable tasks, so that
/// constraints are parsed once per service rather than once per task.
#[derive(Default)]
struct Pipelines<'a> {
    /// The pipeline, or why it could not be built.
    by_group: HashMap<GroupKey<'a>, Result<Pipeline, String>>,
}

impl<'a> Pipelines<'a> {
    fn get(&mut self, snapshot: &Snapshot, task: &'a Task) -> Result<&Pipeline, String> {
        self.by_group
            .entry(GroupKey::of(task))
            .or_insert_with(|| Pipeline::for_task(snapshot, task).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// Checks `task` against node `node_id` alone and counts it there if it fits.
fn fit<'a>(
    state: &mut Snapshot,
    pipelines: &mut Pipelines<'a>,
    task: &'a Task,
    node_id: &str,
) -> Result<(), Misfit> {
    let pipeline = pipelines.get(state, task).map_err(Misfit::Invalid)?;
    let index = state.index_of(node_id).ok_or(Misfit::UnknownNode)?;
    if let Some(failed) = pipeline.first_failure(&state.nodes()[index], task) {
        return Err(Misfit::Filter(pipeline.filters()[failed].explain(1)));
    }
    state.add_task_at(index, task);
    Ok(())
}

/// Replays `plan` against `snapshot`, which may be newer than the one it was made
/// on, before it is committed. Assignments are checked in order, each counted before
/// the next, so the kept ones never overcommit a node; an assignment whose node is
/// gone or no longer passes the filters, or whose task is not in `pending` any more,
/// becomes unplaced. The plan's unplaced tasks stay unplaced.
pub fn recheck(snapshot: &Snapshot, plan: &Plan, pending: &HashMap<String, Task>) -> Plan {
    let mut state = snapshot.clone();
    let mut pipelines = Pipelines::default();
    let mut out = Plan {
        assignments: Vec::with_capacity(plan.assignments.len()),
        unplaced: plan.unplaced.clone(),
    };
    for assignment in &plan.assignments {
        let node_id = &assignment.node_id;
        let result = match pending.get(&assignment.task_id) {
            Some(task) => fit(&mut state, &mut pipelines, task, node_id).map_err(|m| match m {
                Misfit::Invalid(reason) => reason,
                Misfit::UnknownNode => format!("node {node_id} is no longer in the cluster"),
                Misfit::Filter(why) => format!("node {node_id} is no longer suitable ({why})"),
            }),
            None => Err("the task is no longer pending".to_owned()),
        };
        match result {
            Ok(()) => out.assignments.push(assignment.clone()),
            Err(reason) => out.unplaced.push(Unplaced {
                task_id: assignment.task_id.clone(),
                reason,
            }),
        }
    }
    out
}
