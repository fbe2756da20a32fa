//! Published ports across the cluster: an ingress port is served on every node, so
//! it may belong to one service only; a host-mode port is bound only where the
//! service's tasks run, so two services may share one (the scheduler keeps their
//! tasks apart), but never with an ingress port. Nor may a service publish the
//! TCP port a node's rswarm daemon listens on: its proxy could not bind it there.

use std::net::SocketAddr;

use rswarm_proto::api::{Node, PortConfig, PortProtocol, PublishMode, Service, ServiceSpec};

use super::ControlError;
use crate::store::ReadTx;

fn ports(spec: &ServiceSpec) -> impl Iterator<Item = &PortConfig> {
    spec.endpoint
        .iter()
        .flat_map(|e| &e.ports)
        .filter(|p| p.published_port != 0)
}

fn mode_name(port: &PortConfig) -> &'static str {
    if port.is_host_mode() {
        "host"
    } else {
        "ingress"
    }
}

fn protocol_name(port: &PortConfig) -> &'static str {
    if port.protocol == PortProtocol::Udp as i32 {
        "udp"
    } else {
        "tcp"
    }
}

/// Refuses `spec` if one of its published ports is taken by another service than
/// `own_id`, naming the port and the service that holds it.
pub fn check_conflicts(
    tx: &ReadTx<'_>,
    spec: &ServiceSpec,
    own_id: Option<&str>,
) -> Result<(), ControlError> {
    let others: Vec<&Service> = tx
        .services()
        .filter(|s| Some(s.id.as_str()) != own_id)
        .collect();
    for wanted in ports(spec) {
        if wanted.protocol != PortProtocol::Udp as i32
            && let Some((node, addr)) = tx.nodes().find_map(|node| {
                daemon_addrs(node)
                    .find(|addr| u32::from(addr.port()) == wanted.published_port)
                    .map(|addr| (node, addr))
            })
        {
            let name = node
                .description
                .as_ref()
                .map_or(node.id.as_str(), |d| d.hostname.as_str());
            return Err(ControlError::Refused(format!(
                "port {}/tcp is where the rswarm daemon of node {name} listens ({addr}); \
                 choose another published port",
                wanted.published_port
            )));
        }
        for other in &others {
            let Some(other_spec) = other.spec.as_ref() else {
                continue;
            };
            let taken = ports(other_spec).find(|p| {
                p.published_port == wanted.published_port
                    && p.protocol == wanted.protocol
                    && (p.publish_mode == PublishMode::Ingress as i32
                        || wanted.publish_mode == PublishMode::Ingress as i32)
            });
            if let Some(taken) = taken {
                return Err(ControlError::Refused(format!(
                    "port {}/{} is already published by service {:?} ({} mode); \
                     choose another published port or remove that service first",
                    wanted.published_port,
                    protocol_name(wanted),
                    other_spec.name,
                    mode_name(taken),
                )));
            }
        }
    }
    Ok(())
}

/// The addresses a node's daemon is known to listen on: the one it reports, and a
/// manager's Raft and control address.
fn daemon_addrs(node: &Node) -> impl Iterator<Item = SocketAddr> + '_ {
    let reported = node.status.as_ref().map(|s| s.addr.as_str());
    let manager = node.manager_status.as_ref().map(|m| m.addr.as_str());
    reported
        .into_iter()
        .chain(manager)
        .filter_map(|addr| addr.parse().ok())
}
