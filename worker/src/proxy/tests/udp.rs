//! UDP sessions: round trip, reuse per client, idle expiry, refused backends.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

use super::support::{Running, UdpEchoBackend, free_udp_addr, within};
use crate::proxy::{Backend, ListenerSpec, Protocol, ProxyConfig};

fn udp_spec(bind: SocketAddr, backends: Vec<Backend>) -> ListenerSpec {
    let mut spec = ListenerSpec::new(bind, Protocol::Udp, backends);
    spec.udp_idle_timeout = Duration::from_secs(5);
    spec.failure_pause = Duration::from_secs(60);
    spec
}

async fn client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// Sends `payload` to `proxy` and returns the reply.
async fn ask(socket: &UdpSocket, proxy: SocketAddr, payload: &str) -> String {
    socket.send_to(payload.as_bytes(), proxy).await.unwrap();
    let mut buf = [0u8; 256];
    let (len, from) = within("UDP reply", socket.recv_from(&mut buf))
        .await
        .unwrap();
    assert_eq!(
        from, proxy,
        "the reply must come from the address the client used"
    );
    String::from_utf8(buf[..len].to_vec()).unwrap()
}

#[tokio::test]
async fn round_trip_and_session_reuse_per_client() {
    let a = UdpEchoBackend::start("a").await;
    let b = UdpEchoBackend::start("b").await;
    let bind = free_udp_addr();
    let proxy = Running::start(ProxyConfig {
        listeners: vec![udp_spec(
            bind,
            vec![Backend::new("a", a.addr), Backend::new("b", b.addr)],
        )],
    })
    .await;

    let first = client().await;
    let second = client().await;
    for round in 0..3 {
        assert_eq!(
            ask(&first, bind, &format!("one {round}")).await,
            format!("a:one {round}")
        );
        assert_eq!(
            ask(&second, bind, &format!("two {round}")).await,
            format!("b:two {round}")
        );
    }
    // One session socket per client, reused for every datagram.
    assert_eq!(a.peers.lock().unwrap().len(), 1);
    assert_eq!(b.peers.lock().unwrap().len(), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn idle_session_expires_and_the_next_datagram_starts_a_new_one() {
    let a = UdpEchoBackend::start("a").await;
    let b = UdpEchoBackend::start("b").await;
    let bind = free_udp_addr();
    let mut spec = udp_spec(
        bind,
        vec![Backend::new("a", a.addr), Backend::new("b", b.addr)],
    );
    spec.udp_idle_timeout = Duration::from_millis(300);
    let proxy = Running::start(ProxyConfig {
        listeners: vec![spec],
    })
    .await;

    let socket = client().await;
    assert_eq!(ask(&socket, bind, "x").await, "a:x");
    // Traffic within the idle timeout keeps the session.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(ask(&socket, bind, "y").await, "a:y");
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        ask(&socket, bind, "z").await,
        "b:z",
        "the idle session should have ended"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn refused_udp_backend_is_paused_and_the_client_retry_lands_elsewhere() {
    let dead = free_udp_addr();
    let alive = UdpEchoBackend::start("alive").await;
    let bind = free_udp_addr();
    let proxy = Running::start(ProxyConfig {
        listeners: vec![udp_spec(
            bind,
            vec![
                Backend::new("dead", dead),
                Backend::new("alive", alive.addr),
            ],
        )],
    })
    .await;

    // UDP has no connect to fail: the first datagram goes to the dead backend and
    // is lost, as it would be without a proxy; the client's retry is answered.
    let socket = client().await;
    let mut answer = None;
    for attempt in 0..10 {
        socket
            .send_to(format!("try {attempt}").as_bytes(), bind)
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        if let Ok(Ok((len, _))) =
            tokio::time::timeout(Duration::from_millis(300), socket.recv_from(&mut buf)).await
        {
            answer = Some(String::from_utf8(buf[..len].to_vec()).unwrap());
            break;
        }
    }
    let answer = answer.expect("no answer after 10 tries");
    assert!(answer.starts_with("alive:"), "{answer}");
    // The refused backend is paused: a new client goes straight to the live one.
    let other = client().await;
    assert_eq!(ask(&other, bind, "hi").await, "alive:hi");
    proxy.stop().await;
}

#[tokio::test]
async fn draining_udp_backend_keeps_its_session_until_the_deadline() {
    let a = UdpEchoBackend::start("a").await;
    let b = UdpEchoBackend::start("b").await;
    let bind = free_udp_addr();
    let mut spec = udp_spec(
        bind,
        vec![Backend::new("a", a.addr), Backend::new("b", b.addr)],
    );
    spec.drain_deadline = Duration::from_millis(500);
    let mut proxy = Running::start(ProxyConfig {
        listeners: vec![spec.clone()],
    })
    .await;
    let old = client().await;
    assert_eq!(ask(&old, bind, "1").await, "a:1");

    spec.backends[0].draining = true;
    proxy
        .apply(ProxyConfig {
            listeners: vec![spec],
        })
        .await;
    // New clients go to b; the old session stays on a until the deadline.
    for _ in 0..2 {
        assert_eq!(ask(&client().await, bind, "new").await, "b:new");
    }
    assert_eq!(ask(&old, bind, "2").await, "a:2");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        ask(&old, bind, "3").await,
        "b:3",
        "the drained session should have ended"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn removed_udp_listener_frees_its_port_at_once() {
    let a = UdpEchoBackend::start("a").await;
    let b = UdpEchoBackend::start("b").await;
    let bind = free_udp_addr();
    let mut proxy = Running::start(ProxyConfig {
        listeners: vec![udp_spec(bind, vec![Backend::new("a", a.addr)])],
    })
    .await;
    let socket = client().await;
    assert_eq!(ask(&socket, bind, "1").await, "a:1");

    proxy.apply(ProxyConfig::default()).await;
    // The session ended with its listener, so the port is free: binding it again
    // (here by the proxy itself, with another backend) works right away.
    let status = proxy
        .apply(ProxyConfig {
            listeners: vec![udp_spec(bind, vec![Backend::new("b", b.addr)])],
        })
        .await;
    assert_eq!(proxy.local(bind, Protocol::Udp), bind, "{status:?}");
    assert_eq!(ask(&socket, bind, "2").await, "b:2");
    proxy.stop().await;
}
