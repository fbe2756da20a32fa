//! The assignment set: repeats, removals, re-adoption, many tasks.

use super::*;

#[tokio::test(start_paused = true)]
async fn a_removed_task_is_shut_down_then_removed() {
    let fake = FakeExecutor::new();
    let (tasks, mut reports) = manager(&fake);
    tasks.set_assignments(vec![task("t1", "busybox"), task("t2", "busybox")]);
    reports.until("t1", TaskState::Running).await;
    reports.until("t2", TaskState::Running).await;
    tasks.set_assignments(vec![task("t2", "busybox")]);
    reports.until("t1", TaskState::Shutdown).await;
    reports.settle().await;
    let ops = fake.ops("t1");
    assert_eq!(
        ops[ops.len() - 2..],
        [FakeOp::Shutdown(DEFAULT_STOP_GRACE), FakeOp::Remove]
    );
    assert!(matches!(
        fake.state("t1"),
        Some(FakeState::Removed(Some(_)))
    ));
    assert_eq!(fake.running(), ["t2"]);
    assert_eq!(tasks.assigned(), ["t2"]);
}

#[tokio::test(start_paused = true)]
async fn a_finished_task_is_removed_without_a_stop() {
    let fake = FakeExecutor::with_default(FakeBehavior {
        run_for: Some(Duration::from_secs(1)),
        ..Default::default()
    });
    let (tasks, mut reports) = manager(&fake);
    tasks.set_assignments(vec![task("t1", "busybox")]);
    reports.until("t1", TaskState::Complete).await;
    tasks.update_assignments(vec![], vec!["t1".into()]);
    assert_eq!(reports.settle().await, 0);
    assert_eq!(
        fake.ops("t1"),
        [FakeOp::Prepare, FakeOp::Start, FakeOp::Wait, FakeOp::Remove]
    );
}

#[tokio::test(start_paused = true)]
async fn the_same_assignment_set_twice_restarts_nothing() {
    let fake = FakeExecutor::new();
    let (tasks, mut reports) = manager(&fake);
    let set = vec![task("a", "busybox"), task("b", "busybox")];
    tasks.set_assignments(set.clone());
    reports.until("a", TaskState::Running).await;
    reports.until("b", TaskState::Running).await;
    // The managers' copies still say ASSIGNED: stale, and ignored.
    tasks.set_assignments(set.clone());
    tasks.update_assignments(set, vec![]);
    assert_eq!(reports.settle().await, 0);
    for id in ["a", "b"] {
        assert_eq!(fake.ops(id), [FakeOp::Prepare, FakeOp::Start, FakeOp::Wait]);
    }
    assert_eq!(fake.running(), ["a", "b"]);
}

#[tokio::test(start_paused = true)]
async fn a_hundred_tasks_all_reach_running() {
    let fake = FakeExecutor::new();
    let (tasks, mut reports) = manager(&fake);
    let ids: Vec<String> = (0..100).map(|i| format!("t{i:03}")).collect();
    tasks.set_assignments(ids.iter().map(|id| task(id, "busybox")).collect());
    for id in &ids {
        reports.until(id, TaskState::Running).await;
        assert_eq!(reports.states(id), TO_RUNNING);
    }
    assert_eq!(fake.running(), ids);
    let statuses = tasks.statuses();
    assert_eq!(statuses.len(), 100);
    assert!(
        statuses
            .iter()
            .all(|u| u.status.state == TaskState::Running as i32)
    );
}

#[tokio::test(start_paused = true)]
async fn tasks_past_running_are_not_started_again() {
    let fake = FakeExecutor::new();
    let (tasks, mut reports) = manager(&fake);
    let done = [
        TaskState::Complete,
        TaskState::Failed,
        TaskState::Shutdown,
        TaskState::Rejected,
    ];
    let mut set: Vec<Task> = (done.iter().enumerate())
        .map(|(i, state)| with_status(task(&format!("t{i}"), "busybox"), *state))
        .collect();
    // Even one the runtime cannot handle keeps the outcome it had.
    let mut no_image = with_status(task("bad", ""), TaskState::Complete);
    no_image.spec = None;
    set.push(no_image);
    tasks.set_assignments(set);
    assert_eq!(reports.settle().await, 0);
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    // Removing them frees whatever the runtime kept of them.
    tasks.set_assignments(vec![]);
    reports.settle().await;
    assert_eq!(fake.ops("t0"), [FakeOp::Remove]);
}

#[tokio::test(start_paused = true)]
async fn a_running_task_from_an_earlier_session_is_reattached() {
    let fake = FakeExecutor::new();
    let (first, mut reports) = manager(&fake);
    first.set_assignments(vec![task("t1", "busybox")]);
    reports.until("t1", TaskState::Running).await;
    // The daemon goes away; its container keeps running.
    drop(first);
    reports.settle().await;
    assert_eq!(fake.running(), ["t1"]);

    let (second, mut reports) = manager(&fake);
    second.set_assignments(vec![with_status(task("t1", "busybox"), TaskState::Running)]);
    assert_eq!(reports.settle().await, 0, "nothing to report while it runs");
    assert!(fake.exit("t1", ExitStatus::code(0)));
    reports.until("t1", TaskState::Complete).await;
    assert_eq!(reports.states("t1"), [TaskState::Complete]);
    let ops = fake.ops("t1");
    assert_eq!(
        ops,
        [FakeOp::Prepare, FakeOp::Start, FakeOp::Wait, FakeOp::Wait]
    );
}

#[tokio::test(start_paused = true)]
async fn a_running_task_the_runtime_lost_fails() {
    let fake = FakeExecutor::new();
    let (tasks, mut reports) = manager(&fake);
    tasks.set_assignments(vec![with_status(task("t1", "busybox"), TaskState::Running)]);
    let failed = reports.until("t1", TaskState::Failed).await;
    assert!(failed.err.contains("no such container"), "{failed:?}");
    assert_eq!(reports.states("t1"), [TaskState::Failed]);
    assert_eq!(fake.ops("t1"), [FakeOp::Wait, FakeOp::Terminate]);
}

#[tokio::test(start_paused = true)]
async fn desired_ready_prepares_without_starting() {
    let fake = FakeExecutor::new();
    let (tasks, mut reports) = manager(&fake);
    tasks.set_assignments(vec![with_desired(task("t1", "busybox"), TaskState::Ready)]);
    reports.until("t1", TaskState::Ready).await;
    assert_eq!(reports.settle().await, 0);
    assert_eq!(fake.ops("t1"), [FakeOp::Prepare]);
    tasks.set_assignments(vec![task("t1", "busybox")]);
    reports.until("t1", TaskState::Running).await;
    assert_eq!(reports.states("t1"), TO_RUNNING);
}

#[tokio::test(start_paused = true)]
async fn adopted_tasks_run_until_the_first_set_drops_them() {
    let fake = FakeExecutor::new();
    let (tasks, mut reports) = manager(&fake);
    tasks.adopt(vec![task("old", "busybox"), task("kept", "busybox")]);
    reports.until("old", TaskState::Running).await;
    reports.until("kept", TaskState::Running).await;
    tasks.adopt(vec![task("old", "busybox")]);
    tasks.set_assignments(vec![task("kept", "busybox")]);
    reports.until("old", TaskState::Shutdown).await;
    reports.settle().await;
    assert_eq!(fake.ops("old").last(), Some(&FakeOp::Remove));
    assert_eq!(
        fake.ops("kept"),
        [FakeOp::Prepare, FakeOp::Start, FakeOp::Wait]
    );
}

#[tokio::test(start_paused = true)]
async fn the_first_full_set_tells_the_runtime_which_tasks_exist() {
    let fake = FakeExecutor::new();
    let (tasks, mut reports) = manager(&fake);
    tasks.set_assignments(vec![task("t1", "busybox"), task("t2", "busybox")]);
    reports.until("t1", TaskState::Running).await;
    tasks.set_assignments(vec![task("t1", "busybox")]);
    let cleanups = fake.cleanups();
    assert_eq!(cleanups.len(), 1, "only after the first set");
    let kept: std::collections::HashSet<String> = ["t1", "t2"].map(String::from).into();
    assert_eq!(cleanups[0], kept);
}
