//! The cluster's task network on the managers' side: the pool node subnets are cut
//! from, the allocation of one /24 per node, and the peer list each node's overlay
//! follows.
//!
//! Allocation happens in the dispatcher when a node without a subnet sends a
//! heartbeat: the batch that records the subnet also rewrites the cluster object, so
//! two concurrent allocations conflict on its version and the second one re-reads
//! and picks another subnet. A removed node's subnet is free again as soon as its
//! record is gone, since the free subnets are computed from the node records.

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use rswarm_proto::api::{Node, NodeState};

/// The pool a cluster gets when `rswarm init` is given none.
pub const DEFAULT_POOL: &str = "10.231.0.0/16";
/// The prefix length of a node's task subnet.
pub const NODE_PREFIX: u8 = 24;

/// Errors of the task network bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// The text is not `A.B.C.D/LEN` with an IPv4 address.
    #[error("invalid IPv4 prefix {0:?}: expected A.B.C.D/LEN")]
    Syntax(String),
    /// The prefix length is out of range.
    #[error("invalid pool {pool}: the prefix length must be between 8 and {NODE_PREFIX}")]
    PrefixLength {
        /// The pool as given.
        pool: String,
    },
    /// Host bits are set.
    #[error("invalid pool {pool}: host bits are set (did you mean {network}?)")]
    HostBits {
        /// The pool as given.
        pool: String,
        /// The prefix with the host bits cleared.
        network: String,
    },
}

/// An IPv4 prefix (`10.231.0.0/16`) with its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    /// The network address.
    pub network: Ipv4Addr,
    /// The prefix length, at most 32.
    pub len: u8,
}

impl Prefix {
    fn mask(len: u8) -> u32 {
        if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        }
    }

    /// Parses `A.B.C.D/LEN`, rejecting set host bits.
    fn parse_exact(s: &str) -> Result<Prefix, NetworkError> {
        let syntax = || NetworkError::Syntax(s.to_owned());
        let (addr, len) = s.split_once('/').ok_or_else(syntax)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| syntax())?;
        let len: u8 = len.parse().map_err(|_| syntax())?;
        if len > 32 {
            return Err(syntax());
        }
        let network = Ipv4Addr::from(u32::from(addr) & Prefix::mask(len));
        if network != addr {
            return Err(NetworkError::HostBits {
                pool: s.to_owned(),
                network: Prefix { network, len }.to_string(),
            });
        }
        Ok(Prefix { network, len })
    }

    /// The `index`-th sub-prefix of length `len`, `None` past the end.
    fn subnet(&self, len: u8, index: u32) -> Option<Prefix> {
        let bits = u32::from(len.checked_sub(self.len)?);
        if bits >= 32 || u64::from(index) >= 1u64 << bits {
            return None;
        }
        let offset = index << (32 - u32::from(len));
        Some(Prefix {
            network: Ipv4Addr::from(u32::from(self.network) | offset),
            len,
        })
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

/// Parses and checks a cluster pool: an IPv4 prefix of length 8 to 24 without host
/// bits, so it holds at least one node subnet.
pub fn parse_pool(s: &str) -> Result<Prefix, NetworkError> {
    let pool = Prefix::parse_exact(s.trim())?;
    if !(8..=NODE_PREFIX).contains(&pool.len) {
        return Err(NetworkError::PrefixLength { pool: s.to_owned() });
    }
    Ok(pool)
}

impl FromStr for Prefix {
    type Err = NetworkError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_pool(s)
    }
}

/// The node's recorded subnet, if any.
pub fn node_subnet(node: &Node) -> Option<&str> {
    node.network
        .as_ref()
        .map(|n| n.subnet.as_str())
        .filter(|s| !s.is_empty())
}

/// The part of `pool` service virtual IPs come from: its last /24, kept out of the
/// node subnets. A pool of a single /24 has no room for VIPs.
pub fn vip_range(pool: &Prefix) -> Option<Prefix> {
    if pool.len >= NODE_PREFIX {
        return None;
    }
    let count = 1u32 << (NODE_PREFIX - pool.len);
    pool.subnet(NODE_PREFIX, count - 1)
}

/// The lowest address of the pool's VIP range that no service in `taken` holds
/// (`.1` to `.254`); `None` when the range is full or there is none.
pub fn free_vip<'a>(pool: &Prefix, taken: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let range = vip_range(pool)?;
    let used: HashSet<&str> = taken.into_iter().collect();
    (1..=254u32)
        .map(|host| Ipv4Addr::from(u32::from(range.network) | host).to_string())
        .find(|vip| !used.contains(vip.as_str()))
}

/// The lowest /24 of `pool` no node in `nodes` holds; `None` when the pool is full.
/// The last /24 is left out when the pool has more: it holds the service VIPs.
pub fn free_subnet<'a>(pool: &Prefix, nodes: impl IntoIterator<Item = &'a Node>) -> Option<String> {
    let used: HashSet<&str> = nodes.into_iter().filter_map(node_subnet).collect();
    let count = 1u32 << (NODE_PREFIX - pool.len);
    let count = if vip_range(pool).is_some() {
        count - 1
    } else {
        count
    };
    (0..count)
        .filter_map(|i| pool.subnet(NODE_PREFIX, i))
        .map(|p| p.to_string())
        .find(|s| !used.contains(s.as_str()))
}

/// A peer of a node's overlay: another node that is not down and has a subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's node id.
    pub node_id: String,
    /// The host part of its advertised address.
    pub underlay: String,
    /// Its task subnet.
    pub subnet: String,
}

/// The overlay peers of node `self_id`: every other node that is not down, has a
/// subnet and an advertised address, sorted by node id.
pub fn peers_of<'a>(self_id: &str, nodes: impl IntoIterator<Item = &'a Node>) -> Vec<PeerInfo> {
    let mut peers: Vec<PeerInfo> = nodes
        .into_iter()
        .filter(|n| n.id != self_id)
        .filter_map(|n| {
            let status = n.status.as_ref()?;
            if status.state == NodeState::Down as i32 {
                return None;
            }
            let underlay = underlay_of(&status.addr)?;
            Some(PeerInfo {
                node_id: n.id.clone(),
                underlay,
                subnet: node_subnet(n)?.to_owned(),
            })
        })
        .collect();
    peers.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    peers
}

/// The IPv4 host of an `IP:PORT` address; `None` for anything else.
fn underlay_of(addr: &str) -> Option<String> {
    match addr.parse::<std::net::SocketAddr>().ok()? {
        std::net::SocketAddr::V4(a) => Some(a.ip().to_string()),
        std::net::SocketAddr::V6(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use rswarm_proto::api::{NodeNetwork, NodeStatus};

    use super::*;

    fn node(id: &str, subnet: &str, state: NodeState, addr: &str) -> Node {
        Node {
            id: id.into(),
            network: Some(NodeNetwork {
                subnet: subnet.into(),
            }),
            status: Some(NodeStatus {
                state: state as i32,
                message: String::new(),
                addr: addr.into(),
                port_errors: Vec::new(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn pools_are_checked() {
        assert_eq!(parse_pool(DEFAULT_POOL).unwrap().to_string(), DEFAULT_POOL);
        assert_eq!(parse_pool("10.0.0.0/24").unwrap().len, 24);
        assert!(matches!(
            parse_pool("10.0.0.0/25"),
            Err(NetworkError::PrefixLength { .. })
        ));
        assert!(matches!(
            parse_pool("16.0.0.0/4"),
            Err(NetworkError::PrefixLength { .. })
        ));
        assert_eq!(
            parse_pool("10.231.1.0/16"),
            Err(NetworkError::HostBits {
                pool: "10.231.1.0/16".into(),
                network: "10.231.0.0/16".into()
            })
        );
        for bad in [
            "10.0.0.0",
            "fd00::/64",
            "10.0.0/16",
            "10.0.0.0/x",
            "10.0.0.0/33",
        ] {
            assert!(
                matches!(parse_pool(bad), Err(NetworkError::Syntax(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_lowest_free_subnet_is_allocated() {
        let pool = parse_pool("10.231.0.0/16").unwrap();
        assert_eq!(free_subnet(&pool, []).as_deref(), Some("10.231.0.0/24"));
        let nodes = [
            node("a", "10.231.0.0/24", NodeState::Ready, ""),
            node("b", "10.231.2.0/24", NodeState::Ready, ""),
            node("c", "", NodeState::Ready, ""),
        ];
        assert_eq!(free_subnet(&pool, &nodes).as_deref(), Some("10.231.1.0/24"));
        // A removed node's subnet is free again.
        assert_eq!(
            free_subnet(&pool, &nodes[1..]).as_deref(),
            Some("10.231.0.0/24")
        );
    }

    #[test]
    fn vips_come_from_the_last_slash_24_which_nodes_never_get() {
        let pool = parse_pool("10.1.2.0/23").unwrap();
        assert_eq!(vip_range(&pool).unwrap().to_string(), "10.1.3.0/24");
        assert_eq!(free_vip(&pool, []).as_deref(), Some("10.1.3.1"));
        assert_eq!(
            free_vip(&pool, ["10.1.3.1", "10.1.3.3"]).as_deref(),
            Some("10.1.3.2")
        );
        let all: Vec<String> = (1..=254).map(|h| format!("10.1.3.{h}")).collect();
        assert_eq!(free_vip(&pool, all.iter().map(String::as_str)), None);
        let single = parse_pool("10.1.2.0/24").unwrap();
        assert_eq!(vip_range(&single), None);
        assert_eq!(free_vip(&single, []), None);
        assert_eq!(free_subnet(&single, []).as_deref(), Some("10.1.2.0/24"));
    }

    #[test]
    fn a_full_pool_has_no_subnet() {
        let pool = parse_pool("10.1.0.0/22").unwrap();
        let nodes = [
            node("a", "10.1.0.0/24", NodeState::Ready, ""),
            node("b", "10.1.1.0/24", NodeState::Ready, ""),
            node("c", "10.1.2.0/24", NodeState::Ready, ""),
        ];
        assert_eq!(
            free_subnet(&pool, &nodes[..2]).as_deref(),
            Some("10.1.2.0/24")
        );
        // 10.1.3.0/24 holds the VIPs.
        assert_eq!(free_subnet(&pool, &nodes), None);
    }

    #[test]
    fn peers_are_the_other_live_nodes_with_a_subnet() {
        let nodes = [
            node("me", "10.231.0.0/24", NodeState::Ready, "192.0.2.1:4242"),
            node("b", "10.231.1.0/24", NodeState::Ready, "192.0.2.2:4242"),
            node("c", "10.231.2.0/24", NodeState::Down, "192.0.2.3:4242"),
            node("d", "", NodeState::Ready, "192.0.2.4:4242"),
            node(
                "e",
                "10.231.4.0/24",
                NodeState::Disconnected,
                "192.0.2.5:4242",
            ),
            node("f", "10.231.5.0/24", NodeState::Ready, "[2001:db8::1]:4242"),
        ];
        let peers = peers_of("me", &nodes);
        assert_eq!(
            peers,
            vec![
                PeerInfo {
                    node_id: "b".into(),
                    underlay: "192.0.2.2".into(),
                    subnet: "10.231.1.0/24".into()
                },
                PeerInfo {
                    node_id: "e".into(),
                    underlay: "192.0.2.5".into(),
                    subnet: "10.231.4.0/24".into()
                },
            ]
        );
    }
}
