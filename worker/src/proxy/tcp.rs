//! TCP listeners: accept, choose a backend (retrying others on a failed connect),
//! send the PROXY header, then copy both ways until either side is done or the
//! backend's drain deadline passes.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::backend::{ActiveGuard, BackendState};
use super::config::ProxyProtocol;
use super::connector::Connector;
use super::error::ProxyError;
use super::header;
use super::pool::{ListenerShared, Snapshot};

/// Pause after a failed accept (out of file descriptors, mostly), so the loop does
/// not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts connections until `stop` is cancelled; each connection runs in its own
/// task and outlives the accept loop (it ends with its backend's drain).
pub(super) async fn serve(
    listener: TcpListener,
    shared: Arc<ListenerShared>,
    connector: Arc<dyn Connector>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((client, peer)) => {
                let shared = shared.clone();
                let connector = connector.clone();
                tokio::spawn(async move {
                    match relay(client, peer, &shared, connector.as_ref()).await {
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
    #[error("relaying to backend {backend}: {source}")]
    Io { backend: String, source: io::Error },
}

async fn relay(
    mut client: TcpStream,
    peer: SocketAddr,
    shared: &ListenerShared,
    connector: &dyn Connector,
) -> Result<(), RelayError> {
    let snapshot = shared.snapshot();
    let (backend, _guard, mut upstream) = connect_any(shared, &snapshot, connector).await?;
    let io_error = |source| RelayError::Io {
        backend: backend.id.clone(),
        source,
    };
    // Latency matters more than packet count for relayed traffic.
    client.set_nodelay(true).map_err(io_error)?;
    if snapshot.settings.proxy_protocol != ProxyProtocol::None {
        // The address the client connected to (not the bind address, which may
        // be 0.0.0.0).
        let local = client.local_addr().map_err(io_error)?;
        if let Some(bytes) = header::encode(snapshot.settings.proxy_protocol, peer, local) {
            upstream.write_all(&bytes).await.map_err(io_error)?;
        }
    }
    tokio::select! {
        copied = copy_both_ways(&mut client, &mut upstream) => {
            copied.map_err(io_error)?;
        }
        _ = backend.closed() => {
            debug!(listener = %shared.bind, backend = %backend.id, client = %peer, "closed at drain deadline");
        }
    }
    Ok(())
}

/// Copies client to upstream and upstream to client until both are done, as
/// `tokio::io::copy_bidirectional` does, passing each side's end of data on to
/// the other with a half close (`shutdown(SHUT_WR)`), except for the side that
/// ends last: both sockets are closed right after, and the close sends that
/// FIN (nothing is left unread), so the system call is saved.
async fn copy_both_ways(client: &mut TcpStream, upstream: &mut TcpStream) -> io::Result<()> {
    let finished = AtomicBool::new(false);
    let (mut client_read, mut client_write) = client.split();
    let (mut upstream_read, mut upstream_write) = upstream.split();
    tokio::try_join!(
        one_way(&mut client_read, &mut upstream_write, &finished),
        one_way(&mut upstream_read, &mut client_write, &finished),
    )?;
    Ok(())
}

/// One direction of [`copy_both_ways`]; `finished` tells whether the other
/// direction has ended already.
async fn one_way(
    from: &mut ReadHalf<'_>,
    to: &mut WriteHalf<'_>,
    finished: &AtomicBool,
) -> io::Result<()> {
    tokio::io::copy(from, to).await?;
    if !finished.swap(true, Ordering::Relaxed) {
        to.shutdown().await?;
    }
    Ok(())
}

/// Connects to a backend chosen by the listener's balancing; a backend that
/// refuses or does not answer within the connect timeout is paused and the next
/// one is tried, until every backend has been tried once.
async fn connect_any(
    shared: &ListenerShared,
    snapshot: &Snapshot,
    connector: &dyn Connector,
) -> Result<(Arc<BackendState>, ActiveGuard, TcpStream), ProxyError> {
    let settings = &snapshot.settings;
    let mut tried = Vec::new();
    while let Some(index) = shared.pick(snapshot, &tried) {
        tried.push(index);
        let backend = &snapshot.backends[index];
        let guard = backend.acquire();
        let failure =
            match tokio::time::timeout(settings.connect_timeout, connector.connect(backend.addr))
                .await
            {
                Ok(Ok(stream)) => return Ok((backend.clone(), guard, stream)),
                Ok(Err(err)) => err.to_string(),
                Err(_) => format!(
                    "no answer within {} ms",
                    settings.connect_timeout.as_millis()
                ),
            };
        if backend.pause(settings.failure_pause) {
            warn!(
                listener = %shared.bind,
                backend = %backend.id,
                addr = %backend.addr,
                error = %failure,
                pause_ms = settings.failure_pause.as_millis() as u64,
                "backend connect failed; pausing it and trying another"
            );
        } else {
            debug!(listener = %shared.bind, backend = %backend.id, error = %failure, "paused backend failed again");
        }
    }
    Err(ProxyError::NoBackend {
        listener: shared.bind,
        tried: tried.len(),
    })
}
