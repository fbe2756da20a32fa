use super::*;
use rswarm_proto::api::{ContainerSpec, Meta, TaskSpec, TaskStatus};

/// A task of slot `slot` on `node`, created at `created`, desired running unless it
/// ended, reporting `state` with `err`.
fn task(id: &str, slot: u64, node: &str, created: u64, state: TaskState, err: &str) -> Task {
    let ended = matches!(
        state,
        TaskState::Failed | TaskState::Rejected | TaskState::Shutdown | TaskState::Complete
    );
    Task {
        id: id.into(),
        meta: Some(Meta {
            created_at: created,
            ..Default::default()
        }),
        slot,
        node_id: node.into(),
        desired_state: if ended {
            TaskState::Shutdown.into()
        } else {
            TaskState::Running.into()
        },
        status: Some(TaskStatus {
            state: state.into(),
            timestamp: created,
            err: err.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A task spec running `image`.
pub(super) fn image_spec(image: &str) -> TaskSpec {
    TaskSpec {
        container: Some(ContainerSpec {
            image: image.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A service spec updated to `image`, one task at a time, each watched for
/// `monitor_ms`.
pub(super) fn update_to(image: &str, monitor_ms: u64) -> ServiceSpec {
    ServiceSpec {
        task: Some(image_spec(image)),
        update_config: Some(rswarm_proto::api::UpdateConfig {
            parallelism: 1,
            delay_ms: 0,
            monitor_ms,
        }),
        ..Default::default()
    }
}

fn running(id: &str, slot: u64) -> Task {
    task(id, slot, "n1", 10, TaskState::Running, "")
}

#[test]
fn replicated_converges_when_every_slot_runs() {
    let tasks = [running("a", 1), running("b", 2), running("c", 3)];
    let assessment = assess(Expect::Replicated(3), &tasks, None, None);
    assert_eq!(assessment.verdict, Verdict::Converged);
    assert_eq!(assessment.running(), 3);
    let lines: Vec<String> = assessment
        .lines
        .iter()
        .map(|l| format!("{}: {}", l.label, l.text))
        .collect();
    assert_eq!(lines, ["1/3: running", "2/3: running", "3/3: running"]);
}

#[test]
fn a_missing_or_starting_slot_is_in_progress() {
    let tasks = [
        running("a", 1),
        task(
            "b",
            2,
            "",
            10,
            TaskState::Pending,
            "no suitable node (2 nodes not available for new tasks)",
        ),
    ];
    let assessment = assess(Expect::Replicated(3), &tasks, None, None);
    assert_eq!(assessment.verdict, Verdict::InProgress);
    assert_eq!(assessment.running(), 1);
    assert_eq!(
        assessment.lines[1].text,
        "pending: no suitable node (2 nodes not available for new tasks)"
    );
    assert_eq!(assessment.lines[2].text, "new");
}

#[test]
fn zero_replicas_converge_at_once() {
    assert_eq!(
        assess(Expect::Replicated(0), &[], None, None).verdict,
        Verdict::Converged
    );
}

#[test]
fn the_newest_live_task_is_the_current_one() {
    // Slot 1 failed once and was replaced; its new task runs.
    let tasks = [
        task("old", 1, "n1", 10, TaskState::Failed, "exit code 1"),
        task("new", 1, "n1", 20, TaskState::Running, ""),
    ];
    let assessment = assess(Expect::Replicated(1), &tasks, None, None);
    assert_eq!(assessment.verdict, Verdict::Converged);
    assert_eq!(
        assessment.failures,
        [Failure {
            task_id: "old".into(),
            label: "1/1".into(),
            state: "failed",
            error: "exit code 1".into(),
        }]
    );
}

#[test]
fn a_history_task_that_runs_does_not_count() {
    // The old task still reports running but is desired shut down; its successor
    // has not started.
    let mut old = running("old", 1);
    old.desired_state = TaskState::Shutdown.into();
    let tasks = [old, task("new", 1, "", 20, TaskState::Pending, "")];
    let assessment = assess(Expect::Replicated(1), &tasks, None, None);
    assert_eq!(assessment.verdict, Verdict::InProgress);
    assert_eq!(assessment.lines[0].text, "pending");
}

#[test]
fn a_scale_down_not_carried_out_yet_is_in_progress() {
    let tasks = [
        running("a", 1),
        task("b", 2, "n1", 10, TaskState::Starting, ""),
    ];
    assert_eq!(
        assess(Expect::Replicated(1), &tasks, None, None).verdict,
        Verdict::InProgress
    );
    // Once the managers stopped slot 2, its task is history.
    let mut stopped = tasks[1].clone();
    stopped.desired_state = TaskState::Shutdown.into();
    assert_eq!(
        assess(
            Expect::Replicated(1),
            &[tasks[0].clone(), stopped],
            None,
            None
        )
        .verdict,
        Verdict::Converged
    );
}

#[test]
fn slots_left_by_a_scale_down_are_shown_by_their_place() {
    // A scale down kept slots 2 and 3; slot 1's task was stopped.
    let mut gone = running("a", 1);
    gone.desired_state = TaskState::Shutdown.into();
    let tasks = [gone, running("b", 2), running("c", 3)];
    let assessment = assess(Expect::Replicated(2), &tasks, None, None);
    assert_eq!(assessment.verdict, Verdict::Converged);
    let labels: Vec<&str> = assessment.lines.iter().map(|l| l.label.as_str()).collect();
    assert_eq!(labels, ["1/2", "2/2"]);
    // Scaling back up to 3 waits for a task in the free slot 1.
    let assessment = assess(Expect::Replicated(3), &tasks, None, None);
    assert_eq!(assessment.verdict, Verdict::InProgress);
    let texts: Vec<&str> = assessment.lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(
        texts,
        ["new", "running", "running"],
        "slot 1's old task is history"
    );
    let running: Vec<bool> = assessment.lines.iter().map(|l| l.running).collect();
    assert_eq!(running, [false, true, true]);
}

#[test]
fn repeated_failures_give_up() {
    let tasks = [
        task("f1", 2, "n1", 10, TaskState::Failed, "exit code 1"),
        task("f2", 2, "n1", 20, TaskState::Rejected, "image not found"),
        task("f3", 2, "n1", 30, TaskState::Failed, "exit code 2"),
        task("now", 2, "n1", 40, TaskState::Starting, ""),
        running("a", 1),
    ];
    let assessment = assess(Expect::Replicated(2), &tasks, None, None);
    assert_eq!(assessment.verdict, Verdict::Failing(vec!["2/2".into()]));
    let failed: Vec<(&str, &str, &str)> = assessment
        .failures
        .iter()
        .map(|f| (f.task_id.as_str(), f.state, f.error.as_str()))
        .collect();
    assert_eq!(
        failed,
        [
            ("f3", "failed", "exit code 2"),
            ("f2", "rejected", "image not found"),
            ("f1", "failed", "exit code 1"),
        ]
    );
    // Two failures are not yet enough.
    let assessment = assess(Expect::Replicated(2), &tasks[1..], None, None);
    assert_eq!(assessment.verdict, Verdict::InProgress);
}

#[test]
fn global_converges_when_every_live_task_runs() {
    let tasks = [
        task("a", 0, "n1", 10, TaskState::Running, ""),
        task("b", 0, "n2", 10, TaskState::Running, ""),
        // A drained node's task, shut down: not part of the rollout.
        task("c", 0, "n3", 10, TaskState::Shutdown, ""),
    ];
    let assessment = assess(Expect::Global, &tasks, None, None);
    assert_eq!(assessment.verdict, Verdict::Converged);
    let labels: Vec<&str> = assessment.lines.iter().map(|l| l.label.as_str()).collect();
    assert_eq!(labels, ["n1", "n2"]);

    let mut starting = tasks.clone();
    starting[1] = task("b", 0, "n2", 10, TaskState::Preparing, "");
    assert_eq!(
        assess(Expect::Global, &starting, None, None).verdict,
        Verdict::InProgress
    );
}

#[test]
fn global_without_tasks_needs_an_eligible_node_count() {
    assert_eq!(
        assess(Expect::Global, &[], None, None).verdict,
        Verdict::InProgress
    );
    assert_eq!(
        assess(Expect::Global, &[], Some(2), None).verdict,
        Verdict::InProgress
    );
    assert_eq!(
        assess(Expect::Global, &[], Some(0), None).verdict,
        Verdict::NoEligibleNode
    );
}

#[test]
fn global_failures_count_per_node() {
    let tasks: Vec<Task> = (0..3)
        .map(|i| {
            task(
                &format!("f{i}"),
                0,
                "n1",
                i,
                TaskState::Failed,
                "exit code 1",
            )
        })
        .chain([task("ok", 0, "n2", 10, TaskState::Running, "")])
        .collect();
    assert_eq!(
        assess(Expect::Global, &tasks, None, None).verdict,
        Verdict::Failing(vec!["n1".into()])
    );
}

#[test]
fn a_slot_its_restart_policy_finished_with_shows_its_last_task() {
    let mut done = task("done", 1, "n1", 10, TaskState::Failed, "exit code 3");
    done.desired_state = TaskState::Complete.into();
    let assessment = assess(Expect::Replicated(1), &[done], None, None);
    assert_eq!(assessment.lines[0].text, "failed: exit code 3");
    assert!(!assessment.lines[0].running);
}

#[test]
fn an_update_converges_when_every_slot_runs_a_task_of_the_new_spec() {
    let on = |mut t: Task, image: &str| {
        t.spec = Some(image_spec(image));
        t
    };
    let spec = update_to("web:2", 1_000);
    // The running tasks below reported at 10.
    let held = BTreeMap::new();
    let target = Target {
        spec: &spec,
        now_ms: 1_010,
        held: &held,
    };
    // Slot 1 updated, slot 2 still on the old spec, and an old failure in slot 2's
    // history that belongs to the spec replaced.
    let mut tasks = vec![on(running("a2", 1), "web:2"), on(running("b1", 2), "web:1")];
    for i in 0..FAILURE_LIMIT {
        tasks.push(on(
            task(
                &format!("f{i}"),
                2,
                "n1",
                1,
                TaskState::Failed,
                "exit code 1",
            ),
            "web:1",
        ));
    }
    let assessment = assess(Expect::Replicated(2), &tasks, None, Some(target));
    assert_eq!(assessment.verdict, Verdict::InProgress);
    assert_eq!(assessment.running(), 1);
    assert_eq!(
        assessment.lines[1].text,
        "running (previous spec, to be replaced)"
    );
    assert!(assessment.failures.is_empty());
    tasks[1] = on(running("b2", 2), "web:2");
    let assessment = assess(Expect::Replicated(2), &tasks, None, Some(target));
    assert_eq!(assessment.verdict, Verdict::Converged);
    // Until a new task has run for the monitor period, it does not count.
    let early = Target {
        now_ms: 510,
        ..target
    };
    let assessment = assess(Expect::Replicated(2), &tasks, None, Some(early));
    assert_eq!(assessment.verdict, Verdict::InProgress);
    assert_eq!(
        assessment.lines[0].text,
        "running (watched 0.5s more before it counts)"
    );
    // New failures count again.
    for i in 0..FAILURE_LIMIT {
        tasks.push(on(
            task(
                &format!("g{i}"),
                1,
                "n1",
                20,
                TaskState::Failed,
                "exit code 2",
            ),
            "web:2",
        ));
    }
    let assessment = assess(Expect::Replicated(2), &tasks, None, Some(target));
    assert_eq!(assessment.verdict, Verdict::Failing(vec!["1/2".into()]));
}

#[test]
fn a_global_update_does_not_wait_for_nodes_the_managers_do_not_update() {
    let on = |id: &str, node: &str, image: &str| {
        let mut t = task(id, 0, node, 1, TaskState::Running, "");
        t.spec = Some(image_spec(image));
        t
    };
    let spec = update_to("web:2", 0);
    // n1 updated; n2 paused and n3 disconnected still run the previous spec.
    let tasks = vec![
        on("a", "n1", "web:2"),
        on("b", "n2", "web:1"),
        on("c", "n3", "web:1"),
    ];
    let mut held = BTreeMap::new();
    held.insert("n2".to_string(), "paused".to_string());
    let target = Target {
        spec: &spec,
        now_ms: 1_000,
        held: &held,
    };
    let assessment = assess(Expect::Global, &tasks, None, Some(target));
    // n3 is not held: its task is still to be replaced.
    assert_eq!(assessment.verdict, Verdict::InProgress);
    assert_eq!(
        assessment.lines[1].text,
        "running (previous spec, kept while the node is paused: replaced once it is active and ready)"
    );
    assert!(assessment.lines[1].held && !assessment.lines[1].running);
    assert_eq!(
        assessment.lines[2].text,
        "running (previous spec, to be replaced)"
    );
    held.insert("n3".to_string(), "disconnected".to_string());
    let target = Target {
        spec: &spec,
        now_ms: 1_000,
        held: &held,
    };
    let assessment = assess(Expect::Global, &tasks, None, Some(target));
    assert_eq!(assessment.verdict, Verdict::Converged);
    let labels: Vec<&str> = assessment.held().map(|l| l.label.as_str()).collect();
    assert_eq!(labels, ["n2", "n3"]);
    // Only the running tasks of the new spec count as running.
    assert_eq!(assessment.running(), 1);
    // A replicated service's task on a paused node is replaced elsewhere: never held.
    let mut replicated = tasks.clone();
    for (slot, t) in replicated.iter_mut().enumerate() {
        t.slot = slot as u64 + 1;
    }
    let assessment = assess(Expect::Replicated(3), &replicated, None, Some(target));
    assert_eq!(assessment.verdict, Verdict::InProgress);
    assert_eq!(assessment.held().count(), 0);
}
