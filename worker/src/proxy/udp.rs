//! UDP listeners: one session per client address, each with its own connected
//! socket to the backend chosen when the session started, so replies find their
//! way back and a client keeps its backend while it keeps talking.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::backend::{ActiveGuard, BackendState};
use super::pool::ListenerShared;

/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;
/// Sessions beyond this many are refused (their datagrams dropped), so a flood of
/// source addresses cannot exhaust the node's sockets.
const MAX_SESSIONS: usize = 16_384;

/// One client's session.
struct Session {
    /// Identifies the session among those the same client address had.
    serial: u64,
    /// The backend chosen when the session started.
    backend: Arc<BackendState>,
    /// Connected to the backend.
    socket: UdpSocket,
    /// Last datagram either way, in milliseconds since `started`.
    last_active_ms: AtomicU64,
    /// The session's start.
    started: Instant,
    /// Cancelled when the session's task has ended.
    done: CancellationToken,
    /// Counts the session for least-conn and drains.
    _guard: ActiveGuard,
}

impl Session {
    fn touch(&self) {
        self.last_active_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_deadline(&self, idle: std::time::Duration) -> Instant {
        self.started
            + std::time::Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed))
            + idle
    }
}

/// Relays datagrams until `stop` is cancelled; then every session ends with the
/// listener (the replies would have to leave through its socket).
pub(super) async fn serve(socket: UdpSocket, shared: Arc<ListenerShared>, stop: CancellationToken) {
    let socket = Arc::new(socket);
    let mut sessions: HashMap<SocketAddr, Arc<Session>> = HashMap::new();
    let mut tasks: JoinSet<(SocketAddr, u64)> = JoinSet::new();
    let mut serial = 0u64;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            Some(ended) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok((client, ended_serial)) = ended
                    && sessions.get(&client).is_some_and(|session| session.serial == ended_serial)
                {
                    sessions.remove(&client);
                }
            }
            received = socket.recv_from(&mut buf) => {
                let (len, client) = match received {
                    Ok(received) => received,
                    Err(err) => {
                        debug!(listener = %shared.bind, %err, "receive failed");
                        continue;
                    }
                };
                let live = sessions.get(&client).filter(|session| !session.done.is_cancelled()).cloned();
                let session = match live {
                    Some(session) => session,
                    None => {
                        if sessions.len() >= MAX_SESSIONS {
                            warn!(listener = %shared.bind, %client, "too many UDP sessions; datagram dropped");
                            continue;
                        }
                        serial += 1;
                        let Some(session) = open_session(&shared, serial).await else {
                            continue;
                        };
                        let session = Arc::new(session);
                        sessions.insert(client, session.clone());
                        tasks.spawn(run_session(session.clone(), socket.clone(), client, shared.clone()));
                        session
                    }
                };
                session.touch();
                if let Err(err) = session.socket.send(&buf[..len]).await {
                    fail(&shared, &session, &err);
                }
            }
        }
    }
    tasks.shutdown().await;
}

/// Starts a session on a backend chosen by the listener's balancing; `None` when
/// there is no backend or no local socket could be made (the datagram is dropped).
async fn open_session(shared: &ListenerShared, serial: u64) -> Option<Session> {
    let snapshot = shared.snapshot();
    let Some(index) = shared.pick(&snapshot, &[]) else {
        debug!(listener = %shared.bind, "no backend for a new UDP session; datagram dropped");
        return None;
    };
    let backend = snapshot.backends[index].clone();
    let local: SocketAddr = if backend.addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = match UdpSocket::bind(local).await {
        Ok(socket) => socket,
        Err(err) => {
            warn!(listener = %shared.bind, %err, "cannot open a UDP session socket");
            return None;
        }
    };
    if let Err(err) = socket.connect(backend.addr).await {
        warn!(listener = %shared.bind, backend = %backend.id, %err, "cannot connect a UDP session socket");
        let _ = backend.pause(snapshot.settings.failure_pause);
        return None;
    }
    let guard = backend.acquire();
    Some(Session {
        serial,
        backend,
        socket,
        last_active_ms: AtomicU64::new(0),
        started: Instant::now(),
        done: CancellationToken::new(),
        _guard: guard,
    })
}

/// A refused datagram (ICMP port unreachable, reported on the connected socket)
/// means nothing listens there: pause the backend and end the session, so the
/// client's next datagram starts a session on another backend.
fn fail(shared: &ListenerShared, session: &Session, err: &io::Error) {
    if err.kind() == io::ErrorKind::ConnectionRefused {
        let pause = shared.snapshot().settings.failure_pause;
        if session.backend.pause(pause) {
            warn!(
                listener = %shared.bind,
                backend = %session.backend.id,
                addr = %session.backend.addr,
                pause_ms = pause.as_millis() as u64,
                "backend refused a UDP datagram; pausing it"
            );
        }
    } else {
        debug!(listener = %shared.bind, backend = %session.backend.id, %err, "UDP session failed");
    }
    session.done.cancel();
}

/// Relays the backend's replies to the client until the session is idle, fails,
/// or its backend's drain deadline passes.
async fn run_session(
    session: Arc<Session>,
    listener: Arc<UdpSocket>,
    client: SocketAddr,
    shared: Arc<ListenerShared>,
) -> (SocketAddr, u64) {
    let idle = shared.snapshot().settings.udp_idle_timeout;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            _ = session.done.cancelled() => break,
            _ = session.backend.closed() => break,
            _ = tokio::time::sleep_until(session.idle_deadline(idle)) => {
                // Traffic may have moved the deadline while we slept.
                if Instant::now() >= session.idle_deadline(idle) {
                    break;
                }
            }
            received = session.socket.recv(&mut buf) => match received {
                Ok(len) => {
                    session.touch();
                    if let Err(err) = listener.send_to(&buf[..len], client).await {
                        debug!(%client, %err, "cannot send a UDP reply");
                    }
                }
                Err(err) => {
                    fail(&shared, &session, &err);
                    break;
                }
            }
        }
    }
    session.done.cancel();
    (client, session.serial)
}
