//! The node's routing mesh: the leader's endpoint table drives the node's
//! load-balancing proxy, so every published port and every service VIP is served
//! on this node, and the node's DNS server, which answers the service names on
//! the bridge gateway's port 53 (the nameserver of every task container). VIP
//! listeners are configured only once the node's bridge holds the VIPs (a VIP
//! that cannot be bound yet would only fail and be retried).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rswarm_agent_runtime::network::{NetError, TaskNetwork};
use rswarm_proto::api::EndpointsMessage;
use rswarm_proto::tls::Identity;
use rswarm_worker::dns::{DnsConfig, DnsServer, Records, upstreams_from_resolv_conf};
use rswarm_worker::mesh;
use rswarm_worker::proxy::{Engine, Proxy, ProxyConfig, ProxyStatus};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The DNS port on the bridge gateway.
const DNS_PORT: u16 = rswarm_worker::sockets::DNS_PORT;
/// The environment variable that chooses the proxy's engine (`epoll`, the
/// default; `auto`: io_uring where the kernel allows it, else epoll;
/// `io_uring`).
pub const ENGINE_VAR: &str = "RSWARM_PROXY_ENGINE";
/// How soon a DNS server that could not bind is tried again.
const DNS_BIND_RETRY: Duration = Duration::from_secs(2);
/// How soon VIPs that could not be put on the bridge are tried again, when no
/// new table or network comes first.
const VIP_RETRY: Duration = Duration::from_secs(2);
/// Where the host's resolvers are read from, first usable wins: the real
/// upstreams of systemd-resolved when the host runs it (its stub at
/// 127.0.0.53 is named in /etc/resolv.conf), else the host's resolv.conf.
const HOST_RESOLV_CONFS: [&str; 2] = ["/run/systemd/resolve/resolv.conf", "/etc/resolv.conf"];

/// What this node's proxy serves for `table`: its published ports, and the VIP
/// listeners when the node holds the VIPs.
fn served(table: &EndpointsMessage, node_id: &str, with_vips: bool) -> ProxyConfig {
    let mut config = mesh::proxy_config(table, node_id);
    if !with_vips {
        config.listeners.retain(|l| l.bind.ip().is_unspecified());
    }
    config
}

/// Puts the table's VIPs on the node's bridge; whether they are held (never
/// without a task network).
async fn hold_vips(
    network: Option<&Arc<TaskNetwork>>,
    table: &EndpointsMessage,
) -> Result<bool, NetError> {
    let Some(network) = network else {
        return Ok(false);
    };
    network
        .network()
        .set_vips(&mesh::virtual_ips(table))
        .await?;
    Ok(true)
}

/// The resolvers names outside the cluster are forwarded to.
fn host_upstreams() -> Vec<SocketAddr> {
    for path in HOST_RESOLV_CONFS {
        if let Ok(text) = std::fs::read_to_string(path) {
            let upstreams = upstreams_from_resolv_conf(&text);
            if !upstreams.is_empty() {
                return upstreams;
            }
        }
    }
    warn!(
        "no usable nameserver in {}: names outside the cluster get NXDOMAIN",
        HOST_RESOLV_CONFS.join(" or ")
    );
    Vec::new()
}

/// The bridge gateway of the node's task network, where its DNS server listens.
fn gateway(network: Option<&Arc<TaskNetwork>>) -> Option<Ipv4Addr> {
    Some(network?.network().config().gateway().ok()?.addr())
}

/// A DNS server running on one gateway address.
struct Serving {
    gateway: Ipv4Addr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Serving {
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Starts the DNS server on `gateway`:53, UDP and TCP.
async fn serve_dns_on(
    gateway: Ipv4Addr,
    config: &DnsConfig,
    records: &watch::Receiver<Arc<Records>>,
    shutdown: &CancellationToken,
) -> std::io::Result<Serving> {
    let addr = SocketAddr::from((gateway, DNS_PORT));
    let udp = rswarm_worker::sockets::bind_udp(addr)?;
    let tcp = rswarm_worker::sockets::bind_tcp(addr, None)?;
    let stop = shutdown.child_token();
    let task =
        tokio::spawn(DnsServer::new(config.clone()).run(udp, tcp, records.clone(), stop.clone()));
    info!(%addr, "DNS server listening");
    Ok(Serving {
        gateway,
        stop,
        task,
    })
}

/// Runs the node's DNS server on the gateway of its task network, moving it
/// when the network changes, until `shutdown`.
async fn serve_dns(
    mut network: watch::Receiver<Option<Arc<TaskNetwork>>>,
    records: watch::Receiver<Arc<Records>>,
    shutdown: CancellationToken,
) {
    let config = DnsConfig {
        upstreams: host_upstreams(),
        ..DnsConfig::default()
    };
    let mut serving: Option<Serving> = None;
    loop {
        let wanted = gateway(network.borrow_and_update().as_ref());
        let mut retry = false;
        if serving.as_ref().map(|s| s.gateway) != wanted {
            if let Some(old) = serving.take() {
                old.stop().await;
            }
            if let Some(gateway) = wanted {
                match serve_dns_on(gateway, &config, &records, &shutdown).await {
                    Ok(started) => serving = Some(started),
                    Err(err) => {
                        warn!(%gateway, %err, "cannot listen for DNS on the node bridge; retrying");
                        retry = true;
                    }
                }
            }
        }
        tokio::select! {
            changed = network.changed() => if changed.is_err() { break },
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(DNS_BIND_RETRY), if retry => {}
        }
    }
    if let Some(old) = serving.take() {
        old.stop().await;
    }
}

/// Follows the leader's endpoint table and serves it with the node's proxy and
/// DNS server until `shutdown`; `daemon_port` is the TCP port the node's daemon
/// listens on as a manager, which VIP listeners share. Returns the proxy's
/// status, whose listeners that cannot listen the heartbeat reports.
pub fn start(
    identity: Identity,
    node_id: String,
    daemon_port: u16,
    engine: Engine,
    leader: watch::Receiver<Option<String>>,
    mut network: watch::Receiver<Option<Arc<TaskNetwork>>>,
    shutdown: CancellationToken,
) -> watch::Receiver<ProxyStatus> {
    let (tables, mut table_rx) = watch::channel(None);
    tokio::spawn(rswarm_worker::endpoints::follow(
        identity,
        leader,
        tables,
        shutdown.clone(),
    ));
    let (config_tx, config_rx) = watch::channel(ProxyConfig::default());
    let proxy = Proxy::new().beside_daemon(daemon_port);
    let status = proxy.status();
    if let Err(err) = proxy.spawn_thread_on(engine, config_rx, shutdown.clone()) {
        warn!(%err, "cannot start the proxy thread: published ports and VIPs are not served");
    }
    let (records_tx, records_rx) = watch::channel(Arc::new(Records::default()));
    tokio::spawn(serve_dns(network.clone(), records_rx, shutdown.clone()));
    tokio::spawn(async move {
        let mut vips_failing = false;
        loop {
            tokio::select! {
                changed = table_rx.changed() => if changed.is_err() { return },
                changed = network.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(VIP_RETRY), if vips_failing => {}
            }
            let Some(table) = table_rx.borrow_and_update().clone() else {
                continue;
            };
            let records = mesh::dns_records(&table);
            records_tx.send_if_modified(|current| {
                let changed = **current != records;
                if changed {
                    *current = Arc::new(records);
                }
                changed
            });
            let node_network = network.borrow_and_update().clone();
            let with_vips = match hold_vips(node_network.as_ref(), &table).await {
                Ok(held) => {
                    if vips_failing && held {
                        info!("service VIPs are on the node now");
                    }
                    vips_failing = false;
                    held
                }
                Err(err) => {
                    // Retried every VIP_RETRY: log the first failure only.
                    if vips_failing {
                        debug!(%err, "still cannot put the service VIPs on the node");
                    } else {
                        warn!(%err, "cannot put the service VIPs on the node: VIP listeners wait, retrying");
                    }
                    vips_failing = true;
                    false
                }
            };
            let config = served(&table, &node_id, with_vips);
            debug!(listeners = config.listeners.len(), "proxy configuration");
            config_tx.send_if_modified(|current| {
                let changed = *current != config;
                *current = config;
                changed
            });
        }
    });
    status
}

/// The proxy engine the environment asks for; checked before a node is
/// created, so a bad name leaves nothing behind.
pub fn engine_from_env() -> anyhow::Result<Engine> {
    engine_from(std::env::var(ENGINE_VAR).ok().as_deref())
}

/// The proxy engine [`ENGINE_VAR`] asks for (`None`: unset).
pub fn engine_from(value: Option<&str>) -> anyhow::Result<Engine> {
    match value {
        None | Some("") => Ok(Engine::default()),
        Some(value) => value
            .parse()
            .map_err(|err: String| anyhow::anyhow!("{ENGINE_VAR}: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use rswarm_proto::api::{EndpointSpec, EndpointTask, PortConfig, ServiceEndpoints};

    use super::*;

    #[test]
    fn the_proxy_engine_comes_from_the_environment_and_a_bad_name_is_refused() {
        assert_eq!(engine_from(None).unwrap(), Engine::Epoll);
        assert_eq!(engine_from(Some("")).unwrap(), Engine::Epoll);
        assert_eq!(engine_from(Some("auto")).unwrap(), Engine::Auto);
        assert_eq!(engine_from(Some("epoll")).unwrap(), Engine::Epoll);
        assert_eq!(engine_from(Some("io_uring")).unwrap(), Engine::IoUring);
        let err = engine_from(Some("uring")).unwrap_err().to_string();
        assert_eq!(
            err,
            "RSWARM_PROXY_ENGINE: unknown proxy engine \"uring\": expected auto, epoll or io_uring"
        );
    }

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
