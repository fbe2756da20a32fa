//! Builders and a small simulated cluster for the orchestrator's tests.

use std::collections::BTreeMap;

use rswarm_proto::api::{
    ContainerSpec, GlobalService, Meta, Node, NodeAvailability, NodeSpec, NodeState, NodeStatus,
    Placement, ReplicatedService, RestartCondition, RestartPolicy, Service, ServiceSpec, Task,
    TaskSpec, TaskState, TaskStatus, service_spec,
};

use super::{Actions, apply_to, is_live, reconcile};

/// A restart policy.
pub fn policy(
    condition: RestartCondition,
    delay_ms: u64,
    max_attempts: u64,
    window_ms: u64,
) -> RestartPolicy {
    RestartPolicy {
        condition: condition as i32,
        delay_ms,
        max_attempts,
        window_ms,
    }
}

fn service(mode: service_spec::Mode, policy: RestartPolicy, constraints: &[&str]) -> Service {
    Service {
        endpoint: None,
        id: "svc1".into(),
        meta: Some(Meta {
            version: 3,
            created_at: 1,
            updated_at: 1,
        }),
        spec: Some(ServiceSpec {
            name: "web".into(),
            task: Some(TaskSpec {
                container: Some(ContainerSpec {
                    image: "nginx:1".into(),
                    ..ContainerSpec::default()
                }),
                restart_policy: Some(policy),
                placement: Some(Placement {
                    constraints: constraints.iter().map(|c| c.to_string()).collect(),
                    max_replicas_per_node: 0,
                }),
                ..TaskSpec::default()
            }),
            mode: Some(mode),
            ..ServiceSpec::default()
        }),
    }
}

/// A replicated service of `replicas` tasks.
pub fn replicated(replicas: u64, policy: RestartPolicy) -> Service {
    service(
        service_spec::Mode::Replicated(ReplicatedService { replicas }),
        policy,
        &[],
    )
}

/// A global service.
pub fn global(policy: RestartPolicy, constraints: &[&str]) -> Service {
    service(
        service_spec::Mode::Global(GlobalService {}),
        policy,
        constraints,
    )
}

/// The default policy: restart always, 100 ms first back-off.
pub fn any_policy() -> RestartPolicy {
    policy(RestartCondition::Any, 0, 0, 0)
}

/// A node.
pub fn node(id: &str, state: NodeState, availability: NodeAvailability) -> Node {
    Node {
        id: id.into(),
        spec: Some(NodeSpec {
            availability: availability as i32,
            ..NodeSpec::default()
        }),
        status: Some(NodeStatus {
            state: state as i32,
            ..NodeStatus::default()
        }),
        ..Node::default()
    }
}

/// A ready, active node.
pub fn ready(id: &str) -> Node {
    node(id, NodeState::Ready, NodeAvailability::Active)
}

/// A task of service `svc1` as the store would hold it.
pub fn task(
    id: &str,
    slot: u64,
    node_id: &str,
    desired: TaskState,
    observed: TaskState,
    created: u64,
) -> Task {
    Task {
        id: id.into(),
        meta: Some(Meta {
            version: 7,
            created_at: created,
            updated_at: created,
        }),
        service_id: "svc1".into(),
        slot,
        node_id: node_id.into(),
        spec: replicated(1, any_policy()).spec.and_then(|s| s.task),
        desired_state: desired as i32,
        status: Some(TaskStatus {
            state: observed as i32,
            timestamp: created,
            ..TaskStatus::default()
        }),
        service_name: "web".into(),
        endpoint: None,
    }
}

/// A task desired and observed RUNNING.
pub fn running(id: &str, slot: u64, node_id: &str, created: u64) -> Task {
    task(
        id,
        slot,
        node_id,
        TaskState::Running,
        TaskState::Running,
        created,
    )
}

/// The live tasks' slots, sorted.
pub fn live_slots(tasks: &[Task]) -> Vec<u64> {
    let mut slots: Vec<u64> = tasks
        .iter()
        .filter(|t| is_live(t))
        .map(|t| t.slot)
        .collect();
    slots.sort_unstable();
    slots
}

/// The live tasks' nodes, sorted.
pub fn live_nodes(tasks: &[Task]) -> Vec<String> {
    let mut nodes: Vec<String> = tasks
        .iter()
        .filter(|t| is_live(t))
        .map(|t| t.node_id.clone())
        .collect();
    nodes.sort_unstable();
    nodes
}

/// Desired states of the updated tasks, by id.
pub fn updates(actions: &Actions) -> BTreeMap<String, i32> {
    actions
        .update
        .iter()
        .map(|t| (t.id.clone(), t.desired_state))
        .collect()
}

/// A service, its tasks and the nodes, reconciled the way the orchestrator loop does.
pub struct Sim {
    /// The service.
    pub service: Service,
    /// Its tasks.
    pub tasks: Vec<Task>,
    /// The cluster's nodes.
    pub nodes: Vec<Node>,
}

impl Sim {
    /// A cluster with no task yet.
    pub fn new(service: Service, nodes: Vec<Node>) -> Self {
        Self {
            service,
            tasks: Vec::new(),
            nodes,
        }
    }

    /// Reconciles once at `now`, applies the result, and checks that a second call
    /// has nothing left to do and that only desired states changed.
    pub fn step(&mut self, now: u64) -> Actions {
        let actions = reconcile(&self.service, &self.tasks, &self.nodes, now);
        for updated in &actions.update {
            let before = self
                .tasks
                .iter()
                .find(|t| t.id == updated.id)
                .expect("an update names an existing task");
            let mut same = updated.clone();
            same.desired_state = before.desired_state;
            same.meta = before.meta;
            assert_eq!(&same, before, "only the desired state may change");
            assert_eq!(
                updated.meta.map(|m| m.version),
                before.meta.map(|m| m.version)
            );
        }
        apply_to(&mut self.tasks, &actions);
        let again = reconcile(&self.service, &self.tasks, &self.nodes, now);
        assert!(again.is_empty(), "not idempotent at {now}: {again:?}");
        assert_eq!(
            again.wake_at, actions.wake_at,
            "wake_at changed when re-run"
        );
        actions
    }

    /// The live task of `slot` (replicated) or on `node_id` (global, slot 0).
    pub fn live(&self, slot: u64, node_id: &str) -> &Task {
        let mut live = self
            .tasks
            .iter()
            .filter(|t| is_live(t) && t.slot == slot && (slot != 0 || t.node_id == node_id));
        let task = live.next().expect("a live task");
        assert!(live.next().is_none(), "one live task per group");
        task
    }

    /// Reports an observed state for a task, as the dispatcher would write it.
    pub fn report(&mut self, id: &str, state: TaskState, at: u64, exit_code: i32) {
        let task = self
            .tasks
            .iter_mut()
            .find(|t| t.id == id)
            .expect("a known task");
        task.status = Some(TaskStatus {
            state: state as i32,
            timestamp: at,
            exit_code,
            ..TaskStatus::default()
        });
    }

    /// Sets a node's state and availability.
    pub fn set_node(&mut self, id: &str, state: NodeState, availability: NodeAvailability) {
        self.nodes.retain(|n| n.id != id);
        self.nodes.push(node(id, state, availability));
    }
}
