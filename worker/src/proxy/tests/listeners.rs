//! Listener errors: a taken port or a duplicate names the address, and the
//! other listeners keep working.

use std::time::Duration;

use super::support::{EchoBackend, Running, free_tcp_addr, greetings, tcp_spec};
use crate::proxy::{ListenerState, Protocol, ProxyConfig};

#[tokio::test]
async fn taken_port_is_reported_with_its_address_and_retried_while_others_serve() {
    let a = EchoBackend::start("a").await;
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = blocker.local_addr().unwrap();
    let free = free_tcp_addr();
    let mut proxy = Running::start(ProxyConfig {
        listeners: vec![
            tcp_spec(taken, vec![a.backend("a")]),
            tcp_spec(free, vec![a.backend("a")]),
        ],
    })
    .await;

    let status = proxy.wait_status(|status| status.generation >= 1).await;
    match &status.listener(taken, Protocol::Tcp).unwrap().state {
        ListenerState::Failed { error } => {
            assert!(error.contains(&taken.to_string()), "{error}");
            assert!(error.contains("tcp"), "{error}");
        }
        other => panic!("bound a taken port: {other:?}"),
    }
    assert_eq!(greetings(free, 2).await, ["a", "a"]);

    // Once the port is free the retry binds it.
    drop(blocker);
    proxy
        .wait_status(|status| {
            matches!(
                status.listener(taken, Protocol::Tcp).map(|l| &l.state),
                Some(ListenerState::Listening { .. })
            )
        })
        .await;
    assert_eq!(greetings(taken, 1).await, ["a"]);
    proxy.stop().await;
}

#[tokio::test]
async fn duplicate_listener_is_reported_and_the_first_serves() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let bind = free_tcp_addr();
    let mut proxy = Running::start(ProxyConfig {
        listeners: vec![
            tcp_spec(bind, vec![a.backend("a")]),
            tcp_spec(bind, vec![b.backend("b")]),
        ],
    })
    .await;
    let status = proxy.wait_status(|status| status.generation >= 1).await;
    assert_eq!(
        status.listeners[0].state,
        ListenerState::Listening { local: bind }
    );
    match &status.listeners[1].state {
        ListenerState::Failed { error } => {
            assert!(
                error.contains(&bind.to_string()) && error.contains("more than once"),
                "{error}"
            )
        }
        other => panic!("duplicate not reported: {other:?}"),
    }
    assert_eq!(greetings(bind, 2).await, ["a", "a"]);
    proxy.stop().await;
}

#[tokio::test]
async fn same_port_serves_tcp_and_udp_side_by_side() {
    let a = EchoBackend::start("a").await;
    let bind = free_tcp_addr();
    let mut udp = tcp_spec(bind, vec![a.backend("a")]);
    udp.protocol = Protocol::Udp;
    udp.udp_idle_timeout = Duration::from_secs(1);
    let proxy = Running::start(ProxyConfig {
        listeners: vec![tcp_spec(bind, vec![a.backend("a")]), udp],
    })
    .await;
    assert_eq!(proxy.local(bind, Protocol::Tcp), bind);
    assert_eq!(proxy.local(bind, Protocol::Udp), bind);
    proxy.stop().await;
}
