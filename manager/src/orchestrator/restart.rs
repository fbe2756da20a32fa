//! The restart policy: whether and when a task that exited is replaced.
//!
//! Back-off: the n-th consecutive restart of a group waits `first * 2^(n-1)` after the
//! exit, capped at [`MAX_DELAY_MS`] (or at `first` when that is larger). The streak
//! resets when the exited task had run for a healthy period: the policy's window, or
//! [`DEFAULT_HEALTHY_MS`] without one. The step of the previous restart is read back
//! from the time between its task's exit and its successor's creation.

use rswarm_proto::api::{RestartCondition, RestartPolicy, Task, TaskState};

use super::{created_at, observed};

/// The first back-off step when the policy sets none.
pub const DEFAULT_DELAY_MS: u64 = 100;
/// The longest back-off step.
pub const MAX_DELAY_MS: u64 = 10_000;
/// How long a task must run to reset the back-off when the policy has no window.
pub const DEFAULT_HEALTHY_MS: u64 = 10_000;

/// What becomes of a task that exited while desired RUNNING.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Restart {
    /// The policy forbids a restart: the group is finished.
    Never,
    /// Replace it now.
    Now,
    /// Replace it at this time (Unix ms).
    At(u64),
}

/// Decides for `dead`, which exited while desired RUNNING. `earlier` are the ended
/// tasks of its group created before it, oldest first.
pub(super) fn decide(
    policy: Option<&RestartPolicy>,
    earlier: &[&Task],
    dead: &Task,
    now: u64,
) -> Restart {
    let default = RestartPolicy::default();
    let policy = policy.unwrap_or(&default);
    let condition = RestartCondition::try_from(policy.condition).unwrap_or(RestartCondition::Any);
    let exit_code = dead.status.as_ref().map_or(0, |s| s.exit_code);
    let succeeded = observed(dead) == TaskState::Complete as i32 && exit_code == 0;
    match condition {
        RestartCondition::None => return Restart::Never,
        RestartCondition::OnFailure if succeeded => return Restart::Never,
        RestartCondition::Any | RestartCondition::OnFailure => {}
    }
    let exited_at = ended_at(dead);
    if policy.max_attempts > 0 && restarts(earlier, dead, policy.window_ms) >= policy.max_attempts {
        return Restart::Never;
    }
    let first = if policy.delay_ms == 0 {
        DEFAULT_DELAY_MS
    } else {
        policy.delay_ms
    };
    let healthy = if policy.window_ms == 0 {
        DEFAULT_HEALTHY_MS
    } else {
        policy.window_ms
    };
    let ran = exited_at.saturating_sub(created_at(dead));
    let streak = match earlier.last() {
        Some(prev) if ran < healthy && counts_as_failure(prev) => {
            step_of(first, created_at(dead).saturating_sub(ended_at(prev))) + 1
        }
        _ => 1,
    };
    let due = exited_at.saturating_add(delay(first, streak));
    if now >= due {
        Restart::Now
    } else {
        Restart::At(due)
    }
}

/// Restarts already made in the group within `window_ms` before `dead` exited (all of
/// them with no window): every earlier failure was followed by its restart.
fn restarts(earlier: &[&Task], dead: &Task, window_ms: u64) -> u64 {
    let exited_at = ended_at(dead);
    let successors = earlier.iter().skip(1).copied().chain(std::iter::once(dead));
    let count = earlier
        .iter()
        .zip(successors)
        .filter(|(task, next)| {
            counts_as_failure(task)
                && (window_ms == 0 || created_at(next).saturating_add(window_ms) > exited_at)
        })
        .count();
    u64::try_from(count).unwrap_or(u64::MAX)
}

/// Whether an ended task ended by itself, so that its successor was a restart. An
/// observed SHUTDOWN is what a worker reports after the managers asked for it (scale
/// down, node drained), so it does not count.
fn counts_as_failure(task: &Task) -> bool {
    [TaskState::Complete, TaskState::Failed, TaskState::Rejected]
        .iter()
        .any(|s| observed(task) == *s as i32)
}

/// When the task reached its last observed state.
fn ended_at(task: &Task) -> u64 {
    task.status.as_ref().map_or(0, |s| s.timestamp)
}

/// The back-off before the `n`-th consecutive restart (n ≥ 1).
pub(super) fn delay(first: u64, n: u64) -> u64 {
    let cap = MAX_DELAY_MS.max(first);
    let shift = u32::try_from(n.saturating_sub(1)).unwrap_or(u32::MAX);
    first
        .checked_mul(2u64.checked_pow(shift).unwrap_or(u64::MAX))
        .map_or(cap, |d| d.min(cap))
}

/// The streak step whose delay a restart that waited `gap` ms used: the largest `n`
/// with `delay(first, n) <= gap` (at least 1). Waiting a little longer than due (the
/// reconcile ran late) does not move the step.
fn step_of(first: u64, gap: u64) -> u64 {
    let mut n = 1;
    while delay(first, n + 1) <= gap && delay(first, n + 1) > delay(first, n) {
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_from_first_and_caps() {
        let steps: Vec<u64> = (1..=9).map(|n| delay(100, n)).collect();
        assert_eq!(
            steps,
            [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]
        );
        assert_eq!(delay(100, u64::MAX), 10_000);
        // A first step above the cap is kept as a fixed delay.
        assert_eq!(delay(30_000, 1), 30_000);
        assert_eq!(delay(30_000, 4), 30_000);
    }

    #[test]
    fn step_of_reads_back_the_delay_used() {
        for n in 1..=7 {
            assert_eq!(step_of(100, delay(100, n)), n, "step {n}");
            assert_eq!(step_of(100, delay(100, n) + 20), n, "step {n}, late");
        }
        assert_eq!(step_of(100, 0), 1);
        assert_eq!(step_of(100, 10_000), 8);
        assert_eq!(step_of(100, 60_000), 8);
    }
}
