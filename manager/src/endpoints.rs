//! The cluster's service endpoints as every node's proxy and DNS server need them:
//! each service's VIP, ports and balancing, and the tasks that can take traffic.
//!
//! [`table`] is a pure function of the store; the dispatcher streams it to every
//! node again after each change ([`stream`]).

use rswarm_proto::api::{
    EndpointSpec, EndpointTask, EndpointsMessage, NodeState, ServiceEndpoints, TaskSpec, TaskState,
};
use rswarm_proto::names::task_name;
use tokio::sync::mpsc;
use tonic::Status;

use crate::controlapi::RaftView;
use crate::dispatcher::LeaderWatch;
use crate::store::{Event, Object, ReadTx, Store, Watch};

/// Default time connections to a stopping task may still run (Docker's default
/// stop grace period).
const DEFAULT_GRACE_MS: u64 = 10_000;

/// The endpoint table: every service, sorted by name, with its running tasks that
/// have an address and are on a node that is not down, sorted by task name. A task
/// whose desired state is past RUNNING is listed as draining until it stops.
pub fn table(tx: &ReadTx<'_>) -> EndpointsMessage {
    let mut services: Vec<ServiceEndpoints> = tx
        .services()
        .map(|service| {
            let spec = service.spec.clone().unwrap_or_default();
            let grace = grace_ms(spec.task.as_ref());
            let mut tasks: Vec<EndpointTask> = tx
                .tasks_of_service(&service.id)
                .filter_map(|task| {
                    let status = task.status.as_ref()?;
                    if status.state != TaskState::Running as i32 || status.address.is_empty() {
                        return None;
                    }
                    let node = tx.node(&task.node_id)?;
                    if node
                        .status
                        .as_ref()
                        .is_some_and(|s| s.state == NodeState::Down as i32)
                    {
                        return None;
                    }
                    Some(EndpointTask {
                        task_id: task.id.clone(),
                        node_id: task.node_id.clone(),
                        address: status.address.clone(),
                        draining: task.desired_state > TaskState::Running as i32,
                        name: task_name(task),
                        // A task being replaced by an update drains with the
                        // grace period its worker stops it with: its own
                        // spec's (0: the service's).
                        stop_grace_period_ms: task
                            .spec
                            .as_ref()
                            .map_or(0, |spec| grace_ms(Some(spec))),
                        host_endpoint: task.endpoint.as_ref().map(|made_for| EndpointSpec {
                            ports: made_for
                                .ports
                                .iter()
                                .filter(|p| p.is_host_mode())
                                .cloned()
                                .collect(),
                            ..Default::default()
                        }),
                    })
                })
                .collect();
            tasks.sort_by(|a, b| a.name.cmp(&b.name).then(a.task_id.cmp(&b.task_id)));
            ServiceEndpoints {
                service_id: service.id.clone(),
                name: spec.name.clone(),
                virtual_ip: service
                    .endpoint
                    .as_ref()
                    .map(|e| e.virtual_ip.clone())
                    .unwrap_or_default(),
                spec: spec.endpoint.clone(),
                stop_grace_period_ms: grace,
                tasks,
            }
        })
        .collect();
    services.sort_by(|a, b| a.name.cmp(&b.name));
    EndpointsMessage { services }
}

/// The stop grace period a task of `spec` is stopped with.
fn grace_ms(spec: Option<&TaskSpec>) -> u64 {
    spec.and_then(|t| t.container.as_ref())
        .map(|c| c.stop_grace_period_ms)
        .filter(|ms| *ms > 0)
        .unwrap_or(DEFAULT_GRACE_MS)
}

/// Whether an event can change the table.
fn relevant(event: &Event) -> bool {
    match event {
        Event::Created(o) | Event::Updated(o) | Event::Removed(o) => {
            matches!(o, Object::Service(_) | Object::Task(_) | Object::Node(_))
        }
        Event::Reset => true,
        Event::Commit(_) => false,
    }
}

/// Streams the table into `out`: `initial` first, then the table again after every
/// batch that changed it, until the node disconnects, the watch ends or `raft`
/// shows another leader. Batches already queued are folded into one table, so a
/// burst of commits costs one computation.
pub async fn stream<R: RaftView>(
    store: Store,
    raft: std::sync::Arc<R>,
    initial: EndpointsMessage,
    watch: Watch,
    out: mpsc::Sender<Result<EndpointsMessage, Status>>,
) {
    let mut last = initial.clone();
    if out.send(Ok(initial)).await.is_err() {
        return;
    }
    let mut dirty = false;
    let mut events = LeaderWatch::new(watch);
    loop {
        let Some(event) = events.next(raft.as_ref(), &out).await else {
            return;
        };
        dirty |= relevant(&event);
        if !matches!(event, Event::Commit(_) | Event::Reset) || !dirty {
            continue;
        }
        // Whatever else is already queued is in the store already (a batch is
        // applied before its events are published): one table covers it all.
        while events.try_next().is_some() {}
        dirty = false;
        let next = store.view(table);
        if next == last {
            continue;
        }
        last = next.clone();
        if out.send(Ok(next)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use rswarm_proto::api::{
        ContainerSpec, EndpointSpec, Node, NodeStatus, PortConfig, PublishMode, Service,
        ServiceEndpoint, ServiceSpec, Task, TaskSpec, TaskStatus,
    };

    use super::*;
    use crate::store::StoreAction;

    fn node(id: &str, state: NodeState) -> Node {
        Node {
            id: id.into(),
            status: Some(NodeStatus {
                state: state as i32,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn task(id: &str, node: &str, slot: u64, state: TaskState, address: &str) -> Task {
        Task {
            id: id.into(),
            service_id: "s1".into(),
            service_name: "web".into(),
            slot,
            node_id: node.into(),
            desired_state: TaskState::Running as i32,
            status: Some(TaskStatus {
                state: state as i32,
                address: address.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn store() -> Store {
        let store = Store::new();
        let service = Service {
            id: "s1".into(),
            spec: Some(ServiceSpec {
                name: "web".into(),
                task: Some(TaskSpec {
                    container: Some(ContainerSpec {
                        image: "web".into(),
                        stop_grace_period_ms: 2_500,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                endpoint: Some(EndpointSpec {
                    ports: vec![PortConfig {
                        target_port: 80,
                        published_port: 8080,
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            }),
            endpoint: Some(ServiceEndpoint {
                virtual_ip: "10.231.255.2".into(),
            }),
            ..Default::default()
        };
        let mut stopping = task("t3", "n1", 3, TaskState::Running, "10.231.0.4");
        stopping.desired_state = TaskState::Shutdown as i32;
        // Made from an earlier spec, which gave no grace period: the default.
        stopping.spec = Some(TaskSpec {
            container: Some(ContainerSpec {
                image: "web:old".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let mut current = task("t2", "n1", 2, TaskState::Running, "10.231.0.3");
        current.spec = service.spec.as_ref().unwrap().task.clone();
        current.endpoint = Some(EndpointSpec {
            ports: vec![
                PortConfig {
                    target_port: 80,
                    published_port: 8080,
                    ..Default::default()
                },
                PortConfig {
                    target_port: 22,
                    published_port: 2222,
                    publish_mode: PublishMode::Host.into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        store
            .apply(
                1,
                &[
                    StoreAction::CreateNode(node("n1", NodeState::Ready)),
                    StoreAction::CreateNode(node("n2", NodeState::Down)),
                    StoreAction::CreateService(service),
                    StoreAction::CreateTask(current),
                    StoreAction::CreateTask(task("t1", "n1", 1, TaskState::Running, "10.231.0.2")),
                    StoreAction::CreateTask(stopping),
                    StoreAction::CreateTask(task("t4", "n1", 4, TaskState::Starting, "10.231.0.5")),
                    StoreAction::CreateTask(task("t5", "n1", 5, TaskState::Running, "")),
                    StoreAction::CreateTask(task("t6", "n2", 6, TaskState::Running, "10.231.1.2")),
                ],
            )
            .unwrap();
        store
    }

    #[test]
    fn only_running_reachable_tasks_are_listed_and_stopping_ones_drain() {
        let table = store().view(table);
        assert_eq!(table.services.len(), 1);
        let web = &table.services[0];
        assert_eq!(web.name, "web");
        assert_eq!(web.virtual_ip, "10.231.255.2");
        assert_eq!(web.stop_grace_period_ms, 2_500);
        assert_eq!(web.spec.as_ref().unwrap().ports[0].published_port, 8080);
        let got: Vec<(&str, &str, bool, u64)> = web
            .tasks
            .iter()
            .map(|t| {
                let grace = t.stop_grace_period_ms;
                (t.name.as_str(), t.address.as_str(), t.draining, grace)
            })
            .collect();
        // t4 is not running yet, t5 has no address, t6's node is down. Each task
        // drains with its own spec's grace period; t1 has no spec (0: the
        // service's).
        assert_eq!(
            got,
            [
                ("web.1", "10.231.0.2", false, 0),
                ("web.2", "10.231.0.3", false, 2_500),
                ("web.3", "10.231.0.4", true, DEFAULT_GRACE_MS),
            ]
        );
        // The host-mode ports each task was made for; t1 recorded none.
        let host: Vec<Option<Vec<u32>>> = web
            .tasks
            .iter()
            .map(|t| {
                let ports = t.host_endpoint.as_ref()?.ports.iter();
                Some(ports.map(|p| p.published_port).collect())
            })
            .collect();
        assert_eq!(host, [None, Some(vec![2222]), None]);
    }

    #[test]
    fn only_relevant_events_mark_the_table_dirty() {
        assert!(relevant(&Event::Reset));
        assert!(relevant(&Event::Removed(Object::Task(Task::default()))));
        assert!(!relevant(&Event::Commit(3)));
        assert!(!relevant(&Event::Updated(
            Object::Image(Default::default())
        )));
    }
}
