//! Rolling updates: a task whose spec (or host-mode ports) is not its service's any
//! more is replaced, a few at a time, once the tasks already replaced run.
//!
//! The decision stays pure and idempotent: what is under way is read back from the
//! tasks. A group counts as *in flight* while its task is up to date but not yet
//! settled: not running, or running for less than the monitor period plus the
//! update delay; at most `parallelism` groups are in flight. A new task that fails
//! (while its restart policy retries it, or for good when the policy gave up on
//! it before it ran the monitor period) keeps its group in flight, so a broken update
//! stops after `parallelism` tasks instead of replacing every running one. A group
//! no task of which was ever placed does not count: its new task may wait forever
//! (a slot no node can take) and would stall the update.

use rswarm_proto::api::{Task, TaskState, UpdateConfig};
use rswarm_proto::rollout::DEFAULT_MONITOR_MS;

use super::group::{self, Kept};
use super::{Plan, has_exited, observed};

/// One wanted group after its own decision.
pub(super) struct Group<'a> {
    /// Replicated: the slot; global: 0.
    pub slot: u64,
    /// Global: the node; replicated: empty (the scheduler places the task).
    pub node_id: &'a str,
    /// Whether a new task may be created for the group now.
    pub can_place: bool,
    /// Whether a task of the group ever got as far as a node (the newest such
    /// task is kept in its history). A new task in a group never placed (a slot
    /// added beside the update, or one no node could take yet) does not hold the
    /// update: it might wait forever, and would stall it.
    pub placed: bool,
    /// The group's live task once its decision is applied.
    pub kept: Kept<'a>,
}

impl<'a> Group<'a> {
    /// The group of `tasks` with the task its decision kept.
    pub fn new(
        slot: u64,
        node_id: &'a str,
        can_place: bool,
        tasks: &[&Task],
        kept: Kept<'a>,
    ) -> Self {
        Self {
            slot,
            node_id,
            can_place,
            placed: tasks.iter().any(|t| placed(t)),
            kept,
        }
    }
}

/// Whether the task got as far as a node.
pub(super) fn placed(task: &Task) -> bool {
    observed(task) >= TaskState::Assigned as i32
}

/// Whether a kept task is done with its part of an update.
enum Settled {
    Yes,
    /// Running, and settled at this time (Unix ms).
    At(u64),
    /// Not running yet, or exited.
    No,
}

/// Replaces outdated tasks among `groups` within the update's parallelism.
pub(super) fn roll(plan: &mut Plan<'_>, groups: &[Group<'_>]) {
    let (parallelism, settle) = config(
        plan.service
            .spec
            .as_ref()
            .and_then(|s| s.update_config.as_ref()),
    );
    let mut in_flight = 0usize;
    let mut settles_at: Option<u64> = None;
    let mut outdated = Vec::new();
    for g in groups {
        match g.kept {
            Kept::Nothing => {}
            Kept::Created => in_flight += usize::from(g.placed),
            // A task of the new spec that ended before proving itself, and that its
            // restart policy will not replace: a failed update, held for good.
            Kept::Finished(task) if !is_outdated(plan, task) => {
                in_flight += usize::from(ended_early(task, settle));
            }
            Kept::Finished(_) => {}
            Kept::Task(task) if is_outdated(plan, task) => {
                // An exited task is replaced by its restart, from the new spec.
                if !has_exited(task) && g.can_place {
                    outdated.push((g, task));
                }
            }
            Kept::Task(task) => match settled(task, settle, plan.now) {
                Settled::Yes => {}
                Settled::At(at) => {
                    in_flight += 1;
                    settles_at = Some(settles_at.map_or(at, |s| s.min(at)));
                }
                Settled::No => in_flight += usize::from(g.placed),
            },
        }
    }
    let budget = if parallelism == 0 {
        usize::MAX
    } else {
        parallelism.saturating_sub(in_flight)
    };
    // A task of a group never placed is replaced at once: its successor will not
    // count.
    let (free, mut outdated): (Vec<_>, Vec<_>) = outdated.into_iter().partition(|(g, _)| !g.placed);
    for (g, task) in &free {
        group::replace(plan, task, g.slot, g.node_id, true);
    }
    // Tasks not running yet first: replacing them costs no running task.
    outdated.sort_by_key(|(_, task)| observed(task) == TaskState::Running as i32);
    for (g, task) in outdated.iter().take(budget) {
        group::replace(plan, task, g.slot, g.node_id, true);
    }
    if outdated.len() > budget
        && let Some(at) = settles_at
    {
        plan.wake(at);
    }
}

/// Parallelism (0: all at once) and how long a new task must run before it is
/// settled, in ms (monitor period, then delay); one at a time, watched for
/// [`DEFAULT_MONITOR_MS`], when the service has no update config.
fn config(config: Option<&UpdateConfig>) -> (usize, u64) {
    config.map_or((1, DEFAULT_MONITOR_MS), |c| {
        (
            usize::try_from(c.parallelism).unwrap_or(usize::MAX),
            c.monitor_ms.saturating_add(c.delay_ms),
        )
    })
}

/// Whether an ended task ended sooner than `settle` after it was created.
fn ended_early(task: &Task, settle: u64) -> bool {
    let created = task.meta.as_ref().map_or(0, |m| m.created_at);
    let ended = task.status.as_ref().map_or(0, |s| s.timestamp);
    ended < created.saturating_add(settle)
}

fn settled(task: &Task, settle: u64, now: u64) -> Settled {
    if observed(task) != TaskState::Running as i32 {
        return Settled::No;
    }
    let since = task.status.as_ref().map_or(0, |s| s.timestamp);
    let at = since.saturating_add(settle);
    if now >= at {
        Settled::Yes
    } else {
        Settled::At(at)
    }
}

fn is_outdated(plan: &Plan<'_>, task: &Task) -> bool {
    plan.service
        .spec
        .as_ref()
        .is_none_or(|spec| !rswarm_proto::rollout::is_current(task, spec))
}
