//! Passive health: failed connects are retried elsewhere and the backend held
//! out until a probe connects.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::support::{
    Client, EchoBackend, ResettingBackend, Running, ScriptedConnector, free_tcp_addr, greetings,
    tcp_spec, within,
};
use crate::proxy::{Backend, ListenerSpec, ProxyConfig};

/// A proxy serving `spec` alone, connecting through `connector`.
async fn start_one(connector: &Arc<ScriptedConnector>, spec: ListenerSpec) -> Running {
    let config = ProxyConfig {
        listeners: vec![spec],
    };
    Running::start_with(connector.clone(), config).await
}

/// A backend nothing listens on ("dead") beside a live one, behind a proxy
/// that probes held backends every `probe_every`.
struct DeadBesideAlive {
    dead: SocketAddr,
    _alive: EchoBackend,
    bind: SocketAddr,
    spec: ListenerSpec,
    connector: Arc<ScriptedConnector>,
    proxy: Running,
}

impl DeadBesideAlive {
    async fn start(probe_every: Duration) -> Self {
        let dead = free_tcp_addr();
        let alive = EchoBackend::start("alive").await;
        let bind = free_tcp_addr();
        let mut spec = tcp_spec(
            bind,
            vec![Backend::new("dead", dead), alive.backend("alive")],
        );
        spec.failure_pause = probe_every;
        let connector = Arc::new(ScriptedConnector::default());
        let proxy = start_one(&connector, spec.clone()).await;
        DeadBesideAlive {
            dead,
            _alive: alive,
            bind,
            spec,
            connector,
            proxy,
        }
    }
}

#[tokio::test]
async fn refused_backend_is_skipped_paused_and_comes_back() {
    let DeadBesideAlive {
        dead,
        _alive,
        bind,
        connector,
        proxy,
        ..
    } = DeadBesideAlive::start(Duration::from_millis(1500)).await;

    // The first connection's turn is the refused backend: the client still gets
    // the live one, and while paused the refused one is not tried again.
    let started = tokio::time::Instant::now();
    let names = greetings(bind, 4).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the pause ran out during the test; the machine is too slow for this check"
    );
    assert_eq!(names, ["alive"; 4]);
    assert_eq!(connector.attempts_to(dead), 1);

    // The task comes up on the same address; the probe after the pause finds
    // it, and it gets its turn again.
    let revived = EchoBackend::start_at("dead", dead).await;
    within("the probe", async {
        while revived.accepted.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(connector.attempts_to(dead), 2, "one probe");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let names = greetings(bind, 4).await;
    assert_eq!(
        names.iter().filter(|name| *name == "dead").count(),
        2,
        "{names:?}"
    );
    drop(revived);
    proxy.stop().await;
}

/// Only probes find out whether a held backend works again: no client waits
/// on a backend that still does not answer, however long it has been held.
#[tokio::test]
async fn a_held_backend_gets_no_client_until_a_probe_connects() {
    let slow = EchoBackend::start("slow").await;
    let fast = EchoBackend::start("fast").await;
    let connector = Arc::new(ScriptedConnector::default());
    connector.hang.lock().unwrap().push(slow.addr);
    let bind = free_tcp_addr();
    let mut spec = tcp_spec(bind, vec![slow.backend("slow"), fast.backend("fast")]);
    let timeout = Duration::from_secs(1);
    spec.connect_timeout = timeout;
    spec.failure_pause = Duration::from_millis(100);
    let proxy = start_one(&connector, spec).await;

    // The first client pays the connect timeout and gets the other backend.
    assert_eq!(greetings(bind, 1).await, ["fast"]);
    assert_eq!(connector.attempts_to(slow.addr), 1);
    // Well past the pause, the backend is still held: a probe waits on it,
    // the clients do not (a client sent there would wait the whole timeout).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = tokio::time::Instant::now();
    assert_eq!(greetings(bind, 4).await, ["fast"; 4]);
    let took = started.elapsed();
    assert!(
        took < timeout,
        "a client waited on the held backend: {took:?}"
    );
    assert_eq!(
        connector.attempts_to(slow.addr),
        2,
        "the client and one probe"
    );

    // It answers again: a later probe connects and it takes its turns.
    connector.hang.lock().unwrap().clear();
    within("the backend back in the balancing", async {
        while !greetings(bind, 2).await.iter().any(|name| name == "slow") {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(connector.attempts_to(slow.addr) >= 3);
    proxy.stop().await;
}

/// A removed backend is not probed any more.
#[tokio::test]
async fn a_removed_backend_is_not_probed() {
    let DeadBesideAlive {
        dead,
        _alive,
        bind,
        mut spec,
        connector,
        mut proxy,
    } = DeadBesideAlive::start(Duration::from_millis(50)).await;
    assert_eq!(greetings(bind, 1).await, ["alive"]);
    within("probes", async {
        while connector.attempts_to(dead) < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    spec.backends.retain(|backend| backend.id != "dead");
    proxy
        .apply(ProxyConfig {
            listeners: vec![spec],
        })
        .await;
    // A probe already connecting may still count; none after it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let probed = connector.attempts_to(dead);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(connector.attempts_to(dead), probed);
    proxy.stop().await;
}

#[tokio::test]
async fn timed_out_connect_is_retried_on_another_backend() {
    let slow = EchoBackend::start("slow").await;
    let fast = EchoBackend::start("fast").await;
    let connector = Arc::new(ScriptedConnector::default());
    connector.hang.lock().unwrap().push(slow.addr);
    let bind = free_tcp_addr();
    let mut spec = tcp_spec(bind, vec![slow.backend("slow"), fast.backend("fast")]);
    spec.connect_timeout = Duration::from_millis(100);
    spec.failure_pause = Duration::from_secs(60);
    let proxy = start_one(&connector, spec).await;

    let started = tokio::time::Instant::now();
    let names = greetings(bind, 1).await;
    let waited = started.elapsed();
    assert_eq!(names, ["fast"]);
    assert!(
        waited >= Duration::from_millis(100),
        "the connect timeout did not run: {waited:?}"
    );
    assert_eq!(connector.attempts_to(slow.addr), 1);

    // Paused: the next connections do not wait for it.
    let names = greetings(bind, 3).await;
    assert_eq!(names, ["fast"; 3]);
    assert_eq!(connector.attempts_to(slow.addr), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn a_backend_that_resets_before_the_first_byte_is_paused_and_the_bytes_go_elsewhere() {
    let resetting = ResettingBackend::start().await;
    let alive = EchoBackend::start("alive").await;
    let connector = Arc::new(ScriptedConnector::default());
    connector.after_reset.lock().unwrap().push(resetting.addr);
    let bind = free_tcp_addr();
    let mut spec = tcp_spec(
        bind,
        vec![
            Backend::new("resetting", resetting.addr),
            alive.backend("alive"),
        ],
    );
    spec.failure_pause = Duration::from_secs(60);
    let proxy = start_one(&connector, spec).await;

    // The client speaks first; its turn is the backend that resets the
    // connection once connected, before the proxy writes the client's bytes:
    // they reach the other backend, which echoes them after its greeting.
    let mut client = TcpStream::connect(bind).await.unwrap();
    client.write_all(b"first words\n").await.unwrap();
    let mut got = vec![0u8; "alive\nfirst words\n".len()];
    within("the greeting and the echo", client.read_exact(&mut got))
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&got), "alive\nfirst words\n");
    assert_eq!(connector.attempts_to(resetting.addr), 1);

    // Paused: the next clients are not sent there.
    for _ in 0..3 {
        let mut client = Client::connect(bind).await;
        assert_eq!(client.backend, "alive");
        client.echo("again").await;
    }
    assert_eq!(connector.attempts_to(resetting.addr), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn client_is_closed_when_no_backend_accepts() {
    let bind = free_tcp_addr();
    let dead = [free_tcp_addr(), free_tcp_addr()];
    let spec = tcp_spec(
        bind,
        vec![Backend::new("x", dead[0]), Backend::new("y", dead[1])],
    );
    let connector = Arc::new(ScriptedConnector::default());
    let proxy = start_one(&connector, spec).await;

    let mut client = TcpStream::connect(bind).await.unwrap();
    let mut buf = [0u8; 8];
    let read = within("close without backend", client.read(&mut buf)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // Each backend tried once for that client.
    assert_eq!(connector.attempts_to(dead[0]), 1);
    assert_eq!(connector.attempts_to(dead[1]), 1);
    proxy.stop().await;
}
