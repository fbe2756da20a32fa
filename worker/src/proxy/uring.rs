//! The relay's copy loop on io_uring, when the kernel offers it and the
//! engine asks for it ([`super::Engine::Auto`] or [`super::Engine::IoUring`];
//! the default is epoll, whose latency tail is lighter when the proxy shares
//! its cores with busy tasks: see [`super::Engine`]).
//!
//! On loopback and the node bridge most of a relayed request's cost is the
//! kernel's, and much of that is entering and leaving it: with readiness
//! (epoll) every request costs four system calls (read the client, write the
//! backend, read the backend, write the client). On io_uring the same reads
//! and writes are queued and the ring is entered once per event-loop turn for
//! all the connections that have work: at saturation a keep-alive request
//! costs the proxy about a fifth less CPU than HAProxy's
//! (docs/design/networking.md, "Measured").
//!
//! Only the copy of a connection that goes on runs here. Accepting,
//! connecting, the PROXY header and the client's first bytes stay on the
//! epoll path ([`super::tcp`]), whose first write goes out before the event
//! loop has looked at either socket, and so does the copy until the client's
//! direction has read again after the bytes of that first write (a second
//! request, or more of a first one larger than a read) and both directions
//! wait for bytes: a connection with one exchange (a new connection per
//! request) is cheapest there. Then the pair is handed over
//! ([`Copier::copy`]) as plain sockets; their epoll registration ends at the
//! hand-over, which is the system call the connection's close would make
//! anyway.
//!
//! tokio-uring's streams are not `Send`, so the copies run as local tasks of
//! the proxy thread's `LocalSet`, spawned by one task ([`serve_jobs`]) that
//! takes the pairs from the relays through a channel: the relays (and all the
//! rest of the proxy) stay ordinary `Send` tasks, and the proxy runs the same
//! on a plain tokio runtime, with the epoll copy, when the ring cannot be
//! made (an old kernel, `kernel.io_uring_disabled`, a seccomp profile that
//! refuses it, as Docker's default one does).

use std::cell::Cell;
use std::io;
use std::net::Shutdown;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_uring::buf::BoundedBuf;
use tokio_uring::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::buffers::BUFFER_SIZE;
use super::status::ProxyStats;

/// How a handed-over copy ended.
#[derive(Debug)]
pub(super) enum Copied {
    /// Both directions ended (each side's end of data passed on).
    Done,
    /// Cut short by the backend's close token (drain deadline, shutdown).
    Closed,
}

/// One connected pair to copy between.
struct Job {
    /// The client's socket.
    client: std::net::TcpStream,
    /// The backend's socket.
    upstream: std::net::TcpStream,
    /// Ends the copy when cancelled.
    close: CancellationToken,
    /// Receives how the copy ended.
    done: oneshot::Sender<io::Result<Copied>>,
}

/// Hands connected pairs to the copy tasks of the proxy thread's io_uring
/// runtime; cloned into every TCP listener.
#[derive(Clone, Debug)]
pub(super) struct Copier {
    /// To [`serve_jobs`].
    jobs: mpsc::UnboundedSender<Job>,
    /// Counts the copies handed over.
    stats: Arc<ProxyStats>,
}

impl Copier {
    /// A copier and the task that must run on the io_uring runtime's
    /// `LocalSet` (spawned with `tokio_uring::spawn`) to serve it.
    pub(super) fn new(stats: Arc<ProxyStats>) -> (Self, impl std::future::Future<Output = ()>) {
        let (jobs, rx) = mpsc::unbounded_channel();
        (Copier { jobs, stats }, serve_jobs(rx))
    }

    /// Copies between `client` and `upstream` (taken off the epoll reactor)
    /// until both directions end or `close` is cancelled.
    pub(super) async fn copy(
        &self,
        client: std::net::TcpStream,
        upstream: std::net::TcpStream,
        close: CancellationToken,
    ) -> io::Result<Copied> {
        // The ring waits for a socket itself (it polls it when a read or write
        // cannot go on at once); a socket left non-blocking gets EAGAIN back
        // instead on kernels where the ring honours O_NONBLOCK.
        client.set_nonblocking(false)?;
        upstream.set_nonblocking(false)?;
        let (done, result) = oneshot::channel();
        let job = Job {
            client,
            upstream,
            close,
            done,
        };
        if self.jobs.send(job).is_err() {
            // Only while the proxy thread shuts down: the sockets close here.
            return Err(io::Error::other("the proxy's io_uring copier has stopped"));
        }
        self.stats.count_io_uring_copy();
        result.await.unwrap_or_else(|_| {
            Err(io::Error::other(
                "the io_uring copy ended without a result (its task panicked or the proxy stopped)",
            ))
        })
    }
}

/// Runs every handed-over pair as a local task until the channel closes.
async fn serve_jobs(mut jobs: mpsc::UnboundedReceiver<Job>) {
    while let Some(job) = jobs.recv().await {
        tokio_uring::spawn(copy(job));
    }
}

async fn copy(job: Job) {
    let client = TcpStream::from_std(job.client);
    let upstream = TcpStream::from_std(job.upstream);
    let finished = Cell::new(false);
    let result = tokio::select! {
        copied = async {
            tokio::try_join!(
                one_way(&client, &upstream, &finished),
                one_way(&upstream, &client, &finished),
            )
        } => copied.map(|_| Copied::Done),
        _ = job.close.cancelled() => Ok(Copied::Closed),
    };
    if !matches!(result, Ok(Copied::Done)) {
        // A read still queued holds its socket open (the ring keeps the file
        // until the operation completes), so dropping the streams would not
        // close them: the shutdown completes the reads, and the close follows.
        let _ = client.shutdown(Shutdown::Both);
        let _ = upstream.shutdown(Shutdown::Both);
    }
    let _ = job.done.send(result);
}

/// One direction: as the epoll path's `one_way`, each side's end of data is
/// passed on with a half close, except the last one, which the close sends.
async fn one_way(from: &TcpStream, to: &TcpStream, finished: &Cell<bool>) -> io::Result<()> {
    let mut buffer = Vec::with_capacity(BUFFER_SIZE);
    loop {
        let (read, returned) = from.read(buffer).await;
        buffer = returned;
        let read = read?;
        if read == 0 {
            break;
        }
        let (written, returned) = to.write_all(buffer.slice(..read)).await;
        buffer = returned.into_inner();
        written?;
    }
    if !finished.replace(true) {
        to.shutdown(Shutdown::Write)?;
    }
    Ok(())
}
