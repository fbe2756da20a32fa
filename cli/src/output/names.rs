//! Readable names for the protocol's enums, as users type and read them.

use rswarm_proto::api::{
    EndpointMode, LoadBalance, NodeAvailability, NodeRole, NodeState, PortProtocol,
    ProxyProtocolVersion, PublishMode, RestartCondition, TaskState, service_spec::Mode,
};

/// Shown for a number the protocol does not define (a newer peer).
const UNKNOWN: &str = "unknown";

/// `worker` or `manager`.
pub fn role(value: i32) -> &'static str {
    match NodeRole::try_from(value) {
        Ok(NodeRole::Worker) => "worker",
        Ok(NodeRole::Manager) => "manager",
        Err(_) => UNKNOWN,
    }
}

/// `active`, `pause` or `drain`.
pub fn availability(value: i32) -> &'static str {
    match NodeAvailability::try_from(value) {
        Ok(NodeAvailability::Active) => "active",
        Ok(NodeAvailability::Pause) => "pause",
        Ok(NodeAvailability::Drain) => "drain",
        Err(_) => UNKNOWN,
    }
}

/// `unknown`, `down`, `ready` or `disconnected`.
pub fn node_state(value: i32) -> &'static str {
    match NodeState::try_from(value) {
        Ok(NodeState::Unknown) | Err(_) => UNKNOWN,
        Ok(NodeState::Down) => "down",
        Ok(NodeState::Ready) => "ready",
        Ok(NodeState::Disconnected) => "disconnected",
    }
}

/// `tcp` or `udp`.
pub fn protocol(value: i32) -> &'static str {
    match PortProtocol::try_from(value) {
        Ok(PortProtocol::Tcp) => "tcp",
        Ok(PortProtocol::Udp) => "udp",
        Err(_) => UNKNOWN,
    }
}

/// `ingress` or `host`.
pub fn publish_mode(value: i32) -> &'static str {
    match PublishMode::try_from(value) {
        Ok(PublishMode::Ingress) => "ingress",
        Ok(PublishMode::Host) => "host",
        Err(_) => UNKNOWN,
    }
}

/// `none`, `v1` or `v2`: the PROXY protocol header a port sends its tasks.
pub fn proxy_protocol(value: i32) -> &'static str {
    match ProxyProtocolVersion::try_from(value) {
        Ok(ProxyProtocolVersion::None) => "none",
        Ok(ProxyProtocolVersion::V1) => "v1",
        Ok(ProxyProtocolVersion::V2) => "v2",
        Err(_) => UNKNOWN,
    }
}

/// `vip` or `dnsrr`.
pub fn endpoint_mode(value: i32) -> &'static str {
    match EndpointMode::try_from(value) {
        Ok(EndpointMode::Vip) => "vip",
        Ok(EndpointMode::Dnsrr) => "dnsrr",
        Err(_) => UNKNOWN,
    }
}

/// `round-robin` or `least-conn`.
pub fn load_balance(value: i32) -> &'static str {
    match LoadBalance::try_from(value) {
        Ok(LoadBalance::RoundRobin) => "round-robin",
        Ok(LoadBalance::LeastConn) => "least-conn",
        Err(_) => UNKNOWN,
    }
}

/// `any`, `on-failure` or `none`.
pub fn restart_condition(value: i32) -> &'static str {
    match RestartCondition::try_from(value) {
        Ok(RestartCondition::Any) => "any",
        Ok(RestartCondition::OnFailure) => "on-failure",
        Ok(RestartCondition::None) => "none",
        Err(_) => UNKNOWN,
    }
}

/// `replicated` or `global`.
pub fn service_mode(mode: Option<&Mode>) -> &'static str {
    match mode {
        Some(Mode::Replicated(_)) => "replicated",
        Some(Mode::Global(_)) => "global",
        None => UNKNOWN,
    }
}

/// `leader`, `reachable` or `unreachable`, for a manager.
pub fn manager_status(leader: bool, reachable: bool) -> &'static str {
    match (leader, reachable) {
        (true, _) => "leader",
        (false, true) => "reachable",
        (false, false) => "unreachable",
    }
}

/// A task state's lowercase name (`running`, `shutdown`...), as `--filter
/// desired-state=` takes it.
pub fn task_state(value: i32) -> &'static str {
    match TaskState::try_from(value) {
        Ok(TaskState::New) => "new",
        Ok(TaskState::Pending) => "pending",
        Ok(TaskState::Assigned) => "assigned",
        Ok(TaskState::Accepted) => "accepted",
        Ok(TaskState::Preparing) => "preparing",
        Ok(TaskState::Ready) => "ready",
        Ok(TaskState::Starting) => "starting",
        Ok(TaskState::Running) => "running",
        Ok(TaskState::Complete) => "complete",
        Ok(TaskState::Shutdown) => "shutdown",
        Ok(TaskState::Failed) => "failed",
        Ok(TaskState::Rejected) => "rejected",
        Ok(TaskState::Remove) => "remove",
        Ok(TaskState::Orphaned) => "orphaned",
        Err(_) => UNKNOWN,
    }
}

/// The task state named `name` (as [`task_state`] writes it), if any.
pub fn parse_task_state(name: &str) -> Option<TaskState> {
    TaskState::from_str_name(&format!("TASK_STATE_{}", name.to_ascii_uppercase()))
        .filter(|state| task_state(*state as i32) == name)
}

/// `ready` → `Ready`, for table cells (docker capitalises them there).
pub fn capitalize(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(role(NodeRole::Manager.into()), "manager");
        assert_eq!(role(9), "unknown");
        assert_eq!(availability(NodeAvailability::Drain.into()), "drain");
        assert_eq!(node_state(NodeState::Disconnected.into()), "disconnected");
        assert_eq!(node_state(NodeState::Unknown.into()), "unknown");
        assert_eq!(protocol(PortProtocol::Udp.into()), "udp");
        assert_eq!(publish_mode(PublishMode::Host.into()), "host");
        assert_eq!(
            restart_condition(RestartCondition::OnFailure.into()),
            "on-failure"
        );
        assert_eq!(manager_status(true, false), "leader");
        assert_eq!(manager_status(false, true), "reachable");
        assert_eq!(manager_status(false, false), "unreachable");
        assert_eq!(capitalize("on-failure"), "On-failure");
        assert_eq!(task_state(TaskState::Running.into()), "running");
        assert_eq!(task_state(TaskState::Orphaned.into()), "orphaned");
        assert_eq!(task_state(5), "unknown");
        assert_eq!(parse_task_state("shutdown"), Some(TaskState::Shutdown));
        assert_eq!(parse_task_state("Running"), None);
        assert_eq!(parse_task_state("bogus"), None);
        assert_eq!(capitalize(""), "");
    }
}
