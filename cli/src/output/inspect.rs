//! `node inspect` / `service inspect`: the whole object as JSON, like `docker
//! inspect`, with enum fields turned from numbers into names.

use rswarm_proto::api::{Node, Service};
use serde_json::{Map, Value};

use super::names;

/// The node as JSON, with `role`, `spec.desired_role`, `spec.availability` and
/// `status.state` as names.
pub fn node_json(node: &Node) -> Result<Value, serde_json::Error> {
    let mut value = serde_json::to_value(node)?;
    rename(&mut value, &["role"], names::role);
    rename(&mut value, &["spec", "desired_role"], names::role);
    rename(&mut value, &["spec", "availability"], names::availability);
    rename(&mut value, &["status", "state"], names::node_state);
    Ok(value)
}

/// The service as JSON, with port protocols and modes and the restart condition as
/// names, and the mode as `{"replicated": {...}}` or `{"global": {}}`.
pub fn service_json(service: &Service) -> Result<Value, serde_json::Error> {
    let mut value = serde_json::to_value(service)?;
    let Some(spec) = value.get_mut("spec") else {
        return Ok(value);
    };
    rename(
        spec,
        &["task", "restart_policy", "condition"],
        names::restart_condition,
    );
    if let Some(Value::Array(ports)) = spec.pointer_mut("/endpoint/ports") {
        for port in ports {
            rename(port, &["protocol"], names::protocol);
            rename(port, &["publish_mode"], names::publish_mode);
            rename(port, &["proxy_protocol"], names::proxy_protocol);
        }
    }
    if let Some(endpoint) = spec.get_mut("endpoint") {
        rename(endpoint, &["balance"], names::load_balance);
        rename(endpoint, &["mode"], names::endpoint_mode);
    }
    if let Some(Value::Object(mode)) = spec.get_mut("mode") {
        // serde names the oneof's variants after the Rust enum (`Replicated`).
        let lowered: Map<String, Value> = std::mem::take(mode)
            .into_iter()
            .map(|(key, inner)| (key.to_lowercase(), inner))
            .collect();
        *mode = lowered;
    }
    Ok(value)
}

/// Replaces the number at `path` by its name; leaves absent fields alone.
fn rename(value: &mut Value, path: &[&str], name: fn(i32) -> &'static str) {
    let mut current = value;
    for key in path {
        match current.get_mut(*key) {
            Some(next) => current = next,
            None => return,
        }
    }
    if let Some(number) = current.as_i64() {
        *current = Value::from(i32::try_from(number).map_or("unknown", name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rswarm_proto::api::{
        ContainerSpec, EndpointSpec, NodeAvailability, NodeRole, NodeSpec, NodeState, NodeStatus,
        PortConfig, PortProtocol, PublishMode, ReplicatedService, RestartCondition, RestartPolicy,
        ServiceSpec, TaskSpec, service_spec::Mode,
    };
    use serde_json::json;

    #[test]
    fn node_enums_are_names() {
        let node = Node {
            id: "n1".into(),
            role: NodeRole::Manager.into(),
            spec: Some(NodeSpec {
                desired_role: NodeRole::Worker.into(),
                availability: NodeAvailability::Pause.into(),
                labels: [("zone".to_string(), "eu".to_string())].into(),
            }),
            status: Some(NodeStatus {
                state: NodeState::Ready.into(),
                message: String::new(),
                addr: "127.0.0.1:4242".into(),
                port_errors: vec!["cannot listen on tcp 0.0.0.0:80: Permission denied".into()],
            }),
            ..Default::default()
        };
        let value = node_json(&node).unwrap();
        assert_eq!(value["id"], "n1");
        assert_eq!(value["role"], "manager");
        assert_eq!(value["spec"]["desired_role"], "worker");
        assert_eq!(value["spec"]["availability"], "pause");
        assert_eq!(value["spec"]["labels"], json!({"zone": "eu"}));
        assert_eq!(value["status"]["state"], "ready");
        assert_eq!(
            value["status"]["port_errors"],
            json!(["cannot listen on tcp 0.0.0.0:80: Permission denied"])
        );
        assert_eq!(value["description"], Value::Null);
    }

    #[test]
    fn service_enums_are_names() {
        let service = Service {
            endpoint: None,
            id: "s1".into(),
            meta: None,
            spec: Some(ServiceSpec {
                name: "web".into(),
                task: Some(TaskSpec {
                    container: Some(ContainerSpec {
                        image: "nginx".into(),
                        ..Default::default()
                    }),
                    restart_policy: Some(RestartPolicy {
                        condition: RestartCondition::OnFailure.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                mode: Some(Mode::Replicated(ReplicatedService { replicas: 3 })),
                endpoint: Some(EndpointSpec {
                    balance: Default::default(),
                    mode: Default::default(),
                    ports: vec![PortConfig {
                        proxy_protocol: Default::default(),
                        protocol: PortProtocol::Udp.into(),
                        target_port: 53,
                        published_port: 53,
                        publish_mode: PublishMode::Host.into(),
                    }],
                }),
                ..Default::default()
            }),
        };
        let value = service_json(&service).unwrap();
        assert_eq!(value["spec"]["name"], "web");
        assert_eq!(
            value["spec"]["mode"],
            json!({"replicated": {"replicas": 3}})
        );
        assert_eq!(
            value["spec"]["task"]["restart_policy"]["condition"],
            "on-failure"
        );
        assert_eq!(
            value["spec"]["endpoint"]["ports"][0],
            json!({"protocol": "udp", "target_port": 53, "published_port": 53,
                   "publish_mode": "host", "proxy_protocol": "none"})
        );
        assert_eq!(value["spec"]["endpoint"]["balance"], "round-robin");
        assert_eq!(
            value["endpoint"],
            Value::Null,
            "a service without a task network has no VIP"
        );
    }
}
