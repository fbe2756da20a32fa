//! Table tests for a global service.

use rswarm_proto::api::{NodeAvailability, NodeRole, NodeState, RestartCondition, TaskState};

use super::testkit::*;
use super::*;

const SHUTDOWN: i32 = TaskState::Shutdown as i32;

#[test]
fn one_task_per_ready_active_node() {
    let nodes = vec![
        ready("n1"),
        ready("n2"),
        node("joining", NodeState::Unknown, NodeAvailability::Active),
        node("down", NodeState::Down, NodeAvailability::Active),
        node("paused", NodeState::Ready, NodeAvailability::Pause),
        node("drained", NodeState::Ready, NodeAvailability::Drain),
    ];
    let mut sim = Sim::new(global(any_policy(), &[]), nodes);
    let actions = sim.step(1_000);
    assert_eq!(live_nodes(&sim.tasks), ["n1", "n2"]);
    for t in &actions.create {
        assert_eq!(t.slot, 0);
        assert_eq!(t.desired_state, TaskState::Running as i32);
        assert_eq!(observed(t), TaskState::New as i32);
    }
}

#[test]
fn follows_nodes_joining_and_leaving() {
    let mut sim = Sim::new(global(any_policy(), &[]), vec![ready("n1")]);
    sim.step(0);
    let on_n1 = sim.live(0, "n1").id.clone();
    sim.report(&on_n1, TaskState::Running, 50, 0);

    sim.nodes.push(ready("n2"));
    assert_eq!(sim.step(100).create.len(), 1);
    assert_eq!(live_nodes(&sim.tasks), ["n1", "n2"]);

    // n1 is removed from the cluster: its task is stopped, and dropped once ended.
    sim.nodes.retain(|n| n.id != "n1");
    let left = sim.step(200);
    assert_eq!(updates(&left), [(on_n1.clone(), SHUTDOWN)].into());
    assert!(left.create.is_empty() && left.remove.is_empty());
    sim.report(&on_n1, TaskState::Orphaned, 250, 0);
    assert_eq!(sim.step(300).remove, [on_n1]);
    assert_eq!(live_nodes(&sim.tasks), ["n2"]);
}

#[test]
fn a_down_node_loses_its_task_until_it_is_back() {
    let mut sim = Sim::new(global(any_policy(), &[]), vec![ready("n1"), ready("n2")]);
    sim.step(0);
    let on_n1 = sim.live(0, "n1").id.clone();
    sim.report(&on_n1, TaskState::Running, 50, 0);
    sim.set_node("n1", NodeState::Down, NodeAvailability::Active);
    let down = sim.step(100);
    assert_eq!(updates(&down), [(on_n1.clone(), SHUTDOWN)].into());
    assert!(down.create.is_empty(), "no task elsewhere: one per node");
    // Back, but not yet ready: still nothing.
    sim.set_node("n1", NodeState::Unknown, NodeAvailability::Active);
    assert!(sim.step(200).is_empty());
    sim.set_node("n1", NodeState::Ready, NodeAvailability::Active);
    let back = sim.step(300);
    assert_eq!(back.create.len(), 1);
    assert_eq!(back.create[0].node_id, "n1");
    assert_eq!(back.wake_at, None, "no restart delay");
}

#[test]
fn drained_nodes_are_emptied_and_paused_ones_keep_their_task() {
    let mut sim = Sim::new(global(any_policy(), &[]), vec![ready("n1"), ready("n2")]);
    sim.step(0);
    let (on_n1, on_n2) = (sim.live(0, "n1").id.clone(), sim.live(0, "n2").id.clone());
    sim.report(&on_n1, TaskState::Running, 50, 0);
    sim.report(&on_n2, TaskState::Running, 50, 0);
    sim.set_node("n1", NodeState::Ready, NodeAvailability::Drain);
    sim.set_node("n2", NodeState::Ready, NodeAvailability::Pause);
    let actions = sim.step(100);
    assert_eq!(updates(&actions), [(on_n1, SHUTDOWN)].into());
    assert!(actions.create.is_empty());
    assert_eq!(live_nodes(&sim.tasks), ["n2"]);

    // The paused node's task crashes: no new task there while paused.
    sim.report(&on_n2, TaskState::Failed, 200, 1);
    let due = sim.step(200).wake_at.expect("a restart is due later");
    let crashed = sim.step(due);
    assert_eq!(updates(&crashed), [(on_n2, SHUTDOWN)].into());
    assert!(crashed.create.is_empty());
    assert!(sim.step(due + 10_000).is_empty());

    // Active again: both nodes get their task back.
    sim.set_node("n1", NodeState::Ready, NodeAvailability::Active);
    sim.set_node("n2", NodeState::Ready, NodeAvailability::Active);
    assert_eq!(sim.step(due + 20_000).create.len(), 2);
    assert_eq!(live_nodes(&sim.tasks), ["n1", "n2"]);
}

#[test]
fn constraints_choose_the_nodes() {
    let mut eu = ready("eu1");
    if let Some(spec) = eu.spec.as_mut() {
        spec.labels.insert("zone".into(), "eu".into());
    }
    let mut manager = ready("m1");
    manager.role = NodeRole::Manager as i32;
    let nodes = vec![eu.clone(), ready("us1"), manager];
    let mut sim = Sim::new(
        global(any_policy(), &["node.labels.zone==eu"]),
        nodes.clone(),
    );
    sim.step(0);
    assert_eq!(live_nodes(&sim.tasks), ["eu1"]);

    let mut sim = Sim::new(global(any_policy(), &["node.role!=manager"]), nodes);
    sim.step(0);
    assert_eq!(live_nodes(&sim.tasks), ["eu1", "us1"]);

    // The label is removed: the node no longer fits and its task is stopped.
    let mut sim = Sim::new(global(any_policy(), &["node.labels.zone==eu"]), vec![eu]);
    sim.step(0);
    let id = sim.live(0, "eu1").id.clone();
    if let Some(spec) = sim.nodes[0].spec.as_mut() {
        spec.labels.clear();
    }
    assert_eq!(updates(&sim.step(100)), [(id, SHUTDOWN)].into());

    // A constraint that does not parse fits no node.
    let mut sim = Sim::new(
        global(any_policy(), &["node.colour==red"]),
        vec![ready("n1")],
    );
    assert!(sim.step(0).is_empty());
}

#[test]
fn crashes_restart_on_the_same_node_with_back_off() {
    let mut sim = Sim::new(global(any_policy(), &[]), vec![ready("n1")]);
    sim.step(0);
    let mut delays = Vec::new();
    for _ in 0..4 {
        let task = sim.live(0, "n1");
        let (id, crashed) = (task.id.clone(), created_at(task) + 50);
        sim.report(&id, TaskState::Failed, crashed, 137);
        let due = sim.step(crashed).wake_at.expect("a wake-up");
        delays.push(due - crashed);
        let restart = sim.step(due);
        assert_eq!(restart.create.len(), 1);
        assert_eq!(restart.create[0].node_id, "n1");
    }
    assert_eq!(delays, [100, 200, 400, 800]);
}

#[test]
fn a_finished_node_task_is_not_replaced() {
    let mut sim = Sim::new(
        global(policy(RestartCondition::OnFailure, 0, 0, 0), &[]),
        vec![ready("n1")],
    );
    sim.step(0);
    let id = sim.live(0, "n1").id.clone();
    sim.report(&id, TaskState::Complete, 10, 0);
    let done = sim.step(10);
    assert_eq!(updates(&done), [(id, TaskState::Complete as i32)].into());
    assert!(sim.step(60_000).is_empty());
    assert!(live_nodes(&sim.tasks).is_empty());
}

#[test]
fn history_is_kept_per_node() {
    let mut tasks: Vec<Task> = Vec::new();
    for n in ["n1", "n2"] {
        tasks.extend((0..7).map(|i| {
            task(
                &format!("{n}-{i}"),
                0,
                n,
                TaskState::Shutdown,
                TaskState::Failed,
                10 + i,
            )
        }));
        tasks.push(running(&format!("{n}-live"), 0, n, 100));
    }
    // A task of a replicated past (slot set) is stopped and dropped at once.
    tasks.push(task(
        "stray",
        3,
        "n1",
        TaskState::Running,
        TaskState::Complete,
        5,
    ));
    let actions = reconcile(
        &global(any_policy(), &[]),
        &tasks,
        &[ready("n1"), ready("n2")],
        1_000,
    );
    let mut removed = actions.remove.clone();
    removed.sort();
    assert_eq!(removed, ["n1-0", "n1-1", "n2-0", "n2-1", "stray"]);
    assert!(actions.create.is_empty() && actions.update.is_empty());
}
