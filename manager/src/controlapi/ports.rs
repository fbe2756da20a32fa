//! Published ports across the cluster: an ingress port is served on every node, so
//! it may belong to one service only; a host-mode port is bound only where the
//! service's tasks run, so two services may share one (the scheduler keeps their
//! tasks apart), but never with an ingress port. Nor may a service publish the
//! TCP port a node's rswarm daemon listens on: its proxy could not bind it there.
//! An ingress port published without a number gets one from
//! [`DYNAMIC_PORTS`], as in Swarm.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::ops::RangeInclusive;

use rswarm_proto::api::{Node, PortConfig, PortProtocol, PublishMode, Service, ServiceSpec};
use rswarm_proto::validate::DYNAMIC_PORTS;

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

/// Gives each ingress port of `spec` published without a number (0) one, before
/// the spec is stored; `own_id` and `current` are the service's id and stored
/// spec when it is updated. A number of [`DYNAMIC_PORTS`] that `current`
/// publishes for the same target port and protocol is kept: when `spec` does
/// not publish that number (a spec sent again as first written), the port gets
/// it back; when `spec` publishes it for that same target (`--publish-add 80`
/// beside the port assigned for 80), it is that same publication and is
/// dropped. Otherwise the lowest number of
/// [`DYNAMIC_PORTS`] no service publishes on that protocol (nor a node's
/// daemon listens on) is taken; none left is refused, naming the range.
pub fn assign_published(
    tx: &ReadTx<'_>,
    spec: &mut ServiceSpec,
    own_id: Option<&str>,
    current: Option<&ServiceSpec>,
) -> Result<(), ControlError> {
    assign_in(tx, spec, own_id, current, DYNAMIC_PORTS)
}

pub(super) fn assign_in(
    tx: &ReadTx<'_>,
    spec: &mut ServiceSpec,
    own_id: Option<&str>,
    current: Option<&ServiceSpec>,
    range: RangeInclusive<u32>,
) -> Result<(), ControlError> {
    let Some(endpoint) = spec.endpoint.as_mut() else {
        return Ok(());
    };
    if endpoint.ports.iter().all(|p| p.published_port != 0) {
        return Ok(());
    }
    let taken: HashSet<(u32, i32)> = tx
        .services()
        .filter(|s| Some(s.id.as_str()) != own_id)
        .filter_map(|s| s.spec.as_ref())
        .flat_map(ports)
        .map(|p| (p.published_port, p.protocol))
        .collect();
    let daemons: HashSet<u32> = tx
        .nodes()
        .flat_map(daemon_addrs)
        .map(|addr| u32::from(addr.port()))
        .collect();
    let same = |a: &PortConfig, b: &PortConfig| {
        a.target_port == b.target_port && a.protocol == b.protocol && !b.is_host_mode()
    };
    let explicit: Vec<PortConfig> = endpoint
        .ports
        .iter()
        .filter(|p| p.published_port != 0)
        .cloned()
        .collect();
    let mut used: HashSet<(u32, i32)> = explicit
        .iter()
        .map(|p| (p.published_port, p.protocol))
        .collect();
    // Numbers of `current` an unnumbered port has already taken back or matched.
    let mut claimed: HashSet<(u32, i32)> = HashSet::new();
    let mut assigned = Vec::with_capacity(endpoint.ports.len());
    for mut port in std::mem::take(&mut endpoint.ports) {
        if port.published_port != 0 {
            assigned.push(port);
            continue;
        }
        // Numbers the managers chose before (in the range) for this target.
        let previous: Vec<(u32, i32)> = current
            .into_iter()
            .flat_map(ports)
            .filter(|p| same(&port, p) && range.contains(&p.published_port))
            .map(|p| (p.published_port, p.protocol))
            .filter(|key| !claimed.contains(key))
            .collect();
        if let Some(&key) = previous.iter().find(|key| !used.contains(key)) {
            claimed.insert(key);
            used.insert(key);
            port.published_port = key.0;
            assigned.push(port);
            continue;
        }
        // Published already, by that number and for this same target.
        let kept = previous.iter().find(|key| {
            explicit
                .iter()
                .any(|p| (p.published_port, p.protocol) == **key && same(&port, p))
        });
        if let Some(&key) = kept {
            claimed.insert(key);
            continue;
        }
        let tcp = port.protocol != PortProtocol::Udp as i32;
        let free = range.clone().find(|number| {
            let key = (*number, port.protocol);
            let daemon = tcp && daemons.contains(number);
            !(used.contains(&key) || taken.contains(&key) || daemon)
        });
        let Some(number) = free else {
            return Err(ControlError::Refused(format!(
                "no published port is left in {}-{} for target port {}/{}: publish it on a \
                 port of your choice or remove a service first",
                range.start(),
                range.end(),
                port.target_port,
                protocol_name(&port)
            )));
        };
        used.insert((number, port.protocol));
        port.published_port = number;
        assigned.push(port);
    }
    endpoint.ports = assigned;
    Ok(())
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
