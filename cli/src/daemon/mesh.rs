//! The node's routing mesh: the leader's endpoint table drives the node's
//! load-balancing proxy, so every published port and every service VIP is served
//! on this node. VIP listeners are configured only once the node's bridge holds
//! the VIPs (a VIP that cannot be bound yet would only fail and be retried).

use std::sync::Arc;

use rswarm_agent_runtime::network::TaskNetwork;
use rswarm_proto::api::EndpointsMessage;
use rswarm_proto::tls::Identity;
use rswarm_worker::mesh;
use rswarm_worker::proxy::{Proxy, ProxyConfig};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// What this node's proxy serves for `table`: its published ports, and the VIP
/// listeners when the node holds the VIPs.
fn served(table: &EndpointsMessage, node_id: &str, with_vips: bool) -> ProxyConfig {
    let mut config = mesh::proxy_config(table, node_id);
    if !with_vips {
        config.listeners.retain(|l| l.bind.ip().is_unspecified());
    }
    config
}

/// Puts the table's VIPs on the node's bridge; whether they are held.
async fn hold_vips(network: Option<&Arc<TaskNetwork>>, table: &EndpointsMessage) -> bool {
    let Some(network) = network else {
        return false;
    };
    match network.network().set_vips(&mesh::virtual_ips(table)).await {
        Ok(()) => true,
        Err(err) => {
            warn!(%err, "cannot put the service VIPs on the node: VIP listeners wait");
            false
        }
    }
}

/// Follows the leader's endpoint table and serves it with the node's proxy until
/// `shutdown`.
pub fn start(
    identity: Identity,
    node_id: String,
    leader: watch::Receiver<Option<String>>,
    mut network: watch::Receiver<Option<Arc<TaskNetwork>>>,
    shutdown: CancellationToken,
) {
    let (tables, mut table_rx) = watch::channel(None);
    tokio::spawn(rswarm_worker::endpoints::follow(
        identity,
        leader,
        tables,
        shutdown.clone(),
    ));
    let (config_tx, config_rx) = watch::channel(ProxyConfig::default());
    tokio::spawn(Proxy::new().run(config_rx, shutdown.clone()));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = table_rx.changed() => if changed.is_err() { return },
                changed = network.changed() => if changed.is_err() { return },
            }
            let Some(table) = table_rx.borrow_and_update().clone() else {
                continue;
            };
            let node_network = network.borrow_and_update().clone();
            let with_vips = hold_vips(node_network.as_ref(), &table).await;
            let config = served(&table, &node_id, with_vips);
            debug!(listeners = config.listeners.len(), "proxy configuration");
            config_tx.send_if_modified(|current| {
                let changed = *current != config;
                *current = config;
                changed
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use rswarm_proto::api::{EndpointSpec, EndpointTask, PortConfig, ServiceEndpoints};

    use super::*;

    #[test]
    fn vip_listeners_only_once_the_vips_are_held() {
        let table = EndpointsMessage {
            services: vec![ServiceEndpoints {
                name: "web".into(),
                virtual_ip: "10.231.255.1".into(),
                spec: Some(EndpointSpec {
                    ports: vec![PortConfig {
                        target_port: 80,
                        published_port: 8080,
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                tasks: vec![EndpointTask {
                    task_id: "t1".into(),
                    node_id: "n1".into(),
                    address: "10.231.0.2".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let config = served(&table, "n2", false);
        assert_eq!(config.listeners.len(), 1);
        assert_eq!(config.listeners[0].bind, "0.0.0.0:8080".parse().unwrap());
        let config = served(&table, "n2", true);
        assert_eq!(config.listeners.len(), 2);
        assert_eq!(config.listeners[1].bind, "10.231.255.1:80".parse().unwrap());
    }
}
