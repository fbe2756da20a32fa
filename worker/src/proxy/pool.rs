//! A listener's backends and settings, swapped as one snapshot on every
//! configuration update, and the choice of a backend for a new connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::backend::BackendState;
use super::config::{Balance, ListenerSpec, ProxyProtocol};

/// The part of a listener's configuration that connections read.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    /// How new connections pick a backend.
    pub balance: Balance,
    /// Header sent to the backend first.
    pub proxy_protocol: ProxyProtocol,
    /// Longest connect before the backend counts as failed.
    pub connect_timeout: Duration,
    /// How long connections of a draining backend may still run.
    pub drain_deadline: Duration,
    /// How long a failed backend is left out.
    pub failure_pause: Duration,
    /// UDP session idle timeout.
    pub udp_idle_timeout: Duration,
}

impl Settings {
    fn from_spec(spec: &ListenerSpec) -> Self {
        Settings {
            balance: spec.balance,
            proxy_protocol: spec.proxy_protocol,
            connect_timeout: spec.connect_timeout,
            drain_deadline: spec.drain_deadline,
            failure_pause: spec.failure_pause,
            udp_idle_timeout: spec.udp_idle_timeout,
        }
    }
}

/// What one connection works with, from its start to its end.
#[derive(Debug)]
pub(super) struct Snapshot {
    /// The listener's settings.
    pub settings: Settings,
    /// The backends taking part in the balancing (draining ones included, so they
    /// keep their state while configured).
    pub backends: Vec<Arc<BackendState>>,
}

/// A listener's state shared by its accept loop, its connections and the proxy's
/// reconciliation.
#[derive(Debug)]
pub(super) struct ListenerShared {
    /// The listener's bind address (for logs).
    pub bind: SocketAddr,
    /// The current snapshot. A std lock is enough: it is held only to clone or
    /// replace the `Arc`, never across an `.await`.
    snapshot: RwLock<Arc<Snapshot>>,
    /// The round-robin position (also breaks least-conn ties).
    next: AtomicUsize,
}

impl ListenerShared {
    /// A listener's state for its first configuration.
    pub fn new(spec: &ListenerSpec, shutdown: &CancellationToken) -> Self {
        let shared = ListenerShared {
            bind: spec.bind,
            snapshot: RwLock::new(Arc::new(Snapshot {
                settings: Settings::from_spec(spec),
                backends: Vec::new(),
            })),
            next: AtomicUsize::new(0),
        };
        shared.update(spec, shutdown);
        shared
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        // A poisoned lock only means a panic elsewhere while swapping an Arc; the
        // Arc inside is still whole.
        self.snapshot
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Applies a new configuration of this listener: backends matched by task id
    /// and address keep their state; newly draining ones start their drain;
    /// removed ones drain too (their open connections run until the deadline).
    /// Open connections are not touched otherwise.
    pub fn update(&self, spec: &ListenerSpec, shutdown: &CancellationToken) {
        let old = self.snapshot();
        let settings = Settings::from_spec(spec);
        let mut previous: HashMap<(&str, SocketAddr), &Arc<BackendState>> = old
            .backends
            .iter()
            .map(|backend| ((backend.id.as_str(), backend.addr), backend))
            .collect();
        let mut backends = Vec::with_capacity(spec.backends.len());
        for wanted in &spec.backends {
            let state = match previous.remove(&(wanted.id.as_str(), wanted.addr)) {
                // A backend whose connections were closed at a drain deadline
                // starts afresh if it is configured to take connections again.
                Some(state) if !state.is_closed() => state.clone(),
                _ => Arc::new(BackendState::new(wanted, shutdown)),
            };
            if wanted.draining {
                let deadline = wanted.drain_deadline.unwrap_or(settings.drain_deadline);
                state.begin_drain(deadline, self.bind);
            } else {
                state.end_drain();
            }
            backends.push(state);
        }
        for removed in previous.into_values() {
            removed.begin_drain(settings.drain_deadline, self.bind);
        }
        let next = Arc::new(Snapshot { settings, backends });
        *self
            .snapshot
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = next;
    }

    /// The listener is removed: every backend drains with the listener's deadline.
    pub fn drain_all(&self) {
        let snapshot = self.snapshot();
        for backend in &snapshot.backends {
            backend.begin_drain(snapshot.settings.drain_deadline, self.bind);
        }
    }

    /// Chooses the backend for a new connection among those of `snapshot` not in
    /// `tried`. Backends paused after a failure are chosen only when every other
    /// candidate is paused too: trying one beats refusing the client outright.
    pub fn pick(&self, snapshot: &Snapshot, tried: &[usize]) -> Option<usize> {
        let backends = &snapshot.backends;
        if backends.is_empty() {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % backends.len();
        let candidates = || {
            (0..backends.len())
                .map(move |offset| (start + offset) % backends.len())
                .filter(|index| !tried.contains(index) && backends[*index].accepts_new())
        };
        let choose = |healthy_only: bool| {
            let mut eligible =
                candidates().filter(|index| !healthy_only || !backends[*index].is_paused());
            match snapshot.settings.balance {
                Balance::RoundRobin => eligible.next(),
                // min_by_key keeps the first of equal keys: ties go in turn.
                Balance::LeastConn => eligible.min_by_key(|index| backends[*index].active()),
            }
        };
        choose(true).or_else(|| choose(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::config::{Backend, Protocol};

    fn spec(balance: Balance, backends: &[(&str, u16, bool)]) -> ListenerSpec {
        let mut spec = ListenerSpec::new(
            "127.0.0.1:1".parse().unwrap(),
            Protocol::Tcp,
            backends
                .iter()
                .map(|(id, port, draining)| Backend {
                    id: id.to_string(),
                    addr: SocketAddr::from(([127, 0, 0, 1], *port)),
                    draining: *draining,
                    drain_deadline: None,
                })
                .collect(),
        );
        spec.balance = balance;
        spec
    }

    fn picks(shared: &ListenerShared, count: usize) -> Vec<String> {
        (0..count)
            .map(|_| {
                let snapshot = shared.snapshot();
                let index = shared.pick(&snapshot, &[]).unwrap();
                snapshot.backends[index].id.clone()
            })
            .collect()
    }

    #[tokio::test]
    async fn round_robin_takes_turns_and_skips_draining_and_paused() {
        let shutdown = CancellationToken::new();
        let shared = ListenerShared::new(
            &spec(
                Balance::RoundRobin,
                &[("a", 1, false), ("b", 2, false), ("c", 3, false)],
            ),
            &shutdown,
        );
        assert_eq!(picks(&shared, 6), ["a", "b", "c", "a", "b", "c"]);

        assert!(shared.snapshot().backends[1].pause(Duration::from_secs(60)));
        let got = picks(&shared, 4);
        assert!(!got.contains(&"b".to_string()), "{got:?}");

        shared.update(
            &spec(
                Balance::RoundRobin,
                &[("a", 1, true), ("b", 2, false), ("c", 3, false)],
            ),
            &shutdown,
        );
        // b is still paused: only c is left, and the state survived the update.
        assert_eq!(picks(&shared, 3), ["c", "c", "c"]);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn paused_backends_are_tried_when_all_are_paused() {
        let shutdown = CancellationToken::new();
        let shared = ListenerShared::new(&spec(Balance::RoundRobin, &[("a", 1, false)]), &shutdown);
        assert!(shared.snapshot().backends[0].pause(Duration::from_secs(60)));
        assert!(
            !shared.snapshot().backends[0].pause(Duration::from_secs(60)),
            "already paused"
        );
        assert_eq!(picks(&shared, 1), ["a"]);
        let snapshot = shared.snapshot();
        assert_eq!(
            shared.pick(&snapshot, &[0]),
            None,
            "a tried backend is not tried again"
        );
        shutdown.cancel();
    }

    #[tokio::test]
    async fn least_conn_prefers_fewest_and_rotates_ties() {
        let shutdown = CancellationToken::new();
        let shared = ListenerShared::new(
            &spec(
                Balance::LeastConn,
                &[("a", 1, false), ("b", 2, false), ("c", 3, false)],
            ),
            &shutdown,
        );
        let snapshot = shared.snapshot();
        let _a1 = snapshot.backends[0].acquire();
        let _a2 = snapshot.backends[0].acquire();
        let _b1 = snapshot.backends[1].acquire();
        assert_eq!(picks(&shared, 3), ["c", "c", "c"]);
        let _c1 = snapshot.backends[2].acquire();
        // b and c tie at one connection each: the round-robin position breaks
        // the tie, so both get some and a (two connections) none.
        let got = picks(&shared, 6);
        assert!(
            got.contains(&"b".to_string()) && got.contains(&"c".to_string()),
            "{got:?}"
        );
        assert!(!got.contains(&"a".to_string()), "{got:?}");
        shutdown.cancel();
    }

    #[tokio::test]
    async fn removed_backend_drains_and_readded_closed_backend_starts_afresh() {
        let shutdown = CancellationToken::new();
        let mut listener = spec(Balance::RoundRobin, &[("a", 1, false), ("b", 2, false)]);
        listener.drain_deadline = Duration::ZERO;
        let shared = ListenerShared::new(&listener, &shutdown);
        let old_a = shared.snapshot().backends[0].clone();
        listener.backends.remove(0);
        shared.update(&listener, &shutdown);
        assert!(!old_a.accepts_new());
        tokio::time::timeout(Duration::from_secs(5), old_a.closed())
            .await
            .expect("zero drain deadline closes at once");

        listener
            .backends
            .insert(0, Backend::new("a", "127.0.0.1:1".parse().unwrap()));
        shared.update(&listener, &shutdown);
        let new_a = shared.snapshot().backends[0].clone();
        assert!(!Arc::ptr_eq(&old_a, &new_a));
        assert!(new_a.accepts_new());
        shutdown.cancel();
    }

    #[tokio::test]
    async fn drain_called_off_keeps_connections() {
        let shutdown = CancellationToken::new();
        let mut listener = spec(Balance::RoundRobin, &[("a", 1, true)]);
        listener.drain_deadline = Duration::from_millis(50);
        let shared = ListenerShared::new(&listener, &shutdown);
        let a = shared.snapshot().backends[0].clone();
        assert!(!a.accepts_new());
        listener.backends[0].draining = false;
        shared.update(&listener, &shutdown);
        assert!(a.accepts_new());
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            !a.is_closed(),
            "the earlier drain's timer must not close it"
        );
        shutdown.cancel();
        assert!(a.is_closed(), "shutdown closes every backend");
    }

    #[tokio::test]
    async fn a_backend_with_its_own_drain_deadline_closes_at_it() {
        let shutdown = CancellationToken::new();
        let mut listener = spec(Balance::RoundRobin, &[("a", 1, false), ("b", 2, false)]);
        listener.drain_deadline = Duration::from_secs(3600);
        let shared = ListenerShared::new(&listener, &shutdown);
        let (a, b) = {
            let snapshot = shared.snapshot();
            (snapshot.backends[0].clone(), snapshot.backends[1].clone())
        };
        listener.backends[0].draining = true;
        listener.backends[0].drain_deadline = Some(Duration::ZERO);
        listener.backends[1].draining = true;
        shared.update(&listener, &shutdown);
        tokio::time::timeout(Duration::from_secs(5), a.closed())
            .await
            .expect("its own zero deadline closes it at once");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !b.is_closed(),
            "the listener's hour-long deadline applies to b"
        );
        shutdown.cancel();
    }
}
