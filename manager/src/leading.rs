//! Running a component only while this manager leads the Raft group (the
//! orchestrator, the scheduler): it starts when leadership is gained and is told to
//! stop, through a token, as soon as it is lost.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::controlapi::RaftView;

/// How often leadership is checked.
const POLL: Duration = Duration::from_millis(50);

fn leads<R: RaftView>(raft: &R) -> bool {
    let s = raft.status();
    s.leader == Some(s.self_id)
}

/// Runs `body` each time this manager becomes leader, with a token cancelled when
/// leadership is lost or `shutdown` fires; returns on `shutdown`.
pub async fn while_leading<R, F, Fut>(raft: Arc<R>, shutdown: CancellationToken, mut body: F)
where
    R: RaftView,
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        while !leads(raft.as_ref()) {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
        }
        let term = shutdown.child_token();
        let monitor = {
            let raft = raft.clone();
            let term = term.clone();
            tokio::spawn(async move {
                while !term.is_cancelled() && leads(raft.as_ref()) {
                    tokio::select! {
                        _ = term.cancelled() => {}
                        _ = tokio::time::sleep(POLL) => {}
                    }
                }
                term.cancel();
            })
        };
        body(term.clone()).await;
        term.cancel();
        let _ = monitor.await;
        if shutdown.is_cancelled() {
            return;
        }
    }
}

/// Collects a burst of events: after the first, waits `quiet` for more, but never
/// longer than `cap` in all (swarmkit's scheduler uses 50 ms and 1 s).
pub async fn debounce<T>(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<T>,
    first: T,
    quiet: Duration,
    cap: Duration,
) -> (Vec<T>, bool) {
    let mut batch = vec![first];
    let deadline = tokio::time::Instant::now() + cap;
    loop {
        let wait = tokio::time::sleep(quiet);
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return (batch, true),
            _ = wait => return (batch, true),
            e = rx.recv() => match e {
                Some(e) => batch.push(e),
                None => return (batch, false),
            },
        }
    }
}
