//! The live state of one backend of one listener: open connections, passive-health
//! pause, drain; kept across configuration updates while the task id and address
//! stay the same.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::config::Backend;

/// One backend as the balancing and the connections see it.
#[derive(Debug)]
pub(super) struct BackendState {
    /// The task's id (for logs and for matching across updates).
    pub id: String,
    /// Where the task listens.
    pub addr: SocketAddr,
    /// No new connections: the task is stopping or the backend was removed.
    draining: AtomicBool,
    /// Bumped whenever draining starts or ends, so a drain timer from an earlier
    /// drain does not close connections of a later one.
    drain_epoch: AtomicU64,
    /// Open connections and UDP sessions, plus connects in progress (so least-conn
    /// counts a connect it has already chosen).
    active: AtomicUsize,
    /// Until when (milliseconds since `base`) the backend gets no new connections
    /// after a failed connect; 0 when not paused, `u64::MAX` while held until a
    /// probe connects.
    paused_until_ms: AtomicU64,
    /// The clock the pause is measured on.
    base: Instant,
    /// A probe runs for this held backend (at most one does).
    probing: AtomicBool,
    /// Cancelled when the connections must end: drain deadline passed or the proxy
    /// shuts down (it is a child of the proxy's shutdown token).
    close: CancellationToken,
}

impl BackendState {
    /// A backend with no connections; `draining` as configured.
    pub fn new(backend: &Backend, shutdown: &CancellationToken) -> Self {
        BackendState {
            id: backend.id.clone(),
            addr: backend.addr,
            draining: AtomicBool::new(false),
            drain_epoch: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            paused_until_ms: AtomicU64::new(0),
            base: Instant::now(),
            probing: AtomicBool::new(false),
            close: shutdown.child_token(),
        }
    }

    /// Whether new connections may go here at all (health aside).
    pub fn accepts_new(&self) -> bool {
        !self.draining.load(Ordering::Acquire) && !self.close.is_cancelled()
    }

    /// Whether the backend is left out after a failed connect.
    pub fn is_paused(&self) -> bool {
        let until = self.paused_until_ms.load(Ordering::Relaxed);
        until != 0 && self.now_ms() < until
    }

    /// Open connections and connects in progress.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Whether the backend's connections have been told to end.
    pub fn is_closed(&self) -> bool {
        self.close.is_cancelled()
    }

    /// Completes when the backend's connections must end.
    pub async fn closed(&self) {
        self.close.cancelled().await
    }

    /// The token [`closed`](Self::closed) waits for, for a copy that runs
    /// elsewhere (the io_uring copier).
    pub fn close_token(&self) -> CancellationToken {
        self.close.clone()
    }

    /// Counts a connection (or a connect in progress) until the guard is dropped.
    pub fn acquire(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(self.clone())
    }

    /// A connect failed: no new connections for `pause`. Returns whether the
    /// backend was taking connections until now (callers log only that change, so
    /// an outage under load does not log every client's attempt).
    pub fn pause(&self, pause: Duration) -> bool {
        let was_paused = self.is_paused();
        let until = self.now_ms() + pause.as_millis() as u64;
        self.paused_until_ms.store(until, Ordering::Relaxed);
        !was_paused
    }

    /// A TCP connect (or first write) failed: no new connections until
    /// [`resume`](Self::resume), which a probe calls once the backend accepts a
    /// connection again. Returns whether the backend was taking connections
    /// until now (the caller then starts the probe and logs the change).
    pub fn hold(&self) -> bool {
        let was_paused = self.is_paused();
        // SeqCst with the probe flag: a failure that sees a probe running and
        // a probe that ends must not both miss the other's write (on a
        // multi-thread runtime the backend would stay held with no probe).
        self.paused_until_ms.store(u64::MAX, Ordering::SeqCst);
        !was_paused
    }

    /// Whether the caller is to start the probe for this held backend: no
    /// other one runs.
    pub fn start_probe(&self) -> bool {
        !self.probing.swap(true, Ordering::SeqCst)
    }

    /// The probe is about to end; returns whether it must go on instead: the
    /// backend was held again (by a failure whose caller saw a probe running)
    /// since the probe last looked.
    pub fn end_probe(&self) -> bool {
        self.probing.store(false, Ordering::SeqCst);
        let held = self.paused_until_ms.load(Ordering::SeqCst) == u64::MAX;
        held && !self.is_closed() && self.start_probe()
    }

    /// The backend accepted a connection: it takes new ones again. Returns
    /// whether it was paused or held.
    pub fn resume(&self) -> bool {
        // Read first: the success path of every connect calls this.
        if self.paused_until_ms.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let was_paused = self.is_paused();
        self.paused_until_ms.store(0, Ordering::Relaxed);
        was_paused
    }

    fn now_ms(&self) -> u64 {
        // Saturates after 584 million years.
        self.base.elapsed().as_millis() as u64 + 1
    }

    /// Starts draining: no new connections, and the open ones are closed once
    /// `deadline` has passed. A backend already draining keeps its first deadline.
    pub fn begin_drain(self: &Arc<Self>, deadline: Duration, listener: SocketAddr) {
        if self.draining.swap(true, Ordering::AcqRel) {
            return;
        }
        let epoch = self.drain_epoch.fetch_add(1, Ordering::AcqRel) + 1;
        info!(
            backend = %self.id,
            addr = %self.addr,
            %listener,
            open = self.active(),
            deadline_ms = deadline.as_millis() as u64,
            "draining backend"
        );
        let this = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(deadline) => {
                    if this.draining.load(Ordering::Acquire)
                        && this.drain_epoch.load(Ordering::Acquire) == epoch
                    {
                        debug!(backend = %this.id, open = this.active(), "drain deadline passed");
                        this.close.cancel();
                    }
                }
                // Shutdown (or an earlier close) makes the timer pointless.
                _ = this.close.cancelled() => {}
            }
        });
    }

    /// The task takes connections again (its stop was called off) before the
    /// drain deadline; the pending drain timer then does nothing.
    pub fn end_drain(&self) {
        if self.draining.swap(false, Ordering::AcqRel) {
            self.drain_epoch.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Counts one connection of a backend while alive.
#[derive(Debug)]
pub(super) struct ActiveGuard(Arc<BackendState>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}
