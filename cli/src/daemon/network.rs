//! The node's task network, following the session: once the managers have given
//! the node a subnet, its bridge and overlay are set up in the daemon's network
//! namespace and kept in step with the peer list each heartbeat brings. Nothing
//! is torn down when the daemon stops: containers keep running across restarts.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;

use rswarm_agent_runtime::network::{
    Ipv4Net, NetError, NodeNetwork, NodeNetworkConfig, Peer, TaskNetwork,
};
use rswarm_proto::api::NetworkPeer;
use rswarm_worker::session::SessionState;
use tokio::sync::watch;
use tracing::{info, warn};

/// Where the daemon publishes the node's task network for the executor.
pub type NetworkSender = watch::Sender<Option<Arc<TaskNetwork>>>;

/// Keeps the node network applied from the session's states until the session
/// ends. `underlay` is the node's advertised address; `dir` keeps the task
/// addresses.
pub async fn follow(
    mut states: watch::Receiver<Option<SessionState>>,
    underlay: IpAddr,
    dir: PathBuf,
    out: NetworkSender,
) {
    let IpAddr::V4(underlay) = underlay else {
        warn!(%underlay, "the task network needs an IPv4 node address: tasks get none");
        return;
    };
    let mut applied: Option<(String, Vec<NetworkPeer>)> = None;
    while states.changed().await.is_ok() {
        let Some(state) = states.borrow_and_update().clone() else {
            continue;
        };
        if state.subnet.is_empty() {
            continue;
        }
        let wanted = (state.subnet.clone(), state.peers.clone());
        if applied.as_ref() == Some(&wanted) {
            continue;
        }
        match apply(underlay, &state, &dir, &out).await {
            Ok(()) => {
                info!(subnet = %state.subnet, peers = state.peers.len(), "task network applied");
                applied = Some(wanted);
            }
            // Tried again with the next heartbeat's answer.
            Err(err) => warn!(subnet = %state.subnet, %err, "cannot set up the task network"),
        }
    }
}

async fn apply(
    underlay: Ipv4Addr,
    state: &SessionState,
    dir: &std::path::Path,
    out: &NetworkSender,
) -> Result<(), NetError> {
    let subnet: Ipv4Net = state.subnet.parse()?;
    let peers = peers(&state.peers);
    let current = out.borrow().clone();
    let network = match current {
        Some(n) if n.network().config().subnet == subnet.trunc() => n,
        _ => {
            let mut config = NodeNetworkConfig::new(underlay, subnet);
            // Per node, next to its addresses: several nodes may share a host
            // (tests, the demo), and whoever removes a node's data finds them.
            config.netns_dir = dir.with_file_name("netns");
            let node = NodeNetwork::new(config)?;
            Arc::new(TaskNetwork::new(node, dir.to_path_buf()))
        }
    };
    network.network().apply(&peers).await?;
    out.send_if_modified(|n| {
        let same = n.as_ref().is_some_and(|n| Arc::ptr_eq(n, &network));
        *n = Some(network.clone());
        !same
    });
    Ok(())
}

/// The peers as the overlay takes them; a malformed entry is left out.
fn peers(list: &[NetworkPeer]) -> Vec<Peer> {
    list.iter()
        .filter_map(|p| {
            let parsed = p
                .underlay
                .parse::<Ipv4Addr>()
                .ok()
                .zip(p.subnet.parse::<Ipv4Net>().ok());
            if parsed.is_none() {
                warn!(node.id = %p.node_id, underlay = %p.underlay, subnet = %p.subnet, "unusable overlay peer ignored");
            }
            parsed.map(|(underlay, subnet)| Peer { underlay, subnet })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_peers_are_left_out() {
        let peer = |underlay: &str, subnet: &str| NetworkPeer {
            node_id: "n".into(),
            underlay: underlay.into(),
            subnet: subnet.into(),
        };
        let got = peers(&[
            peer("192.0.2.2", "10.231.1.0/24"),
            peer("2001:db8::1", "10.231.2.0/24"),
            peer("192.0.2.3", "bogus"),
        ]);
        assert_eq!(
            got,
            vec![Peer {
                underlay: Ipv4Addr::new(192, 0, 2, 2),
                subnet: "10.231.1.0/24".parse().unwrap(),
            }]
        );
    }
}
