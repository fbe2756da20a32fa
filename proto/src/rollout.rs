//! Which spec a task was made from, as rolling updates see it; shared by the
//! managers (which replace outdated tasks) and the CLI (which follows them).

use std::collections::BTreeSet;

use crate::api::{EndpointSpec, ServiceSpec, Task};

/// How long a replaced task must keep running to count as updated when the service
/// sets no monitor period (Swarm's default).
pub const DEFAULT_MONITOR_MS: u64 = 5_000;

/// Whether `task` was made from its service's current `spec`: the same task spec,
/// and the same host-mode ports (those decide where a task may be placed; ingress
/// ports, target ports and PROXY headers are the proxy's alone and need no new
/// task). A task without a recorded endpoint predates the record and is taken as
/// current on that count.
pub fn is_current(task: &Task, spec: &ServiceSpec) -> bool {
    task.spec.as_ref() == spec.task.as_ref()
        && task
            .endpoint
            .as_ref()
            .is_none_or(|made_for| host_ports(Some(made_for)) == host_ports(spec.endpoint.as_ref()))
}

/// The host-mode ports as (protocol, published port), whatever their order.
fn host_ports(endpoint: Option<&EndpointSpec>) -> BTreeSet<(i32, u32)> {
    endpoint
        .iter()
        .flat_map(|e| &e.ports)
        .filter(|p| p.is_host_mode() && p.published_port != 0)
        .map(|p| (p.protocol, p.published_port))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ContainerSpec, PortConfig, PortProtocol, PublishMode, TaskSpec};

    fn spec(image: &str, ports: &[(u32, u32, PublishMode)]) -> ServiceSpec {
        ServiceSpec {
            task: Some(TaskSpec {
                container: Some(ContainerSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            endpoint: Some(EndpointSpec {
                ports: ports
                    .iter()
                    .map(|(published, target, mode)| PortConfig {
                        protocol: PortProtocol::Tcp.into(),
                        published_port: *published,
                        target_port: *target,
                        publish_mode: (*mode).into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn task_of(spec: &ServiceSpec) -> Task {
        Task {
            spec: spec.task.clone(),
            endpoint: Some(spec.endpoint.clone().unwrap_or_default()),
            ..Default::default()
        }
    }

    #[test]
    fn only_the_task_spec_and_the_host_ports_count() {
        use PublishMode::{Host, Ingress};
        let made = spec("web:1", &[(8080, 80, Host), (9000, 80, Ingress)]);
        let task = task_of(&made);
        assert!(is_current(&task, &made));
        // Reordered, another target port, ingress ports changed: still current.
        let same = spec("web:1", &[(7000, 80, Ingress), (8080, 81, Host)]);
        assert!(is_current(&task, &same));
        assert!(!is_current(&task, &spec("web:2", &[(8080, 80, Host)])));
        assert!(!is_current(&task, &spec("web:1", &[(8081, 80, Host)])));
        assert!(!is_current(&task, &spec("web:1", &[(8080, 80, Ingress)])));
        // A task from before endpoints were recorded.
        let old = Task {
            endpoint: None,
            ..task
        };
        assert!(is_current(&old, &spec("web:1", &[(8081, 80, Host)])));
    }
}
