//! A node's bridge and overlay: desired state in, kernel objects out.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use netlink_packet_route::link::{InfoKind, InfoVxlan};
use netlink_packet_route::route::RouteProtocol;
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVxlan};
use tracing::{debug, info};

use super::cidr::mac_for;
use super::netns::NETNS_DIR;
use super::plan::{FoundRoute, check_peers, plan_peers};
use super::{Ipv4Net, NetError, nl};

/// The IANA VXLAN port.
pub const VXLAN_PORT: u16 = 4789;
/// What VXLAN encapsulation adds to an IPv4 packet (outer IP, UDP, VXLAN,
/// inner Ethernet).
pub const VXLAN_OVERHEAD: u32 = 50;

/// Another node as the overlay sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The peer's address on the underlay network (its VXLAN endpoint).
    pub underlay: Ipv4Addr,
    /// The peer's task subnet; its first host is the peer's gateway.
    pub subnet: Ipv4Net,
}

/// What a node's task network looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeNetworkConfig {
    /// The bridge's name.
    pub bridge: String,
    /// The VXLAN device's name.
    pub vxlan: String,
    /// The VXLAN network identifier, the same on every node of the cluster.
    pub vni: u32,
    /// The UDP port of the overlay, the same on every node.
    pub port: u16,
    /// This node's underlay address: the VXLAN source address, which must be
    /// on one of the node's links.
    pub underlay: Ipv4Addr,
    /// This node's task subnet; the bridge holds its first host.
    pub subnet: Ipv4Net,
    /// The MTU of the overlay and the tasks' interfaces; `None`: the underlay
    /// link's MTU less the VXLAN overhead.
    pub mtu: Option<u32>,
    /// Where task namespace files made by [`NodeNetwork::attach_task`] go.
    pub netns_dir: PathBuf,
}

impl NodeNetworkConfig {
    /// The defaults (`rsw0`, `rsw0-vx`, VNI 4242, port 4789, MTU from the
    /// underlay) for a node at `underlay` owning `subnet`.
    pub fn new(underlay: Ipv4Addr, subnet: Ipv4Net) -> Self {
        Self {
            bridge: "rsw0".into(),
            vxlan: "rsw0-vx".into(),
            vni: 4242,
            port: VXLAN_PORT,
            underlay,
            subnet: subnet.trunc(),
            mtu: None,
            netns_dir: PathBuf::from(NETNS_DIR),
        }
    }

    /// The bridge address: the gateway with the subnet's prefix length.
    pub fn gateway(&self) -> Result<Ipv4Net, NetError> {
        let gw = self.subnet.gateway().ok_or_else(|| {
            NetError::Config(format!("subnet {} has no room for a gateway", self.subnet))
        })?;
        Ipv4Net::new(gw, self.subnet.prefix_len())
    }

    fn check(&self) -> Result<(), NetError> {
        for name in [&self.bridge, &self.vxlan] {
            check_link_name(name)?;
        }
        if self.bridge == self.vxlan {
            return Err(NetError::Config(
                "the bridge and the VXLAN device need two names".into(),
            ));
        }
        if self.vni == 0 || self.vni >= 1 << 24 {
            return Err(NetError::Config(format!(
                "VNI {} is not in 1..2^24",
                self.vni
            )));
        }
        if self.subnet.prefix_len() > 30 {
            return Err(NetError::Config(format!(
                "subnet {} is too small for tasks",
                self.subnet
            )));
        }
        self.gateway().map(|_| ())
    }
}

/// Link names: 1 to 15 bytes (IFNAMSIZ less the NUL), no slash, no space.
pub(crate) fn check_link_name(name: &str) -> Result<(), NetError> {
    if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', ':']) {
        return Err(NetError::Config(format!(
            "{name:?} is not a usable link name"
        )));
    }
    Ok(())
}

/// A node's task network in the network namespace of the netlink handle it
/// was made with. Holds no kernel state of its own: every call reads what the
/// kernel has and changes only the difference.
#[derive(Debug, Clone)]
pub struct NodeNetwork {
    config: NodeNetworkConfig,
    handle: Handle,
}

impl NodeNetwork {
    /// Opens a netlink connection in the calling thread's network namespace
    /// (its driver runs on the current tokio runtime).
    pub fn new(config: NodeNetworkConfig) -> Result<Self, NetError> {
        config.check()?;
        Ok(Self {
            config,
            handle: nl::connect()?,
        })
    }

    /// Uses an existing netlink handle (of the namespace to manage).
    pub fn with_handle(config: NodeNetworkConfig, handle: Handle) -> Result<Self, NetError> {
        config.check()?;
        Ok(Self { config, handle })
    }

    /// The configuration.
    pub fn config(&self) -> &NodeNetworkConfig {
        &self.config
    }

    /// The netlink handle, for the task side ([`super::attach`]).
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Brings the kernel to the desired state: bridge with the gateway address,
    /// VXLAN device on it, forwarding on, one flood entry and one route per
    /// peer, and nothing for nodes no longer listed. Safe to call again with
    /// the same or a changed peer list.
    pub async fn apply(&self, peers: &[Peer]) -> Result<(), NetError> {
        let c = &self.config;
        let h = &self.handle;
        check_peers(c.underlay, c.subnet, peers)?;
        let underlay_link = nl::link_with_addr(h, c.underlay).await?.ok_or_else(|| {
            NetError::Config(format!(
                "underlay address {} is on no link of this node",
                c.underlay
            ))
        })?;
        let bridge = self.ensure_bridge().await?;
        let vxlan = self.ensure_vxlan(underlay_link).await?;
        if vxlan.master != Some(bridge.index) || !vxlan.up {
            nl::set_link(
                h,
                &vxlan.name,
                LinkUnspec::new_with_index(vxlan.index)
                    .controller(bridge.index)
                    .up()
                    .build(),
            )
            .await?;
        }
        nl::set_up(h, &bridge).await?;
        nl::enable_ipv4_forwarding()?;

        let floods = nl::flood_dsts(h, vxlan.index).await?;
        let routes = nl::own_routes(h).await?;
        let found: Vec<FoundRoute> = routes
            .iter()
            .map(|r| FoundRoute {
                dst: r.dst,
                gateway: r.gateway,
                oif: r.oif,
            })
            .collect();
        let plan = plan_peers(peers, &floods, &found, bridge.index);
        for dst in &plan.flood_add {
            nl::flood_add(h, vxlan.index, *dst).await?;
        }
        for r in &plan.route_set {
            nl::route_replace(
                h,
                r.dst,
                r.gateway,
                bridge.index,
                RouteProtocol::Other(nl::ROUTE_PROTO),
            )
            .await?;
        }
        for i in &plan.route_del {
            let r = &routes[*i];
            nl::route_del(h, r.msg.clone(), r.dst).await?;
        }
        for dst in &plan.flood_del {
            nl::flood_del(h, vxlan.index, *dst).await?;
        }
        info!(
            bridge = %c.bridge,
            subnet = %c.subnet,
            peers = peers.len(),
            added = plan.flood_add.len(),
            removed = plan.flood_del.len(),
            "node network applied"
        );
        Ok(())
    }

    async fn ensure_bridge(&self) -> Result<nl::Link, NetError> {
        let c = &self.config;
        let h = &self.handle;
        let bridge = match nl::link_by_name(h, &c.bridge).await? {
            Some(l) if l.kind == Some(InfoKind::Bridge) => l,
            Some(_) => {
                return Err(NetError::Config(format!(
                    "link {} exists and is not a bridge",
                    c.bridge
                )));
            }
            None => {
                debug!(bridge = %c.bridge, "creating the bridge");
                nl::add_link(h, &c.bridge, LinkBridge::new(&c.bridge).build()).await?;
                self.require(&c.bridge).await?
            }
        };
        let want = c.gateway()?;
        // A MAC of its own, set (not inherited from the lowest port), so
        // tasks coming and going never move it; see [`mac_for`]. A bridge made
        // before it had one gets it now, and the gratuitous ARP this turns on
        // tells the peers, who hold whatever MAC it had when they resolved it.
        nl::enable_arp_notify(&c.bridge)?;
        let mac = mac_for(want.addr()).to_vec();
        if bridge.mac.as_ref() != Some(&mac) {
            debug!(bridge = %c.bridge, "setting the bridge's MAC address");
            nl::set_link(
                h,
                &c.bridge,
                LinkUnspec::new_with_index(bridge.index)
                    .address(mac)
                    .build(),
            )
            .await?;
        }
        let mut present = false;
        for (net, msg) in nl::ipv4_addrs(h, bridge.index).await? {
            if net == want {
                present = true;
            } else if net.prefix_len() != 32 {
                // The bridge is ours: an address from an earlier subnet goes
                // (its /32s are service VIPs, kept by `set_vips`).
                nl::del_addr(h, msg, net).await?;
            }
        }
        if !present {
            nl::add_addr(h, bridge.index, want).await?;
        }
        Ok(bridge)
    }

    async fn ensure_vxlan(&self, underlay_link: u32) -> Result<nl::Link, NetError> {
        let c = &self.config;
        let h = &self.handle;
        let mtu = match c.mtu {
            Some(m) => m,
            None => self.underlay_mtu(underlay_link).await?,
        };
        if let Some(l) = nl::link_by_name(h, &c.vxlan).await? {
            let same = l.kind == Some(InfoKind::Vxlan)
                && l.vxlan.contains(&InfoVxlan::Id(c.vni))
                && l.vxlan.contains(&InfoVxlan::Local(c.underlay))
                && l.vxlan.contains(&InfoVxlan::Port(c.port))
                && l.vxlan.contains(&InfoVxlan::Learning(false))
                && l.mtu == Some(mtu);
            if same {
                return Ok(l);
            }
            if l.kind != Some(InfoKind::Vxlan) {
                return Err(NetError::Config(format!(
                    "link {} exists and is not a VXLAN device",
                    c.vxlan
                )));
            }
            debug!(vxlan = %c.vxlan, "replacing the VXLAN device with other parameters");
            nl::del_link(h, l.index, &l.name).await?;
        }
        let msg = LinkVxlan::new(&c.vxlan, c.vni)
            .dev(underlay_link)
            .local(c.underlay)
            .port(c.port)
            .learning(false)
            .mtu(mtu)
            .build();
        nl::add_link(h, &c.vxlan, msg).await?;
        self.require(&c.vxlan).await
    }

    async fn underlay_mtu(&self, index: u32) -> Result<u32, NetError> {
        let links = nl::links(&self.handle).await?;
        let mtu = links
            .iter()
            .find(|l| l.index == index)
            .and_then(|l| l.mtu)
            .unwrap_or(1500);
        Ok(mtu.saturating_sub(VXLAN_OVERHEAD).max(576))
    }

    async fn require(&self, name: &str) -> Result<nl::Link, NetError> {
        nl::link_by_name(&self.handle, name)
            .await?
            .ok_or_else(|| NetError::Config(format!("link {name} vanished right after creation")))
    }

    /// The MTU for task interfaces: the overlay's.
    pub async fn task_mtu(&self) -> Result<u32, NetError> {
        if let Some(m) = self.config.mtu {
            return Ok(m);
        }
        Ok(nl::link_by_name(&self.handle, &self.config.vxlan)
            .await?
            .and_then(|l| l.mtu)
            .unwrap_or(1500 - VXLAN_OVERHEAD))
    }

    /// Deletes everything `apply` and the attachments made in this namespace:
    /// the routes marked as ours, the task veths still on the bridge, the
    /// VXLAN device (with its FDB), and the bridge (with the VIPs on it). Task namespace files are
    /// the attachments' to delete ([`NodeNetwork::detach`]).
    pub async fn teardown(&self) -> Result<(), NetError> {
        let c = &self.config;
        let h = &self.handle;
        for r in nl::own_routes(h).await? {
            nl::route_del(h, r.msg, r.dst).await?;
        }
        let links = nl::links(h).await?;
        let bridge = links.iter().find(|l| l.name == c.bridge);
        if let Some(bridge) = bridge {
            for l in links.iter().filter(|l| {
                l.master == Some(bridge.index)
                    && l.name.starts_with(super::attach::HOST_VETH_PREFIX)
            }) {
                nl::del_link(h, l.index, &l.name).await?;
            }
        }
        if let Some(v) = links.iter().find(|l| l.name == c.vxlan) {
            nl::del_link(h, v.index, &v.name).await?;
        }
        if let Some(b) = bridge {
            nl::del_link(h, b.index, &b.name).await?;
        }
        info!(bridge = %c.bridge, "node network torn down");
        Ok(())
    }
}
