use rswarm_proto::api::{Node, NodeAvailability, NodeRole, NodeState, PortProtocol, Service, Task};

use super::*;
use crate::scheduler::fixtures::*;

/// The snapshot entry of `node` with `existing` tasks counted against it.
fn info(node: Node, services: &[Service], existing: &[Task]) -> NodeInfo {
    let id = node.id.clone();
    let snapshot = Snapshot::new([&node], services, existing);
    snapshot
        .node(&id)
        .cloned()
        .expect("the node is in its snapshot")
}

fn bare(node: Node) -> NodeInfo {
    info(node, &[], &[])
}

#[test]
fn ready_filter() {
    use NodeAvailability::*;
    use NodeState::*;
    let cases = [
        (Ready, Active, true),
        (Ready, Pause, false),
        (Ready, Drain, false),
        (Down, Active, false),
        (Unknown, Active, false),
        (Disconnected, Active, false),
    ];
    let t = task("t", "s");
    for (state, availability, expected) in cases {
        let node = with_availability(in_state(node("n"), state), availability);
        assert_eq!(
            ReadyFilter.check(&bare(node), &t),
            expected,
            "{state:?} {availability:?}"
        );
    }
    let mut no_status = node("n");
    no_status.status = None;
    assert!(!ReadyFilter.check(&bare(no_status), &t));
    let mut no_spec = node("n");
    no_spec.spec = None;
    assert!(
        ReadyFilter.check(&bare(no_spec), &t),
        "no spec means ACTIVE"
    );
    assert_eq!(ReadyFilter.explain(1), "1 node not available for new tasks");
    assert_eq!(
        ReadyFilter.explain(2),
        "2 nodes not available for new tasks"
    );
}

#[test]
fn constraint_filter() {
    let eu = bare(labelled(node("n1"), "zone", "eu"));
    let mut manager = node("n2");
    manager.role = NodeRole::Manager.into();
    let manager = bare(manager);
    let t = task("t", "s");
    let cases = [
        ("node.labels.zone==eu", &eu, true),
        ("node.labels.zone==EU", &eu, true),
        ("node.labels.zone==us", &eu, false),
        ("node.labels.zone==eu", &manager, false),
        ("node.labels.zone!=eu", &manager, true),
        ("node.role==manager", &manager, true),
        ("node.role!=manager", &manager, false),
        ("node.role==worker", &eu, true),
        ("node.hostname==n1", &eu, true),
        ("node.id!=n1", &eu, false),
    ];
    for (expr, node, expected) in cases {
        let filter = ConstraintFilter {
            constraint: parse_constraint(expr).unwrap(),
        };
        assert_eq!(filter.check(node, &t), expected, "{expr} on {}", node.id());
    }
    let filter = ConstraintFilter {
        constraint: parse_constraint("node.labels.zone == eu").unwrap(),
    };
    assert_eq!(
        filter.explain(1),
        "1 node fails constraint node.labels.zone==eu"
    );
    assert_eq!(
        filter.explain(3),
        "3 nodes fail constraint node.labels.zone==eu"
    );
}

#[test]
fn resource_filters() {
    // 4 CPUs and 8 GiB, of which 3 CPUs and 6 GiB are reserved.
    let existing = [running_on(
        reserving(task("old", "s"), 3 * CPU, 6 * GIB),
        "n",
    )];
    let loaded = info(node("n"), &[], &existing);
    assert_eq!(loaded.available_nano_cpus(), CPU);
    assert_eq!(loaded.available_memory_bytes(), 2 * GIB);
    let cases = [
        (0, 0, true, true),
        (CPU, 2 * GIB, true, true),
        (CPU + 1, 2 * GIB + 1, false, false),
        (CPU / 2, 3 * GIB, true, false),
        (2 * CPU, GIB, false, true),
    ];
    for (cpus, memory, cpu_fits, memory_fits) in cases {
        let t = reserving(task("t", "s"), cpus, memory);
        assert_eq!(CpuFilter.check(&loaded, &t), cpu_fits, "{cpus} CPUs");
        assert_eq!(
            MemoryFilter.check(&loaded, &t),
            memory_fits,
            "{memory} bytes"
        );
    }
    // An overcommitted node has nothing left, rather than wrapping around.
    let existing = [running_on(
        reserving(task("big", "s"), 5 * CPU, 9 * GIB),
        "n",
    )];
    let full = info(node("n"), &[], &existing);
    assert_eq!(full.available_nano_cpus(), 0);
    assert!(!CpuFilter.check(&full, &reserving(task("t", "s"), 1, 0)));
    assert!(!MemoryFilter.check(&full, &reserving(task("t", "s"), 0, 1)));
    assert_eq!(CpuFilter.explain(1), "1 node has insufficient CPU");
    assert_eq!(CpuFilter.explain(2), "2 nodes have insufficient CPU");
    assert_eq!(MemoryFilter.explain(1), "1 node has insufficient memory");
    assert_eq!(MemoryFilter.explain(4), "4 nodes have insufficient memory");
}

#[test]
fn host_port_filter() {
    let services = [service("web", &[(8080, PortProtocol::Tcp)])];
    let existing = [running_on(task("old", "web"), "n")];
    let node = info(node("n"), &services, &existing);
    let port = |port, protocol: PortProtocol| HostPort {
        protocol: protocol as i32,
        port,
    };
    let t = task("t", "other");
    let cases = [
        (vec![port(8080, PortProtocol::Tcp)], false),
        (vec![port(8080, PortProtocol::Udp)], true),
        (vec![port(9090, PortProtocol::Tcp)], true),
        (
            vec![port(9090, PortProtocol::Tcp), port(8080, PortProtocol::Tcp)],
            false,
        ),
        (vec![], true),
    ];
    for (ports, expected) in cases {
        let filter = HostPortFilter {
            ports: ports.clone(),
        };
        assert_eq!(filter.check(&node, &t), expected, "{ports:?}");
    }
    let one = HostPortFilter {
        ports: vec![port(8080, PortProtocol::Tcp)],
    };
    assert_eq!(
        one.explain(1),
        "1 node has a conflicting host-mode port (8080/tcp)"
    );
    let two = HostPortFilter {
        ports: vec![port(53, PortProtocol::Udp), port(8080, PortProtocol::Tcp)],
    };
    assert_eq!(
        two.explain(2),
        "2 nodes have a conflicting host-mode port (53/udp, 8080/tcp)"
    );
}

#[test]
fn max_replicas_filter() {
    let existing = [
        running_on(task("a", "s1"), "n"),
        running_on(task("b", "s1"), "n"),
        running_on(task("c", "s2"), "n"),
    ];
    let node = info(node("n"), &[], &existing);
    let cases = [
        (2, "s1", false),
        (3, "s1", true),
        (1, "s2", false),
        (2, "s2", true),
        (1, "s3", true),
    ];
    for (max, service_id, expected) in cases {
        let filter = MaxReplicasFilter { max };
        assert_eq!(
            filter.check(&node, &task("t", service_id)),
            expected,
            "{max} of {service_id}"
        );
    }
    let filter = MaxReplicasFilter { max: 3 };
    assert_eq!(
        filter.explain(1),
        "1 node reached the max replicas per node (3)"
    );
    assert_eq!(
        filter.explain(5),
        "5 nodes reached the max replicas per node (3)"
    );
}

fn names(pipeline: &Pipeline) -> Vec<&'static str> {
    pipeline.filters().iter().map(|f| f.name()).collect()
}

#[test]
fn pipeline_has_only_the_filters_that_can_fail() {
    let snapshot = Snapshot::new([], &[service("web", &[(80, PortProtocol::Tcp)])], []);
    let bare = Pipeline::for_task(&snapshot, &task("t", "other")).unwrap();
    assert_eq!(names(&bare), ["ready"]);

    let full = at_most_per_node(
        constrained(
            reserving(task("t", "web"), CPU, GIB),
            &["node.labels.zone==eu", "node.role!=manager"],
        ),
        2,
    );
    let pipeline = Pipeline::for_task(&snapshot, &full).unwrap();
    assert_eq!(
        names(&pipeline),
        [
            "ready",
            "constraint",
            "constraint",
            "cpu",
            "memory",
            "host-port",
            "max-replicas"
        ]
    );

    let bad = constrained(task("t", "web"), &["node.labels.zone==eu", "zone=eu"]);
    let err = Pipeline::for_task(&snapshot, &bad).err().expect("refused");
    assert!(
        err.to_string()
            .starts_with("invalid constraint \"zone=eu\""),
        "{err}"
    );
}

#[test]
fn pipeline_explains_with_the_first_failing_filter_per_node() {
    let nodes = [
        in_state(labelled(node("down"), "zone", "eu"), NodeState::Down),
        // Drained and in the wrong zone: charged to readiness only.
        with_availability(
            labelled(node("drained"), "zone", "us"),
            NodeAvailability::Drain,
        ),
        labelled(node("us"), "zone", "us"),
        sized(labelled(node("small"), "zone", "eu"), 4 * CPU, GIB),
    ];
    let snapshot = Snapshot::new(&nodes, [], []);
    let t = constrained(
        reserving(task("t", "s"), CPU, 2 * GIB),
        &["node.labels.zone==eu"],
    );
    let pipeline = Pipeline::for_task(&snapshot, &t).unwrap();
    assert_eq!(
        pipeline.explain(snapshot.nodes(), &t),
        "no suitable node (2 nodes not available for new tasks, 1 node fails constraint \
         node.labels.zone==eu, 1 node has insufficient memory)"
    );
    let empty = Snapshot::default();
    assert_eq!(
        pipeline.explain(empty.nodes(), &t),
        "no suitable node (the cluster has no nodes)"
    );
}
