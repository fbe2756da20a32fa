//! Which spec a task was made from, as rolling updates see it; shared by the
//! managers (which replace outdated tasks) and the CLI (which follows them).

use crate::api::{EndpointSpec, PortConfig, PublishMode, ServiceSpec, Task};

/// How long a replaced task must keep running to count as updated when the service
/// sets no monitor period (Swarm's default).
pub const DEFAULT_MONITOR_MS: u64 = 5_000;

/// Whether `task` was made from its service's current `spec`: the same task spec,
/// and the same host-mode ports (those decide where a task may be placed; ingress
/// ports are the proxy's alone and need no new task).
pub fn is_current(task: &Task, spec: &ServiceSpec) -> bool {
    task.spec.as_ref() == spec.task.as_ref()
        && host_ports(task.endpoint.as_ref()) == host_ports(spec.endpoint.as_ref())
}

fn host_ports(endpoint: Option<&EndpointSpec>) -> Vec<&PortConfig> {
    endpoint
        .iter()
        .flat_map(|e| &e.ports)
        .filter(|p| p.publish_mode == PublishMode::Host as i32 && p.published_port != 0)
        .collect()
}
