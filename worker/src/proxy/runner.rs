//! The proxy's main loop: bring the running listeners in line with each new
//! configuration, retry listeners that could not bind, report their state.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::config::{ListenerKey, ListenerSpec, Protocol, ProxyConfig, ProxyProtocol};
use super::connector::{Connector, TcpConnector};
use super::error::ProxyError;
use super::pool::ListenerShared;
use super::status::{ListenerState, ListenerStatus, ProxyStatus};
use super::{tcp, udp};

/// How often listeners that could not bind are tried again (a port freed, a VIP
/// added to the host) when no configuration change comes first.
const BIND_RETRY: Duration = Duration::from_secs(1);

/// The node's proxy. Build it, take [`Proxy::status`] if wanted, then [`Proxy::run`].
pub struct Proxy {
    /// Opens backend connections.
    connector: Arc<dyn Connector>,
    /// Where the listeners' state is published.
    status: watch::Sender<ProxyStatus>,
}

impl Default for Proxy {
    fn default() -> Self {
        Proxy::new()
    }
}

/// A bound listener and its accept loop.
struct Running {
    /// Backends and settings, shared with the connections.
    shared: Arc<ListenerShared>,
    /// Stops the accept loop (a child of the shutdown token).
    stop: CancellationToken,
    /// The accept loop; awaited on removal so the port is free when it returns.
    task: JoinHandle<()>,
    /// The bound address.
    local: SocketAddr,
}

impl Proxy {
    /// A proxy connecting to backends over plain TCP.
    pub fn new() -> Self {
        Proxy::with_connector(Arc::new(TcpConnector))
    }

    /// A proxy opening backend connections through `connector`.
    pub fn with_connector(connector: Arc<dyn Connector>) -> Self {
        let (status, _) = watch::channel(ProxyStatus::default());
        Proxy { connector, status }
    }

    /// The listeners' state, updated after every configuration and bind retry.
    pub fn status(&self) -> watch::Receiver<ProxyStatus> {
        self.status.subscribe()
    }

    /// Runs [`Proxy::run`] on a thread of its own, on a single-threaded runtime:
    /// the node's data plane. Relaying stays off the runtime the control plane
    /// (Raft, gRPC, task runners) uses, so neither delays the other, and, as in
    /// HAProxy's single event loop, one core serves every connection without
    /// cross-thread wakeups.
    pub fn spawn_thread(
        self,
        config: watch::Receiver<ProxyConfig>,
        shutdown: CancellationToken,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("rswarm-proxy".into())
            .spawn(move || runtime.block_on(self.run(config, shutdown)))
    }

    /// Serves `config` until `shutdown` is cancelled, applying each new value as
    /// soon as it is sent. On shutdown every listener and connection is closed.
    /// If the configuration's sender goes away the last configuration is served on.
    pub async fn run(self, mut config: watch::Receiver<ProxyConfig>, shutdown: CancellationToken) {
        let mut running: HashMap<ListenerKey, Running> = HashMap::new();
        let mut failed: HashMap<ListenerKey, String> = HashMap::new();
        let mut generation = 0u64;
        let mut sender_alive = true;
        loop {
            let current = config.borrow_and_update().clone();
            generation += 1;
            let mut any_failed = self
                .apply(&current, &mut running, &mut failed, generation, &shutdown)
                .await;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => {
                        for (_, listener) in running.drain() {
                            listener.stop.cancel();
                            let _ = listener.task.await;
                        }
                        return;
                    }
                    changed = config.changed(), if sender_alive => {
                        if changed.is_ok() {
                            break;
                        }
                        sender_alive = false;
                    }
                    _ = tokio::time::sleep(BIND_RETRY), if any_failed => {
                        any_failed = self.apply(&current, &mut running, &mut failed, generation, &shutdown).await;
                    }
                }
            }
        }
    }

    /// Brings `running` in line with `config`; returns whether a listener failed
    /// to bind (so it is retried).
    async fn apply(
        &self,
        config: &ProxyConfig,
        running: &mut HashMap<ListenerKey, Running>,
        failed: &mut HashMap<ListenerKey, String>,
        generation: u64,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut wanted = HashSet::new();
        let mut statuses = Vec::with_capacity(config.listeners.len());
        let mut any_failed = false;
        // Remove first, so a listener moved between specs that share its port
        // finds the port free.
        let keys: HashSet<ListenerKey> = config.listeners.iter().map(ListenerSpec::key).collect();
        let removed: Vec<ListenerKey> = running
            .keys()
            .filter(|key| !keys.contains(key))
            .copied()
            .collect();
        for key in removed {
            if let Some(listener) = running.remove(&key) {
                info!(listener = %key, "removing listener");
                listener.stop.cancel();
                listener.shared.drain_all();
                let _ = listener.task.await;
            }
        }
        for spec in &config.listeners {
            let key = spec.key();
            let state = if !wanted.insert(key) {
                let err = ProxyError::DuplicateListener {
                    protocol: key.protocol,
                    addr: key.bind,
                };
                warn!(listener = %key, "{err}");
                ListenerState::Failed {
                    error: err.to_string(),
                }
            } else if let Some(listener) = running.get(&key) {
                listener.shared.update(spec, shutdown);
                ListenerState::Listening {
                    local: listener.local,
                }
            } else {
                match self.start(spec, shutdown).await {
                    Ok(listener) => {
                        failed.remove(&key);
                        let local = listener.local;
                        running.insert(key, listener);
                        ListenerState::Listening { local }
                    }
                    Err(err) => {
                        any_failed = true;
                        let error = err.to_string();
                        // Retried every second: log only a new or changed error.
                        if failed.get(&key) != Some(&error) {
                            error!(listener = %key, "{error}");
                        } else {
                            debug!(listener = %key, "{error}");
                        }
                        failed.insert(key, error.clone());
                        ListenerState::Failed { error }
                    }
                }
            };
            statuses.push(ListenerStatus {
                bind: spec.bind,
                protocol: spec.protocol,
                state,
            });
        }
        failed.retain(|key, _| keys.contains(key));
        self.status.send_if_modified(|status| {
            let next = ProxyStatus {
                generation,
                listeners: statuses,
            };
            let changed = *status != next;
            *status = next;
            changed
        });
        any_failed
    }

    /// Binds a new listener and starts its loop.
    async fn start(
        &self,
        spec: &ListenerSpec,
        shutdown: &CancellationToken,
    ) -> Result<Running, ProxyError> {
        let bind_error = |source| ProxyError::Bind {
            protocol: spec.protocol,
            addr: spec.bind,
            source,
        };
        let shared = Arc::new(ListenerShared::new(spec, shutdown));
        let stop = shutdown.child_token();
        let (task, local) = match spec.protocol {
            Protocol::Tcp => {
                let listener = TcpListener::bind(spec.bind).await.map_err(bind_error)?;
                let local = listener.local_addr().map_err(bind_error)?;
                let task = tokio::spawn(tcp::serve(
                    listener,
                    shared.clone(),
                    self.connector.clone(),
                    stop.clone(),
                ));
                (task, local)
            }
            Protocol::Udp => {
                if spec.proxy_protocol != ProxyProtocol::None {
                    warn!(listener = %spec.key(), "the PROXY protocol is for TCP only; UDP datagrams are sent as they are");
                }
                let socket = crate::sockets::bind_udp(spec.bind).map_err(bind_error)?;
                let local = socket.local_addr().map_err(bind_error)?;
                let task = tokio::spawn(udp::serve(socket, shared.clone(), stop.clone()));
                (task, local)
            }
        };
        info!(listener = %spec.key(), %local, backends = spec.backends.len(), "listening");
        Ok(Running {
            shared,
            stop,
            task,
            local,
        })
    }
}
