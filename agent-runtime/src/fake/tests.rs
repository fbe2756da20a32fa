use std::time::Duration;

use rswarm_proto::api::{ContainerSpec, Task, TaskSpec, TaskState, TaskStatus};
use tokio::time::Instant;

use super::*;

fn task(id: &str, image: &str) -> Task {
    Task {
        id: id.into(),
        spec: Some(TaskSpec {
            container: Some(ContainerSpec {
                image: image.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        desired_state: TaskState::Running as i32,
        ..Default::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_task_runs_for_its_time_then_exits_with_its_code() {
    let fake = FakeExecutor::with_default(FakeBehavior {
        run_for: Some(Duration::from_secs(5)),
        exit_code: 3,
        exit_reason: "boom".into(),
        ..Default::default()
    });
    let ctl = fake.controller(&task("t1", "busybox")).unwrap();
    ctl.prepare().await.unwrap();
    ctl.start().await.unwrap();
    assert_eq!(fake.running(), vec!["t1".to_string()]);
    let began = Instant::now();
    let status = ctl.wait().await.unwrap();
    assert_eq!(began.elapsed(), Duration::from_secs(5));
    assert_eq!(
        status,
        ExitStatus {
            code: 3,
            reason: "boom".into()
        }
    );
    // Waiting again returns the same exit at once.
    assert_eq!(ctl.wait().await.unwrap(), status);
    use FakeOp::*;
    assert_eq!(fake.ops("t1"), vec![Prepare, Start, Wait, Wait]);
}

#[tokio::test(start_paused = true)]
async fn every_operation_is_idempotent() {
    let fake = FakeExecutor::new();
    let ctl = fake.controller(&task("t1", "busybox")).unwrap();
    // Stopping and removing a task that never started succeeds.
    ctl.shutdown(Duration::from_secs(1)).await.unwrap();
    ctl.terminate().await.unwrap();
    ctl.prepare().await.unwrap();
    ctl.prepare().await.unwrap();
    assert_eq!(fake.state("t1"), Some(FakeState::Prepared));
    ctl.start().await.unwrap();
    ctl.start().await.unwrap();
    assert_eq!(fake.state("t1"), Some(FakeState::Running));
    ctl.shutdown(Duration::from_secs(1)).await.unwrap();
    ctl.shutdown(Duration::from_secs(1)).await.unwrap();
    let stopped = ExitStatus::code(STOPPED_EXIT_CODE);
    assert_eq!(fake.state("t1"), Some(FakeState::Exited(stopped.clone())));
    // Starting an exited process does not run it again.
    ctl.start().await.unwrap();
    assert!(fake.running().is_empty());
    ctl.remove().await.unwrap();
    ctl.remove().await.unwrap();
    assert_eq!(
        fake.state("t1"),
        Some(FakeState::Removed(Some(stopped.clone())))
    );
    assert_eq!(ctl.wait().await.unwrap(), stopped);
}

#[tokio::test(start_paused = true)]
async fn start_before_prepare_and_after_remove_fail() {
    let fake = FakeExecutor::new();
    let ctl = fake.controller(&task("t1", "busybox")).unwrap();
    assert!(matches!(ctl.start().await, Err(ExecError::Start(_))));
    ctl.remove().await.unwrap();
    assert!(matches!(ctl.prepare().await, Err(ExecError::Prepare(_))));
    assert!(matches!(ctl.start().await, Err(ExecError::Start(_))));
    assert!(matches!(ctl.wait().await, Err(ExecError::Wait(_))));
}

#[tokio::test(start_paused = true)]
async fn a_process_ignoring_the_stop_signal_is_killed_after_the_grace_period() {
    let fake = FakeExecutor::with_default(FakeBehavior {
        ignores_stop_signal: true,
        ..Default::default()
    });
    let ctl = fake.controller(&task("t1", "busybox")).unwrap();
    ctl.prepare().await.unwrap();
    ctl.start().await.unwrap();
    let began = Instant::now();
    ctl.shutdown(Duration::from_secs(10)).await.unwrap();
    assert_eq!(began.elapsed(), Duration::from_secs(10));
    assert_eq!(
        ctl.wait().await.unwrap(),
        ExitStatus::code(KILLED_EXIT_CODE)
    );
}

#[tokio::test(start_paused = true)]
async fn terminate_kills_at_once() {
    let fake = FakeExecutor::with_default(FakeBehavior {
        ignores_stop_signal: true,
        ..Default::default()
    });
    let ctl = fake.controller(&task("t1", "busybox")).unwrap();
    ctl.prepare().await.unwrap();
    ctl.start().await.unwrap();
    let began = Instant::now();
    ctl.terminate().await.unwrap();
    assert_eq!(began.elapsed(), Duration::ZERO);
    assert_eq!(
        ctl.wait().await.unwrap(),
        ExitStatus::code(KILLED_EXIT_CODE)
    );
}

#[tokio::test(start_paused = true)]
async fn tests_can_make_a_running_task_crash() {
    let fake = FakeExecutor::new();
    let ctl = fake.controller(&task("t1", "busybox")).unwrap();
    let oom = ExitStatus {
        code: 137,
        reason: "OOM killed (limit 64MiB)".into(),
    };
    assert!(!fake.exit("t1", oom.clone()), "not running yet");
    assert!(!fake.exit("unknown", oom.clone()));
    ctl.prepare().await.unwrap();
    ctl.start().await.unwrap();
    let waiter = tokio::spawn(async move { ctl.wait().await });
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(!waiter.is_finished(), "runs until stopped by default");
    assert!(fake.exit("t1", oom.clone()));
    assert_eq!(waiter.await.unwrap().unwrap(), oom);
}

#[tokio::test(start_paused = true)]
async fn knobs_are_chosen_per_image_with_a_default() {
    let fake = FakeExecutor::new();
    fake.set_image(
        "missing",
        FakeBehavior {
            image_missing: true,
            ..Default::default()
        },
    );
    fake.set_image(
        "broken",
        FakeBehavior {
            prepare_error: Some("no space".into()),
            ..Default::default()
        },
    );
    fake.set_image(
        "nostart",
        FakeBehavior {
            start_error: Some("exec format".into()),
            ..Default::default()
        },
    );

    let ctl = fake.controller(&task("a", "missing")).unwrap();
    let err = ctl.prepare().await.unwrap_err();
    assert!(matches!(&err, ExecError::ImageNotFound { image } if image == "missing"));
    let ctl = fake.controller(&task("b", "broken")).unwrap();
    let err = ctl.prepare().await.unwrap_err();
    assert!(matches!(&err, ExecError::Prepare(m) if m == "no space"));
    let ctl = fake.controller(&task("c", "nostart")).unwrap();
    ctl.prepare().await.unwrap();
    let err = ctl.start().await.unwrap_err();
    assert!(matches!(&err, ExecError::Start(m) if m == "exec format"));
    let ctl = fake.controller(&task("d", "busybox")).unwrap();
    ctl.prepare().await.unwrap();
    ctl.start().await.unwrap();
    assert_eq!(fake.running(), vec!["d".to_string()]);

    let no_image = Task {
        id: "e".into(),
        ..Default::default()
    };
    assert!(matches!(
        fake.controller(&no_image),
        Err(ExecError::InvalidSpec(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn prepare_takes_its_delay() {
    let delay = Duration::from_secs(3);
    let fake = FakeExecutor::with_default(FakeBehavior {
        prepare_delay: delay,
        ..Default::default()
    });
    let ctl = fake.controller(&task("t1", "busybox")).unwrap();
    let began = Instant::now();
    ctl.prepare().await.unwrap();
    assert_eq!(began.elapsed(), delay);
}

#[tokio::test(start_paused = true)]
async fn a_second_controller_attaches_to_the_same_container() {
    let fake = FakeExecutor::new();
    let first = fake.controller(&task("t1", "busybox")).unwrap();
    first.prepare().await.unwrap();
    first.start().await.unwrap();
    drop(first);

    let mut again = task("t1", "busybox");
    again.status = Some(TaskStatus {
        state: TaskState::Running as i32,
        ..Default::default()
    });
    let second = fake.controller(&again).unwrap();
    assert!(fake.exit("t1", ExitStatus::code(0)));
    assert_eq!(second.wait().await.unwrap(), ExitStatus::code(0));

    // A task reported started that this runtime never saw has no container.
    let mut stranger = task("t2", "busybox");
    stranger.status = again.status.clone();
    let ctl = fake.controller(&stranger).unwrap();
    assert_eq!(fake.state("t2"), Some(FakeState::Gone));
    assert!(matches!(ctl.wait().await, Err(ExecError::Wait(_))));
    ctl.remove().await.unwrap();
    assert_eq!(fake.state("t2"), Some(FakeState::Removed(None)));
}

#[tokio::test]
async fn logs_give_the_tail_then_follow_new_lines() {
    use futures::StreamExt;
    let fake = FakeExecutor::new();
    assert!(matches!(
        fake.logs("nope", LogOptions::default()),
        Err(ExecError::Logs(_))
    ));
    let ctl = fake.controller(&task("t1", "busybox")).unwrap();
    ctl.prepare().await.unwrap();
    ctl.start().await.unwrap();
    let mut follow = fake
        .logs(
            "t1",
            LogOptions {
                tail: None,
                follow: true,
            },
        )
        .unwrap();
    let first = follow.next().await.unwrap();
    assert_eq!(first.data, b"running image busybox");
    assert!(!first.stderr);
    assert!(fake.exit("t1", ExitStatus::code(4)));
    let last = follow.next().await.unwrap();
    assert_eq!(last.data, b"exited with code 4");
    assert!(last.stderr);
    let tail: Vec<LogLine> = fake
        .logs(
            "t1",
            LogOptions {
                tail: Some(1),
                follow: false,
            },
        )
        .unwrap()
        .collect()
        .await;
    assert_eq!(tail, vec![last]);
}
