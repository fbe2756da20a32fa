//! Builders of nodes, services and tasks for the scheduler's tests.

use rswarm_proto::api::{
    EndpointSpec, Node, NodeAvailability, NodeDescription, NodeRole, NodeSpec, NodeState,
    NodeStatus, Placement, PortConfig, PortProtocol, PublishMode, Resources, Service, ServiceSpec,
    Task, TaskSpec, TaskState, TaskStatus,
};

/// One CPU in nano CPUs.
pub const CPU: u64 = 1_000_000_000;
/// One GiB.
pub const GIB: u64 = 1 << 30;

/// A ready, active worker with 4 CPUs and 8 GiB.
pub fn node(id: &str) -> Node {
    Node {
        id: id.into(),
        role: NodeRole::Worker.into(),
        spec: Some(NodeSpec::default()),
        description: Some(NodeDescription {
            hostname: id.into(),
            nano_cpus: 4 * CPU,
            memory_bytes: 8 * GIB,
            ..Default::default()
        }),
        status: Some(NodeStatus {
            state: NodeState::Ready.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `node` in another state.
pub fn in_state(mut node: Node, state: NodeState) -> Node {
    node.status.get_or_insert_default().state = state.into();
    node
}

/// `node` with another availability.
pub fn with_availability(mut node: Node, availability: NodeAvailability) -> Node {
    node.spec.get_or_insert_default().availability = availability.into();
    node
}

/// `node` with a label.
pub fn labelled(mut node: Node, key: &str, value: &str) -> Node {
    node.spec
        .get_or_insert_default()
        .labels
        .insert(key.into(), value.into());
    node
}

/// `node` with another capacity.
pub fn sized(mut node: Node, nano_cpus: u64, memory_bytes: u64) -> Node {
    let description = node.description.get_or_insert_default();
    description.nano_cpus = nano_cpus;
    description.memory_bytes = memory_bytes;
    node
}

/// A service publishing `ports` in host mode.
pub fn service(id: &str, ports: &[(u32, PortProtocol)]) -> Service {
    Service {
        id: id.into(),
        spec: Some(ServiceSpec {
            name: id.into(),
            endpoint: Some(EndpointSpec {
                balance: Default::default(),
                mode: Default::default(),
                ports: ports
                    .iter()
                    .map(|&(port, protocol)| PortConfig {
                        proxy_protocol: Default::default(),
                        protocol: protocol.into(),
                        target_port: port,
                        published_port: port,
                        publish_mode: PublishMode::Host.into(),
                    })
                    .collect(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A pending task of `service_id`, not yet on a node.
pub fn task(id: &str, service_id: &str) -> Task {
    Task {
        id: id.into(),
        service_id: service_id.into(),
        spec: Some(TaskSpec::default()),
        desired_state: TaskState::Running.into(),
        status: Some(TaskStatus {
            state: TaskState::Pending.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `count` pending tasks of `service_id`, with ids `<service_id>-<n>`.
pub fn tasks(service_id: &str, count: usize) -> Vec<Task> {
    (0..count)
        .map(|n| task(&format!("{service_id}-{n}"), service_id))
        .collect()
}

/// `task` running on `node_id`.
pub fn running_on(mut task: Task, node_id: &str) -> Task {
    task.node_id = node_id.into();
    task.status.get_or_insert_default().state = TaskState::Running.into();
    task
}

/// `task` reserving CPU and memory.
pub fn reserving(mut task: Task, nano_cpus: u64, memory_bytes: u64) -> Task {
    let resources = task
        .spec
        .get_or_insert_default()
        .resources
        .get_or_insert_default();
    resources.reservations = Some(Resources {
        nano_cpus,
        memory_bytes,
        ..Default::default()
    });
    task
}

fn placement(task: &mut Task) -> &mut Placement {
    task.spec
        .get_or_insert_default()
        .placement
        .get_or_insert_default()
}

/// `task` with placement constraints.
pub fn constrained(mut task: Task, constraints: &[&str]) -> Task {
    placement(&mut task).constraints = constraints.iter().map(|c| c.to_string()).collect();
    task
}

/// `task` with `max_replicas_per_node`.
pub fn at_most_per_node(mut task: Task, max: u64) -> Task {
    placement(&mut task).max_replicas_per_node = max;
    task
}
