//! Table tests for a replicated service.

use rswarm_proto::api::{NodeAvailability, NodeState, RestartCondition, TaskState};

use super::testkit::*;
use super::*;

const RUNNING: i32 = TaskState::Running as i32;
const SHUTDOWN: i32 = TaskState::Shutdown as i32;

#[test]
fn scale_up_creates_one_new_task_per_missing_slot() {
    let service = replicated(3, any_policy());
    let tasks = vec![running("a", 2, "n1", 10)];
    let actions = reconcile(&service, &tasks, &[ready("n1")], 1_000);
    assert!(actions.update.is_empty() && actions.remove.is_empty());
    assert_eq!(actions.wake_at, None);
    let mut slots: Vec<u64> = actions.create.iter().map(|t| t.slot).collect();
    slots.sort_unstable();
    assert_eq!(slots, [1, 3]);
    for t in &actions.create {
        assert_eq!(t.service_id, "svc1");
        assert_eq!(t.service_name, "web");
        assert_eq!(t.node_id, "", "placement is the scheduler's job");
        assert_eq!(t.desired_state, RUNNING);
        assert_eq!(observed(t), TaskState::New as i32);
        assert_eq!(t.spec, service.spec.as_ref().and_then(|s| s.task.clone()));
        let meta = t.meta.expect("meta");
        assert_eq!((meta.created_at, meta.updated_at), (1_000, 1_000));
        assert_eq!(t.id.len(), 25);
    }
    assert_ne!(actions.create[0].id, actions.create[1].id);
}

#[test]
fn scale_down_stops_the_highest_slots() {
    let service = replicated(2, any_policy());
    let tasks: Vec<Task> = (1..=5)
        .map(|s| running(&format!("t{s}"), s, "n1", 10))
        .collect();
    let actions = reconcile(&service, &tasks, &[ready("n1")], 1_000);
    assert!(actions.create.is_empty() && actions.remove.is_empty());
    let expected = [("t3", SHUTDOWN), ("t4", SHUTDOWN), ("t5", SHUTDOWN)];
    assert_eq!(
        updates(&actions),
        expected.map(|(i, s)| (i.to_string(), s)).into()
    );
    for t in &actions.update {
        assert_eq!(
            observed(t),
            TaskState::Running as i32,
            "observed state untouched"
        );
        assert_eq!(t.meta.map(|m| (m.version, m.updated_at)), Some((7, 1_000)));
    }
}

#[test]
fn slots_keep_their_numbers_and_new_ones_take_the_lowest_free_numbers() {
    let tasks = vec![
        running("a", 1, "n1", 10),
        running("c", 3, "n1", 10),
        running("e", 5, "n1", 10),
    ];
    let three = reconcile(&replicated(3, any_policy()), &tasks, &[ready("n1")], 1_000);
    assert!(three.is_empty(), "three slots in use: {three:?}");
    let five = reconcile(&replicated(5, any_policy()), &tasks, &[ready("n1")], 1_000);
    assert!(five.update.is_empty());
    let mut created: Vec<u64> = five.create.iter().map(|t| t.slot).collect();
    created.sort_unstable();
    assert_eq!(created, [2, 4]);
}

#[test]
fn a_scale_down_keeps_the_running_tasks_over_those_still_on_their_way() {
    // Slot 1 lost its node; its replacement waits for a node (pending). Scaling to
    // one must not stop both running tasks and keep the pending one.
    let tasks = vec![
        task("gone", 1, "n3", TaskState::Shutdown, TaskState::Running, 10),
        task("repl", 1, "", TaskState::Running, TaskState::Pending, 20),
        running("b", 2, "n1", 10),
        running("c", 3, "n2", 10),
    ];
    let nodes = [ready("n1"), ready("n2")];
    let actions = reconcile(&replicated(1, any_policy()), &tasks, &nodes, 1_000);
    assert!(actions.create.is_empty());
    assert_eq!(updates(&actions), [("c".to_string(), SHUTDOWN)].into());
    // The pending task never reached a node: it goes at once.
    assert_eq!(actions.remove, ["repl"]);
    let mut after = tasks.clone();
    apply_to(&mut after, &actions);
    assert_eq!(live_slots(&after), [2]);
    let again = reconcile(&replicated(1, any_policy()), &after, &nodes, 1_000);
    assert!(
        again.create.is_empty() && again.update.is_empty(),
        "{again:?}"
    );
    // Scaling back up fills the free numbers from the lowest.
    let up = reconcile(&replicated(3, any_policy()), &after, &nodes, 2_000);
    let mut created: Vec<u64> = up.create.iter().map(|t| t.slot).collect();
    created.sort_unstable();
    assert_eq!(created, [1, 3]);
}

#[test]
fn a_scale_down_stops_a_task_on_a_lost_node_before_a_running_one() {
    let tasks = vec![running("a", 1, "n3", 10), running("b", 2, "n1", 10)];
    let nodes = [
        node("n3", NodeState::Down, NodeAvailability::Active),
        ready("n1"),
    ];
    let actions = reconcile(&replicated(1, any_policy()), &tasks, &nodes, 1_000);
    assert!(actions.create.is_empty());
    assert_eq!(updates(&actions), [("a".to_string(), SHUTDOWN)].into());
}

#[test]
fn two_live_tasks_in_a_slot_keep_the_healthy_one() {
    let service = replicated(1, any_policy());
    let tasks = vec![
        running("old", 1, "n1", 10),
        task("new", 1, "", TaskState::Running, TaskState::Pending, 20),
    ];
    let actions = reconcile(&service, &tasks, &[ready("n1")], 1_000);
    assert_eq!(updates(&actions), [("new".to_string(), SHUTDOWN)].into());
    assert!(actions.create.is_empty());
}

#[test]
fn tasks_on_lost_or_drained_nodes_are_replaced_at_once() {
    let cases = [
        (
            "node down",
            node("n1", NodeState::Down, NodeAvailability::Active),
            TaskState::Running,
        ),
        (
            "node drained",
            node("n1", NodeState::Ready, NodeAvailability::Drain),
            TaskState::Running,
        ),
        ("node removed", ready("other"), TaskState::Running),
        ("orphaned", ready("n1"), TaskState::Orphaned),
        (
            "down, task starting",
            node("n1", NodeState::Down, NodeAvailability::Active),
            TaskState::Preparing,
        ),
    ];
    for (name, n1, state) in cases {
        let service = replicated(1, policy(RestartCondition::Any, 5_000, 0, 0));
        let tasks = vec![task("a", 1, "n1", TaskState::Running, state, 10)];
        let actions = reconcile(&service, &tasks, &[n1], 1_000);
        assert_eq!(
            updates(&actions),
            [("a".to_string(), SHUTDOWN)].into(),
            "{name}"
        );
        assert_eq!(
            observed(&actions.update[0]),
            state as i32,
            "{name}: status untouched"
        );
        assert_eq!(actions.create.len(), 1, "{name}");
        assert_eq!(actions.create[0].slot, 1, "{name}");
        assert_eq!(actions.wake_at, None, "{name}: no restart delay");
    }
}

#[test]
fn tasks_on_paused_disconnected_or_unassigned_nodes_stay() {
    let cases = [
        node("n1", NodeState::Ready, NodeAvailability::Pause),
        node("n1", NodeState::Disconnected, NodeAvailability::Active),
        node("n1", NodeState::Unknown, NodeAvailability::Active),
    ];
    for n1 in cases {
        let tasks = vec![
            running("a", 1, "n1", 10),
            task("b", 2, "", TaskState::Running, TaskState::Pending, 10),
        ];
        let actions = reconcile(
            &replicated(2, any_policy()),
            &tasks,
            std::slice::from_ref(&n1),
            1_000,
        );
        assert!(actions.is_empty(), "{n1:?}: {actions:?}");
    }
}

#[test]
fn history_keeps_the_five_newest_ended_tasks_per_slot() {
    let mut tasks: Vec<Task> = (0..8)
        .map(|i| {
            task(
                &format!("h{i}"),
                1,
                "n1",
                TaskState::Shutdown,
                TaskState::Failed,
                10 + i,
            )
        })
        .collect();
    // Still running on its worker: kept until the worker confirms the shutdown.
    tasks.push(task(
        "stopping",
        1,
        "n1",
        TaskState::Shutdown,
        TaskState::Running,
        5,
    ));
    // Never assigned to a worker: removable.
    tasks.push(task(
        "unassigned",
        1,
        "",
        TaskState::Shutdown,
        TaskState::Pending,
        4,
    ));
    tasks.push(running("live", 1, "n1", 100));
    tasks.push(task(
        "other",
        2,
        "n1",
        TaskState::Shutdown,
        TaskState::Complete,
        1,
    ));
    tasks.push(running("live2", 2, "n1", 100));
    let actions = reconcile(&replicated(2, any_policy()), &tasks, &[ready("n1")], 1_000);
    let mut removed = actions.remove.clone();
    removed.sort();
    assert_eq!(removed, ["h0", "h1", "h2", "unassigned"]);
    assert!(actions.create.is_empty() && actions.update.is_empty());
}

#[test]
fn history_keeps_enough_tasks_to_count_max_attempts() {
    let tasks: Vec<Task> = (0..9)
        .map(|i| {
            task(
                &format!("h{i}"),
                1,
                "n1",
                TaskState::Shutdown,
                TaskState::Failed,
                10 + i,
            )
        })
        .collect();
    let service = replicated(1, policy(RestartCondition::Any, 0, 7, 0));
    let actions = reconcile(&service, &tasks, &[], 1_000);
    let mut removed = actions.remove.clone();
    removed.sort();
    assert_eq!(removed, ["h0", "h1"]);
}

#[test]
fn store_actions_and_apply() {
    let tasks = vec![running("a", 1, "n1", 10), running("b", 2, "n1", 10)];
    let mut tasks = tasks;
    tasks.push(task(
        "old",
        2,
        "n1",
        TaskState::Shutdown,
        TaskState::Complete,
        1,
    ));
    let actions = Actions {
        create: vec![running("c", 3, "", 20)],
        update: vec![task(
            "b",
            2,
            "n1",
            TaskState::Shutdown,
            TaskState::Running,
            10,
        )],
        remove: vec!["old".into()],
        wake_at: None,
    };
    apply_to(&mut tasks, &actions);
    let ids: Vec<(&str, i32)> = tasks
        .iter()
        .map(|t| (t.id.as_str(), t.desired_state))
        .collect();
    assert_eq!(ids, [("a", RUNNING), ("b", SHUTDOWN), ("c", RUNNING)]);
    let batch = actions.clone().into_store_actions();
    assert_eq!(
        batch,
        [
            StoreAction::UpdateTask(actions.update[0].clone()),
            StoreAction::CreateTask(actions.create[0].clone()),
            StoreAction::RemoveTask { id: "old".into() },
        ]
    );
}

#[test]
fn a_service_without_mode_winds_down() {
    let mut service = replicated(2, any_policy());
    if let Some(spec) = service.spec.as_mut() {
        spec.mode = None;
    }
    let tasks = vec![running("a", 1, "n1", 10)];
    let actions = reconcile(&service, &tasks, &[ready("n1")], 1_000);
    assert_eq!(updates(&actions), [("a".to_string(), SHUTDOWN)].into());
    assert!(actions.create.is_empty());
}

#[test]
fn the_batch_applies_to_the_store_and_settles_it() {
    use crate::store::Store;
    let store = Store::new();
    let service = replicated(4, any_policy());
    let nodes = [
        ready("n1"),
        node("n2", NodeState::Down, NodeAvailability::Active),
    ];
    let mut setup: Vec<StoreAction> = nodes.iter().cloned().map(StoreAction::CreateNode).collect();
    setup.push(StoreAction::CreateService(service.clone()));
    setup.push(StoreAction::CreateTask(running("on-n2", 1, "n2", 10)));
    for slot in 4..=5 {
        setup.push(StoreAction::CreateTask(running(
            &format!("extra{slot}"),
            slot,
            "n1",
            10,
        )));
    }
    store.apply(1, &setup).expect("setup applies");
    let read = |store: &Store| {
        store.view(|tx| {
            let tasks: Vec<Task> = tx.tasks_of_service("svc1").cloned().collect();
            let nodes: Vec<Node> = tx.nodes().cloned().collect();
            (tasks, nodes)
        })
    };
    let (tasks, nodes) = read(&store);
    let batch = reconcile(&service, &tasks, &nodes, 1_000).into_store_actions();
    assert_eq!(
        batch.len(),
        3,
        "the lost task stopped and replaced, slot 2 created: {batch:?}"
    );
    store.apply(2, &batch).expect("the batch applies");
    let (tasks, nodes) = read(&store);
    assert_eq!(live_slots(&tasks), [1, 2, 4, 5]);
    assert!(reconcile(&service, &tasks, &nodes, 1_000).is_empty());
}
