//! Whole-spec checks, run by the CLI before sending and by the managers before
//! writing, so that nothing invalid reaches the store.

use std::collections::HashSet;

use super::{
    ValidationError, check_key, format_cpus, format_size, parse_constraint, parse_env,
    validate_container, validate_service_name,
};
use crate::api::{
    EndpointMode, PortConfig, PortProtocol, PublishMode, Resources, RestartCondition, ServiceSpec,
};

/// Smallest CPU amount a container can be given: 0.001 CPU, as in Swarm.
const MIN_NANO_CPUS: u64 = 1_000_000;
/// Smallest memory amount a container can be given: 4 MiB, as in Swarm.
const MIN_MEMORY_BYTES: u64 = 4 << 20;

/// Checks a service spec: the name, an image, a mode, environment entries, container
/// options (mounts, capabilities, stop signal, user), labels,
/// placement constraints, port publications (valid, no published port/protocol pair
/// twice) and resources (above the minimums, reservations within limits). Returns
/// the first problem found.
pub fn validate_service_spec(spec: &ServiceSpec) -> Result<(), ValidationError> {
    validate_service_name(&spec.name)?;
    for key in spec.labels.keys() {
        check_key(key).map_err(|reason| ValidationError::Label {
            input: key.clone(),
            reason: reason.to_string(),
        })?;
    }
    let task = spec.task.as_ref();
    let container = task.and_then(|task| task.container.as_ref());
    if container.is_none_or(|container| container.image.trim().is_empty()) {
        return Err(ValidationError::MissingImage);
    }
    if spec.mode.is_none() {
        return Err(ValidationError::MissingMode);
    }
    if let Some(container) = container {
        for entry in &container.env {
            parse_env(entry)?;
        }
        validate_container(container)?;
    }
    if let Some(task) = task {
        for constraint in task.placement.iter().flat_map(|p| &p.constraints) {
            parse_constraint(constraint)?;
        }
        if let Some(resources) = &task.resources {
            validate_resources(resources.limits.as_ref(), resources.reservations.as_ref())?;
        }
        if let Some(policy) = &task.restart_policy {
            check_enum::<RestartCondition>("restart condition", policy.condition)?;
        }
    }
    validate_ports(spec.endpoint.iter().flat_map(|e| &e.ports))?;
    if let Some(endpoint) = &spec.endpoint {
        let mode = check_enum::<EndpointMode>("endpoint mode", endpoint.mode)?;
        let ingress = endpoint.ports.iter().find(|p| !p.is_host_mode());
        if let (EndpointMode::Dnsrr, Some(port)) = (mode, ingress) {
            return Err(ValidationError::DnsrrIngress {
                target: port.target_port,
            });
        }
    }
    Ok(())
}

/// Ports in range, known enum values, and each published port/protocol pair once.
/// An ingress port may have published port 0: the managers assign one.
fn validate_ports<'a>(ports: impl Iterator<Item = &'a PortConfig>) -> Result<(), ValidationError> {
    let mut seen = HashSet::new();
    for port in ports {
        let protocol = check_enum::<PortProtocol>("port protocol", port.protocol)?;
        let mode = check_enum::<PublishMode>("publish mode", port.publish_mode)?;
        let assigned = port.published_port == 0 && mode == PublishMode::Ingress;
        if port.published_port == 0 && mode == PublishMode::Host {
            return Err(ValidationError::HostPortMissing {
                target: port.target_port,
            });
        }
        let published = (!assigned).then_some(("published", port.published_port));
        for (which, number) in published.into_iter().chain([("target", port.target_port)]) {
            if !(1..=65535).contains(&number) {
                return Err(ValidationError::PortRange {
                    which,
                    port: number,
                });
            }
        }
        if !assigned && !seen.insert((port.published_port, protocol)) {
            return Err(ValidationError::DuplicatePort {
                published: port.published_port,
                protocol: match protocol {
                    PortProtocol::Tcp => "tcp",
                    PortProtocol::Udp => "udp",
                },
            });
        }
    }
    Ok(())
}

/// Limits and reservations above the minimums; reservations not above limits.
fn validate_resources(
    limits: Option<&Resources>,
    reservations: Option<&Resources>,
) -> Result<(), ValidationError> {
    for (resources, cpu_what, memory_what) in [
        (limits, "CPU limit", "memory limit"),
        (reservations, "CPU reservation", "memory reservation"),
    ] {
        let Some(resources) = resources else { continue };
        if resources.nano_cpus != 0 && resources.nano_cpus < MIN_NANO_CPUS {
            return Err(ValidationError::ResourceTooSmall {
                what: cpu_what,
                value: format_cpus(resources.nano_cpus),
                minimum: "0.001",
            });
        }
        if resources.memory_bytes != 0 && resources.memory_bytes < MIN_MEMORY_BYTES {
            return Err(ValidationError::ResourceTooSmall {
                what: memory_what,
                value: format_size(resources.memory_bytes),
                minimum: "4MiB",
            });
        }
    }
    let (Some(limits), Some(reservations)) = (limits, reservations) else {
        return Ok(());
    };
    if limits.nano_cpus != 0 && reservations.nano_cpus > limits.nano_cpus {
        return Err(ValidationError::ReservationAboveLimit {
            what: "CPU",
            reservation: format_cpus(reservations.nano_cpus),
            limit: format_cpus(limits.nano_cpus),
        });
    }
    if limits.memory_bytes != 0 && reservations.memory_bytes > limits.memory_bytes {
        return Err(ValidationError::ReservationAboveLimit {
            what: "memory",
            reservation: format_size(reservations.memory_bytes),
            limit: format_size(limits.memory_bytes),
        });
    }
    Ok(())
}

/// Decodes a protobuf enum field, refusing numbers the protocol does not define.
fn check_enum<E: TryFrom<i32>>(field: &'static str, value: i32) -> Result<E, ValidationError> {
    E::try_from(value).map_err(|_| ValidationError::UnknownEnumValue { field, value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        ContainerSpec, EndpointSpec, GlobalService, Placement, ReplicatedService,
        ResourceRequirements, RestartPolicy, TaskSpec, service_spec::Mode,
    };

    fn valid() -> ServiceSpec {
        ServiceSpec {
            name: "web".into(),
            task: Some(TaskSpec {
                container: Some(ContainerSpec {
                    image: "nginx:1.27".into(),
                    env: vec!["A=1".into(), "B=".into()],
                    ..Default::default()
                }),
                placement: Some(Placement {
                    constraints: vec!["node.role==worker".into()],
                    max_replicas_per_node: 0,
                }),
                resources: Some(ResourceRequirements {
                    limits: Some(Resources {
                        nano_cpus: 500_000_000,
                        memory_bytes: 64 << 20,
                        pids: 0,
                    }),
                    reservations: Some(Resources {
                        nano_cpus: 250_000_000,
                        memory_bytes: 32 << 20,
                        pids: 0,
                    }),
                }),
                restart_policy: Some(RestartPolicy::default()),
                force_update: 0,
            }),
            mode: Some(Mode::Replicated(ReplicatedService { replicas: 3 })),
            endpoint: Some(EndpointSpec {
                balance: Default::default(),
                mode: Default::default(),
                ports: vec![
                    port(8080, 80, PortProtocol::Tcp),
                    port(8080, 80, PortProtocol::Udp),
                ],
            }),
            ..Default::default()
        }
    }

    fn port(published: u32, target: u32, protocol: PortProtocol) -> PortConfig {
        PortConfig {
            proxy_protocol: Default::default(),
            protocol: protocol.into(),
            target_port: target,
            published_port: published,
            publish_mode: PublishMode::Ingress.into(),
        }
    }

    fn task(spec: &mut ServiceSpec) -> &mut TaskSpec {
        spec.task.as_mut().unwrap()
    }

    #[test]
    fn accepts_valid_specs() {
        assert_eq!(validate_service_spec(&valid()), Ok(()));
        let minimal = ServiceSpec {
            name: "w".into(),
            task: Some(TaskSpec {
                container: Some(ContainerSpec {
                    image: "busybox".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            mode: Some(Mode::Global(GlobalService {})),
            ..Default::default()
        };
        assert_eq!(validate_service_spec(&minimal), Ok(()));
        // Ingress ports whose published port the managers assign, twice the
        // same target even.
        let mut assigned = valid();
        let ports = &mut assigned.endpoint.as_mut().unwrap().ports;
        ports.push(port(0, 80, PortProtocol::Tcp));
        ports.push(port(0, 80, PortProtocol::Tcp));
        assert_eq!(validate_service_spec(&assigned), Ok(()));
        // DNSRR with host-mode ports only.
        let mut dnsrr = valid();
        let endpoint = dnsrr.endpoint.as_mut().unwrap();
        endpoint.mode = EndpointMode::Dnsrr.into();
        for port in &mut endpoint.ports {
            port.publish_mode = PublishMode::Host.into();
        }
        assert_eq!(validate_service_spec(&dnsrr), Ok(()));
    }

    #[test]
    fn refuses_each_problem() {
        type Breaker = fn(&mut ServiceSpec);
        let cases: Vec<(Breaker, &str)> = vec![
            (|s| s.name = "-bad".into(), "invalid service name \"-bad\""),
            (|s| s.name.clear(), "invalid service name \"\""),
            (|s| s.task = None, "an image is required"),
            (|s| task(s).container = None, "an image is required"),
            (
                |s| task(s).container.as_mut().unwrap().image = " ".into(),
                "an image is required",
            ),
            (
                |s| s.mode = None,
                "a mode (replicated or global) is required",
            ),
            (
                |s| task(s).container.as_mut().unwrap().env.push("NOEQ".into()),
                "invalid environment variable \"NOEQ\"",
            ),
            (
                |s| {
                    s.labels.insert("bad key".into(), "v".into());
                },
                "invalid label \"bad key\"",
            ),
            (
                |s| {
                    task(s)
                        .placement
                        .as_mut()
                        .unwrap()
                        .constraints
                        .push("node.x==1".into())
                },
                "invalid constraint \"node.x==1\"",
            ),
            (
                |s| {
                    s.endpoint
                        .as_mut()
                        .unwrap()
                        .ports
                        .push(port(8080, 81, PortProtocol::Tcp))
                },
                "port 8080/tcp is published more than once",
            ),
            (
                |s| {
                    s.endpoint
                        .as_mut()
                        .unwrap()
                        .ports
                        .push(port(65536, 81, PortProtocol::Tcp))
                },
                "invalid published port 65536",
            ),
            (
                |s| {
                    let mut host = port(0, 81, PortProtocol::Tcp);
                    host.publish_mode = PublishMode::Host.into();
                    s.endpoint.as_mut().unwrap().ports.push(host)
                },
                "the host-mode port for target port 81 needs a published port",
            ),
            (
                |s| {
                    s.endpoint
                        .as_mut()
                        .unwrap()
                        .ports
                        .push(port(81, 70000, PortProtocol::Tcp))
                },
                "invalid target port 70000",
            ),
            (
                |s| s.endpoint.as_mut().unwrap().ports[0].protocol = 7,
                "invalid port protocol: unknown value 7",
            ),
            (
                |s| s.endpoint.as_mut().unwrap().ports[0].publish_mode = -1,
                "invalid publish mode: unknown value -1",
            ),
            (
                |s| s.endpoint.as_mut().unwrap().mode = EndpointMode::Dnsrr.into(),
                "the port for target port 80 is published in ingress mode, which needs the \
                 service's virtual IP: with endpoint mode dnsrr publish it with mode=host",
            ),
            (
                |s| s.endpoint.as_mut().unwrap().mode = 5,
                "invalid endpoint mode: unknown value 5",
            ),
            (
                |s| task(s).restart_policy.as_mut().unwrap().condition = 9,
                "invalid restart condition: unknown value 9",
            ),
            (
                |s| limits(s).memory_bytes = 1024,
                "invalid memory limit 1KiB: must be at least 4MiB",
            ),
            (
                |s| limits(s).nano_cpus = 1000,
                "invalid CPU limit 0.000001: must be at least 0.001",
            ),
            (
                |s| limits(s).nano_cpus = 100_000_000,
                "CPU reservation 0.25 is above the limit 0.1",
            ),
            (
                |s| limits(s).memory_bytes = 16 << 20,
                "memory reservation 32MiB is above the limit 16MiB",
            ),
        ];
        for (breaker, message) in cases {
            let mut spec = valid();
            breaker(&mut spec);
            let err = validate_service_spec(&spec).unwrap_err().to_string();
            assert!(err.contains(message), "{err:?} should contain {message:?}");
        }
    }

    fn limits(spec: &mut ServiceSpec) -> &mut Resources {
        task(spec)
            .resources
            .as_mut()
            .unwrap()
            .limits
            .as_mut()
            .unwrap()
    }
}
