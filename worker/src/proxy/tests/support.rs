//! Backends, clients and a running proxy for the tests; loopback only, and every
//! wait is bounded.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::proxy::{
    Backend, Connector, Engine, ListenerSpec, ListenerState, Protocol, Proxy, ProxyConfig,
    ProxyStats, ProxyStatus, TcpConnector,
};
use crate::sockets::holders;

/// Longest any single step of a test may take.
pub const STEP: Duration = Duration::from_secs(5);

/// Fails the test when `future` takes longer than [`STEP`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: no result within {STEP:?}"),
    }
}

/// A loopback TCP address nothing listens on (bound, read and released).
pub fn free_tcp_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A loopback UDP address nothing listens on.
pub fn free_udp_addr() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap()
}

/// A TCP backend that greets each connection with its name and a newline, then
/// echoes what it reads.
pub struct EchoBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Connections accepted.
    pub accepted: Arc<AtomicUsize>,
    /// Connections that ended.
    pub finished: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl EchoBackend {
    /// Starts one on a free loopback port.
    pub async fn start(name: &str) -> Self {
        Self::start_at(name, "127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts one on `addr`.
    pub async fn start_at(name: &str, addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let greeting = format!("{name}\n");
        let task = tokio::spawn({
            let accepted = accepted.clone();
            let finished = finished.clone();
            async move {
                // Owned by the task: aborting the backend aborts its connections.
                let mut connections = JoinSet::new();
                loop {
                    let Ok((mut stream, _)) = listener.accept().await else {
                        return;
                    };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let greeting = greeting.clone();
                    let finished = finished.clone();
                    connections.spawn(async move {
                        if stream.write_all(greeting.as_bytes()).await.is_ok() {
                            let (mut read, mut write) = stream.split();
                            let _ = tokio::io::copy(&mut read, &mut write).await;
                        }
                        finished.fetch_add(1, Ordering::SeqCst);
                    });
                    while connections.try_join_next().is_some() {}
                }
            }
        });
        EchoBackend {
            addr,
            accepted,
            finished,
            task,
        }
    }

    /// The backend entry for it.
    pub fn backend(&self, id: &str) -> Backend {
        Backend::new(id, self.addr)
    }
}

impl Drop for EchoBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A client connection through the proxy, greeted by its backend.
pub struct Client {
    /// The greeting: the backend's name.
    pub backend: String,
    stream: BufReader<TcpStream>,
}

impl Client {
    /// Connects to `addr` and reads the backend's greeting.
    pub async fn connect(addr: SocketAddr) -> Self {
        within("client connect and greeting", async {
            let stream = TcpStream::connect(addr).await.unwrap();
            let mut stream = BufReader::new(stream);
            let mut line = String::new();
            stream.read_line(&mut line).await.unwrap();
            assert!(line.ends_with('\n'), "no greeting through {addr}: {line:?}");
            line.pop();
            Client {
                backend: line,
                stream,
            }
        })
        .await
    }

    /// Sends `text` and checks it comes back.
    pub async fn echo(&mut self, text: &str) {
        within("echo", async {
            self.stream
                .get_mut()
                .write_all(text.as_bytes())
                .await
                .unwrap();
            let mut back = vec![0u8; text.len()];
            self.stream.read_exact(&mut back).await.unwrap();
            assert_eq!(back, text.as_bytes());
        })
        .await
    }

    /// Waits until the proxy closes the connection (EOF or reset); returns how
    /// long that took.
    pub async fn closed_within(&mut self, limit: Duration) -> Duration {
        let started = tokio::time::Instant::now();
        let mut buf = [0u8; 64];
        match tokio::time::timeout(limit, self.stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => started.elapsed(),
            Ok(Ok(n)) => panic!("unexpected {n} bytes instead of a close"),
            Err(_) => panic!("connection still open after {limit:?}"),
        }
    }
}

/// Connects `count` times in a row (each connection closed before the next) and
/// returns the backends' names.
pub async fn greetings(addr: SocketAddr, count: usize) -> Vec<String> {
    let mut names = Vec::with_capacity(count);
    for _ in 0..count {
        names.push(Client::connect(addr).await.backend);
    }
    names
}

/// How many connections wait in the accept queue of the TCP listener on
/// `addr` (read from `/proc/net/tcp` by [`holders::tcp_listeners_on`]).
pub fn accept_queue(addr: SocketAddr) -> usize {
    let listeners = holders::tcp_listeners_on(addr.port()).expect("/proc/net/tcp readable");
    match listeners.iter().find(|l| l.addr == addr) {
        Some(listener) => listener.queued,
        None => panic!("no TCP listener on {addr}: {listeners:?}"),
    }
}

/// A TCP listener spec on `bind` with the given backends and short timings.
pub fn tcp_spec(bind: SocketAddr, backends: Vec<Backend>) -> ListenerSpec {
    let mut spec = ListenerSpec::new(bind, Protocol::Tcp, backends);
    spec.connect_timeout = Duration::from_millis(500);
    spec.drain_deadline = Duration::from_secs(2);
    spec.failure_pause = Duration::from_secs(2);
    spec
}

/// A proxy running in the background with a configuration the test changes.
pub struct Running {
    config: watch::Sender<ProxyConfig>,
    status: watch::Receiver<ProxyStatus>,
    generation: u64,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The engine the proxy's thread relays with.
    pub engine: Engine,
    /// The proxy's relaying counters.
    pub stats: Arc<ProxyStats>,
}

impl Running {
    /// Starts a proxy with the real connector and waits until `config` is applied.
    pub async fn start(config: ProxyConfig) -> Self {
        Self::start_with(Arc::new(TcpConnector), config).await
    }

    /// Starts a proxy with `connector` and waits until `config` is applied.
    pub async fn start_with(connector: Arc<dyn Connector>, config: ProxyConfig) -> Self {
        Self::start_on(Engine::default(), connector, config).await
    }

    /// Starts a proxy on its own thread with `engine`, as the daemon does
    /// (with the default [`Engine`], epoll), and waits until `config` is applied.
    pub async fn start_on(
        engine: Engine,
        connector: Arc<dyn Connector>,
        config: ProxyConfig,
    ) -> Self {
        let proxy = Proxy::with_connector(connector);
        let status = proxy.status();
        let stats = proxy.stats();
        let (tx, rx) = watch::channel(config);
        let shutdown = CancellationToken::new();
        let thread = proxy
            .spawn_thread_on(engine, rx, shutdown.clone())
            .expect("proxy thread");
        let mut running = Running {
            config: tx,
            status,
            generation: 1,
            shutdown,
            thread: Some(thread.handle),
            engine: thread.engine,
            stats,
        };
        running.wait_applied().await;
        running
    }

    /// Sends a new configuration and waits until it is applied; returns the status.
    pub async fn apply(&mut self, config: ProxyConfig) -> ProxyStatus {
        self.config.send_replace(config);
        self.generation += 1;
        self.wait_applied().await
    }

    async fn wait_applied(&mut self) -> ProxyStatus {
        let generation = self.generation;
        within(
            "configuration applied",
            self.status
                .wait_for(|status| status.generation >= generation),
        )
        .await
        .unwrap()
        .clone()
    }

    /// Waits until `check` holds for the status (bind retries publish new ones).
    pub async fn wait_status(&mut self, check: impl FnMut(&ProxyStatus) -> bool) -> ProxyStatus {
        within("status", self.status.wait_for(check))
            .await
            .unwrap()
            .clone()
    }

    /// The bound address of the listener on `bind`, which must be listening.
    pub fn local(&self, bind: SocketAddr, protocol: Protocol) -> SocketAddr {
        let status = self.status.borrow();
        match status
            .listener(bind, protocol)
            .map(|listener| &listener.state)
        {
            Some(ListenerState::Listening { local }) => *local,
            other => panic!("{protocol} {bind} not listening: {other:?}"),
        }
    }

    /// Shuts the proxy down and waits for its loop to end.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(thread) = self.thread.take() {
            within(
                "proxy shutdown",
                tokio::task::spawn_blocking(move || thread.join()),
            )
            .await
            .unwrap()
            .expect("the proxy thread panicked");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A connector that records every connect and makes connects to chosen addresses
/// hang forever (the proxy's timeout must end them).
#[derive(Default)]
pub struct ScriptedConnector {
    /// Connect attempts, in order.
    pub attempts: Mutex<Vec<SocketAddr>>,
    /// Connects to these never complete.
    pub hang: Mutex<Vec<SocketAddr>>,
    /// Connects to these return once the backend has reset the connection.
    pub after_reset: Mutex<Vec<SocketAddr>>,
}

impl ScriptedConnector {
    /// How many connects went to `addr`.
    pub fn attempts_to(&self, addr: SocketAddr) -> usize {
        self.attempts
            .lock()
            .unwrap()
            .iter()
            .filter(|a| **a == addr)
            .count()
    }
}

#[async_trait]
impl Connector for ScriptedConnector {
    async fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        self.attempts.lock().unwrap().push(addr);
        if self.hang.lock().unwrap().contains(&addr) {
            std::future::pending::<()>().await;
        }
        let stream = TcpConnector.connect(addr).await?;
        if self.after_reset.lock().unwrap().contains(&addr) {
            // The reset makes the socket readable (with its error pending).
            stream.readable().await?;
        }
        Ok(stream)
    }
}

/// A TCP backend that accepts each connection and resets it at once, as the
/// kernel does to connections still in the accept queue of a listener that
/// closes (a task that stops).
pub struct ResettingBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl ResettingBackend {
    /// Starts one on a free loopback port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                // A zero linger time makes the close a reset.
                socket2::SockRef::from(&stream)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
                drop(stream);
            }
        });
        ResettingBackend { addr, task }
    }
}

impl Drop for ResettingBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A UDP backend answering each datagram with `name:` and the datagram.
pub struct UdpEchoBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Distinct client addresses seen (the proxy's session sockets).
    pub peers: Arc<Mutex<Vec<SocketAddr>>>,
    task: JoinHandle<()>,
}

impl UdpEchoBackend {
    /// Starts one on a free loopback port.
    pub async fn start(name: &str) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let peers = Arc::new(Mutex::new(Vec::new()));
        let prefix = format!("{name}:").into_bytes();
        let task = tokio::spawn({
            let peers = peers.clone();
            async move {
                let mut buf = vec![0u8; 2048];
                loop {
                    let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
                        continue;
                    };
                    {
                        let mut peers = peers.lock().unwrap();
                        if !peers.contains(&peer) {
                            peers.push(peer);
                        }
                    }
                    let mut reply = prefix.clone();
                    reply.extend_from_slice(&buf[..len]);
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        UdpEchoBackend { addr, peers, task }
    }
}

impl Drop for UdpEchoBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}
