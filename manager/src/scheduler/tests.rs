use std::collections::{BTreeMap, HashMap};

use rswarm_proto::api::{NodeAvailability, NodeState, PortProtocol, Task, TaskState};

use super::fixtures::*;
use super::*;
use crate::store::{Store, StoreAction};

/// Tasks per node id in `plan`.
fn per_node(plan: &Plan) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for a in &plan.assignments {
        *counts.entry(a.node_id.as_str()).or_default() += 1;
    }
    counts
}

fn by_id(tasks: &[Task]) -> HashMap<String, Task> {
    tasks.iter().map(|t| (t.id.clone(), t.clone())).collect()
}

#[test]
fn counted_tasks() {
    let on = |desired: TaskState, observed: TaskState| {
        let mut t = running_on(task("t", "s"), "n");
        t.desired_state = desired.into();
        t.status.get_or_insert_default().state = observed.into();
        t
    };
    use TaskState::*;
    assert!(counts_against_node(&on(Running, Running)));
    assert!(counts_against_node(&on(Running, Assigned)));
    assert!(counts_against_node(&on(Ready, Preparing)));
    assert!(!counts_against_node(&on(Shutdown, Running)));
    assert!(!counts_against_node(&on(Remove, Running)));
    for terminal in [Complete, Shutdown, Failed, Rejected, Remove, Orphaned] {
        assert!(!counts_against_node(&on(Running, terminal)), "{terminal:?}");
    }
    assert!(!counts_against_node(&task("t", "s")), "no node yet");
}

#[test]
fn snapshot_indexes_the_counted_tasks() {
    let store = Store::new();
    let mut finished = running_on(reserving(task("done", "web"), CPU, GIB), "n1");
    finished.status.get_or_insert_default().state = TaskState::Complete.into();
    store
        .apply(
            1,
            &[
                StoreAction::CreateNode(node("n1")),
                StoreAction::CreateNode(node("n2")),
                StoreAction::CreateService(service("web", &[(80, PortProtocol::Tcp)])),
                StoreAction::CreateTask(running_on(reserving(task("a", "web"), CPU, GIB), "n1")),
                StoreAction::CreateTask(running_on(reserving(task("b", "db"), 2 * CPU, 0), "n1")),
                StoreAction::CreateTask(finished),
                StoreAction::CreateTask(running_on(task("lost", "web"), "gone")),
                StoreAction::CreateTask(task("pending", "web")),
            ],
        )
        .unwrap();
    let snapshot = store.view(Snapshot::from_store);
    let ids: Vec<&str> = snapshot.nodes().iter().map(NodeInfo::id).collect();
    assert_eq!(ids, ["n1", "n2"]);
    let n1 = snapshot.node("n1").unwrap();
    assert_eq!(n1.task_count(), 2);
    assert_eq!(n1.service_task_count("web"), 1);
    assert_eq!(n1.service_task_count("db"), 1);
    assert_eq!(n1.reserved_nano_cpus(), 3 * CPU);
    assert_eq!(n1.reserved_memory_bytes(), GIB);
    let port = HostPort {
        protocol: PortProtocol::Tcp as i32,
        port: 80,
    };
    assert!(n1.host_port_in_use(port));
    let n2 = snapshot.node("n2").unwrap();
    assert_eq!(n2.task_count(), 0);
    assert!(!n2.host_port_in_use(port));
}

#[test]
fn thirty_tasks_on_three_nodes_spread_ten_each() {
    let snapshot = Snapshot::new(&[node("a"), node("b"), node("c")], [], []);
    let plan = schedule(&snapshot, &tasks("web", 30));
    assert!(plan.unplaced.is_empty());
    assert_eq!(
        per_node(&plan),
        BTreeMap::from([("a", 10), ("b", 10), ("c", 10)])
    );
    // Ties go to the smallest id, then round-robin.
    let first: Vec<&str> = plan.assignments[..4]
        .iter()
        .map(|a| a.node_id.as_str())
        .collect();
    assert_eq!(first, ["a", "b", "c", "a"]);
}

#[test]
fn uneven_load_is_evened_out() {
    // a runs 4 tasks of web, b runs 1 of web and 5 others, c runs nothing.
    let mut existing: Vec<Task> = (0..4)
        .map(|i| running_on(task(&format!("w{i}"), "web"), "a"))
        .collect();
    existing.push(running_on(task("w4", "web"), "b"));
    existing.extend((0..5).map(|i| running_on(task(&format!("o{i}"), "other"), "b")));
    let snapshot = Snapshot::new(&[node("a"), node("b"), node("c")], [], &existing);
    let plan = schedule(&snapshot, &tasks("web", 7));
    // Fewest of this service first, and between b and c, fewest overall: c.
    assert_eq!(per_node(&plan), BTreeMap::from([("b", 3), ("c", 4)]));
    // Now every node runs 4 of web; a and c also tie on tasks overall, a wins on id.
    let after = schedule(&snapshot, &tasks("web", 8));
    assert_eq!(after.assignments.last().unwrap().node_id, "a");
}

#[test]
fn constraints_always_hold() {
    let nodes = [
        labelled(node("a"), "zone", "eu"),
        labelled(node("b"), "zone", "us"),
        labelled(node("c"), "zone", "eu"),
        node("d"),
    ];
    let snapshot = Snapshot::new(&nodes, [], []);
    let pending: Vec<Task> = tasks("web", 9)
        .into_iter()
        .map(|t| constrained(t, &["node.labels.zone==eu"]))
        .collect();
    let plan = schedule(&snapshot, &pending);
    assert_eq!(per_node(&plan), BTreeMap::from([("a", 5), ("c", 4)]));

    let nowhere: Vec<Task> = tasks("db", 2)
        .into_iter()
        .map(|t| constrained(t, &["node.labels.zone==asia"]))
        .collect();
    let plan = schedule(&snapshot, &nowhere);
    assert!(plan.assignments.is_empty());
    assert_eq!(plan.unplaced.len(), 2);
    assert_eq!(
        plan.unplaced[1].reason,
        "no suitable node (4 nodes fail constraint node.labels.zone==asia)"
    );
}

#[test]
fn a_constraint_that_does_not_parse_places_nothing() {
    let snapshot = Snapshot::new(&[node("a")], [], []);
    let mut pending = vec![constrained(task("bad", "web"), &["zone=eu"])];
    pending.push(task("good", "other"));
    let plan = schedule(&snapshot, &pending);
    assert_eq!(plan.assignments.len(), 1);
    assert_eq!(plan.assignments[0].task_id, "good");
    assert_eq!(plan.unplaced[0].task_id, "bad");
    assert!(
        plan.unplaced[0]
            .reason
            .starts_with("invalid constraint \"zone=eu\": missing operator"),
        "{}",
        plan.unplaced[0].reason
    );
}

#[test]
fn resources_are_never_exceeded() {
    // a has room for 3 tasks of 1.25 CPU, b for none (it is busy), c for 2 (its memory).
    let nodes = [node("a"), node("b"), sized(node("c"), 8 * CPU, 2 * GIB)];
    let busy = [running_on(reserving(task("old", "db"), 3 * CPU, 0), "b")];
    let snapshot = Snapshot::new(&nodes, [], &busy);
    let pending: Vec<Task> = tasks("web", 10)
        .into_iter()
        .map(|t| reserving(t, CPU + CPU / 4, GIB))
        .collect();
    let plan = schedule(&snapshot, &pending);
    assert_eq!(per_node(&plan), BTreeMap::from([("a", 3), ("c", 2)]));
    assert_eq!(plan.unplaced.len(), 5);
    assert_eq!(
        plan.unplaced[0].reason,
        "no suitable node (2 nodes have insufficient CPU, 1 node has insufficient memory)"
    );
}

#[test]
fn host_ports_are_never_double_booked() {
    let services = [service("web", &[(8080, PortProtocol::Tcp)])];
    let existing = [running_on(task("old", "web"), "b")];
    let snapshot = Snapshot::new(&[node("a"), node("b"), node("c")], &services, &existing);
    let plan = schedule(&snapshot, &tasks("web", 4));
    assert_eq!(per_node(&plan), BTreeMap::from([("a", 1), ("c", 1)]));
    assert_eq!(plan.unplaced.len(), 2);
    assert_eq!(
        plan.unplaced[0].reason,
        "no suitable node (3 nodes have a conflicting host-mode port (8080/tcp))"
    );
}

#[test]
fn max_replicas_per_node_is_honoured() {
    let existing = [running_on(task("old", "web"), "a")];
    let snapshot = Snapshot::new(&[node("a"), node("b")], [], &existing);
    let pending: Vec<Task> = tasks("web", 5)
        .into_iter()
        .map(|t| at_most_per_node(t, 2))
        .collect();
    let plan = schedule(&snapshot, &pending);
    assert_eq!(per_node(&plan), BTreeMap::from([("a", 1), ("b", 2)]));
    assert_eq!(
        plan.unplaced[0].reason,
        "no suitable node (2 nodes reached the max replicas per node (2))"
    );
}

#[test]
fn unavailable_nodes_take_nothing() {
    let nodes = [
        in_state(node("down"), NodeState::Down),
        with_availability(node("paused"), NodeAvailability::Pause),
        with_availability(node("drained"), NodeAvailability::Drain),
        node("up"),
    ];
    let plan = schedule(&Snapshot::new(&nodes, [], []), &tasks("web", 3));
    assert_eq!(per_node(&plan), BTreeMap::from([("up", 3)]));
    let plan = schedule(&Snapshot::new(&nodes[..3], [], []), &tasks("web", 1));
    assert_eq!(
        plan.unplaced[0].reason,
        "no suitable node (3 nodes not available for new tasks)"
    );
    let plan = schedule(&Snapshot::default(), &tasks("web", 1));
    assert_eq!(
        plan.unplaced[0].reason,
        "no suitable node (the cluster has no nodes)"
    );
}

#[test]
fn tasks_naming_their_node_are_only_checked_there() {
    let snapshot = Snapshot::new(
        &[node("a"), node("b"), labelled(node("c"), "zone", "eu")],
        [],
        [],
    );
    let global = |id: &str, node_id: &str| {
        let mut t = constrained(task(id, "agent"), &["node.labels.zone!=eu"]);
        t.node_id = node_id.into();
        t
    };
    let pending = [
        global("ga", "a"),
        global("ga2", "a"),
        global("gc", "c"),
        global("gx", "x"),
    ];
    let plan = schedule(&snapshot, &pending);
    assert_eq!(per_node(&plan), BTreeMap::from([("a", 2)]));
    let reasons: Vec<&str> = plan.unplaced.iter().map(|u| u.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "no suitable node (1 node fails constraint node.labels.zone!=eu)",
            "no suitable node (node x is not in the cluster)",
        ]
    );
}

#[test]
fn a_recheck_after_a_drain_drops_that_nodes_assignments() {
    let nodes = [node("a"), node("b"), node("c")];
    let pending = tasks("web", 6);
    let plan = schedule(&Snapshot::new(&nodes, [], []), &pending);
    assert_eq!(plan.assignments.len(), 6);

    let unchanged = recheck(&Snapshot::new(&nodes, [], []), &plan, &by_id(&pending));
    assert_eq!(unchanged, plan);

    let drained = [
        node("a"),
        with_availability(node("b"), NodeAvailability::Drain),
        node("c"),
    ];
    let rechecked = recheck(&Snapshot::new(&drained, [], []), &plan, &by_id(&pending));
    assert_eq!(per_node(&rechecked), BTreeMap::from([("a", 2), ("c", 2)]));
    assert_eq!(rechecked.unplaced.len(), 2);
    for unplaced in &rechecked.unplaced {
        assert_eq!(
            unplaced.reason,
            "node b is no longer suitable (1 node not available for new tasks)"
        );
    }
}

#[test]
fn a_recheck_never_overcommits() {
    // The plan was made on an empty node; by commit time another task took 3 CPUs.
    let pending: Vec<Task> = tasks("web", 3)
        .into_iter()
        .map(|t| reserving(t, CPU, 0))
        .collect();
    let plan = schedule(&Snapshot::new(&[node("a")], [], []), &pending);
    assert_eq!(plan.assignments.len(), 3);
    let newer = [running_on(reserving(task("late", "db"), 2 * CPU, 0), "a")];
    let mut map = by_id(&pending);
    let rechecked = recheck(&Snapshot::new(&[node("a")], [], &newer), &plan, &map);
    assert_eq!(rechecked.assignments, plan.assignments[..2]);
    assert_eq!(
        rechecked.unplaced[0].reason,
        "node a is no longer suitable (1 node has insufficient CPU)"
    );
    // Tasks gone from the pending set and nodes gone from the cluster are dropped.
    map.remove("web-0");
    let rechecked = recheck(&Snapshot::new(&[node("b")], [], []), &plan, &map);
    assert!(rechecked.assignments.is_empty());
    let reasons: Vec<&str> = rechecked
        .unplaced
        .iter()
        .map(|u| u.reason.as_str())
        .collect();
    assert_eq!(
        reasons,
        [
            "the task is no longer pending",
            "node a is no longer in the cluster",
            "node a is no longer in the cluster",
        ]
    );
}

#[test]
fn a_task_holds_the_host_ports_it_was_made_for_while_an_update_moves_them() {
    // The service moved its host port from 80 to 81; "old" still runs on n1 and
    // holds 80, and a new task may take 81 there; "legacy" (made before tasks
    // recorded their endpoint) holds the service's 81 on n2.
    let web = service("web", &[(81, PortProtocol::Tcp)]);
    let mut old = running_on(task("old", "web"), "n1");
    old.endpoint = service("x", &[(80, PortProtocol::Tcp)])
        .spec
        .unwrap()
        .endpoint;
    let legacy = running_on(task("legacy", "web"), "n2");
    let snapshot = Snapshot::new(&[node("n1"), node("n2")], [&web], [&old, &legacy]);
    let port = |port| HostPort {
        protocol: PortProtocol::Tcp as i32,
        port,
    };
    let n1 = snapshot.node("n1").unwrap();
    assert!(n1.host_port_in_use(port(80)));
    assert!(!n1.host_port_in_use(port(81)));
    let n2 = snapshot.node("n2").unwrap();
    assert!(n2.host_port_in_use(port(81)));
    let mut new = task("new", "web");
    new.endpoint = web.spec.as_ref().unwrap().endpoint.clone();
    let plan = schedule(&snapshot, &[new]);
    assert!(plan.unplaced.is_empty());
    assert_eq!(plan.assignments[0].node_id, "n1");
}
