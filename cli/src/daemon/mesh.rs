//! The node's routing mesh: the leader's endpoint table drives the node's
//! load-balancing proxy, so every published port is served on this node.
//!
//! Service VIP listeners are left out until the node holds the VIP addresses
//! (see `docs/design/networking.md`, "Not yet").

use rswarm_proto::api::EndpointsMessage;
use rswarm_proto::tls::Identity;
use rswarm_worker::mesh;
use rswarm_worker::proxy::{Proxy, ProxyConfig};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// What this node's proxy serves for `table`: its published ports.
fn published_only(table: &EndpointsMessage, node_id: &str) -> ProxyConfig {
    let mut config = mesh::proxy_config(table, node_id);
    config.listeners.retain(|l| l.bind.ip().is_unspecified());
    config
}

/// Follows the leader's endpoint table and serves it with the node's proxy until
/// `shutdown`.
pub fn start(
    identity: Identity,
    node_id: String,
    leader: watch::Receiver<Option<String>>,
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
        while table_rx.changed().await.is_ok() {
            let Some(table) = table_rx.borrow_and_update().clone() else {
                continue;
            };
            let config = published_only(&table, &node_id);
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
    fn only_published_ports_are_served_for_now() {
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
        let config = published_only(&table, "n2");
        assert_eq!(config.listeners.len(), 1);
        assert_eq!(config.listeners[0].bind, "0.0.0.0:8080".parse().unwrap());
    }
}
