//! The netlink requests the network module makes, over `rtnetlink`.
//!
//! Each helper is one kernel operation with the errors that mean "already
//! so" folded into success, which is what makes the callers idempotent.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol,
};
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use super::{Ipv4Net, NetError};

/// The routing protocol number that marks the routes this module installs, so
/// that `apply` and `teardown` find exactly their own (`ip route` shows
/// `proto 114`).
pub(crate) const ROUTE_PROTO: u8 = 114;

/// The all-zero MAC of the VXLAN flood entries: frames with no better FDB entry
/// (broadcast, ARP, unknown unicast) go to every such destination.
pub(crate) const FLOOD_MAC: [u8; 6] = [0; 6];

const ENOENT: i32 = 2;
const ESRCH: i32 = 3;
const ENODEV: i32 = 19;
const EEXIST: i32 = 17;
const EADDRNOTAVAIL: i32 = 99;

/// Opens a netlink connection in the calling thread's network namespace; its
/// driver runs on the current tokio runtime.
pub(crate) fn connect() -> Result<Handle, NetError> {
    let (conn, handle, _) = rtnetlink::new_connection()
        .map_err(|e| NetError::io("open a netlink socket", std::path::Path::new("netlink"), e))?;
    tokio::spawn(conn);
    Ok(handle)
}

/// The errno of a kernel refusal, if that is what the error is.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

fn nl(op: &'static str, subject: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let subject = subject.into();
    move |source| NetError::Netlink {
        op,
        subject,
        source,
    }
}

/// What the module needs to know about a link.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub index: u32,
    pub name: String,
    pub mtu: Option<u32>,
    pub master: Option<u32>,
    pub kind: Option<InfoKind>,
    pub vxlan: Vec<InfoVxlan>,
    pub up: bool,
    /// The hardware address, if the link has one.
    pub mac: Option<Vec<u8>>,
}

impl Link {
    fn from_message(msg: LinkMessage) -> Self {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            mtu: None,
            master: None,
            kind: None,
            vxlan: Vec::new(),
            up: msg.header.flags.contains(LinkFlags::Up),
            mac: None,
        };
        for attr in msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => link.name = n,
                LinkAttribute::Mtu(m) => link.mtu = Some(m),
                LinkAttribute::Controller(m) => link.master = Some(m),
                LinkAttribute::Address(a) => link.mac = Some(a),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::Kind(k) => link.kind = Some(k),
                            LinkInfo::Data(InfoData::Vxlan(v)) => link.vxlan = v,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        link
    }
}

/// All links of the namespace.
pub(crate) async fn links(h: &Handle) -> Result<Vec<Link>, NetError> {
    let msgs: Vec<LinkMessage> = h
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("list links", "all"))?;
    Ok(msgs.into_iter().map(Link::from_message).collect())
}

/// The link named `name`, if there is one.
pub(crate) async fn link_by_name(h: &Handle, name: &str) -> Result<Option<Link>, NetError> {
    match h
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
    {
        Ok(m) => Ok(m.map(Link::from_message)),
        Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
        Err(e) => Err(nl("look up link", name)(e)),
    }
}

/// Creates a link from a prepared message; an existing one of that name is
/// left alone (the caller checks what it found before).
pub(crate) async fn add_link(h: &Handle, name: &str, msg: LinkMessage) -> Result<(), NetError> {
    match h.link().add(msg).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
        Err(e) => Err(nl("create link", name)(e)),
    }
}

/// Changes a link's properties (state, master, name, namespace, MTU).
pub(crate) async fn set_link(h: &Handle, name: &str, msg: LinkMessage) -> Result<(), NetError> {
    h.link()
        .set(msg)
        .execute()
        .await
        .map_err(nl("change link", name))
}

/// Brings a link up.
pub(crate) async fn set_up(h: &Handle, link: &Link) -> Result<(), NetError> {
    if link.up {
        return Ok(());
    }
    set_link(
        h,
        &link.name,
        LinkUnspec::new_with_index(link.index).up().build(),
    )
    .await
}

/// Deletes a link; a link already gone is fine.
pub(crate) async fn del_link(h: &Handle, index: u32, name: &str) -> Result<(), NetError> {
    match h.link().del(index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(ENODEV) => Ok(()),
        Err(e) => Err(nl("delete link", name)(e)),
    }
}

/// The IPv4 addresses on a link, with the messages to delete them by.
pub(crate) async fn ipv4_addrs(
    h: &Handle,
    index: u32,
) -> Result<Vec<(Ipv4Net, AddressMessage)>, NetError> {
    let msgs: Vec<AddressMessage> = h
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(nl("list addresses", format!("link {index}")))?;
    let mut out = Vec::new();
    for m in msgs {
        if m.header.index != index {
            continue;
        }
        let addr = m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(IpAddr::V4(v)) | AddressAttribute::Address(IpAddr::V4(v)) => {
                Some(*v)
            }
            _ => None,
        });
        if let Some(addr) = addr {
            out.push((Ipv4Net::new(addr, m.header.prefix_len)?, m));
        }
    }
    Ok(out)
}

/// Adds an address to a link; already present is fine.
pub(crate) async fn add_addr(h: &Handle, index: u32, net: Ipv4Net) -> Result<(), NetError> {
    match h
        .address()
        .add(index, IpAddr::V4(net.addr()), net.prefix_len())
        .execute()
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
        Err(e) => Err(nl("add address", net.to_string())(e)),
    }
}

/// Removes an address; already gone is fine.
pub(crate) async fn del_addr(
    h: &Handle,
    msg: AddressMessage,
    net: Ipv4Net,
) -> Result<(), NetError> {
    match h.address().del(msg).execute().await {
        Ok(()) => Ok(()),
        Err(e) if matches!(errno(&e), Some(EADDRNOTAVAIL) | Some(ENODEV)) => Ok(()),
        Err(e) => Err(nl("delete address", net.to_string())(e)),
    }
}

fn fdb_message(index: u32, dst: Ipv4Addr) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Bridge;
    m.header.ifindex = index;
    m.header.state = NeighbourState::Permanent;
    // NTF_SELF: the entry is the VXLAN device's own, not the bridge's.
    m.header.flags = NeighbourFlags::Own;
    m.attributes
        .push(NeighbourAttribute::LinkLayerAddress(FLOOD_MAC.to_vec()));
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(dst)));
    m
}

async fn neigh_request(
    h: &Handle,
    msg: RouteNetlinkMessage,
    flags: u16,
) -> Result<(), rtnetlink::Error> {
    let mut req = NetlinkMessage::from(msg);
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    let mut handle = h.clone();
    let mut resp = handle.request(req)?;
    while let Some(m) = futures::StreamExt::next(&mut resp).await {
        if let NetlinkPayload::Error(e) = m.payload {
            return Err(rtnetlink::Error::NetlinkError(e));
        }
    }
    Ok(())
}

/// The destinations of the flood (all-zero MAC) entries of a VXLAN device.
pub(crate) async fn flood_dsts(h: &Handle, index: u32) -> Result<Vec<Ipv4Addr>, NetError> {
    let msgs: Vec<NeighbourMessage> = h
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Bridge)
        .execute()
        .try_collect()
        .await
        .map_err(nl("list FDB entries", format!("link {index}")))?;
    let mut out = Vec::new();
    for m in msgs {
        if m.header.ifindex != index {
            continue;
        }
        let zero_mac = m
            .attributes
            .iter()
            .any(|a| matches!(a, NeighbourAttribute::LinkLayerAddress(l) if l[..] == FLOOD_MAC));
        let dst = m.attributes.iter().find_map(|a| match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v)) => Some(*v),
            _ => None,
        });
        if let (true, Some(dst)) = (zero_mac, dst) {
            out.push(dst);
        }
    }
    Ok(out)
}

/// Adds a flood entry towards `dst` next to the others (`bridge fdb append`).
pub(crate) async fn flood_add(h: &Handle, index: u32, dst: Ipv4Addr) -> Result<(), NetError> {
    let msg = RouteNetlinkMessage::NewNeighbour(fdb_message(index, dst));
    match neigh_request(h, msg, NLM_F_CREATE | NLM_F_APPEND).await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(EEXIST) => Ok(()),
        Err(e) => Err(nl("add FDB flood entry", dst.to_string())(e)),
    }
}

/// Removes the flood entry towards `dst`; already gone is fine.
pub(crate) async fn flood_del(h: &Handle, index: u32, dst: Ipv4Addr) -> Result<(), NetError> {
    let msg = RouteNetlinkMessage::DelNeighbour(fdb_message(index, dst));
    match neigh_request(h, msg, 0).await {
        Ok(()) => Ok(()),
        Err(e) if matches!(errno(&e), Some(ENOENT) | Some(ENODEV)) => Ok(()),
        Err(e) => Err(nl("delete FDB flood entry", dst.to_string())(e)),
    }
}

/// A route this module installed: destination, gateway, the message to
/// delete it by.
#[derive(Debug, Clone)]
pub(crate) struct OwnRoute {
    pub dst: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
    pub msg: RouteMessage,
}

/// The IPv4 routes of the main table marked with [`ROUTE_PROTO`].
pub(crate) async fn own_routes(h: &Handle) -> Result<Vec<OwnRoute>, NetError> {
    let msgs: Vec<RouteMessage> = h
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(nl("list routes", "ipv4"))?;
    let mut out = Vec::new();
    for m in msgs {
        if m.header.protocol != RouteProtocol::Other(ROUTE_PROTO)
            || m.header.table != RouteHeader::RT_TABLE_MAIN
        {
            continue;
        }
        let mut dst = Ipv4Addr::UNSPECIFIED;
        let mut gateway = None;
        let mut oif = None;
        for a in &m.attributes {
            match a {
                RouteAttribute::Destination(RouteAddress::Inet(v)) => dst = *v,
                RouteAttribute::Gateway(RouteAddress::Inet(v)) => gateway = Some(*v),
                RouteAttribute::Oif(i) => oif = Some(*i),
                _ => {}
            }
        }
        out.push(OwnRoute {
            dst: Ipv4Net::new(dst, m.header.destination_prefix_length)?,
            gateway,
            oif,
            msg: m,
        });
    }
    Ok(out)
}

/// Installs (or replaces) `dst via gateway dev oif onlink`, marked as ours.
pub(crate) async fn route_replace(
    h: &Handle,
    dst: Ipv4Net,
    gateway: Ipv4Addr,
    oif: u32,
    proto: RouteProtocol,
) -> Result<(), NetError> {
    let msg = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(dst.network(), dst.prefix_len())
        .gateway(gateway)
        .output_interface(oif)
        .onlink()
        .protocol(proto)
        .build();
    h.route()
        .add(msg)
        .replace()
        .execute()
        .await
        .map_err(nl("install route", dst.to_string()))
}

/// Deletes a route; already gone is fine.
pub(crate) async fn route_del(h: &Handle, msg: RouteMessage, dst: Ipv4Net) -> Result<(), NetError> {
    match h.route().del(msg).execute().await {
        Ok(()) => Ok(()),
        Err(e) if matches!(errno(&e), Some(ESRCH) | Some(ENODEV)) => Ok(()),
        Err(e) => Err(nl("delete route", dst.to_string())(e)),
    }
}

/// The index of the link holding the IPv4 address `ip`, if any.
pub(crate) async fn link_with_addr(h: &Handle, ip: Ipv4Addr) -> Result<Option<u32>, NetError> {
    let msgs: Vec<AddressMessage> = h
        .address()
        .get()
        .set_address_filter(IpAddr::V4(ip))
        .execute()
        .try_collect()
        .await
        .map_err(nl("look up address", ip.to_string()))?;
    Ok(msgs
        .iter()
        .find(|m| {
            m.attributes.iter().any(|a| {
                matches!(a, AddressAttribute::Local(IpAddr::V4(v)) | AddressAttribute::Address(IpAddr::V4(v)) if *v == ip)
            })
        })
        .map(|m| m.header.index))
}

/// Turns IPv4 forwarding on in the calling thread's namespace (`/proc/sys/net`
/// follows the namespace of the thread that opens it): a node routes between
/// its bridge and the overlay.
pub(crate) fn enable_ipv4_forwarding() -> Result<(), NetError> {
    turn_on("/proc/sys/net/ipv4/ip_forward", "enable forwarding in")
}

/// Makes the kernel send a gratuitous ARP for every address of `link` when its
/// MAC changes, so neighbours holding the old MAC learn the new one at once.
pub(crate) fn enable_arp_notify(link: &str) -> Result<(), NetError> {
    turn_on(
        &format!("/proc/sys/net/ipv4/conf/{link}/arp_notify"),
        "enable ARP notifications in",
    )
}

/// Writes 1 to the sysctl file `path` (of the calling thread's network
/// namespace) unless it holds 1 already.
fn turn_on(path: &str, what: &'static str) -> Result<(), NetError> {
    let path = std::path::Path::new(path);
    if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    std::fs::write(path, "1").map_err(|e| NetError::io(what, path, e))
}
