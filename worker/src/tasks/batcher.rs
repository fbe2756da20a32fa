//! Coalesces the runners' status reports into batches for the dispatcher session.
//!
//! A batch opens with the first report and closes after `max_delay` or when it
//! holds `max_tasks` tasks, whichever comes first. A task reported several times in
//! one batch appears once, with its latest status: the managers only need where each
//! task is now, and a runner's reports only move forward.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::StatusUpdate;

/// Batches a [`TaskManager`](super::TaskManager)'s status channel.
pub struct StatusBatcher {
    /// The runners' reports.
    rx: mpsc::UnboundedReceiver<StatusUpdate>,
    /// Longest a report waits in an open batch.
    max_delay: Duration,
    /// Most tasks in one batch.
    max_tasks: usize,
    /// The open batch, in order of each task's first report. Kept here rather than
    /// in `next_batch`'s frame so that cancelling that call loses nothing.
    pending: Vec<StatusUpdate>,
    /// Index of each pending task in `pending`.
    index: HashMap<String, usize>,
    /// When the open batch must close.
    deadline: Option<Instant>,
}

impl StatusBatcher {
    /// Batches `rx`'s reports for up to `max_delay`, at most `max_tasks` tasks each
    /// (at least one).
    pub fn new(
        rx: mpsc::UnboundedReceiver<StatusUpdate>,
        max_delay: Duration,
        max_tasks: usize,
    ) -> StatusBatcher {
        StatusBatcher {
            rx,
            max_delay,
            max_tasks: max_tasks.max(1),
            pending: Vec::new(),
            index: HashMap::new(),
            deadline: None,
        }
    }

    /// The next batch: waits for a first report, then gathers more until the batch
    /// is full or `max_delay` has passed. None once every runner's sender is gone
    /// and nothing is left. Cancel-safe: reports gathered by a cancelled call come
    /// with the next one.
    pub async fn next_batch(&mut self) -> Option<Vec<StatusUpdate>> {
        loop {
            if self.pending.len() >= self.max_tasks {
                return Some(self.take());
            }
            let received = match self.deadline {
                None => self.rx.recv().await,
                Some(deadline) => tokio::select! {
                    update = self.rx.recv() => update,
                    _ = tokio::time::sleep_until(deadline) => return Some(self.take()),
                },
            };
            match received {
                Some(update) => self.push(update),
                None if self.pending.is_empty() => return None,
                None => return Some(self.take()),
            }
        }
    }

    fn push(&mut self, update: StatusUpdate) {
        match self.index.get(&update.task_id) {
            Some(&i) => self.pending[i] = update,
            None => {
                if self.pending.is_empty() {
                    self.deadline = Some(Instant::now() + self.max_delay);
                }
                self.index
                    .insert(update.task_id.clone(), self.pending.len());
                self.pending.push(update);
            }
        }
    }

    fn take(&mut self) -> Vec<StatusUpdate> {
        self.index.clear();
        self.deadline = None;
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use rswarm_proto::api::{TaskState, TaskStatus};

    use super::*;

    fn update(task_id: &str, state: TaskState) -> StatusUpdate {
        StatusUpdate {
            task_id: task_id.into(),
            status: TaskStatus {
                state: state as i32,
                ..Default::default()
            },
        }
    }

    fn states(batch: &[StatusUpdate]) -> Vec<(&str, i32)> {
        batch
            .iter()
            .map(|u| (u.task_id.as_str(), u.status.state))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn keeps_only_the_latest_status_of_each_task() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut batcher = StatusBatcher::new(rx, Duration::from_millis(50), 100);
        for state in [TaskState::Accepted, TaskState::Preparing, TaskState::Ready] {
            tx.send(update("a", state)).unwrap();
        }
        tx.send(update("b", TaskState::Accepted)).unwrap();
        tx.send(update("a", TaskState::Starting)).unwrap();
        let began = Instant::now();
        let batch = batcher.next_batch().await.unwrap();
        assert_eq!(began.elapsed(), Duration::from_millis(50));
        let expected = vec![
            ("a", TaskState::Starting as i32),
            ("b", TaskState::Accepted as i32),
        ];
        assert_eq!(states(&batch), expected);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_closes_at_once() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut batcher = StatusBatcher::new(rx, Duration::from_secs(1), 2);
        for id in ["a", "b", "a", "c", "d"] {
            tx.send(update(id, TaskState::Accepted)).unwrap();
        }
        let ids = |batch: Vec<StatusUpdate>| -> Vec<String> {
            batch.into_iter().map(|u| u.task_id).collect()
        };
        let began = Instant::now();
        assert_eq!(ids(batcher.next_batch().await.unwrap()), ["a", "b"]);
        // The later "a" report opens the next batch rather than joining a sent one.
        assert_eq!(ids(batcher.next_batch().await.unwrap()), ["a", "c"]);
        assert_eq!(began.elapsed(), Duration::ZERO);
        assert_eq!(ids(batcher.next_batch().await.unwrap()), ["d"]);
        assert_eq!(began.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_delay_counts_from_the_first_report() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut batcher = StatusBatcher::new(rx, Duration::from_millis(100), 100);
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            tx.send(update("a", TaskState::Accepted)).unwrap();
            tokio::time::sleep(Duration::from_millis(60)).await;
            tx.send(update("b", TaskState::Accepted)).unwrap();
            tokio::time::sleep(Duration::from_millis(60)).await;
            tx.send(update("c", TaskState::Accepted)).unwrap();
        });
        let began = Instant::now();
        let batch = batcher.next_batch().await.unwrap();
        assert_eq!(began.elapsed(), Duration::from_millis(600));
        assert_eq!(batch.len(), 2);
        let batch = batcher.next_batch().await.unwrap();
        assert_eq!(states(&batch), vec![("c", TaskState::Accepted as i32)]);
        sender.await.unwrap();
        assert!(batcher.next_batch().await.is_none(), "closed and drained");
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_channel_flushes_what_is_pending() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut batcher = StatusBatcher::new(rx, Duration::from_secs(5), 100);
        tx.send(update("a", TaskState::Running)).unwrap();
        drop(tx);
        let began = Instant::now();
        assert_eq!(batcher.next_batch().await.unwrap().len(), 1);
        assert_eq!(began.elapsed(), Duration::ZERO);
        assert!(batcher.next_batch().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_call_loses_nothing() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut batcher = StatusBatcher::new(rx, Duration::from_secs(1), 100);
        tx.send(update("a", TaskState::Accepted)).unwrap();
        let cut = tokio::time::timeout(Duration::from_millis(10), batcher.next_batch()).await;
        assert!(cut.is_err(), "the batch was still open");
        tx.send(update("a", TaskState::Preparing)).unwrap();
        let batch = batcher.next_batch().await.unwrap();
        assert_eq!(states(&batch), vec![("a", TaskState::Preparing as i32)]);
    }
}
