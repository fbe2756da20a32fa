//! The proxy's main loop: bring the running listeners in line with each new
//! configuration, retry listeners that could not bind, report their state.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::config::{ListenerKey, ListenerSpec, Protocol, ProxyConfig, ProxyProtocol};
use super::connector::{Connector, TcpConnector};
use super::error::ProxyError;
use super::pool::ListenerShared;
use super::routes::{self, Routes};
use super::status::{ListenerState, ListenerStatus, ProxyStats, ProxyStatus};
use super::uring::Copier;
use super::{tcp, udp};
use crate::sockets::holders;

/// How often listeners that could not bind are tried again (a port freed, a VIP
/// added to the host) when no configuration change comes first.
const BIND_RETRY: Duration = Duration::from_secs(1);

/// The node's proxy. Build it, take [`Proxy::status`] if wanted, then [`Proxy::run`].
pub struct Proxy {
    /// Opens backend connections.
    connector: Arc<dyn Connector>,
    /// Where the listeners' state is published.
    status: watch::Sender<ProxyStatus>,
    /// The port the node's daemon listens on, which VIP listeners share.
    daemon_port: Option<u16>,
    /// Copies relayed connections on io_uring; `None` on the epoll path.
    copier: Option<Copier>,
    /// Relaying counters.
    stats: Arc<ProxyStats>,
}

/// The I/O the proxy's thread relays connections with.
///
/// The default is epoll. io_uring makes a saturated proxy cheaper (about a
/// fifth less CPU per keep-alive request at 50 connections), but when the
/// proxy shares its cores with other busy processes, as on a node running
/// tasks, its latency tail below saturation is much heavier: keep-alive at 10
/// connections had a p99 of 1.9-2.8x HAProxy's where epoll had 0.8-1.05x (the
/// tail went away with the proxy alone on a core; docs/design/networking.md,
/// "Measured"). It stays available for nodes that give the proxy a core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Engine {
    /// io_uring when the kernel lets this process make a ring, else epoll.
    Auto,
    /// Readiness (epoll) only: the default.
    #[default]
    Epoll,
    /// io_uring for the copy loops; the thread does not start without it.
    IoUring,
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Auto => "auto",
            Engine::Epoll => "epoll",
            Engine::IoUring => "io_uring",
        })
    }
}

impl std::str::FromStr for Engine {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(Engine::Auto),
            "epoll" => Ok(Engine::Epoll),
            "io_uring" => Ok(Engine::IoUring),
            other => Err(format!(
                "unknown proxy engine {other:?}: expected auto, epoll or io_uring"
            )),
        }
    }
}

/// The oldest kernel whose io_uring the copy works on (tokio-uring's
/// requirement: earlier rings lack socket reads and writes or poll-driven
/// waits, and a ring made there would fail or tie up a kernel thread per
/// waiting socket).
const IO_URING_KERNEL: (u32, u32) = (5, 11);

/// Whether this kernel is recent enough for the io_uring copy.
fn io_uring_kernel() -> std::io::Result<()> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")?;
    io_uring_release(release.trim()).map_err(std::io::Error::other)
}

/// Checks a kernel release string (`6.18.44-fc-v1300`) against
/// [`IO_URING_KERNEL`].
fn io_uring_release(release: &str) -> Result<(), String> {
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|part| part.parse::<u32>().ok());
    let (Some(Some(major)), Some(Some(minor))) = (numbers.next(), numbers.next()) else {
        return Err(format!("cannot read the kernel release {release:?}"));
    };
    let (need_major, need_minor) = IO_URING_KERNEL;
    if (major, minor) < (need_major, need_minor) {
        return Err(format!(
            "kernel {release} is older than {need_major}.{need_minor}, the first whose io_uring the proxy uses"
        ));
    }
    Ok(())
}

/// The proxy's thread, from [`Proxy::spawn_thread_on`].
#[derive(Debug)]
pub struct ProxyThread {
    /// Ends when the proxy has shut down.
    pub handle: std::thread::JoinHandle<()>,
    /// The engine it relays with ([`Engine::Epoll`] or [`Engine::IoUring`]).
    pub engine: Engine,
}

impl Default for Proxy {
    fn default() -> Self {
        Proxy::new()
    }
}

/// A listener being served.
struct Running {
    /// Backends and settings, shared with the connections.
    shared: Arc<ListenerShared>,
    /// The bound address (a listener served by a wildcard one: its own address).
    local: SocketAddr,
    /// Where its connections come from.
    socket: Socket,
}

/// How a listener gets its connections.
enum Socket {
    /// Its own socket and accept loop.
    Own {
        /// Stops the accept loop (a child of the shutdown token).
        stop: CancellationToken,
        /// The accept loop; awaited on removal so the port is free when it returns.
        task: JoinHandle<()>,
        /// The specific listeners this (wildcard TCP) socket also serves.
        routes: Arc<Routes>,
    },
    /// A specific TCP listener served by the socket of the wildcard listener on
    /// its port (see [`super::routes`]).
    Served {
        /// The wildcard listener.
        by: ListenerKey,
        /// That listener's routes, which hold this one.
        routes: Arc<Routes>,
    },
}

impl Running {
    /// Stops taking connections: the accept loop ends (the port is free when this
    /// returns) or the route goes. Open connections are left to their backends.
    async fn close(self) -> Arc<ListenerShared> {
        match self.socket {
            Socket::Own { stop, task, .. } => {
                stop.cancel();
                let _ = task.await;
            }
            Socket::Served { routes, .. } => routes.remove(self.shared.bind.ip()),
        }
        self.shared
    }

    /// The listener was removed from the configuration: it stops taking
    /// connections and every backend drains.
    async fn remove(self) {
        self.close().await.drain_all();
    }
}

impl Proxy {
    /// A proxy connecting to backends over plain TCP.
    pub fn new() -> Self {
        Proxy::with_connector(Arc::new(TcpConnector))
    }

    /// A proxy opening backend connections through `connector`.
    pub fn with_connector(connector: Arc<dyn Connector>) -> Self {
        let (status, _) = watch::channel(ProxyStatus::default());
        Proxy {
            connector,
            status,
            daemon_port: None,
            copier: None,
            stats: Arc::default(),
        }
    }

    /// Lets the VIP listeners on `port`, where the node's daemon listens (on
    /// `0.0.0.0` when a manager), listen beside it (see [`crate::sockets`]).
    pub fn beside_daemon(mut self, port: u16) -> Self {
        self.daemon_port = Some(port);
        self
    }

    /// The relaying counters.
    pub fn stats(&self) -> Arc<ProxyStats> {
        self.stats.clone()
    }

    /// The listeners' state, updated after every configuration and bind retry.
    pub fn status(&self) -> watch::Receiver<ProxyStatus> {
        self.status.subscribe()
    }

    /// Runs [`Proxy::run`] on a thread of its own, on a single-threaded runtime
    /// with the default [`Engine`] (epoll): the node's data plane. Relaying stays off the
    /// runtime the control plane (Raft, gRPC, task runners) uses, so neither
    /// delays the other, and, as in HAProxy's single event loop, one core serves
    /// every connection without cross-thread wakeups.
    pub fn spawn_thread(
        self,
        config: watch::Receiver<ProxyConfig>,
        shutdown: CancellationToken,
    ) -> std::io::Result<ProxyThread> {
        self.spawn_thread_on(Engine::default(), config, shutdown)
    }

    /// [`Proxy::spawn_thread`] with a chosen engine. With io_uring the
    /// thread's runtime is tokio-uring's (a current-thread tokio runtime whose
    /// `LocalSet` also drives the ring); the copy loops run there
    /// (`proxy::uring`) and everything else as on epoll. A ring the kernel
    /// refuses fails [`Engine::IoUring`] and makes [`Engine::Auto`] fall back
    /// to epoll, with the reason logged.
    pub fn spawn_thread_on(
        self,
        engine: Engine,
        config: watch::Receiver<ProxyConfig>,
        shutdown: CancellationToken,
    ) -> std::io::Result<ProxyThread> {
        // Every runtime is made (and dropped) on the proxy's thread: a runtime
        // dropped in the caller's async context would panic.
        let (started, chosen) = std::sync::mpsc::sync_channel(1);
        let handle = std::thread::Builder::new()
            .name("rswarm-proxy".into())
            .spawn(move || {
                let ring = match engine {
                    Engine::Epoll => None,
                    Engine::Auto | Engine::IoUring => {
                        let ring = io_uring_kernel()
                            .and_then(|()| tokio_uring::Runtime::new(&tokio_uring::builder()));
                        match ring {
                            Ok(ring) => Some(ring),
                            Err(err) if engine == Engine::IoUring => {
                                let _ = started.send(Err(std::io::Error::new(
                                    err.kind(),
                                    format!("cannot make an io_uring for the proxy: {err}"),
                                )));
                                return;
                            }
                            Err(err) => {
                                warn!(%err, "no io_uring for the proxy; it relays with epoll");
                                None
                            }
                        }
                    }
                };
                if let Some(ring) = ring {
                    let _ = started.send(Ok(Engine::IoUring));
                    ring.block_on(async move {
                        let (copier, jobs) = Copier::new(self.stats.clone());
                        tokio_uring::spawn(jobs);
                        let proxy = Proxy {
                            copier: Some(copier),
                            ..self
                        };
                        proxy.run(config, shutdown).await;
                    });
                    return;
                }
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(epoll) => {
                        let _ = started.send(Ok(Engine::Epoll));
                        epoll.block_on(self.run(config, shutdown));
                    }
                    Err(err) => {
                        let _ = started.send(Err(err));
                    }
                }
            })?;
        // A short wait: the thread reports as soon as its runtime is made.
        let engine = match chosen.recv() {
            Ok(Ok(engine)) => engine,
            Ok(Err(err)) => {
                let _ = handle.join();
                return Err(err);
            }
            Err(_) => {
                let _ = handle.join();
                return Err(std::io::Error::other(
                    "the proxy thread ended before it started",
                ));
            }
        };
        info!(%engine, "proxy thread started");
        Ok(ProxyThread { handle, engine })
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
                            listener.close().await;
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
        let mut states: Vec<Option<ListenerState>> = vec![None; config.listeners.len()];
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
                listener.remove().await;
            }
        }
        // A specific TCP listener under a configured wildcard one is served by the
        // wildcard's socket, so the wildcard ones are bound first.
        let served = |spec: &ListenerSpec| {
            routes::wildcard_of(spec.key()).filter(|wildcard| keys.contains(wildcard))
        };
        // Listeners whose own socket was closed for a wildcard one to bind: their
        // state carries on, served by it (or bound again if it failed).
        let mut detached: HashMap<ListenerKey, Arc<ListenerShared>> = HashMap::new();
        let order = (0..config.listeners.len())
            .filter(|i| served(&config.listeners[*i]).is_none())
            .chain((0..config.listeners.len()).filter(|i| served(&config.listeners[*i]).is_some()));
        for index in order {
            let spec = &config.listeners[index];
            let key = spec.key();
            let state = if !wanted.insert(key) {
                let err = ProxyError::DuplicateListener {
                    protocol: key.protocol,
                    addr: key.bind,
                };
                warn!(listener = %key, "{err}");
                Err(err.to_string())
            } else if let Some((by, routes)) = served(spec).and_then(|by| {
                running
                    .get(&by)
                    .and_then(|wildcard| match &wildcard.socket {
                        Socket::Own { routes, .. } => Some((by, routes.clone())),
                        Socket::Served { .. } => None,
                    })
            }) {
                Ok(self
                    .serve_by(spec, by, routes, running, &mut detached, shutdown)
                    .await)
            } else {
                self.ensure_own(spec, running, &mut detached, shutdown)
                    .await
                    .map_err(|err| {
                        any_failed = true;
                        let error = err.to_string();
                        // Retried every second: log only a new or changed error.
                        if failed.get(&key) != Some(&error) {
                            error!(listener = %key, "{error}");
                        } else {
                            debug!(listener = %key, "{error}");
                        }
                        failed.insert(key, error.clone());
                        error
                    })
            };
            states[index] = Some(match state {
                Ok(local) => {
                    failed.remove(&key);
                    ListenerState::Listening { local }
                }
                Err(error) => ListenerState::Failed { error },
            });
        }
        failed.retain(|key, _| keys.contains(key));
        let statuses = config
            .listeners
            .iter()
            .zip(states)
            .map(|(spec, state)| ListenerStatus {
                bind: spec.bind,
                protocol: spec.protocol,
                // Both passes together visit every listener once.
                state: state.unwrap_or_else(|| ListenerState::Failed {
                    error: "internal error: listener not applied".into(),
                }),
            })
            .collect();
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

    /// Makes `spec` a listener on a socket of its own: updated in place when it
    /// has one, bound otherwise. A wildcard TCP listener that cannot bind because
    /// specific listeners hold its port closes their sockets and tries again;
    /// they are then served by it.
    async fn ensure_own(
        &self,
        spec: &ListenerSpec,
        running: &mut HashMap<ListenerKey, Running>,
        detached: &mut HashMap<ListenerKey, Arc<ListenerShared>>,
        shutdown: &CancellationToken,
    ) -> Result<SocketAddr, ProxyError> {
        let key = spec.key();
        let previous = match running.remove(&key) {
            Some(listener) if matches!(listener.socket, Socket::Own { .. }) => {
                listener.shared.update(spec, shutdown);
                let local = listener.local;
                running.insert(key, listener);
                return Ok(local);
            }
            // Served by a wildcard listener that is gone: a socket of its own now.
            Some(listener) => Some(listener.close().await),
            None => detached.remove(&key),
        };
        let first = self.start(spec, previous.clone(), shutdown).await;
        let under: Vec<ListenerKey> = running
            .iter()
            .filter(|(k, l)| {
                routes::wildcard_of(**k) == Some(key) && matches!(l.socket, Socket::Own { .. })
            })
            .map(|(k, _)| *k)
            .collect();
        let listener = match first {
            Err(err) if routes::is_wildcard(key) && !under.is_empty() && in_use(&err) => {
                // Only worth closing them if nothing else holds the port.
                let ours: Vec<SocketAddr> = running.values().map(|l| l.local).collect();
                let others: Vec<SocketAddr> = holders::tcp_listeners_on(key.bind.port())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|l| l.addr)
                    .filter(|addr| !ours.contains(addr))
                    .collect();
                if !others.is_empty() {
                    return Err(ProxyError::PortHeld {
                        protocol: key.protocol,
                        addr: key.bind,
                        holders: others,
                    });
                }
                for specific in under {
                    if let Some(listener) = running.remove(&specific) {
                        debug!(listener = %specific, wildcard = %key, "closing the socket of a listener the wildcard one will serve");
                        detached.insert(specific, listener.close().await);
                    }
                }
                self.start(spec, previous, shutdown).await.inspect_err(|_| {
                    debug!(listener = %key, first = %err, "bind failed again with the port's specific listeners closed");
                })?
            }
            other => other?,
        };
        let local = listener.local;
        running.insert(key, listener);
        Ok(local)
    }

    /// Makes `spec` a listener served by the socket of wildcard listener `by`,
    /// through its `routes`.
    async fn serve_by(
        &self,
        spec: &ListenerSpec,
        by: ListenerKey,
        routes: Arc<Routes>,
        running: &mut HashMap<ListenerKey, Running>,
        detached: &mut HashMap<ListenerKey, Arc<ListenerShared>>,
        shutdown: &CancellationToken,
    ) -> SocketAddr {
        let key = spec.key();
        let shared = match running.remove(&key) {
            Some(listener) if matches!(&listener.socket, Socket::Served { by: b, .. } if *b == by) =>
            {
                listener.shared.update(spec, shutdown);
                running.insert(key, listener);
                return spec.bind;
            }
            Some(listener) => Some(listener.close().await),
            None => detached.remove(&key),
        };
        let shared = match shared {
            Some(shared) => {
                shared.update(spec, shutdown);
                shared
            }
            None => Arc::new(ListenerShared::new(spec, shutdown)),
        };
        routes.insert(spec.bind.ip(), shared.clone());
        info!(listener = %key, wildcard = %by, backends = spec.backends.len(), "served by the wildcard listener on its port");
        running.insert(
            key,
            Running {
                shared,
                local: spec.bind,
                socket: Socket::Served { by, routes },
            },
        );
        spec.bind
    }

    /// Binds a new listener and starts its loop; `shared` carries on the state of
    /// a listener that had another socket.
    async fn start(
        &self,
        spec: &ListenerSpec,
        shared: Option<Arc<ListenerShared>>,
        shutdown: &CancellationToken,
    ) -> Result<Running, ProxyError> {
        let bind_error = |source| ProxyError::Bind {
            protocol: spec.protocol,
            addr: spec.bind,
            source,
        };
        let shared = match shared {
            Some(shared) => {
                shared.update(spec, shutdown);
                shared
            }
            None => Arc::new(ListenerShared::new(spec, shutdown)),
        };
        let stop = shutdown.child_token();
        let routes = Arc::new(Routes::default());
        let (task, local) = match spec.protocol {
            Protocol::Tcp => {
                let listener =
                    crate::sockets::bind_tcp(spec.bind, self.daemon_port).map_err(bind_error)?;
                let local = listener.local_addr().map_err(bind_error)?;
                let task = tokio::spawn(tcp::serve(
                    listener,
                    shared.clone(),
                    routes.clone(),
                    self.connector.clone(),
                    self.copier.clone(),
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
            local,
            socket: Socket::Own { stop, task, routes },
        })
    }
}

/// Whether a bind failed because the address is in use.
fn in_use(err: &ProxyError) -> bool {
    matches!(err, ProxyError::Bind { source, .. } if source.kind() == std::io::ErrorKind::AddrInUse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_uring_needs_a_recent_enough_kernel() {
        assert_eq!(io_uring_release("6.18.44-fc-v1300"), Ok(()));
        assert_eq!(io_uring_release("5.11.0"), Ok(()));
        assert_eq!(io_uring_release("5.15.0-91-generic"), Ok(()));
        assert_eq!(
            io_uring_release("5.4.0-150-generic"),
            Err("kernel 5.4.0-150-generic is older than 5.11, the first whose io_uring the proxy uses".into())
        );
        assert_eq!(
            io_uring_release("4.19"),
            Err("kernel 4.19 is older than 5.11, the first whose io_uring the proxy uses".into())
        );
        assert!(io_uring_release("linux").is_err());
    }
}
