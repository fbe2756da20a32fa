//! Scheduler throughput on a simulated cluster: 1,000 nodes, 100,000 pending tasks
//! over 100 services with a mix of constraints, reservations, per-node limits and a
//! host-mode port. Run with
//! `cargo run --release -p rswarm-manager --example bench_scheduler`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rswarm_manager::scheduler::{Plan, Snapshot, recheck, schedule};
use rswarm_proto::api::{
    EndpointSpec, Node, NodeAvailability, NodeDescription, NodeSpec, NodeState, NodeStatus,
    Placement, PortConfig, PublishMode, ResourceRequirements, Resources, Service, ServiceSpec,
    Task, TaskSpec, TaskState, TaskStatus,
};

const NODES: usize = 1_000;
const SERVICES: usize = 100;
const TASKS_PER_SERVICE: usize = 1_000;
const RUNNING_PER_NODE: usize = 10;
const TARGET_PER_SECOND: f64 = 10_000.0;
const CPU: u64 = 1_000_000_000;
const MIB: u64 = 1 << 20;

fn node(i: usize) -> Node {
    // 2% drained and 1% down, like a cluster in the middle of maintenance.
    let availability = if i % 50 == 7 {
        NodeAvailability::Drain
    } else {
        NodeAvailability::Active
    };
    let state = if i % 100 == 13 {
        NodeState::Down
    } else {
        NodeState::Ready
    };
    Node {
        id: format!("node-{i:04}"),
        spec: Some(NodeSpec {
            availability: availability.into(),
            labels: HashMap::from([("zone".to_owned(), format!("z{}", i % 4))]),
            ..Default::default()
        }),
        description: Some(NodeDescription {
            hostname: format!("host-{i:04}"),
            nano_cpus: 16 * CPU,
            memory_bytes: 64 * 1024 * MIB,
            ..Default::default()
        }),
        status: Some(NodeStatus {
            state: state.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Every 4th service is pinned to a zone, every 3rd reserves resources, every 10th
/// allows 2 tasks per node, and the last publishes a host-mode port (so at most one
/// of its tasks per node: most stay pending, with an explanation).
fn service(i: usize) -> (Service, TaskSpec) {
    let constraints = if i.is_multiple_of(4) {
        vec![format!("node.labels.zone==z{}", (i / 4) % 4)]
    } else {
        Vec::new()
    };
    let reservations = i.is_multiple_of(3).then_some(Resources {
        nano_cpus: CPU / 20,
        memory_bytes: 64 * MIB,
        ..Default::default()
    });
    let spec = TaskSpec {
        resources: Some(ResourceRequirements {
            reservations,
            ..Default::default()
        }),
        placement: Some(Placement {
            constraints,
            max_replicas_per_node: if i % 10 == 5 { 2 } else { 0 },
        }),
        ..Default::default()
    };
    let ports = if i == SERVICES - 1 {
        vec![PortConfig {
            target_port: 80,
            published_port: 8080,
            publish_mode: PublishMode::Host.into(),
            ..Default::default()
        }]
    } else {
        Vec::new()
    };
    let service = Service {
        id: format!("svc-{i:03}"),
        spec: Some(ServiceSpec {
            name: format!("service-{i}"),
            task: Some(spec.clone()),
            endpoint: Some(EndpointSpec {
                ports,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    (service, spec)
}

fn task(id: String, service_id: &str, spec: &TaskSpec, node_id: &str, state: TaskState) -> Task {
    Task {
        id,
        service_id: service_id.to_owned(),
        node_id: node_id.to_owned(),
        spec: Some(spec.clone()),
        desired_state: TaskState::Running.into(),
        status: Some(TaskStatus {
            state: state.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(1e-9)
}

fn report(what: &str, plan: &Plan, elapsed: Duration) {
    let per_second = rate(plan.assignments.len() + plan.unplaced.len(), elapsed);
    println!(
        "{what}: {} placed, {} unplaced in {:.1} ms: {:.0} tasks/s, {:.1}x the {:.0}/s target",
        plan.assignments.len(),
        plan.unplaced.len(),
        elapsed.as_secs_f64() * 1e3,
        per_second,
        per_second / TARGET_PER_SECOND,
        TARGET_PER_SECOND,
    );
}

fn main() {
    let nodes: Vec<Node> = (0..NODES).map(node).collect();
    let (services, specs): (Vec<Service>, Vec<TaskSpec>) = (0..SERVICES).map(service).unzip();

    // Existing load: tasks of the unconstrained, port-free services on every node.
    let running: Vec<Task> = (0..NODES * RUNNING_PER_NODE)
        .map(|k| {
            let s = 1 + (k * 7) % (SERVICES - 2);
            let id = &services[s].id;
            task(
                format!("run-{k}"),
                id,
                &specs[s],
                &nodes[k % NODES].id,
                TaskState::Running,
            )
        })
        .collect();
    let pending: Vec<Task> = (0..SERVICES * TASKS_PER_SERVICE)
        .map(|k| {
            let s = k / TASKS_PER_SERVICE;
            let id = &services[s].id;
            task(
                format!("task-{k:06}"),
                id,
                &specs[s],
                "",
                TaskState::Pending,
            )
        })
        .collect();

    let start = Instant::now();
    let snapshot = Snapshot::new(&nodes, &services, &running);
    println!(
        "snapshot: {NODES} nodes, {} running tasks, built in {:.1} ms",
        running.len(),
        start.elapsed().as_secs_f64() * 1e3
    );

    let start = Instant::now();
    let plan = schedule(&snapshot, &pending);
    let elapsed = start.elapsed();
    report(
        &format!("schedule {} tasks of {SERVICES} services", pending.len()),
        &plan,
        elapsed,
    );
    if let Some(unplaced) = plan.unplaced.first() {
        println!("  e.g. {} pending: {}", unplaced.task_id, unplaced.reason);
    }

    let by_id: HashMap<String, Task> = pending.iter().map(|t| (t.id.clone(), t.clone())).collect();
    let start = Instant::now();
    let rechecked = recheck(&snapshot, &plan, &by_id);
    report("recheck of that plan", &rechecked, start.elapsed());

    // The worst case for grouping: every task its own service, so each costs a pass
    // over every node.
    let singles: Vec<Task> = (0..10_000)
        .map(|k| {
            let s = k % SERVICES;
            task(
                format!("single-{k}"),
                &format!("one-off-{k}"),
                &specs[s],
                "",
                TaskState::Pending,
            )
        })
        .collect();
    let start = Instant::now();
    let plan = schedule(&snapshot, &singles);
    report(
        "schedule 10000 tasks of 10000 one-task services",
        &plan,
        start.elapsed(),
    );
}
