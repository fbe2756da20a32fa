//! A task's life: each state, each way it ends, stops on request.

use super::*;

#[tokio::test(start_paused = true)]
async fn a_task_goes_through_every_state_to_running_then_complete() {
    let fake = FakeExecutor::with_default(FakeBehavior {
        run_for: Some(Duration::from_secs(5)),
        ..Default::default()
    });
    let (tasks, mut reports) = manager(&fake);
    tasks.set_assignments(vec![task("t1", "busybox")]);
    let running = reports.until("t1", TaskState::Running).await;
    assert_eq!(running.message, "started");
    let done = reports.until("t1", TaskState::Complete).await;
    assert_eq!(reports.states("t1"), then(&[TaskState::Complete]));
    assert_eq!((done.err.as_str(), done.exit_code), ("", 0));
    assert_eq!(
        fake.ops("t1"),
        [FakeOp::Prepare, FakeOp::Start, FakeOp::Wait]
    );
    assert_eq!(reports.settle().await, 0);
}

#[tokio::test(start_paused = true)]
async fn a_non_zero_exit_fails_the_task_with_its_code() {
    let fake = FakeExecutor::with_default(FakeBehavior {
        run_for: Some(Duration::from_secs(1)),
        exit_code: 3,
        ..Default::default()
    });
    let (tasks, mut reports) = manager(&fake);
    tasks.set_assignments(vec![task("t1", "busybox")]);
    let failed = reports.until("t1", TaskState::Failed).await;
    assert_eq!(reports.states("t1"), then(&[TaskState::Failed]));
    assert_eq!(failed.err, "task: non-zero exit (3)");
    assert_eq!(failed.exit_code, 3);
}

#[tokio::test(start_paused = true)]
async fn a_crash_reports_its_reason() {
    let fake = FakeExecutor::new();
    let (tasks, mut reports) = manager(&fake);
    tasks.set_assignments(vec![task("t1", "busybox")]);
    reports.until("t1", TaskState::Running).await;
    let oom = ExitStatus {
        code: 137,
        reason: "OOM killed (limit 64MiB)".into(),
    };
    assert!(fake.exit("t1", oom));
    let failed = reports.until("t1", TaskState::Failed).await;
    assert_eq!(
        (failed.err.as_str(), failed.exit_code),
        ("OOM killed (limit 64MiB)", 137)
    );
}

#[tokio::test(start_paused = true)]
async fn prepare_errors_and_missing_images_reject_the_task() {
    let fake = FakeExecutor::new();
    let no_space = FakeBehavior {
        prepare_error: Some("no space left".into()),
        ..Default::default()
    };
    fake.set_image("broken", no_space);
    fake.set_image(
        "missing",
        FakeBehavior {
            image_missing: true,
            ..Default::default()
        },
    );
    let (tasks, mut reports) = manager(&fake);
    tasks.set_assignments(vec![task("a", "broken"), task("b", "missing")]);
    let rejected = [
        TaskState::Accepted,
        TaskState::Preparing,
        TaskState::Rejected,
    ];
    let a = reports.until("a", TaskState::Rejected).await;
    assert_eq!(reports.states("a"), rejected);
    assert!(a.err.contains("no space left"), "{a:?}");
    let b = reports.until("b", TaskState::Rejected).await;
    assert_eq!(reports.states("b"), rejected);
    assert!(b.err.contains("image not found"), "{b:?}");
    assert_eq!(fake.ops("a"), [FakeOp::Prepare]);
    assert_eq!(reports.settle().await, 0, "a rejected task is not retried");
}

#[tokio::test(start_paused = true)]
async fn a_start_error_fails_the_task() {
    let fake = FakeExecutor::with_default(FakeBehavior {
        start_error: Some("exec format error".into()),
        ..Default::default()
    });
    let (tasks, mut reports) = manager(&fake);
    tasks.set_assignments(vec![task("t1", "busybox")]);
    let failed = reports.until("t1", TaskState::Failed).await;
    assert!(failed.err.contains("exec format error"), "{failed:?}");
    let expected = [&TO_RUNNING[..4], &[TaskState::Failed]].concat();
    assert_eq!(reports.states("t1"), expected);
}

#[tokio::test(start_paused = true)]
async fn a_task_without_an_image_is_rejected() {
    let fake = FakeExecutor::new();
    let (tasks, mut reports) = manager(&fake);
    let mut bad = task("t1", "");
    bad.spec = None;
    tasks.set_assignments(vec![bad]);
    let rejected = reports.until("t1", TaskState::Rejected).await;
    assert!(rejected.err.contains("invalid task spec"), "{rejected:?}");
    assert_eq!(reports.states("t1"), [TaskState::Rejected]);
}

#[tokio::test(start_paused = true)]
async fn desired_shutdown_stops_a_running_task() {
    let fake = FakeExecutor::new();
    let (tasks, mut reports) = manager(&fake);
    let t1 = task("t1", "busybox");
    tasks.set_assignments(vec![t1.clone()]);
    reports.until("t1", TaskState::Running).await;
    tasks.update_assignments(vec![with_desired(t1, TaskState::Shutdown)], vec![]);
    reports.until("t1", TaskState::Shutdown).await;
    assert_eq!(reports.states("t1"), then(&[TaskState::Shutdown]));
    let ops = fake.ops("t1");
    assert_eq!(ops.last(), Some(&FakeOp::Shutdown(DEFAULT_STOP_GRACE)));
    assert!(
        !ops.contains(&FakeOp::Remove),
        "still assigned: not removed yet"
    );
    let stopped = ExitStatus::code(STOPPED_EXIT_CODE);
    assert_eq!(fake.state("t1"), Some(FakeState::Exited(stopped)));
}

#[tokio::test(start_paused = true)]
async fn a_task_with_an_address_gets_its_stop_signal_once_the_proxies_drained_it() {
    let fake = FakeExecutor::with_default(FakeBehavior {
        address: "10.231.0.5".into(),
        ..Default::default()
    });
    fake.set_image("no-network", FakeBehavior::default());
    let (tasks, mut reports) = manager(&fake);
    let (t1, t2) = (task("t1", "busybox"), task("t2", "no-network"));
    tasks.set_assignments(vec![t1.clone(), t2.clone()]);
    assert_eq!(
        reports.until("t1", TaskState::Running).await.address,
        "10.231.0.5"
    );
    reports.until("t2", TaskState::Running).await;
    let asked = tokio::time::Instant::now();
    tasks.update_assignments(
        vec![
            with_desired(t1, TaskState::Shutdown),
            with_desired(t2, TaskState::Shutdown),
        ],
        vec![],
    );
    // Without an address the stop signal goes at once.
    reports.until("t2", TaskState::Shutdown).await;
    assert_eq!(asked.elapsed(), Duration::ZERO);
    assert!(
        !fake
            .ops("t1")
            .contains(&FakeOp::Shutdown(DEFAULT_STOP_GRACE))
    );
    reports.until("t1", TaskState::Shutdown).await;
    assert_eq!(asked.elapsed(), runner::DRAIN_DELAY);
    assert_eq!(
        fake.ops("t1").last(),
        Some(&FakeOp::Shutdown(DEFAULT_STOP_GRACE))
    );
}

#[tokio::test(start_paused = true)]
async fn the_stop_grace_period_is_configurable() {
    let fake = FakeExecutor::new();
    let grace = Duration::from_secs(3);
    let config = TaskManagerConfig { stop_grace: grace };
    let (tasks, rx) = TaskManager::with_config(Arc::new(fake.clone()), config);
    let mut reports = Reports::new(rx);
    tasks.set_assignments(vec![task("t1", "busybox")]);
    reports.until("t1", TaskState::Running).await;
    tasks.set_assignments(vec![with_desired(task("t1", "busybox"), TaskState::Remove)]);
    reports.until("t1", TaskState::Shutdown).await;
    assert_eq!(fake.ops("t1").last(), Some(&FakeOp::Shutdown(grace)));
}

#[tokio::test(start_paused = true)]
async fn the_task_spec_stop_grace_period_wins_over_the_node_default() {
    let fake = FakeExecutor::new();
    let (tasks, mut reports) = manager(&fake);
    let mut spec_task = task("t1", "busybox");
    if let Some(container) = spec_task.spec.as_mut().and_then(|s| s.container.as_mut()) {
        container.stop_grace_period_ms = 1500;
    }
    tasks.set_assignments(vec![spec_task.clone()]);
    reports.until("t1", TaskState::Running).await;
    tasks.set_assignments(vec![with_desired(spec_task, TaskState::Remove)]);
    reports.until("t1", TaskState::Shutdown).await;
    assert_eq!(
        fake.ops("t1").last(),
        Some(&FakeOp::Shutdown(Duration::from_millis(1500)))
    );
}

#[tokio::test(start_paused = true)]
async fn desired_shutdown_during_a_long_prepare_abandons_it() {
    let fake = FakeExecutor::with_default(FakeBehavior {
        prepare_delay: Duration::from_secs(300),
        ..Default::default()
    });
    let (tasks, mut reports) = manager(&fake);
    tasks.set_assignments(vec![task("t1", "busybox")]);
    reports.until("t1", TaskState::Preparing).await;
    tasks.update_assignments(
        vec![with_desired(task("t1", "busybox"), TaskState::Shutdown)],
        vec![],
    );
    reports.until("t1", TaskState::Shutdown).await;
    let expected = [
        TaskState::Accepted,
        TaskState::Preparing,
        TaskState::Shutdown,
    ];
    assert_eq!(reports.states("t1"), expected);
    assert_eq!(
        fake.ops("t1"),
        [FakeOp::Prepare, FakeOp::Shutdown(DEFAULT_STOP_GRACE)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_graceful_stop_falls_back_to_a_kill() {
    let fake = FakeExecutor::with_default(FakeBehavior {
        shutdown_error: Some("signal refused".into()),
        ..Default::default()
    });
    let (tasks, mut reports) = manager(&fake);
    tasks.set_assignments(vec![task("t1", "busybox")]);
    reports.until("t1", TaskState::Running).await;
    tasks.set_assignments(vec![with_desired(
        task("t1", "busybox"),
        TaskState::Shutdown,
    )]);
    reports.until("t1", TaskState::Shutdown).await;
    let ops = fake.ops("t1");
    assert_eq!(
        ops[ops.len() - 2..],
        [FakeOp::Shutdown(DEFAULT_STOP_GRACE), FakeOp::Terminate]
    );
    let killed = ExitStatus::code(rswarm_agent_runtime::fake::KILLED_EXIT_CODE);
    assert_eq!(fake.state("t1"), Some(FakeState::Exited(killed)));
}
