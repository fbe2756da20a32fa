//! The routing mesh on one node: what the node's proxy serves and what its DNS
//! server answers, derived from the cluster's endpoint table. Pure functions: the
//! daemon feeds them each table the dispatcher streams.
//!
//! - Ingress ports: every node listens on `0.0.0.0:PUBLISHED` and balances over all
//!   the service's tasks, wherever they run.
//! - Host-mode ports: only a node running one of the service's tasks listens, and
//!   only towards its own tasks.
//! - Virtual IPs: every node serves `VIP:TARGET` for each of the service's ports,
//!   balanced like an ingress port, so a task reaches another service by name.
//! - DNS: `NAME` answers the VIP (or, for a service without ports, its task
//!   addresses), `tasks.NAME` the addresses of its tasks that take traffic.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use rswarm_proto::api::{
    EndpointTask, EndpointsMessage, LoadBalance, PortConfig, PortProtocol, ProxyProtocolVersion,
    ServiceEndpoints,
};
use tracing::warn;

use crate::dns::Records;
use crate::proxy::{Backend, Balance, ListenerSpec, Protocol, ProxyConfig, ProxyProtocol};

/// The addresses of `service`'s tasks towards `target`.
fn backends(service: &ServiceEndpoints, target: u16) -> Vec<Backend> {
    service
        .tasks
        .iter()
        .filter_map(|t| backend(t, target))
        .collect()
}

/// Task `t` as a backend towards `target`, if its address parses.
fn backend(t: &EndpointTask, target: u16) -> Option<Backend> {
    let ip: Ipv4Addr = t.address.parse().ok()?;
    Some(Backend {
        id: t.task_id.clone(),
        addr: SocketAddr::new(IpAddr::V4(ip), target),
        draining: t.draining,
        drain_deadline: (t.stop_grace_period_ms > 0)
            .then(|| Duration::from_millis(t.stop_grace_period_ms)),
    })
}

/// The host-mode listeners of `service` on node `node_id`: each host-mode port
/// one of the node's tasks was made for, towards those tasks only. While a
/// rolling update moves a port, a task not yet replaced keeps the old one and
/// its replacement gets the new one, as with Swarm's per-task host ports. A port
/// the service still publishes takes the service's current settings (target,
/// PROXY header), which replace no task.
fn host_listeners(service: &ServiceEndpoints, node_id: &str) -> Vec<ListenerSpec> {
    let current = ports(service);
    let mut by_port: BTreeMap<(i32, u16), (&PortConfig, Vec<Backend>)> = BTreeMap::new();
    for task in service.tasks.iter().filter(|t| t.node_id == node_id) {
        let made_for = task.host_endpoint.as_ref().map_or(current, |e| &e.ports);
        for port in made_for.iter().filter(|p| p.is_host_mode()) {
            let Some(published) = port_number(port.published_port) else {
                continue;
            };
            let port = current
                .iter()
                .find(|c| {
                    c.is_host_mode()
                        && c.protocol == port.protocol
                        && c.published_port == port.published_port
                })
                .unwrap_or(port);
            let Some(target) = port_number(port.target_port) else {
                continue;
            };
            if let Some(backend) = backend(task, target) {
                by_port
                    .entry((port.protocol, published))
                    .or_insert_with(|| (port, Vec::new()))
                    .1
                    .push(backend);
            }
        }
    }
    by_port
        .into_iter()
        .map(|((_, published), (port, backends))| {
            let bind = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), published);
            listener(service, port, bind, backends)
        })
        .collect()
}

fn listener(
    service: &ServiceEndpoints,
    port: &PortConfig,
    bind: SocketAddr,
    backends: Vec<Backend>,
) -> ListenerSpec {
    let protocol = if port.protocol == PortProtocol::Udp as i32 {
        Protocol::Udp
    } else {
        Protocol::Tcp
    };
    let mut spec = ListenerSpec::new(bind, protocol, backends);
    spec.balance = match service.spec.as_ref().map(|s| s.balance) {
        Some(b) if b == LoadBalance::LeastConn as i32 => Balance::LeastConn,
        _ => Balance::RoundRobin,
    };
    spec.proxy_protocol = match ProxyProtocolVersion::try_from(port.proxy_protocol) {
        Ok(ProxyProtocolVersion::V1) => ProxyProtocol::V1,
        Ok(ProxyProtocolVersion::V2) => ProxyProtocol::V2,
        _ => ProxyProtocol::None,
    };
    spec.drain_deadline = Duration::from_millis(service.stop_grace_period_ms);
    spec
}

fn port_number(value: u32) -> Option<u16> {
    u16::try_from(value).ok().filter(|p| *p != 0)
}

/// The service's VIP, if it has a usable one.
fn vip(service: &ServiceEndpoints) -> Option<Ipv4Addr> {
    if service.virtual_ip.is_empty() {
        return None;
    }
    match service.virtual_ip.parse() {
        Ok(ip) => Some(ip),
        Err(_) => {
            warn!(service = %service.name, vip = %service.virtual_ip, "unusable virtual IP ignored");
            None
        }
    }
}

fn ports(service: &ServiceEndpoints) -> &[PortConfig] {
    service.spec.as_ref().map_or(&[], |s| s.ports.as_slice())
}

/// What node `node_id`'s proxy serves for `table`.
pub fn proxy_config(table: &EndpointsMessage, node_id: &str) -> ProxyConfig {
    let mut listeners = Vec::new();
    let mut keys = HashSet::new();
    let mut push = |spec: ListenerSpec| {
        // Two ports of one service may share a target: one VIP listener serves both.
        if keys.insert(spec.key()) {
            listeners.push(spec);
        }
    };
    for service in &table.services {
        let vip = vip(service);
        for port in ports(service) {
            let Some(target) = port_number(port.target_port) else {
                continue;
            };
            if let Some(published) = port_number(port.published_port)
                && !port.is_host_mode()
            {
                let bind = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), published);
                push(listener(service, port, bind, backends(service, target)));
            }
            if let Some(vip) = vip {
                let bind = SocketAddr::new(IpAddr::V4(vip), target);
                push(listener(service, port, bind, backends(service, target)));
            }
        }
        for host in host_listeners(service, node_id) {
            push(host);
        }
    }
    listeners.sort_by_key(ListenerSpec::key);
    ProxyConfig { listeners }
}

/// The VIPs the node must hold for its proxy to bind them: those of services with
/// ports, sorted.
pub fn virtual_ips(table: &EndpointsMessage) -> Vec<Ipv4Addr> {
    let mut vips: Vec<Ipv4Addr> = table
        .services
        .iter()
        .filter(|s| !ports(s).is_empty())
        .filter_map(vip)
        .collect();
    vips.sort();
    vips.dedup();
    vips
}

/// The names the node's DNS server answers for `table`.
pub fn dns_records(table: &EndpointsMessage) -> Records {
    let mut records = Records::default();
    for service in &table.services {
        if service.name.is_empty() {
            continue;
        }
        let tasks: Vec<Ipv4Addr> = service
            .tasks
            .iter()
            .filter(|t| !t.draining)
            .filter_map(|t| t.address.parse().ok())
            .collect();
        let name = match vip(service) {
            Some(vip) if !ports(service).is_empty() => vec![vip],
            _ => tasks.clone(),
        };
        records.insert(&service.name, name);
        records.insert(&format!("tasks.{}", service.name), tasks);
    }
    records
}

#[cfg(test)]
mod tests {
    use rswarm_proto::api::{EndpointSpec, EndpointTask, PublishMode};

    use super::*;

    fn task(id: &str, node: &str, address: &str, draining: bool) -> EndpointTask {
        EndpointTask {
            task_id: id.into(),
            node_id: node.into(),
            address: address.into(),
            draining,
            name: id.into(),
            stop_grace_period_ms: 0,
            host_endpoint: None,
        }
    }

    fn port(published: u32, target: u32, mode: PublishMode) -> PortConfig {
        PortConfig {
            target_port: target,
            published_port: published,
            publish_mode: mode.into(),
            ..Default::default()
        }
    }

    fn table() -> EndpointsMessage {
        let mut web_port = port(8080, 80, PublishMode::Ingress);
        web_port.proxy_protocol = ProxyProtocolVersion::V2.into();
        EndpointsMessage {
            services: vec![
                ServiceEndpoints {
                    service_id: "s1".into(),
                    name: "web".into(),
                    virtual_ip: "10.231.255.1".into(),
                    spec: Some(EndpointSpec {
                        ports: vec![web_port],
                        balance: LoadBalance::LeastConn.into(),
                        ..Default::default()
                    }),
                    stop_grace_period_ms: 2_000,
                    tasks: vec![
                        task("t1", "n1", "10.231.0.2", false),
                        task("t2", "n2", "10.231.1.2", false),
                        EndpointTask {
                            stop_grace_period_ms: 7_000,
                            ..task("t3", "n2", "10.231.1.3", true)
                        },
                    ],
                },
                ServiceEndpoints {
                    service_id: "s2".into(),
                    name: "dns".into(),
                    virtual_ip: "10.231.255.2".into(),
                    spec: Some(EndpointSpec {
                        ports: vec![PortConfig {
                            protocol: PortProtocol::Udp.into(),
                            ..port(5353, 53, PublishMode::Host)
                        }],
                        ..Default::default()
                    }),
                    stop_grace_period_ms: 10_000,
                    tasks: vec![task("t4", "n2", "10.231.1.4", false)],
                },
                ServiceEndpoints {
                    service_id: "s3".into(),
                    name: "db".into(),
                    virtual_ip: "10.231.255.3".into(),
                    spec: None,
                    stop_grace_period_ms: 10_000,
                    tasks: vec![task("t5", "n1", "10.231.0.3", false)],
                },
            ],
        }
    }

    fn binds(config: &ProxyConfig) -> Vec<String> {
        config
            .listeners
            .iter()
            .map(|l| format!("{} {}", l.protocol, l.bind))
            .collect()
    }

    #[test]
    fn ingress_everywhere_host_mode_only_where_tasks_run() {
        let n1 = proxy_config(&table(), "n1");
        assert_eq!(
            binds(&n1),
            [
                "tcp 0.0.0.0:8080",
                "tcp 10.231.255.1:80",
                "udp 10.231.255.2:53"
            ]
        );
        let n2 = proxy_config(&table(), "n2");
        assert_eq!(
            binds(&n2),
            [
                "udp 0.0.0.0:5353",
                "tcp 0.0.0.0:8080",
                "tcp 10.231.255.1:80",
                "udp 10.231.255.2:53"
            ]
        );
        let host = n2.listeners.iter().find(|l| l.bind.port() == 5353).unwrap();
        assert_eq!(host.backends.len(), 1);
        assert_eq!(host.backends[0].addr, "10.231.1.4:53".parse().unwrap());
    }

    #[test]
    fn ingress_listeners_carry_every_task_and_the_service_settings() {
        let config = proxy_config(&table(), "n1");
        let ingress = &config.listeners[0];
        assert_eq!(ingress.bind.port(), 8080);
        assert_eq!(ingress.balance, Balance::LeastConn);
        assert_eq!(ingress.proxy_protocol, ProxyProtocol::V2);
        assert_eq!(ingress.drain_deadline, Duration::from_secs(2));
        let backends: Vec<(String, bool, Option<Duration>)> = ingress
            .backends
            .iter()
            .map(|b| (b.addr.to_string(), b.draining, b.drain_deadline))
            .collect();
        // t3 was made from a spec with its own grace period: it drains with it.
        assert_eq!(
            backends,
            [
                ("10.231.0.2:80".to_string(), false, None),
                ("10.231.1.2:80".to_string(), false, None),
                (
                    "10.231.1.3:80".to_string(),
                    true,
                    Some(Duration::from_secs(7))
                ),
            ]
        );
        assert_eq!(config.listeners[1].backends, ingress.backends);
    }

    #[test]
    fn names_answer_the_vip_or_the_tasks() {
        let records = dns_records(&table());
        let get = |name: &str| records.get(name).map(|a| a.to_vec());
        assert_eq!(get("web"), Some(vec!["10.231.255.1".parse().unwrap()]));
        assert_eq!(
            get("tasks.web"),
            Some(vec![
                "10.231.0.2".parse().unwrap(),
                "10.231.1.2".parse().unwrap()
            ]),
            "a draining task is not handed out"
        );
        assert_eq!(
            get("db"),
            Some(vec!["10.231.0.3".parse().unwrap()]),
            "no ports: no VIP listener, so the name gives the tasks"
        );
        assert_eq!(
            virtual_ips(&table()),
            [
                "10.231.255.1".parse::<Ipv4Addr>().unwrap(),
                "10.231.255.2".parse().unwrap()
            ]
        );
    }

    #[test]
    fn host_mode_ports_follow_each_task_while_an_update_moves_them() {
        let host = |published, target| EndpointSpec {
            ports: vec![port(published, target, PublishMode::Host)],
            ..Default::default()
        };
        let mut current = port(7001, 70, PublishMode::Host);
        current.proxy_protocol = ProxyProtocolVersion::V1.into();
        let made_for = |id: &str, address: &str, endpoint: Option<EndpointSpec>| EndpointTask {
            host_endpoint: endpoint,
            ..task(id, "n1", address, false)
        };
        let table = EndpointsMessage {
            services: vec![ServiceEndpoints {
                service_id: "s1".into(),
                name: "game".into(),
                virtual_ip: "10.231.255.9".into(),
                spec: Some(EndpointSpec {
                    ports: vec![current],
                    ..Default::default()
                }),
                stop_grace_period_ms: 10_000,
                tasks: vec![
                    // Not replaced yet: keeps the port (and target) it was made for.
                    made_for("old", "10.231.0.2", Some(host(7000, 60))),
                    // Its replacement; the target changed since, which needs no new task.
                    made_for("new", "10.231.0.3", Some(host(7001, 69))),
                    // Made before tasks recorded their endpoint: the service's port.
                    made_for("legacy", "10.231.0.4", None),
                ],
            }],
        };
        let n1 = proxy_config(&table, "n1");
        assert_eq!(
            binds(&n1),
            [
                "tcp 0.0.0.0:7000",
                "tcp 0.0.0.0:7001",
                "tcp 10.231.255.9:70"
            ]
        );
        let served = |bind: &str| {
            let listener = n1
                .listeners
                .iter()
                .find(|l| l.bind.to_string() == bind)
                .unwrap();
            let backends: Vec<String> = listener
                .backends
                .iter()
                .map(|b| format!("{} {}", b.id, b.addr))
                .collect();
            (backends, listener.proxy_protocol)
        };
        assert_eq!(
            served("0.0.0.0:7000"),
            (vec!["old 10.231.0.2:60".to_string()], ProxyProtocol::None)
        );
        assert_eq!(
            served("0.0.0.0:7001"),
            (
                vec![
                    "new 10.231.0.3:70".to_string(),
                    "legacy 10.231.0.4:70".to_string()
                ],
                ProxyProtocol::V1
            )
        );
        assert_eq!(binds(&proxy_config(&table, "n2")), ["tcp 10.231.255.9:70"]);
    }
}
