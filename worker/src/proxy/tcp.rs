//! TCP listeners: accept, choose a backend (retrying others on a failed connect),
//! send the PROXY header with what the client has sent so far, then copy both
//! ways until either side is done or the backend's drain deadline passes.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::backend::{ActiveGuard, BackendState};
use super::buffers::{BUFFER_SIZE, Buffer};
use super::config::ProxyProtocol;
use super::connector::Connector;
use super::error::ProxyError;
use super::header;
use super::pool::{ListenerShared, Snapshot};
use super::routes::Routes;
use super::uring::{Copied, Copier};

/// Pause after a failed accept (out of file descriptors, mostly), so the loop does
/// not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Connections the accept loop takes before it lets the rest of the proxy run
/// (the relays it has just started, replies waiting to be passed on) and
/// carries on. Taking a whole burst first makes each connection of it wait for
/// the last accept before anything is relayed, which widens the latency spread
/// under load (new-connection benchmark, paired rounds: p99 1.04-1.17x
/// HAProxy's accepting everything, 0.97-1.02x with 2 or 4; see
/// docs/design/networking.md); HAProxy bounds its accepts per loop too.
pub(super) const ACCEPT_BATCH: usize = 4;

/// Accepts connections until `stop` is cancelled; each connection runs in its own
/// task and outlives the accept loop (it ends with its backend's drain). A
/// connection made to an address in `routes` goes to that listener.
pub(super) async fn serve(
    listener: TcpListener,
    shared: Arc<ListenerShared>,
    routes: Arc<Routes>,
    connector: Arc<dyn Connector>,
    copier: Option<Copier>,
    stop: CancellationToken,
) {
    let mut in_a_row = 0;
    loop {
        if in_a_row == ACCEPT_BATCH {
            in_a_row = 0;
            tokio::task::yield_now().await;
        }
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((client, peer)) => {
                in_a_row += 1;
                let shared = routes.route(&client).unwrap_or_else(|| shared.clone());
                let connector = connector.clone();
                let copier = copier.clone();
                tokio::spawn(async move {
                    match relay(client, peer, &shared, &connector, copier.as_ref()).await {
                        Ok(()) => {}
                        Err(RelayError::NoBackend(err)) => {
                            // Per client: the failed backends were logged when paused.
                            debug!(listener = %shared.bind, client = %peer, "{err}; connection closed");
                        }
                        Err(err) => {
                            debug!(listener = %shared.bind, client = %peer, %err, "connection ended with an error");
                        }
                    }
                });
            }
            Err(err) => {
                warn!(listener = %shared.bind, %err, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Why a relayed connection ended badly.
#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error(transparent)]
    NoBackend(#[from] ProxyError),
    #[error("client connection: {0}")]
    Client(io::Error),
    #[error("relaying to backend {backend}: {source}")]
    Io { backend: String, source: io::Error },
}

async fn relay(
    mut client: TcpStream,
    peer: SocketAddr,
    shared: &ListenerShared,
    connector: &Arc<dyn Connector>,
    copier: Option<&Copier>,
) -> Result<(), RelayError> {
    let snapshot = shared.snapshot();
    // Latency matters more than packet count for relayed traffic.
    client.set_nodelay(true).map_err(RelayError::Client)?;
    let mut header = None;
    if snapshot.settings.proxy_protocol != ProxyProtocol::None {
        // The address the client connected to (not the bind address, which may
        // be 0.0.0.0).
        let local = client.local_addr().map_err(RelayError::Client)?;
        header = header::encode(snapshot.settings.proxy_protocol, peer, local);
    }
    let mut tried = Vec::new();
    let mut first = Vec::new();
    let (backend, _guard, mut upstream, (unsent, client_bytes_sent)) = loop {
        let (backend, guard, upstream) =
            connect_any(shared, &snapshot, connector, &mut tried).await?;
        let header = header.as_deref().unwrap_or_default();
        match forward_first(&client, &upstream, header, &mut first) {
            Ok(unsent) => break (backend, guard, upstream, unsent),
            Err(First::Client(err)) => return Err(RelayError::Client(err)),
            // Nothing reached the backend (it reset the connection before its
            // first byte, as a task that stops with connections still in its
            // accept queue does): the client's bytes go to another one.
            Err(First::Upstream(err)) => {
                failed(shared, &snapshot, &backend, connector, &err.to_string())
            }
        }
    };
    let io_error = |source| RelayError::Io {
        backend: backend.id.clone(),
        source,
    };
    if !unsent.is_empty() {
        upstream.write_all(&unsent).await.map_err(io_error)?;
    }
    let closed = || debug!(listener = %shared.bind, backend = %backend.id, client = %peer, "closed at drain deadline");
    let ended = tokio::select! {
        // The client's bytes the first write carried count as its first chunk.
        copied = copy_both_ways(&mut client, &mut upstream, copier.map(|_| if client_bytes_sent { 1 } else { 2 })) => {
            copied.map_err(io_error)?
        }
        _ = backend.closed() => {
            closed();
            return Ok(());
        }
    };
    if let (Ended::HandOver, Some(copier)) = (ended, copier) {
        let client = client.into_std().map_err(RelayError::Client)?;
        let upstream = upstream.into_std().map_err(io_error)?;
        if let Copied::Closed = copier
            .copy(client, upstream, backend.close_token())
            .await
            .map_err(io_error)?
        {
            closed();
        }
    }
    Ok(())
}

/// Which side [`forward_first`] failed on.
#[derive(Debug)]
enum First {
    /// Reading what the client has sent.
    Client(io::Error),
    /// Writing to the upstream: nothing was sent.
    Upstream(io::Error),
}

/// Sends the PROXY header (if any) and what the client has sent so far to the
/// upstream with one write, before the event loop has reported either socket
/// ready: a client's request has mostly arrived by the time it is accepted, and
/// the connector returns the upstream connected, so the backend starts on the
/// request one event-loop turn sooner (HAProxy reads and sends speculatively
/// too). Returns the bytes the upstream's send buffer did not take (the copy
/// loop takes over from there; a client that has sent nothing yet, or only its
/// end of data, is left to it) and whether the write carried client bytes.
///
/// `earlier` holds the client's bytes read for an upstream whose write failed;
/// they are sent instead of reading the client again (and kept in it if this
/// write fails too).
fn forward_first(
    client: &TcpStream,
    upstream: &TcpStream,
    header: &[u8],
    earlier: &mut Vec<u8>,
) -> Result<(Vec<u8>, bool), First> {
    // On the stack of this (synchronous) function, not in the connection's future.
    let mut bytes = [0u8; BUFFER_SIZE];
    let mut len = header.len();
    bytes[..len].copy_from_slice(header);
    let from_client = if earlier.is_empty() {
        let space = bytes.len() - len;
        match (&*SockRef::from(client)).read(&mut bytes[len..]) {
            Ok(read) => {
                if read > 0 && read < space {
                    drained(client);
                }
                read
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                drained(client);
                0
            }
            Err(err) => return Err(First::Client(err)),
        }
    } else {
        bytes[len..len + earlier.len()].copy_from_slice(earlier);
        earlier.len()
    };
    len += from_client;
    if len == 0 {
        return Ok((Vec::new(), false));
    }
    let sent = match (&*SockRef::from(upstream)).write(&bytes[..len]) {
        Ok(sent) => sent,
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => 0,
        Err(err) => {
            *earlier = bytes[len - from_client..len].to_vec();
            return Err(First::Upstream(err));
        }
    };
    Ok((bytes[sent..len].to_vec(), from_client > 0))
}

/// Tells tokio the client has no bytes waiting after [`forward_first`] read it
/// past tokio's back (a short read, or none): the readiness the event loop
/// may have recorded when the request arrived would otherwise cost the copy
/// loop one read that only answers `EAGAIN` (tokio's own reads clear it on a
/// short read in the same way). Bytes arriving later raise a new edge-triggered
/// event, which this does not clear.
fn drained(client: &TcpStream) {
    let _ = client.try_io(Interest::READABLE, || {
        Err::<(), _>(io::ErrorKind::WouldBlock.into())
    });
}

/// How [`copy_both_ways`] ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// Both directions ended.
    Done,
    /// The client's direction has relayed its chunks (a connection that goes
    /// on past its first bytes) and both directions were waiting for bytes at
    /// once, holding none: the copy can go on elsewhere (io_uring).
    HandOver,
}

/// The two directions' agreement to stop for the hand-over. Both run in one
/// task ([`copy_both_ways`] joins them), so a flag read by one was written by
/// the other between two of its polls: no locking is needed.
#[derive(Default)]
struct HandOver {
    /// The client's chunks still to relay before the hand-over is wanted
    /// (counted down by the client's direction; 0: wanted).
    client_chunks: std::sync::atomic::AtomicUsize,
    /// Per direction (0: the client's, 1: the backend's): it waits for bytes
    /// and holds none.
    idle: [AtomicBool; 2],
    /// Set by the direction that stops first, having seen the other idle.
    stopping: AtomicBool,
    /// Per direction: wakes it when the other has stopped.
    wake: [tokio::sync::Notify; 2],
}

/// Copies client to upstream and upstream to client until both are done, as
/// `tokio::io::copy_bidirectional` does, passing each side's end of data on to
/// the other with a half close (`shutdown(SHUT_WR)`), except for the side that
/// ends last: both sockets are closed right after, and the close sends that
/// FIN (nothing is left unread), so the system call is saved.
///
/// With `hand_over_after` (a count of the client's chunks), stops with
/// [`Ended::HandOver`] once the client's direction has relayed that many and
/// both directions wait for bytes at the same moment: a connection that ends
/// after its first exchange (a new connection per request) stays here, where
/// its few system calls cost least, and one that goes on moves to io_uring
/// (on that engine), where many exchanges cost least. A direction never stops while the other
/// is in the middle of a write (that write may wait for the peer to read,
/// which may wait for the stopped direction to take its bytes).
async fn copy_both_ways(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    hand_over_after: Option<usize>,
) -> io::Result<Ended> {
    let finished = AtomicBool::new(false);
    let request = HandOver::default();
    let request = hand_over_after.map(|chunks| {
        request.client_chunks.store(chunks, Ordering::Relaxed);
        &request
    });
    let (mut client_read, mut client_write) = client.split();
    let (mut upstream_read, mut upstream_write) = upstream.split();
    let (up, down) = tokio::try_join!(
        one_way(
            &mut client_read,
            &mut upstream_write,
            &finished,
            request,
            CLIENT
        ),
        one_way(
            &mut upstream_read,
            &mut client_write,
            &finished,
            request,
            BACKEND
        ),
    )?;
    // A direction stops only when the other is idle, which then stops too; an
    // ended direction is never idle.
    debug_assert_eq!(up, down);
    Ok(up)
}

/// The client's direction in [`HandOver`].
const CLIENT: usize = 0;
/// The backend's direction in [`HandOver`].
const BACKEND: usize = 1;

/// One direction of [`copy_both_ways`] (`side`: [`CLIENT`] or [`BACKEND`]);
/// `finished` tells whether the other direction has ended already. With
/// `hand_over`, the client's direction asks for the hand-over after its
/// chunks, and both return [`Ended::HandOver`] from a wait for bytes once the
/// other waits too (the wait is cancelled, which loses nothing).
async fn one_way(
    from: &mut ReadHalf<'_>,
    to: &mut WriteHalf<'_>,
    finished: &AtomicBool,
    hand_over: Option<&HandOver>,
    side: usize,
) -> io::Result<Ended> {
    let mut buffer = Buffer::take();
    loop {
        let read = match hand_over {
            None => from.read(&mut buffer).await?,
            Some(request) => loop {
                let other = 1 - side;
                if request.client_chunks.load(Ordering::Relaxed) == 0
                    && request.idle[other].load(Ordering::Relaxed)
                {
                    request.stopping.store(true, Ordering::Relaxed);
                    request.wake[other].notify_one();
                    return Ok(Ended::HandOver);
                }
                request.idle[side].store(true, Ordering::Relaxed);
                let read = tokio::select! {
                    biased;
                    () = request.wake[side].notified() => None,
                    read = from.read(&mut buffer) => Some(read),
                };
                request.idle[side].store(false, Ordering::Relaxed);
                match read {
                    Some(read) => break read?,
                    None if request.stopping.load(Ordering::Relaxed) => {
                        return Ok(Ended::HandOver);
                    }
                    None => {}
                }
            },
        };
        if read == 0 {
            break;
        }
        to.write_all(&buffer[..read]).await?;
        if let Some(request) = hand_over
            && side == CLIENT
            && request.client_chunks.load(Ordering::Relaxed) > 0
        {
            request.client_chunks.fetch_sub(1, Ordering::Relaxed);
        }
    }
    if !finished.swap(true, Ordering::Relaxed) {
        to.shutdown().await?;
    }
    Ok(Ended::Done)
}

/// Connects to a backend chosen by the listener's balancing, among those not
/// in `tried` (indexes into the snapshot's backends, to which each attempt is
/// added); a backend that refuses or does not answer within the connect
/// timeout is held out of the balancing and the next one is tried, until every
/// backend has been tried once.
async fn connect_any(
    shared: &ListenerShared,
    snapshot: &Snapshot,
    connector: &Arc<dyn Connector>,
    tried: &mut Vec<usize>,
) -> Result<(Arc<BackendState>, ActiveGuard, TcpStream), ProxyError> {
    let settings = &snapshot.settings;
    while let Some(index) = shared.pick(snapshot, tried) {
        tried.push(index);
        let backend = &snapshot.backends[index];
        let guard = backend.acquire();
        let failure = match tokio::time::timeout(
            settings.connect_timeout,
            connector.connect(backend.addr),
        )
        .await
        {
            Ok(Ok(stream)) => {
                // A held backend is still chosen when every other one is
                // held too; a connect that works ends its hold at once.
                if backend.resume() {
                    info!(listener = %shared.bind, backend = %backend.id, "backend accepts connections again");
                }
                return Ok((backend.clone(), guard, stream));
            }
            Ok(Err(err)) => err.to_string(),
            Err(_) => format!(
                "no answer within {} ms",
                settings.connect_timeout.as_millis()
            ),
        };
        failed(shared, snapshot, backend, connector, &failure);
    }
    Err(ProxyError::NoBackend {
        listener: shared.bind,
        tried: tried.len(),
    })
}

/// Holds a backend whose connect (or first write) failed out of the
/// balancing, logs it when it was taking connections until now, and starts
/// the probe that brings it back unless one runs. No client's connection is
/// spent on finding out whether it works again: a dead task costs one client
/// a retry (and, if it did not answer, the connect timeout), not one per
/// pause.
fn failed(
    shared: &ListenerShared,
    snapshot: &Snapshot,
    backend: &Arc<BackendState>,
    connector: &Arc<dyn Connector>,
    failure: &str,
) {
    let settings = &snapshot.settings;
    let newly = backend.hold();
    if newly {
        warn!(
            listener = %shared.bind,
            backend = %backend.id,
            addr = %backend.addr,
            error = %failure,
            probe_every_ms = settings.failure_pause.as_millis() as u64,
            "backend connect or first write failed; holding it out and trying another"
        );
    } else {
        debug!(listener = %shared.bind, backend = %backend.id, error = %failure, "held backend failed again");
    }
    if backend.start_probe() {
        tokio::spawn(probe(
            Arc::downgrade(backend),
            connector.clone(),
            settings.failure_pause,
            settings.connect_timeout,
            shared.bind,
        ));
    }
}

/// Every `every`, tries a connection to a held backend (closed at once, as a
/// TCP health check does) and ends the hold once one succeeds; a draining
/// backend is not tried. Stops when the backend is gone (removed from the
/// configuration and its connections ended), closed (drain deadline passed,
/// proxy shut down), or taking connections again anyway (a client's connect
/// to it worked).
async fn probe(
    backend: Weak<BackendState>,
    connector: Arc<dyn Connector>,
    every: Duration,
    timeout: Duration,
    listener: SocketAddr,
) {
    loop {
        tokio::time::sleep(every).await;
        let Some(state) = backend.upgrade() else {
            return;
        };
        if (state.is_closed() || !state.is_paused()) && !state.end_probe() {
            return;
        }
        if !state.accepts_new() {
            // Draining (stopping, or removed until its deadline): no client
            // goes there whatever a probe says; the hold stays for the case
            // the stop is called off, and the probe ends with the drain.
            continue;
        }
        let addr = state.addr;
        // Not held during the connect: a removed backend may go meanwhile.
        drop(state);
        let outcome = tokio::time::timeout(timeout, connector.connect(addr)).await;
        let Some(state) = backend.upgrade() else {
            return;
        };
        match outcome {
            Ok(Ok(_stream)) => {
                if state.resume() {
                    info!(%listener, backend = %state.id, %addr, "probe connected; backend takes connections again");
                }
                if !state.end_probe() {
                    return;
                }
            }
            Ok(Err(err)) => {
                debug!(%listener, backend = %state.id, %addr, %err, "probe failed; backend stays held");
            }
            Err(_) => {
                debug!(%listener, backend = %state.id, %addr, timeout_ms = timeout.as_millis() as u64, "probe got no answer; backend stays held");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    /// A connected pair over loopback: (the side that connected, the accepted side).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let connecting = TcpStream::connect(listener.local_addr().unwrap());
        let (connected, accepted) = tokio::join!(connecting, listener.accept());
        (connected.unwrap(), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn the_first_bytes_go_out_right_after_the_header() {
        let (mut client, accepted) = pair().await;
        let (upstream, mut backend) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        accepted.readable().await.unwrap();
        let sent =
            forward_first(&accepted, &upstream, b"PROXY header\r\n", &mut Vec::new()).unwrap();
        assert_eq!(sent, (Vec::new(), true));
        let mut got = vec![0u8; 14 + 18];
        backend.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"PROXY header\r\nGET / HTTP/1.1\r\n\r\n");
    }

    #[tokio::test]
    async fn a_quiet_client_leaves_only_the_header_or_nothing() {
        let (client, accepted) = pair().await;
        let (upstream, mut backend) = pair().await;
        let nothing = (Vec::new(), false);
        assert_eq!(
            forward_first(&accepted, &upstream, b"", &mut Vec::new()).unwrap(),
            nothing
        );
        assert_eq!(
            forward_first(&accepted, &upstream, b"H", &mut Vec::new()).unwrap(),
            nothing
        );
        // The client's end of data is left to the copy loop: nothing is sent for it.
        drop(client);
        accepted.readable().await.unwrap();
        assert_eq!(
            forward_first(&accepted, &upstream, b"", &mut Vec::new()).unwrap(),
            nothing
        );
        drop(upstream);
        let mut got = Vec::new();
        backend.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"H");
    }

    #[tokio::test]
    async fn bytes_arriving_after_the_first_read_are_relayed() {
        // The first read took everything (a short read), so the client's
        // readiness was dropped; the later bytes must wake the copy loop.
        for later in [&b"second"[..], b""] {
            let (mut client, mut accepted) = pair().await;
            let (mut upstream, mut backend) = pair().await;
            client.write_all(b"first").await.unwrap();
            accepted.readable().await.unwrap();
            let sent = forward_first(&accepted, &upstream, b"", &mut Vec::new()).unwrap();
            assert_eq!(sent, (Vec::new(), true));
            let relay = async {
                copy_both_ways(&mut accepted, &mut upstream, None)
                    .await
                    .unwrap();
            };
            let client_side = async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                client.write_all(later).await.unwrap();
                client.shutdown().await.unwrap();
                let mut got = Vec::new();
                backend.read_to_end(&mut got).await.unwrap();
                drop(backend);
                got
            };
            let ((), got) = tokio::time::timeout(Duration::from_secs(5), async {
                tokio::join!(relay, client_side)
            })
            .await
            .expect("the later bytes or the end of data were not relayed");
            assert_eq!(got, [&b"first"[..], later].concat());
        }
    }

    #[tokio::test]
    async fn more_than_one_buffer_is_relayed_whole_and_in_order() {
        let (mut client, mut accepted) = pair().await;
        let (mut upstream, mut backend) = pair().await;
        let request: Vec<u8> = (0..3 * BUFFER_SIZE + 123)
            .map(|i| (i % 251) as u8)
            .collect();
        client.write_all(&request).await.unwrap();
        client.shutdown().await.unwrap();
        accepted.readable().await.unwrap();
        let (unsent, _) = forward_first(&accepted, &upstream, b"", &mut Vec::new()).unwrap();
        let relay = async move {
            upstream.write_all(&unsent).await.unwrap();
            copy_both_ways(&mut accepted, &mut upstream, None)
                .await
                .unwrap();
            // As in `relay`: closing both sends the last FIN.
            drop((accepted, upstream));
        };
        let answer = async {
            let mut got = Vec::new();
            backend.read_to_end(&mut got).await.unwrap();
            backend.write_all(b"done").await.unwrap();
            drop(backend);
            got
        };
        let ((), got) = tokio::join!(relay, answer);
        assert_eq!(got.len(), request.len());
        assert!(got == request, "bytes out of order");
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"done");
    }
}
