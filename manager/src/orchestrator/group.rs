//! The decision for one group of tasks: one slot of a replicated service, or one node
//! of a global service. The group should have exactly one live task.

use rswarm_proto::api::{Task, TaskState};

use super::restart::{self, Restart};
use super::{Plan, has_exited, is_live, observed};

/// The live task a wanted group has once [`reconcile`]'s decision is applied.
#[derive(Clone, Copy, Debug)]
pub(super) enum Kept<'a> {
    /// None: nothing could be placed.
    Nothing,
    /// None: the restart policy finished with the group; the task that marks it.
    Finished(&'a Task),
    /// A task created by this decision.
    Created,
    /// An existing task: running or on its way, or exited and waiting for its
    /// restart.
    Task(&'a Task),
}

/// Brings a wanted group to one healthy live task, and tells which task that is.
///
/// `tasks` are the group's tasks, oldest first. `can_place`: whether a new task may
/// be created for the group now. `lost`: whether a live task that has not exited
/// is gone for good (its node is down, say) and must be replaced without delay.
pub(super) fn reconcile<'a>(
    plan: &mut Plan<'_>,
    tasks: &[&'a Task],
    slot: u64,
    node_id: &str,
    can_place: bool,
    lost: &dyn Fn(&Task) -> bool,
) -> Kept<'a> {
    let live: Vec<&Task> = tasks.iter().copied().filter(|t| is_live(t)).collect();
    let keeper = live.iter().copied().max_by(|a, b| {
        keeper_rank(a, lost)
            .cmp(&keeper_rank(b, lost))
            .then_with(|| super::age_key(a).cmp(&super::age_key(b)))
    });
    // Two live tasks in one group can only come from a race between leaders: keep
    // the healthiest, stop the rest.
    for task in &live {
        if keeper.is_some_and(|k| k.id != task.id) {
            plan.set_desired(task, TaskState::Shutdown);
        }
    }
    let Some(task) = keeper else {
        // Desired COMPLETE marks a group the restart policy has finished with. Nothing
        // is created in such a group afterwards, so that task stays its newest.
        if let Some(marker) = tasks.iter().rev().find(|t| marks_finished(t)) {
            return Kept::Finished(marker);
        }
        if can_place {
            plan.create(slot, node_id);
            return Kept::Created;
        }
        return Kept::Nothing;
    };
    if has_exited(task) {
        // Live duplicates stopped above count as history already, as they will on
        // the next call.
        let earlier: Vec<&Task> = tasks
            .iter()
            .copied()
            .take_while(|t| t.id != task.id)
            .collect();
        match restart::decide(plan.policy(), &earlier, task, plan.now) {
            Restart::Never => {
                plan.set_desired(task, TaskState::Complete);
                Kept::Finished(task)
            }
            Restart::Now => replace(plan, task, slot, node_id, can_place),
            Restart::At(due) => {
                plan.wake(due);
                Kept::Task(task)
            }
        }
    } else if lost(task) {
        replace(plan, task, slot, node_id, can_place)
    } else {
        Kept::Task(task)
    }
}

/// Stops `task` and, if a task may be placed, creates its successor in its group.
pub(super) fn replace<'a>(
    plan: &mut Plan<'_>,
    task: &Task,
    slot: u64,
    node_id: &str,
    can_place: bool,
) -> Kept<'a> {
    plan.set_desired(task, TaskState::Shutdown);
    if can_place {
        plan.create(slot, node_id);
        Kept::Created
    } else {
        Kept::Nothing
    }
}

/// Stops every live task of a group that is no longer wanted.
pub(super) fn stop(plan: &mut Plan<'_>, tasks: &[&Task]) {
    for task in tasks.iter().filter(|t| is_live(t)) {
        plan.set_desired(task, TaskState::Shutdown);
    }
}

/// Whether a slot's group is in use, and how well it does: the best rank of its live
/// tasks and of the task that marks it finished (ranked as the exited task it was,
/// so that finishing a group does not change its rank). `None` for a group of
/// history only.
pub(super) fn occupancy(tasks: &[&Task], lost: &dyn Fn(&Task) -> bool) -> Option<(bool, i32)> {
    tasks
        .iter()
        .filter_map(|t| {
            if is_live(t) {
                Some(keeper_rank(t, lost))
            } else if marks_finished(t) {
                Some((false, observed(t)))
            } else {
                None
            }
        })
        .max()
}

/// Desired COMPLETE: the task marks a group its restart policy finished with.
fn marks_finished(task: &Task) -> bool {
    task.desired_state == TaskState::Complete as i32
}

/// Which live task to keep: one still running on a healthy node first, then the one
/// furthest along.
fn keeper_rank(task: &Task, lost: &dyn Fn(&Task) -> bool) -> (bool, i32) {
    let healthy = !has_exited(task) && !lost(task);
    (healthy, observed(task))
}
