//! A task's interface: a veth pair from the node's bridge into the task's
//! network namespace, where its end becomes `eth0` with the task's address and
//! a default route through the node's gateway.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};
use sha2::{Digest, Sha256};
use tracing::info;

use super::cidr::mac_for;
use super::netns::{create_netns, delete_netns, in_netns};
use super::node::check_link_name;
use super::{Ipv4Net, NetError, NodeNetwork, nl};

/// The prefix of host-side task veths; `teardown` deletes the links on the
/// bridge that carry it.
pub const HOST_VETH_PREFIX: &str = "rsv";
/// The prefix of the task side before it is moved and renamed.
const PEER_VETH_PREFIX: &str = "rsp";
/// The task side's name inside the task namespace.
pub const TASK_IFNAME: &str = "eth0";

/// The host-side veth name of the task `key` (a task id): stable, so a retried
/// attach finds the earlier attempt, and short enough for a link name.
pub fn host_veth_name(key: &str) -> String {
    format!("{HOST_VETH_PREFIX}{}", short_hash(key))
}

/// The name of the namespace file made for the task `key`.
fn task_netns_name(key: &str) -> String {
    format!("task-{}", short_hash(key))
}

fn short_hash(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    // 12 hex digits (48 bits) keep the name at 15 bytes.
    hex::encode(&digest[..6])
}

/// What to attach, for a bridge of any node network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachSpec {
    /// The task's identity; names the host veth.
    pub key: String,
    /// The task's network namespace file.
    pub netns: PathBuf,
    /// The task's address and on-link prefix (the node subnet's length).
    pub address: Ipv4Net,
    /// The default gateway (the bridge's address).
    pub gateway: Ipv4Addr,
    /// The bridge to enslave the host side to.
    pub bridge: String,
    /// The MTU of both ends.
    pub mtu: u32,
    /// Whether `detach` deletes the namespace file (it was made for the task).
    pub owns_netns: bool,
}

/// An attached task interface, as recorded for the task status and for
/// `detach`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The host side's name, on the bridge.
    pub host_veth: String,
    /// The task's network namespace file.
    pub netns: PathBuf,
    /// The task's address and prefix.
    pub address: Ipv4Net,
    /// The task's default gateway.
    pub gateway: Ipv4Addr,
    /// Whether `detach` deletes the namespace file.
    pub owns_netns: bool,
}

/// Creates the veth pair for `spec` with the netlink handle of the bridge's
/// namespace, moves its task end into the task namespace and configures both
/// ends. An earlier attempt for the same key is replaced.
pub async fn attach(h: &Handle, spec: &AttachSpec) -> Result<Attachment, NetError> {
    if !spec.address.contains(spec.gateway) {
        return Err(NetError::Config(format!(
            "gateway {} is outside the task's subnet {}",
            spec.gateway, spec.address
        )));
    }
    let hash = short_hash(&spec.key);
    let host = format!("{HOST_VETH_PREFIX}{hash}");
    let peer = format!("{PEER_VETH_PREFIX}{hash}");
    check_link_name(&host)?;
    let bridge = nl::link_by_name(h, &spec.bridge)
        .await?
        .ok_or_else(|| NetError::Config(format!("bridge {} does not exist", spec.bridge)))?;
    for stale in [&host, &peer] {
        if let Some(l) = nl::link_by_name(h, stale).await? {
            nl::del_link(h, l.index, &l.name).await?;
        }
    }
    nl::add_link(h, &host, LinkVeth::new(&host, &peer).mtu(spec.mtu).build()).await?;
    let result = configure(h, spec, &host, &peer, bridge.index).await;
    if let Err(e) = result {
        // Deleting the host end deletes the pair, wherever the task end is.
        if let Ok(Some(l)) = nl::link_by_name(h, &host).await {
            let _ = nl::del_link(h, l.index, &host).await;
        }
        return Err(e);
    }
    info!(task = %spec.key, veth = %host, address = %spec.address, "task attached");
    Ok(Attachment {
        host_veth: host,
        netns: spec.netns.clone(),
        address: spec.address,
        gateway: spec.gateway,
        owns_netns: spec.owns_netns,
    })
}

async fn configure(
    h: &Handle,
    spec: &AttachSpec,
    host: &str,
    peer: &str,
    bridge: u32,
) -> Result<(), NetError> {
    let peer_link = nl::link_by_name(h, peer)
        .await?
        .ok_or_else(|| NetError::Config(format!("veth end {peer} vanished")))?;
    let ns = File::open(&spec.netns)
        .map_err(|e| NetError::io("open the task namespace", &spec.netns, e))?;
    nl::set_link(
        h,
        peer,
        LinkUnspec::new_with_index(peer_link.index)
            .setns_by_fd(ns.as_raw_fd())
            .build(),
    )
    .await?;
    drop(ns);
    let host_link = nl::link_by_name(h, host)
        .await?
        .ok_or_else(|| NetError::Config(format!("veth end {host} vanished")))?;
    nl::set_link(
        h,
        host,
        LinkUnspec::new_with_index(host_link.index)
            .controller(bridge)
            .up()
            .build(),
    )
    .await?;
    let (peer, address, gateway, mtu) = (peer.to_string(), spec.address, spec.gateway, spec.mtu);
    in_netns(&spec.netns, move |h| async move {
        configure_inside(&h, &peer, address, gateway, mtu).await
    })
    .await
}

/// Inside the task namespace: rename, address, up, `lo` up, default route.
async fn configure_inside(
    h: &Handle,
    peer: &str,
    address: Ipv4Net,
    gateway: Ipv4Addr,
    mtu: u32,
) -> Result<(), NetError> {
    let link = nl::link_by_name(h, peer).await?.ok_or_else(|| {
        NetError::Config(format!(
            "veth end {peer} did not arrive in the task namespace"
        ))
    })?;
    if let Some(old) = nl::link_by_name(h, TASK_IFNAME).await? {
        return Err(NetError::Config(format!(
            "the task namespace already has an {TASK_IFNAME} (index {})",
            old.index
        )));
    }
    nl::set_link(
        h,
        peer,
        LinkUnspec::new_with_index(link.index)
            .name(TASK_IFNAME)
            .mtu(mtu)
            .address(mac_for(address.addr()).to_vec())
            .build(),
    )
    .await?;
    nl::add_addr(h, link.index, address).await?;
    nl::set_link(
        h,
        TASK_IFNAME,
        LinkUnspec::new_with_index(link.index).up().build(),
    )
    .await?;
    if let Some(lo) = nl::link_by_name(h, "lo").await? {
        nl::set_up(h, &lo).await?;
    }
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(Ipv4Addr::UNSPECIFIED, 0)
        .gateway(gateway)
        .output_interface(link.index)
        .build();
    h.route()
        .add(route)
        .replace()
        .execute()
        .await
        .map_err(|source| NetError::Netlink {
            op: "install the default route via",
            subject: IpAddr::V4(gateway).to_string(),
            source,
        })
}

/// Removes a task's interface (the veth pair, through its host end) and, if
/// it was made for the task, its namespace file. Already gone is fine.
pub async fn detach(h: &Handle, attachment: &Attachment) -> Result<(), NetError> {
    if let Some(l) = nl::link_by_name(h, &attachment.host_veth).await? {
        nl::del_link(h, l.index, &l.name).await?;
    }
    if attachment.owns_netns {
        delete_netns(&attachment.netns)?;
    }
    info!(veth = %attachment.host_veth, "task detached");
    Ok(())
}

impl NodeNetwork {
    /// Attaches the task `key` in the existing namespace file `netns` with
    /// `address` from this node's subnet; `detach` leaves the file.
    pub async fn attach(
        &self,
        key: &str,
        netns: &Path,
        address: Ipv4Addr,
    ) -> Result<Attachment, NetError> {
        self.attach_spec(key, netns.to_path_buf(), address, false)
            .await
    }

    /// Makes a namespace file for the task `key` in the configured directory
    /// and attaches it with `address`; a container joins it by the
    /// attachment's path, and `detach` deletes it.
    pub async fn attach_task(&self, key: &str, address: Ipv4Addr) -> Result<Attachment, NetError> {
        let path = create_netns(&self.config().netns_dir, &task_netns_name(key))?;
        let out = self.attach_spec(key, path.clone(), address, true).await;
        if out.is_err() {
            let _ = delete_netns(&path);
        }
        out
    }

    async fn attach_spec(
        &self,
        key: &str,
        netns: PathBuf,
        address: Ipv4Addr,
        owns_netns: bool,
    ) -> Result<Attachment, NetError> {
        let c = self.config();
        let gateway = c.gateway()?;
        if !c.subnet.contains(address) || address == gateway.addr() || address == c.subnet.network()
        {
            return Err(NetError::Config(format!(
                "{address} is not a task address of subnet {}",
                c.subnet
            )));
        }
        let spec = AttachSpec {
            key: key.to_string(),
            netns,
            address: Ipv4Net::new(address, c.subnet.prefix_len())?,
            gateway: gateway.addr(),
            bridge: c.bridge.clone(),
            mtu: self.task_mtu().await?,
            owns_netns,
        };
        attach(self.handle(), &spec).await
    }

    /// The namespace file [`NodeNetwork::attach_task`] makes for the task `key`.
    pub fn task_netns(&self, key: &str) -> PathBuf {
        self.config().netns_dir.join(task_netns_name(key))
    }

    /// Removes what [`NodeNetwork::attach_task`] made for the task `key`
    /// (knowing only the key, e.g. after a restart). Already gone is fine.
    pub async fn detach_task(&self, key: &str) -> Result<(), NetError> {
        if let Some(l) = nl::link_by_name(self.handle(), &host_veth_name(key)).await? {
            nl::del_link(self.handle(), l.index, &l.name).await?;
        }
        delete_netns(&self.task_netns(key))
    }

    /// Removes a task's interface made by [`NodeNetwork::attach`] or
    /// [`NodeNetwork::attach_task`].
    pub async fn detach(&self, attachment: &Attachment) -> Result<(), NetError> {
        detach(self.handle(), attachment).await
    }
}
