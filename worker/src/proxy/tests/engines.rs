//! The relaying on each engine: the other tests run the proxy as the daemon
//! does (the default engine, epoll); these run the copy-loop behaviours on
//! epoll and on io_uring explicitly, after the exchanges that move a
//! connection's copy to io_uring there.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::support::{Client, EchoBackend, Running, free_tcp_addr, tcp_spec, within};
use crate::proxy::{Backend, Engine, ListenerSpec, ProxyConfig, TcpConnector};

/// Whether this process may make an io_uring (the kernel, its settings and a
/// seccomp profile decide).
fn io_uring_allowed() -> bool {
    // On a thread of its own: a runtime may not be dropped inside another.
    let made = std::thread::spawn(|| tokio_uring::Runtime::new(&tokio_uring::builder()).map(drop))
        .join()
        .expect("io_uring probe thread");
    match made {
        Ok(()) => true,
        Err(err) => {
            eprintln!("io_uring refused here ({err}): its engine is not tested");
            false
        }
    }
}

/// The engines to test on this host.
fn engines() -> Vec<Engine> {
    let mut engines = vec![Engine::Epoll];
    if io_uring_allowed() {
        engines.push(Engine::IoUring);
    }
    engines
}

async fn start(engine: Engine, spec: ListenerSpec) -> Running {
    let proxy = Running::start_on(
        engine,
        Arc::new(TcpConnector),
        ProxyConfig {
            listeners: vec![spec],
        },
    )
    .await;
    assert_eq!(proxy.engine, engine);
    proxy
}

/// A proxy on `engine` in front of one plain listener the test accepts on
/// itself; returns the listener, the proxy's address and the proxy.
async fn before_raw_backend(engine: Engine) -> (TcpListener, std::net::SocketAddr, Running) {
    let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bind = free_tcp_addr();
    let spec = tcp_spec(
        bind,
        vec![Backend::new("raw", backend.local_addr().unwrap())],
    );
    (backend, bind, start(engine, spec).await)
}

/// Checks how many connections moved to io_uring: `moved` on that engine,
/// none on epoll. The relay counts a move just after its last epoll write, so
/// the count may trail the client's read of that write by a moment.
async fn assert_moved(proxy: &Running, moved: u64) {
    let expected = if proxy.engine == Engine::IoUring {
        moved
    } else {
        0
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while proxy.stats.io_uring_copies() < expected && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        proxy.stats.io_uring_copies(),
        expected,
        "{}: connections moved to io_uring",
        proxy.engine
    );
}

#[tokio::test]
async fn the_daemons_engine_is_epoll_and_auto_is_io_uring_where_the_kernel_allows_it() {
    let backend = EchoBackend::start("a").await;
    let expected_auto = if io_uring_allowed() {
        Engine::IoUring
    } else {
        Engine::Epoll
    };
    for (asked, expected) in [(None, Engine::Epoll), (Some(Engine::Auto), expected_auto)] {
        let bind = free_tcp_addr();
        let config = ProxyConfig {
            listeners: vec![tcp_spec(bind, vec![backend.backend("a")])],
        };
        let proxy = match asked {
            None => Running::start(config).await,
            Some(engine) => Running::start_on(engine, Arc::new(TcpConnector), config).await,
        };
        assert_eq!(proxy.engine, expected, "asked for {asked:?}");
        Client::connect(bind).await.echo("hello").await;
        proxy.stop().await;
    }
}

/// Bytes that differ at every offset for a long while, so a reordered,
/// dropped or repeated chunk shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

#[tokio::test]
async fn each_engine_relays_large_transfers_both_ways_at_once_and_many_small_exchanges() {
    for engine in engines() {
        let (backend, bind, proxy) = before_raw_backend(engine).await;
        let up = pattern(3 << 20, 0x5a);
        let down = pattern(2 << 20, 0xa5);
        let client = TcpStream::connect(bind).await.unwrap();
        let (mut server, _) = within("accept", backend.accept()).await.unwrap();

        // Small exchanges first, as a keep-alive client makes them.
        let (mut client_read, mut client_write) = client.into_split();
        for round in 0..200u32 {
            let request = format!("request {round}\n");
            client_write.write_all(request.as_bytes()).await.unwrap();
            let mut got = vec![0u8; request.len()];
            within("request", server.read_exact(&mut got))
                .await
                .unwrap();
            assert_eq!(got, request.as_bytes(), "{engine}");
            server.write_all(b"ok\n").await.unwrap();
            let mut reply = [0u8; 3];
            within("reply", client_read.read_exact(&mut reply))
                .await
                .unwrap();
            assert_eq!(&reply, b"ok\n", "{engine}");
        }

        // Then megabytes both ways at once, each side ending with a half close.
        let (mut server_read, mut server_write) = server.into_split();
        let sent_up = up.clone();
        let client_sends = tokio::spawn(async move {
            client_write.write_all(&sent_up).await.unwrap();
            client_write.shutdown().await.unwrap();
        });
        let sent_down = down.clone();
        let server_sends = tokio::spawn(async move {
            server_write.write_all(&sent_down).await.unwrap();
            server_write.shutdown().await.unwrap();
        });
        let mut got_up = Vec::new();
        let mut got_down = Vec::new();
        within("both transfers", async {
            tokio::try_join!(
                server_read.read_to_end(&mut got_up),
                client_read.read_to_end(&mut got_down),
            )
        })
        .await
        .unwrap();
        client_sends.await.unwrap();
        server_sends.await.unwrap();
        assert!(got_up == up, "{engine}: client to backend differs");
        assert!(got_down == down, "{engine}: backend to client differs");
        assert_moved(&proxy, 1).await;
        proxy.stop().await;
    }
}

/// Two request-reply exchanges, so that the copy has moved to io_uring on that
/// engine (it moves once the client sends after its first bytes).
async fn exchanges(client: &mut TcpStream, server: &mut TcpStream) {
    for round in 0..2 {
        client.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        within("ping", server.read_exact(&mut got)).await.unwrap();
        assert_eq!(&got, b"ping", "exchange {round}");
        server.write_all(b"pong").await.unwrap();
        within("pong", client.read_exact(&mut got)).await.unwrap();
        assert_eq!(&got, b"pong", "exchange {round}");
    }
}

/// `first` sends its last bytes and ends its side; `second` gets them and
/// the end, and what it sends after that still reaches `first`, which sees
/// its close.
async fn half_close(first: &mut TcpStream, mut second: TcpStream, engine: Engine) {
    first.write_all(b"last words").await.unwrap();
    first.shutdown().await.unwrap();
    let mut got = Vec::new();
    within("last words and EOF", second.read_to_end(&mut got))
        .await
        .unwrap();
    assert_eq!(got, b"last words", "{engine}");
    second.write_all(b"answer").await.unwrap();
    drop(second);
    let mut answer = Vec::new();
    within(
        "answer after the half close",
        first.read_to_end(&mut answer),
    )
    .await
    .unwrap();
    assert_eq!(answer, b"answer", "{engine}");
}

#[tokio::test]
async fn each_engine_passes_each_sides_half_close_on() {
    for engine in engines() {
        let (backend, bind, proxy) = before_raw_backend(engine).await;

        // The client ends first, then the backend does.
        for client_first in [true, false] {
            let mut client = TcpStream::connect(bind).await.unwrap();
            let (mut server, _) = within("accept", backend.accept()).await.unwrap();
            exchanges(&mut client, &mut server).await;
            if client_first {
                half_close(&mut client, server, engine).await;
            } else {
                half_close(&mut server, client, engine).await;
            }
        }
        assert_moved(&proxy, 2).await;
        proxy.stop().await;
    }
}

#[tokio::test]
async fn each_engine_closes_a_drained_connection_at_the_deadline_and_all_at_shutdown() {
    for engine in engines() {
        let a = EchoBackend::start("a").await;
        let bind = free_tcp_addr();
        let mut spec = tcp_spec(bind, vec![a.backend("a")]);
        spec.drain_deadline = Duration::from_millis(500);
        let mut proxy = start(engine, spec.clone()).await;
        let mut drained = Client::connect(bind).await;
        // The greeting came first, so the client's second chunk moves it.
        drained.echo("before").await;
        drained.echo("before again").await;
        assert_moved(&proxy, 1).await;

        spec.backends[0].draining = true;
        let drained_at = tokio::time::Instant::now();
        proxy
            .apply(ProxyConfig {
                listeners: vec![spec.clone()],
            })
            .await;
        drained.echo("still open while draining").await;
        drained.closed_within(Duration::from_secs(3)).await;
        let open_for = drained_at.elapsed();
        assert!(
            open_for >= Duration::from_millis(500),
            "{engine}: closed before the drain deadline: {open_for:?}"
        );

        // A backend taking connections again; shutdown ends its connection.
        spec.backends[0].draining = false;
        spec.backends[0].id = "a-again".into();
        proxy
            .apply(ProxyConfig {
                listeners: vec![spec],
            })
            .await;
        let mut open = Client::connect(bind).await;
        open.echo("hello").await;
        proxy.stop().await;
        open.closed_within(Duration::from_secs(2)).await;
    }
}

#[tokio::test]
async fn a_connection_with_one_exchange_stays_on_epoll_and_the_next_request_moves_it() {
    for engine in engines() {
        let (backend, bind, proxy) = before_raw_backend(engine).await;
        // A new connection per request: request, reply, the backend closes.
        let mut client = TcpStream::connect(bind).await.unwrap();
        client.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
        let (mut server, _) = within("accept", backend.accept()).await.unwrap();
        let mut request = [0u8; 18];
        within("request", server.read_exact(&mut request))
            .await
            .unwrap();
        server.write_all(b"HTTP/1.0 200 OK\r\n\r\n").await.unwrap();
        drop(server);
        let mut reply = Vec::new();
        within("reply", client.read_to_end(&mut reply))
            .await
            .unwrap();
        assert_eq!(reply, b"HTTP/1.0 200 OK\r\n\r\n", "{engine}");
        drop(client);
        assert_moved(&proxy, 0).await;

        // A second request on a connection moves it.
        let mut client = TcpStream::connect(bind).await.unwrap();
        let (mut server, _) = within("accept", backend.accept()).await.unwrap();
        exchanges(&mut client, &mut server).await;
        assert_moved(&proxy, 1).await;
        exchanges(&mut client, &mut server).await;
        proxy.stop().await;
    }
}

#[tokio::test]
async fn a_client_that_writes_everything_before_it_reads_does_not_stall_the_move() {
    for engine in engines() {
        let (backend, bind, proxy) = before_raw_backend(engine).await;
        let mut client = TcpStream::connect(bind).await.unwrap();
        client.write_all(b"hello").await.unwrap();
        let (server, _) = within("accept", backend.accept()).await.unwrap();
        // The backend streams megabytes while it reads; the client sends its
        // own megabytes before it reads anything, so the proxy's write to the
        // client waits while the client's bytes must keep flowing.
        let up = pattern(8 << 20, 0x11);
        let down = pattern(32 << 20, 0x22);
        let (mut server_read, mut server_write) = server.into_split();
        let sent_down = down.clone();
        let server_sends = tokio::spawn(async move {
            server_write.write_all(&sent_down).await.unwrap();
            server_write.shutdown().await.unwrap();
        });
        let server_reads = tokio::spawn(async move {
            let mut got = Vec::new();
            server_read.read_to_end(&mut got).await.unwrap();
            got
        });
        let got_down = tokio::time::timeout(Duration::from_secs(20), async {
            // By now the proxy's write to the client waits for the client.
            tokio::time::sleep(Duration::from_millis(300)).await;
            client.write_all(&up).await.unwrap();
            client.shutdown().await.unwrap();
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.unwrap();
            got
        })
        .await
        .unwrap_or_else(|_| panic!("{engine}: the relay stalled"));
        let got_up = within("backend's read", server_reads).await.unwrap();
        server_sends.await.unwrap();
        assert!(
            got_up[..5] == *b"hello" && got_up[5..] == up[..],
            "{engine}: up"
        );
        assert!(got_down == down, "{engine}: down");
        proxy.stop().await;
    }
}
