//! Table tests for the restart policy of a replicated service: back-off, conditions,
//! attempts.

use rswarm_proto::api::{RestartCondition, TaskState};

use super::testkit::*;
use super::*;

const SHUTDOWN: i32 = TaskState::Shutdown as i32;
const COMPLETE: i32 = TaskState::Complete as i32;

/// Crashes the slot's live task `ran` ms after it was created and reconciles until
/// it is restarted; returns the delay between the crash and the restart.
fn crash_and_restart(sim: &mut Sim, ran: u64, state: TaskState, exit_code: i32) -> u64 {
    let task = sim.live(1, "");
    let (id, created) = (task.id.clone(), created_at(task));
    let crashed = created + ran;
    sim.report(&id, state, crashed, exit_code);
    let first = sim.step(crashed);
    assert!(
        first.create.is_empty(),
        "the restart waits for its back-off"
    );
    let due = first.wake_at.expect("a wake-up for the restart");
    assert!(sim.step(due - 1).create.is_empty(), "not before it is due");
    let restart = sim.step(due);
    assert_eq!(restart.create.len(), 1);
    assert_eq!(updates(&restart).get(&id), Some(&SHUTDOWN));
    assert_eq!(restart.wake_at, None);
    due - crashed
}

#[test]
fn crashes_back_off_exponentially_up_to_ten_seconds() {
    let mut sim = Sim::new(replicated(1, any_policy()), vec![ready("n1")]);
    sim.step(0);
    let delays: Vec<u64> = (0..11)
        .map(|_| crash_and_restart(&mut sim, 50, TaskState::Failed, 1))
        .collect();
    assert_eq!(
        delays,
        [
            100, 200, 400, 800, 1_600, 3_200, 6_400, 10_000, 10_000, 10_000, 10_000
        ]
    );
    // Only the newest five ended tasks are kept.
    assert_eq!(sim.tasks.len(), 6);
}

#[test]
fn back_off_resets_after_a_healthy_run() {
    let mut sim = Sim::new(replicated(1, any_policy()), vec![ready("n1")]);
    sim.step(0);
    let mut delays: Vec<u64> = (0..3)
        .map(|_| crash_and_restart(&mut sim, 50, TaskState::Failed, 1))
        .collect();
    delays.push(crash_and_restart(&mut sim, 10_000, TaskState::Failed, 1));
    delays.push(crash_and_restart(&mut sim, 50, TaskState::Failed, 1));
    delays.push(crash_and_restart(&mut sim, 9_999, TaskState::Complete, 0));
    assert_eq!(delays, [100, 200, 400, 100, 200, 400]);
}

#[test]
fn back_off_uses_the_policy_delay_and_window() {
    let mut sim = Sim::new(
        replicated(1, policy(RestartCondition::Any, 500, 0, 2_000)),
        vec![ready("n1")],
    );
    sim.step(0);
    let delays: Vec<u64> = [10, 10, 2_000, 1_999]
        .into_iter()
        .map(|ran| crash_and_restart(&mut sim, ran, TaskState::Rejected, 0))
        .collect();
    assert_eq!(delays, [500, 1_000, 500, 1_000]);
}

#[test]
fn a_late_reconcile_does_not_skip_back_off_steps() {
    let mut sim = Sim::new(replicated(1, any_policy()), vec![ready("n1")]);
    sim.step(0);
    let mut delays = Vec::new();
    for _ in 0..4 {
        let task = sim.live(1, "");
        let (id, crashed) = (task.id.clone(), created_at(task) + 50);
        sim.report(&id, TaskState::Failed, crashed, 1);
        let due = sim.step(crashed).wake_at.expect("a wake-up");
        delays.push(due - crashed);
        // The loop wakes up late by 30 ms.
        assert_eq!(sim.step(due + 30).create.len(), 1);
    }
    assert_eq!(delays, [100, 200, 400, 800]);
}

#[test]
fn restart_conditions() {
    use RestartCondition::{Any, None, OnFailure};
    let cases = [
        (Any, TaskState::Complete, 0, true),
        (Any, TaskState::Failed, 1, true),
        (Any, TaskState::Shutdown, 0, true),
        (OnFailure, TaskState::Complete, 0, false),
        (OnFailure, TaskState::Complete, 3, true),
        (OnFailure, TaskState::Failed, 0, true),
        (OnFailure, TaskState::Rejected, 0, true),
        (None, TaskState::Failed, 1, false),
        (None, TaskState::Complete, 0, false),
    ];
    for (condition, state, exit_code, restarted) in cases {
        let case = format!("{condition:?} after {state:?} ({exit_code})");
        let mut sim = Sim::new(replicated(1, policy(condition, 0, 0, 0)), vec![ready("n1")]);
        sim.step(0);
        let id = sim.live(1, "").id.clone();
        sim.report(&id, state, 1_000, exit_code);
        let now = sim.step(1_000);
        let later = sim.step(60_000);
        if restarted {
            assert_eq!(now.wake_at, Some(1_100), "{case}");
            assert_eq!(later.create.len(), 1, "{case}");
            assert_eq!(live_slots(&sim.tasks), [1], "{case}");
        } else {
            assert_eq!(updates(&now), [(id.clone(), COMPLETE)].into(), "{case}");
            assert!(now.create.is_empty() && now.wake_at.is_none(), "{case}");
            assert!(later.is_empty(), "{case}");
            assert_eq!(
                live_slots(&sim.tasks),
                [0u64; 0],
                "{case}: the slot stays empty"
            );
            assert_eq!(sim.tasks.len(), 1, "{case}: the ended task is kept");
        }
    }
}

#[test]
fn a_finished_slot_stays_empty_when_scaling_up() {
    let mut sim = Sim::new(
        replicated(1, policy(RestartCondition::None, 0, 0, 0)),
        vec![],
    );
    sim.step(0);
    let id = sim.live(1, "").id.clone();
    sim.report(&id, TaskState::Complete, 100, 0);
    sim.step(100);
    sim.service = replicated(3, policy(RestartCondition::None, 0, 0, 0));
    assert_eq!(sim.step(200).create.len(), 2);
    assert_eq!(live_slots(&sim.tasks), [2, 3]);
}

#[test]
fn scaling_back_up_refills_stopped_slots_at_once() {
    let mut sim = Sim::new(
        replicated(3, policy(RestartCondition::None, 5_000, 0, 0)),
        vec![ready("n1")],
    );
    sim.step(0);
    for t in sim.tasks.iter_mut() {
        t.node_id = "n1".into();
    }
    for id in sim.tasks.iter().map(|t| t.id.clone()).collect::<Vec<_>>() {
        sim.report(&id, TaskState::Running, 50, 0);
    }
    sim.service = replicated(1, policy(RestartCondition::None, 5_000, 0, 0));
    sim.step(100);
    for t in sim.tasks.clone().iter().filter(|t| !is_live(t)) {
        sim.report(&t.id, TaskState::Shutdown, 150, 0);
    }
    // Scaled down slots keep no history once their tasks ended.
    assert_eq!(sim.step(200).remove.len(), 2);
    assert_eq!(sim.tasks.len(), 1);
    sim.service = replicated(3, policy(RestartCondition::None, 5_000, 0, 0));
    let up = sim.step(300);
    assert_eq!(up.create.len(), 2);
    assert_eq!(live_slots(&sim.tasks), [1, 2, 3]);
}

#[test]
fn max_attempts_counts_restarts_without_a_window() {
    let mut sim = Sim::new(
        replicated(1, policy(RestartCondition::Any, 0, 3, 0)),
        vec![ready("n1")],
    );
    sim.step(0);
    for _ in 0..3 {
        crash_and_restart(&mut sim, 60_000, TaskState::Failed, 1);
    }
    let id = sim.live(1, "").id.clone();
    let crashed = created_at(sim.live(1, "")) + 60_000;
    sim.report(&id, TaskState::Failed, crashed, 1);
    let last = sim.step(crashed);
    assert_eq!(updates(&last), [(id, COMPLETE)].into());
    assert_eq!(last.wake_at, None);
    assert!(sim.step(crashed + 3_600_000).is_empty());
    assert_eq!(sim.tasks.len(), 4, "the first task and three restarts");
}

#[test]
fn max_attempts_only_counts_restarts_within_the_window() {
    let mut sim = Sim::new(
        replicated(1, policy(RestartCondition::Any, 0, 2, 1_000)),
        vec![ready("n1")],
    );
    sim.step(0);
    // Eight restarts, but never two within a second.
    for _ in 0..8 {
        assert_eq!(
            crash_and_restart(&mut sim, 1_000, TaskState::Failed, 1),
            100
        );
    }
    // Two quick crashes in a row do: the second is not restarted.
    crash_and_restart(&mut sim, 10, TaskState::Failed, 1);
    let id = sim.live(1, "").id.clone();
    let crashed = created_at(sim.live(1, "")) + 10;
    sim.report(&id, TaskState::Failed, crashed, 1);
    assert_eq!(updates(&sim.step(crashed)), [(id, COMPLETE)].into());
}
