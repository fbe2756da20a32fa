//! What the kernel needs changed for a peer list, computed from what it has:
//! kept free of netlink so the intent is unit-tested.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::{Ipv4Net, NetError, Peer};

/// A route of the overlay: a peer's subnet through the peer's gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PeerRoute {
    /// The peer's task subnet.
    pub dst: Ipv4Net,
    /// The peer's gateway, reached on the bridge over the overlay.
    pub gateway: Ipv4Addr,
}

/// A route found in the kernel, as far as the plan cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FoundRoute {
    /// Destination prefix.
    pub dst: Ipv4Net,
    /// Gateway, if any.
    pub gateway: Option<Ipv4Addr>,
    /// Output link index, if any.
    pub oif: Option<u32>,
}

/// The changes for one `apply`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerPlan {
    /// Flood entries to add (peer underlay addresses).
    pub flood_add: Vec<Ipv4Addr>,
    /// Flood entries to remove.
    pub flood_del: Vec<Ipv4Addr>,
    /// Routes to install or correct.
    pub route_set: Vec<PeerRoute>,
    /// Indexes (into the found routes) of routes to delete.
    pub route_del: Vec<usize>,
}

/// Checks a peer list against the node's own underlay address and subnet:
/// a peer may not be the node itself nor overlap another subnet.
pub fn check_peers(
    own_underlay: Ipv4Addr,
    own_subnet: Ipv4Net,
    peers: &[Peer],
) -> Result<(), NetError> {
    let mut subnets = vec![own_subnet.trunc()];
    for p in peers {
        if p.underlay == own_underlay {
            return Err(NetError::Config(format!(
                "peer {} has this node's own underlay address",
                p.subnet
            )));
        }
        if p.subnet.gateway().is_none() {
            return Err(NetError::Config(format!(
                "peer subnet {} has no gateway address",
                p.subnet
            )));
        }
        let s = p.subnet.trunc();
        if let Some(other) = subnets
            .iter()
            .find(|o| o.contains_net(&s) || s.contains_net(o))
        {
            return Err(NetError::Config(format!(
                "peer subnet {s} (underlay {}) overlaps {other}",
                p.underlay
            )));
        }
        subnets.push(s);
    }
    Ok(())
}

/// What to change so that the kernel's flood entries and own routes match
/// `peers`, with `bridge` the bridge's link index.
pub fn plan_peers(
    peers: &[Peer],
    found_floods: &[Ipv4Addr],
    found_routes: &[FoundRoute],
    bridge: u32,
) -> PeerPlan {
    let want_floods: BTreeSet<Ipv4Addr> = peers.iter().map(|p| p.underlay).collect();
    let have_floods: BTreeSet<Ipv4Addr> = found_floods.iter().copied().collect();
    let want_routes: BTreeSet<PeerRoute> = peers
        .iter()
        .filter_map(|p| {
            Some(PeerRoute {
                dst: p.subnet.trunc(),
                gateway: p.subnet.gateway()?,
            })
        })
        .collect();
    let route_ok = |r: &FoundRoute| {
        r.oif == Some(bridge)
            && r.gateway.is_some_and(|gateway| {
                want_routes.contains(&PeerRoute {
                    dst: r.dst,
                    gateway,
                })
            })
    };
    PeerPlan {
        flood_add: want_floods.difference(&have_floods).copied().collect(),
        flood_del: have_floods.difference(&want_floods).copied().collect(),
        route_set: want_routes
            .iter()
            .filter(|w| {
                !found_routes
                    .iter()
                    .any(|r| route_ok(r) && r.dst == w.dst && r.gateway == Some(w.gateway))
            })
            .copied()
            .collect(),
        // A route for a wanted prefix but the wrong gateway or link is
        // replaced in place by `route_set`, not deleted.
        route_del: found_routes
            .iter()
            .enumerate()
            .filter(|(_, r)| !want_routes.iter().any(|w| w.dst == r.dst))
            .map(|(i, _)| i)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(u: [u8; 4], s: &str) -> Peer {
        Peer {
            underlay: Ipv4Addr::from(u),
            subnet: s.parse().unwrap(),
        }
    }

    fn found(dst: &str, gw: [u8; 4], oif: u32) -> FoundRoute {
        FoundRoute {
            dst: dst.parse().unwrap(),
            gateway: Some(Ipv4Addr::from(gw)),
            oif: Some(oif),
        }
    }

    #[test]
    fn fresh_node_adds_every_peer() {
        let peers = [
            peer([192, 0, 2, 2], "10.231.2.0/24"),
            peer([192, 0, 2, 3], "10.231.3.0/24"),
        ];
        let plan = plan_peers(&peers, &[], &[], 5);
        assert_eq!(
            plan.flood_add,
            vec![Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(192, 0, 2, 3)]
        );
        assert!(plan.flood_del.is_empty());
        assert_eq!(plan.route_set.len(), 2);
        assert_eq!(plan.route_set[0].gateway, Ipv4Addr::new(10, 231, 2, 1));
        assert!(plan.route_del.is_empty());
    }

    #[test]
    fn matching_state_needs_nothing() {
        let peers = [peer([192, 0, 2, 2], "10.231.2.0/24")];
        let plan = plan_peers(
            &peers,
            &[Ipv4Addr::new(192, 0, 2, 2)],
            &[found("10.231.2.0/24", [10, 231, 2, 1], 5)],
            5,
        );
        assert_eq!(plan, PeerPlan::default());
    }

    #[test]
    fn removed_peer_loses_its_entry_and_route() {
        let peers = [peer([192, 0, 2, 2], "10.231.2.0/24")];
        let plan = plan_peers(
            &peers,
            &[Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(192, 0, 2, 3)],
            &[
                found("10.231.2.0/24", [10, 231, 2, 1], 5),
                found("10.231.3.0/24", [10, 231, 3, 1], 5),
            ],
            5,
        );
        assert_eq!(plan.flood_del, vec![Ipv4Addr::new(192, 0, 2, 3)]);
        assert!(plan.flood_add.is_empty());
        assert_eq!(plan.route_del, vec![1]);
        assert!(plan.route_set.is_empty());
    }

    #[test]
    fn wrong_link_is_corrected_in_place() {
        let peers = [peer([192, 0, 2, 2], "10.231.2.0/24")];
        let plan = plan_peers(
            &peers,
            &[Ipv4Addr::new(192, 0, 2, 2)],
            &[found("10.231.2.0/24", [10, 231, 2, 1], 9)],
            5,
        );
        assert_eq!(plan.route_set.len(), 1);
        assert!(plan.route_del.is_empty());
    }

    #[test]
    fn peers_are_checked() {
        let own = Ipv4Addr::new(192, 0, 2, 1);
        let subnet: Ipv4Net = "10.231.1.0/24".parse().unwrap();
        assert!(check_peers(own, subnet, &[peer([192, 0, 2, 2], "10.231.2.0/24")]).is_ok());
        assert!(check_peers(own, subnet, &[peer([192, 0, 2, 1], "10.231.2.0/24")]).is_err());
        assert!(check_peers(own, subnet, &[peer([192, 0, 2, 2], "10.231.1.0/24")]).is_err());
        assert!(check_peers(own, subnet, &[peer([192, 0, 2, 2], "10.231.0.0/16")]).is_err());
        assert!(
            check_peers(
                own,
                subnet,
                &[
                    peer([192, 0, 2, 2], "10.231.2.0/24"),
                    peer([192, 0, 2, 3], "10.231.2.0/25")
                ]
            )
            .is_err()
        );
    }
}
