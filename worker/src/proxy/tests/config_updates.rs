//! Configuration changes while connections are open: listeners and backends come
//! and go, draining backends finish their connections by the deadline.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpStream;

use super::support::{Client, EchoBackend, Running, free_tcp_addr, greetings, tcp_spec, within};
use crate::proxy::{Protocol, ProxyConfig};

#[tokio::test]
async fn updates_add_and_remove_listeners_and_backends_without_breaking_a_live_connection() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let c = EchoBackend::start("c").await;
    let first = free_tcp_addr();
    let second = free_tcp_addr();
    let mut proxy = Running::start(ProxyConfig {
        listeners: vec![tcp_spec(first, vec![a.backend("a"), b.backend("b")])],
    })
    .await;
    let mut live = Client::connect(first).await;
    assert_eq!(live.backend, "a");

    // b leaves, c joins, a second listener appears.
    let status = proxy
        .apply(ProxyConfig {
            listeners: vec![
                tcp_spec(first, vec![a.backend("a"), c.backend("c")]),
                tcp_spec(second, vec![b.backend("b")]),
            ],
        })
        .await;
    assert!(status.errors().is_empty(), "{status:?}");
    live.echo("after first update").await;
    let mut names = greetings(first, 4).await;
    names.sort();
    assert_eq!(names, ["a", "a", "c", "c"]);
    assert_eq!(greetings(second, 2).await, ["b", "b"]);
    assert_eq!(
        b.accepted.load(Ordering::SeqCst),
        2,
        "b left the first listener"
    );

    // The second listener goes away; the port is closed when apply returns.
    proxy
        .apply(ProxyConfig {
            listeners: vec![tcp_spec(first, vec![a.backend("a"), c.backend("c")])],
        })
        .await;
    assert!(
        TcpStream::connect(second).await.is_err(),
        "removed listener still accepts"
    );
    live.echo("after second update").await;
    // And comes back on the same port.
    proxy
        .apply(ProxyConfig {
            listeners: vec![
                tcp_spec(first, vec![a.backend("a"), c.backend("c")]),
                tcp_spec(second, vec![c.backend("c")]),
            ],
        })
        .await;
    assert_eq!(greetings(second, 1).await, ["c"]);
    live.echo("after third update").await;
    proxy.stop().await;
}

#[tokio::test]
async fn draining_backend_gets_no_new_connections_and_is_closed_at_the_deadline() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let bind = free_tcp_addr();
    let mut spec = tcp_spec(bind, vec![a.backend("a"), b.backend("b")]);
    spec.drain_deadline = Duration::from_millis(800);
    let mut proxy = Running::start(ProxyConfig {
        listeners: vec![spec.clone()],
    })
    .await;
    let mut old = Client::connect(bind).await;
    assert_eq!(old.backend, "a");

    spec.backends[0].draining = true;
    let drained_at = tokio::time::Instant::now();
    proxy
        .apply(ProxyConfig {
            listeners: vec![spec],
        })
        .await;
    assert_eq!(greetings(bind, 4).await, ["b"; 4]);
    old.echo("finishing my request").await;
    old.closed_within(Duration::from_secs(3)).await;
    let open_for = drained_at.elapsed();
    assert!(
        open_for >= Duration::from_millis(800),
        "closed before the drain deadline: {open_for:?}"
    );
    assert!(
        open_for < Duration::from_millis(2500),
        "closed late: {open_for:?}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn removed_listener_stops_accepting_and_drains_its_connections() {
    let a = EchoBackend::start("a").await;
    let bind = free_tcp_addr();
    let other = free_tcp_addr();
    let mut spec = tcp_spec(bind, vec![a.backend("a")]);
    spec.drain_deadline = Duration::from_millis(500);
    let mut proxy = Running::start(ProxyConfig {
        listeners: vec![spec, tcp_spec(other, vec![a.backend("a")])],
    })
    .await;
    let mut live = Client::connect(bind).await;

    let removed_at = tokio::time::Instant::now();
    proxy
        .apply(ProxyConfig {
            listeners: vec![tcp_spec(other, vec![a.backend("a")])],
        })
        .await;
    assert!(
        TcpStream::connect(bind).await.is_err(),
        "removed listener still accepts"
    );
    live.echo("still served while draining").await;
    within("drain", live.closed_within(Duration::from_secs(3))).await;
    assert!(removed_at.elapsed() >= Duration::from_millis(500));
    assert_eq!(proxy.local(other, Protocol::Tcp), other);
    assert_eq!(greetings(other, 1).await, ["a"]);
    proxy.stop().await;
}
