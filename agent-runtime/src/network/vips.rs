//! Service virtual IPs held by the node: /32 addresses on the node's bridge, so
//! the node's proxy can bind `VIP:PORT` and tasks reach it through their gateway.
//! Every node holds every VIP. Nobody ARPs for one: tasks send to VIPs through
//! their gateway (VIPs are outside every node subnet) and nodes hold them
//! locally, so the copies do not collide on the shared overlay segment. (A dummy
//! device would be cleaner, but kernels without the dummy module refuse it.)

use std::net::Ipv4Addr;

use tracing::{debug, info};

use super::cidr::Ipv4Net;
use super::node::NodeNetwork;
use super::{NetError, nl};

impl NodeNetwork {
    /// Makes the bridge hold exactly `vips` as /32 addresses besides its
    /// gateway. Needs [`NodeNetwork::apply`] first (the bridge); safe to call
    /// again with the same or a changed list. Teardown removes them with the
    /// bridge.
    pub async fn set_vips(&self, vips: &[Ipv4Addr]) -> Result<(), NetError> {
        let h = self.handle();
        let name = &self.config().bridge;
        let link = nl::link_by_name(h, name)
            .await?
            .ok_or_else(|| NetError::Config(format!("no bridge {name} yet for the VIPs")))?;
        let wanted: Vec<Ipv4Net> = vips
            .iter()
            .map(|ip| Ipv4Net::new(*ip, 32))
            .collect::<Result<_, _>>()?;
        let present: Vec<_> = nl::ipv4_addrs(h, link.index)
            .await?
            .into_iter()
            .filter(|(net, _)| net.prefix_len() == 32)
            .collect();
        for (net, msg) in present.iter().cloned() {
            if !wanted.contains(&net) {
                debug!(vip = %net, "removing a VIP");
                nl::del_addr(h, msg, net).await?;
            }
        }
        for net in &wanted {
            if !present.iter().any(|(p, _)| p == net) {
                nl::add_addr(h, link.index, *net).await?;
            }
        }
        info!(bridge = %name, vips = vips.len(), "service VIPs applied");
        Ok(())
    }
}
