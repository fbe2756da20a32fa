//! Balancing and relaying over TCP.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::support::{
    Client, EchoBackend, Running, STEP, accept_queue, free_tcp_addr, greetings, tcp_spec, within,
};
use crate::proxy::tcp::ACCEPT_BATCH;
use crate::proxy::{
    Balance, Connector, Engine, Protocol, ProxyConfig, ProxyProtocol, TcpConnector,
};

#[tokio::test]
async fn round_robin_spreads_exactly() {
    let backends = [
        EchoBackend::start("a").await,
        EchoBackend::start("b").await,
        EchoBackend::start("c").await,
    ];
    let bind = free_tcp_addr();
    let spec = tcp_spec(
        bind,
        backends
            .iter()
            .zip(["a", "b", "c"])
            .map(|(b, id)| b.backend(id))
            .collect(),
    );
    let proxy = Running::start(ProxyConfig {
        listeners: vec![spec],
    })
    .await;

    let names = greetings(bind, 9).await;
    assert_eq!(names, ["a", "b", "c", "a", "b", "c", "a", "b", "c"]);
    for backend in &backends {
        assert_eq!(backend.accepted.load(Ordering::SeqCst), 3);
    }
    proxy.stop().await;
}

#[tokio::test]
async fn least_conn_prefers_the_idle_backend() {
    let busy = EchoBackend::start("busy").await;
    let idle = EchoBackend::start("idle").await;
    let bind = free_tcp_addr();
    let mut spec = tcp_spec(bind, vec![busy.backend("busy")]);
    spec.balance = Balance::LeastConn;
    let mut proxy = Running::start(ProxyConfig {
        listeners: vec![spec.clone()],
    })
    .await;
    // Two long connections on the first backend, then a second backend appears.
    let mut held = [Client::connect(bind).await, Client::connect(bind).await];
    spec.backends.push(idle.backend("idle"));
    proxy
        .apply(ProxyConfig {
            listeners: vec![spec],
        })
        .await;

    // Round-robin would alternate; least-conn sends every short connection to the
    // backend with fewer open ones. Each one is closed and seen closed by the
    // backend before the next, so at most one lingers in the proxy's count.
    for round in 0..6 {
        let client = Client::connect(bind).await;
        assert_eq!(client.backend, "idle", "round {round}");
        drop(client);
        within("backend sees the close", async {
            while idle.finished.load(Ordering::SeqCst) < round + 1 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
    }
    for client in &mut held {
        assert_eq!(client.backend, "busy");
        client.echo("still here").await;
    }
    proxy.stop().await;
}

/// Accepts one connection and returns the first `len` bytes it receives.
async fn capture(listener: TcpListener, len: usize) -> Vec<u8> {
    let (mut stream, _) = listener.accept().await.unwrap();
    let mut bytes = vec![0u8; len];
    stream.read_exact(&mut bytes).await.unwrap();
    bytes
}

async fn header_through_proxy(
    kind: ProxyProtocol,
    expected: impl FnOnce(SocketAddr, SocketAddr) -> Vec<u8>,
) {
    let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = backend.local_addr().unwrap();
    let bind = free_tcp_addr();
    let mut spec = tcp_spec(bind, vec![crate::proxy::Backend::new("raw", backend_addr)]);
    spec.proxy_protocol = kind;
    let proxy = Running::start(ProxyConfig {
        listeners: vec![spec],
    })
    .await;

    let mut client = TcpStream::connect(bind).await.unwrap();
    let mut want = expected(client.local_addr().unwrap(), bind);
    want.extend_from_slice(b"hello");
    let captured = tokio::spawn(capture(backend, want.len()));
    client.write_all(b"hello").await.unwrap();
    let got = within("header at the backend", captured).await.unwrap();
    assert_eq!(got, want, "got {:?}", String::from_utf8_lossy(&got));
    proxy.stop().await;
}

#[tokio::test]
async fn proxy_protocol_v1_header_is_exact() {
    header_through_proxy(ProxyProtocol::V1, |client, local| {
        format!(
            "PROXY TCP4 127.0.0.1 127.0.0.1 {} {}\r\n",
            client.port(),
            local.port()
        )
        .into_bytes()
    })
    .await;
}

#[tokio::test]
async fn proxy_protocol_v2_header_is_exact() {
    header_through_proxy(ProxyProtocol::V2, |client, local| {
        let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        header.extend_from_slice(&[0x21, 0x11, 0, 12, 127, 0, 0, 1, 127, 0, 0, 1]);
        header.extend_from_slice(&client.port().to_be_bytes());
        header.extend_from_slice(&local.port().to_be_bytes());
        header
    })
    .await;
}

#[tokio::test]
async fn no_header_without_proxy_protocol_and_half_close_is_relayed() {
    let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = backend.local_addr().unwrap();
    let bind = free_tcp_addr();
    let spec = tcp_spec(bind, vec![crate::proxy::Backend::new("raw", backend_addr)]);
    let proxy = Running::start(ProxyConfig {
        listeners: vec![spec],
    })
    .await;

    let mut client = TcpStream::connect(bind).await.unwrap();
    client.write_all(b"request").await.unwrap();
    client.shutdown().await.unwrap();
    let (mut server, _) = within("accept", backend.accept()).await.unwrap();
    let mut got = Vec::new();
    within("read to EOF", server.read_to_end(&mut got))
        .await
        .unwrap();
    assert_eq!(got, b"request");
    // The client's half-close must not cut the reply direction.
    server.write_all(b"reply").await.unwrap();
    drop(server);
    let mut reply = Vec::new();
    within("reply", client.read_to_end(&mut reply))
        .await
        .unwrap();
    assert_eq!(reply, b"reply");
    proxy.stop().await;
}

#[tokio::test]
async fn a_backend_half_close_reaches_the_client_which_can_still_send() {
    let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = backend.local_addr().unwrap();
    let bind = free_tcp_addr();
    let spec = tcp_spec(bind, vec![crate::proxy::Backend::new("raw", backend_addr)]);
    let proxy = Running::start(ProxyConfig {
        listeners: vec![spec],
    })
    .await;

    let mut client = TcpStream::connect(bind).await.unwrap();
    let (mut server, _) = within("accept", backend.accept()).await.unwrap();
    server.write_all(b"banner").await.unwrap();
    server.shutdown().await.unwrap();
    let mut got = Vec::new();
    within("banner and EOF", client.read_to_end(&mut got))
        .await
        .unwrap();
    assert_eq!(got, b"banner");
    // The backend only stopped sending: what the client sends still arrives,
    // and the client's close ends the backend's side.
    client.write_all(b"after").await.unwrap();
    drop(client);
    let mut tail = Vec::new();
    within(
        "client data after the half close",
        server.read_to_end(&mut tail),
    )
    .await
    .unwrap();
    assert_eq!(tail, b"after");
    proxy.stop().await;
}

#[tokio::test]
async fn shutdown_closes_listeners_and_connections() {
    let backend = EchoBackend::start("a").await;
    let bind = free_tcp_addr();
    let proxy = Running::start(ProxyConfig {
        listeners: vec![tcp_spec(bind, vec![backend.backend("a")])],
    })
    .await;
    let mut client = Client::connect(bind).await;
    assert_eq!(proxy.local(bind, Protocol::Tcp), bind);
    proxy.stop().await;
    client.closed_within(Duration::from_secs(2)).await;
    assert!(
        TcpStream::connect(bind).await.is_err(),
        "listener still open after shutdown"
    );
}

/// A connector whose first connect blocks the proxy's thread until the test
/// lets it go (so connections pile up in the listener's accept queue), and
/// that records how many connections were still queued at each later connect.
struct GatedConnector {
    listener: SocketAddr,
    gate: Mutex<Option<mpsc::Receiver<()>>>,
    queued: Mutex<Vec<usize>>,
}

#[async_trait]
impl Connector for GatedConnector {
    async fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let gate = self.gate.lock().unwrap().take();
        match gate {
            // Blocks the whole proxy thread: nothing is accepted meanwhile.
            Some(gate) => {
                let _ = gate.recv_timeout(STEP);
            }
            None => self
                .queued
                .lock()
                .unwrap()
                .push(accept_queue(self.listener)),
        }
        TcpConnector.connect(addr).await
    }
}

#[tokio::test]
async fn a_burst_of_connections_is_relayed_while_it_is_still_being_accepted() {
    for engine in [Engine::Epoll, Engine::Auto] {
        relayed_while_accepting(engine).await;
    }
}

async fn relayed_while_accepting(engine: Engine) {
    const BURST: usize = 12;
    let backend = EchoBackend::start("a").await;
    let bind = free_tcp_addr();
    let (release, gate) = mpsc::channel();
    let connector = Arc::new(GatedConnector {
        listener: bind,
        gate: Mutex::new(Some(gate)),
        queued: Mutex::default(),
    });
    let proxy = Running::start_on(
        engine,
        connector.clone(),
        ProxyConfig {
            listeners: vec![tcp_spec(bind, vec![backend.backend("a")])],
        },
    )
    .await;
    let mut clients = vec![TcpStream::connect(bind).await.unwrap()];
    within("the first connection's connect", async {
        while connector.gate.lock().unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    // The proxy's thread is held: the kernel completes these handshakes and
    // queues them.
    for _ in 0..BURST {
        clients.push(TcpStream::connect(bind).await.unwrap());
    }
    within("the burst queued", async {
        while accept_queue(bind) < BURST {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    release.send(()).unwrap();
    for client in &mut clients {
        let mut greeting = [0u8; 2];
        within("greeting", client.read_exact(&mut greeting))
            .await
            .unwrap();
        assert_eq!(&greeting, b"a\n");
    }
    let queued = connector.queued.lock().unwrap().clone();
    let engine = proxy.engine;
    assert_eq!(
        queued.len(),
        BURST,
        "{engine}: connects after the first: {queued:?}"
    );
    // The first relays of the burst started after at most ACCEPT_BATCH
    // accepts, with the rest still queued (accepting the whole burst first
    // leaves none).
    assert!(
        queued[0] >= BURST - ACCEPT_BATCH,
        "{engine}: queued connections at each connect: {queued:?}"
    );
    proxy.stop().await;
}
