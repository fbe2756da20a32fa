//! Listener errors: a taken port or a duplicate names the address, and the
//! other listeners keep working.

use std::net::SocketAddr;
use std::time::Duration;

use super::support::{Client, EchoBackend, Running, free_tcp_addr, greetings, tcp_spec};
use crate::proxy::{ListenerState, Protocol, ProxyConfig, ProxyStatus};

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
    // What the node reports to the managers: the one listener that does not serve.
    assert_eq!(
        status.errors(),
        [format!(
            "cannot listen on tcp {taken}: Address already in use (os error 98)"
        )]
    );
    assert_eq!(greetings(free, 2).await, ["a", "a"]);

    // Once the port is free the retry binds it.
    drop(blocker);
    proxy
        .wait_status(|status| tcp_listening(status, taken))
        .await;
    assert_eq!(greetings(taken, 1).await, ["a"]);
    assert!(proxy.wait_status(|_| true).await.errors().is_empty());
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

/// A service publishing `P:P` binds `0.0.0.0:P`, and another service's VIP
/// listener `VIP:P` shares that port: both serve, and a connection goes to the
/// listener bound to the address it was made to, else to the wildcard one.
#[tokio::test]
async fn a_wildcard_and_a_specific_listener_share_a_port() {
    let published = EchoBackend::start("published").await;
    let vip = EchoBackend::start("vip").await;
    let port = free_tcp_addr().port();
    let wildcard = SocketAddr::from(([0, 0, 0, 0], port));
    let specific = SocketAddr::from(([127, 0, 0, 9], port));
    for order in [[wildcard, specific], [specific, wildcard]] {
        let spec = |bind: SocketAddr| {
            let backend = if bind == wildcard { &published } else { &vip };
            tcp_spec(bind, vec![backend.backend("b")])
        };
        let mut proxy = Running::start(ProxyConfig {
            listeners: order.iter().map(|bind| spec(*bind)).collect(),
        })
        .await;
        let status = proxy.wait_status(|status| status.generation >= 1).await;
        for bind in order {
            assert!(
                tcp_listening(&status, bind),
                "{bind} (order {order:?}): {status:?}"
            );
        }
        assert_eq!(greetings(specific, 2).await, ["vip", "vip"]);
        let other = SocketAddr::from(([127, 0, 0, 1], port));
        assert_eq!(greetings(other, 2).await, ["published", "published"]);
        // The specific listener removed: its address falls to the wildcard one.
        let status = proxy
            .apply(ProxyConfig {
                listeners: vec![spec(wildcard)],
            })
            .await;
        assert_eq!(status.listeners.len(), 1);
        assert_eq!(greetings(specific, 1).await, ["published"]);
        proxy.stop().await;
    }
}

/// A wildcard listener added on the port of a specific one takes its socket over
/// (the specific listener's open connections and backends carry on); removed
/// again, the specific listener binds its own socket again. A wildcard that still
/// cannot bind (another program holds the port on some address) leaves the
/// specific listener serving.
#[tokio::test]
async fn a_wildcard_listener_added_and_removed_beside_a_specific_one() {
    let published = EchoBackend::start("published").await;
    let vip = EchoBackend::start("vip").await;
    let port = free_tcp_addr().port();
    let wildcard = SocketAddr::from(([0, 0, 0, 0], port));
    let specific = SocketAddr::from(([127, 0, 0, 9], port));
    let only_specific = ProxyConfig {
        listeners: vec![tcp_spec(specific, vec![vip.backend("v")])],
    };
    let both = ProxyConfig {
        listeners: vec![
            tcp_spec(specific, vec![vip.backend("v")]),
            tcp_spec(wildcard, vec![published.backend("p")]),
        ],
    };
    let mut proxy = Running::start(only_specific.clone()).await;
    let mut open = Client::connect(specific).await;
    assert_eq!(open.backend, "vip");

    let status = proxy.apply(both.clone()).await;
    assert!(status.errors().is_empty(), "{status:?}");
    assert_eq!(greetings(specific, 2).await, ["vip", "vip"]);
    assert_eq!(
        greetings(SocketAddr::from(([127, 0, 0, 1], port)), 1).await,
        ["published"]
    );
    open.echo("still there").await;

    proxy.apply(only_specific.clone()).await;
    assert_eq!(proxy.local(specific, Protocol::Tcp), specific);
    assert_eq!(greetings(specific, 1).await, ["vip"]);
    open.echo("and still").await;
    // Nothing on the other addresses of the port any more.
    assert!(
        tokio::net::TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .is_err()
    );

    // Another program on 127.0.0.8 of the port: the wildcard cannot bind, with
    // or without the specific listener's socket, which is left alone and keeps
    // serving; the error names where the other program listens.
    let held = SocketAddr::from(([127, 0, 0, 8], port));
    let blocker = std::net::TcpListener::bind(held).unwrap();
    let status = proxy.apply(both.clone()).await;
    match &status.listener(wildcard, Protocol::Tcp).unwrap().state {
        ListenerState::Failed { error } => assert_eq!(
            *error,
            format!("cannot listen on tcp {wildcard}: another program listens on {held}")
        ),
        other => panic!("wildcard bound under another program's socket: {other:?}"),
    }
    assert_eq!(proxy.local(specific, Protocol::Tcp), specific);
    assert_eq!(greetings(specific, 1).await, ["vip"]);
    // Once that program is gone, the retry binds the wildcard and serves both.
    drop(blocker);
    proxy
        .wait_status(|status| tcp_listening(status, wildcard))
        .await;
    assert_eq!(greetings(specific, 1).await, ["vip"]);
    assert_eq!(
        greetings(SocketAddr::from(([127, 0, 0, 1], port)), 1).await,
        ["published"]
    );
    open.echo("to the end").await;
    proxy.stop().await;
}

/// Whether the TCP listener on `bind` serves.
fn tcp_listening(status: &ProxyStatus, bind: SocketAddr) -> bool {
    matches!(
        status.listener(bind, Protocol::Tcp).map(|l| &l.state),
        Some(ListenerState::Listening { .. })
    )
}
