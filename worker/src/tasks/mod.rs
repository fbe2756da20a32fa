//! The node's task runners: what turns the managers' assignments into containers.
//!
//! The dispatcher session hands the [`TaskManager`] the node's full assignment set,
//! then increments. Each assigned task gets one runner (a tokio task, see `runner`)
//! that drives it forward one state at a time through the [`Executor`] and reports
//! every transition on the manager's status channel; a [`StatusBatcher`] coalesces
//! those reports into batches for the session to send.
//!
//! Runners take only `desired_state` (and, once, the initial status) from the
//! managers' copy of a task: the observed state is the runner's own and never moves
//! backwards, whatever a stale assignment says.
//!
//! # Re-adoption
//! A task the managers still see RUNNING (reported by an earlier session or an
//! earlier daemon) is re-attached, not restarted: its runner asks the executor for a
//! controller (which finds the existing container) and goes straight to `wait`. A
//! task assigned in a state past RUNNING is never started again. After a daemon
//! restart, the tasks the node last knew of can be handed to [`TaskManager::adopt`]
//! before the first assignment set arrives; that set then settles which stay.
//!
//! # Wiring into the dispatcher session
//! ```
//! # use std::{sync::Arc, time::Duration};
//! # use rswarm_agent_runtime::fake::{FakeBehavior, FakeExecutor};
//! # use rswarm_proto::api::{ContainerSpec, Task, TaskSpec, TaskState};
//! use rswarm_worker::tasks::{StatusBatcher, TaskManager};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # let executor = FakeExecutor::with_default(FakeBehavior {
//! #     run_for: Some(Duration::from_millis(10)),
//! #     ..Default::default()
//! # });
//! # let spec = TaskSpec {
//! #     container: Some(ContainerSpec { image: "busybox".into(), ..Default::default() }),
//! #     ..Default::default()
//! # };
//! # let task = Task {
//! #     id: "t1".into(),
//! #     spec: Some(spec),
//! #     desired_state: TaskState::Running as i32,
//! #     ..Default::default()
//! # };
//! let (tasks, updates) = TaskManager::new(Arc::new(executor));
//! let mut batches = StatusBatcher::new(updates, Duration::from_millis(100), 500);
//! // The session's first message is the node's full set; increments follow with
//! // `update_assignments(changed, removed)`.
//! tasks.set_assignments(vec![task]);
//! // Each batch is one status update call to the dispatcher; after reconnecting to
//! // a new leader, `tasks.statuses()` is sent in full first.
//! let mut last = TaskState::Assigned as i32;
//! while last < TaskState::Complete as i32 {
//!     let batch = batches.next_batch().await.expect("the manager is alive");
//!     last = batch[0].status.state;
//! }
//! assert_eq!(last, TaskState::Complete as i32);
//! # }
//! ```

mod batcher;
mod runner;

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rswarm_agent_runtime::Executor;
use rswarm_proto::api::{Task, TaskStatus};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::debug;

pub use batcher::StatusBatcher;
use runner::{Assignment, Runner};

/// Default time a task's process gets to exit after the stop signal.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);

/// A task's observed status, as a runner reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusUpdate {
    /// The task's id.
    pub task_id: String,
    /// Its new status.
    pub status: TaskStatus,
}

/// How the task runners behave.
#[derive(Clone, Debug)]
pub struct TaskManagerConfig {
    /// Time a process gets between the stop signal and the kill.
    pub stop_grace: Duration,
}

impl Default for TaskManagerConfig {
    fn default() -> Self {
        TaskManagerConfig {
            stop_grace: DEFAULT_STOP_GRACE,
        }
    }
}

/// What the manager keeps for one runner.
struct RunnerHandle {
    /// The latest assignment; the runner watches it for desired-state changes.
    assignment: watch::Sender<Assignment>,
    /// The last status the runner reported.
    status: Arc<Mutex<TaskStatus>>,
}

/// Runs the tasks assigned to this node, one runner per task.
///
/// Must be used inside a tokio runtime (runners are spawned on it). Dropping the
/// manager stops the runners without touching the containers, which keep running
/// so that the next daemon can re-adopt them.
pub struct TaskManager {
    /// Hands out the tasks' controllers.
    executor: Arc<dyn Executor>,
    /// Settings shared by every runner.
    config: TaskManagerConfig,
    /// Where runners report; the receiving end belongs to the session.
    updates: mpsc::UnboundedSender<StatusUpdate>,
    /// Runners of assigned tasks by task id. A std mutex: it is never held across an
    /// `.await`, only while a few maps and channels are updated.
    runners: Mutex<HashMap<String, RunnerHandle>>,
    /// Cancelled on drop: runners stop where they are.
    cancel: CancellationToken,
    /// Whether a full assignment set arrived since the start (the runtime is then
    /// told which tasks exist, once).
    got_full_set: std::sync::atomic::AtomicBool,
}

impl TaskManager {
    /// A manager running tasks through `executor` with the default settings, and the
    /// channel on which every task's status transitions arrive.
    pub fn new(
        executor: Arc<dyn Executor>,
    ) -> (TaskManager, mpsc::UnboundedReceiver<StatusUpdate>) {
        TaskManager::with_config(executor, TaskManagerConfig::default())
    }

    /// Like [`TaskManager::new`], with `config`.
    pub fn with_config(
        executor: Arc<dyn Executor>,
        config: TaskManagerConfig,
    ) -> (TaskManager, mpsc::UnboundedReceiver<StatusUpdate>) {
        let (updates, rx) = mpsc::unbounded_channel();
        let manager = TaskManager {
            executor,
            config,
            updates,
            runners: Mutex::new(HashMap::new()),
            cancel: CancellationToken::new(),
            got_full_set: std::sync::atomic::AtomicBool::new(false),
        };
        (manager, rx)
    }

    /// Replaces the node's assignment set with `tasks` (the session's first, full
    /// message): new tasks get a runner, known ones get their new desired state, and
    /// tasks no longer assigned are shut down and removed.
    pub fn set_assignments(&self, tasks: Vec<Task>) {
        if !self
            .got_full_set
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            self.executor
                .cleanup(tasks.iter().map(|t| t.id.clone()).collect());
        }
        let assigned: HashSet<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
        let mut runners = self.lock();
        let gone: Vec<String> = (runners.keys())
            .filter(|id| !assigned.contains(id.as_str()))
            .cloned()
            .collect();
        self.apply(&mut runners, tasks, gone);
    }

    /// Applies an increment of the assignment set: `changed` tasks are added or get
    /// their new desired state; `removed` ones are shut down and removed.
    pub fn update_assignments(&self, changed: Vec<Task>, removed: Vec<String>) {
        self.apply(&mut self.lock(), changed, removed);
    }

    /// Applies an increment under the caller's lock, so a full set is one step.
    fn apply(
        &self,
        runners: &mut HashMap<String, RunnerHandle>,
        changed: Vec<Task>,
        removed: Vec<String>,
    ) {
        for id in removed {
            if let Some(handle) = runners.remove(&id) {
                debug!(task.id = %id, "task no longer assigned");
                handle.assignment.send_modify(|a| a.removed = true);
            }
        }
        for task in changed {
            match runners.get(&task.id) {
                Some(handle) => handle.assignment.send_modify(|a| {
                    a.task = task;
                }),
                None => {
                    let handle = self.spawn(task.clone());
                    runners.insert(task.id, handle);
                }
            }
        }
    }

    /// Runs tasks this node knew of before a daemon restart (from its local record),
    /// each from the status it last had, before the first assignment set arrives.
    /// Tasks that already have a runner are left alone. The real runtime's
    /// controllers find the existing containers, so a RUNNING task is re-attached;
    /// the next [`TaskManager::set_assignments`] shuts down and removes whichever of
    /// them the managers no longer assign.
    pub fn adopt(&self, tasks: Vec<Task>) {
        let mut runners = self.lock();
        for task in tasks {
            if let Entry::Vacant(slot) = runners.entry(task.id.clone()) {
                debug!(task.id = %task.id, "adopting task");
                slot.insert(self.spawn(task));
            }
        }
    }

    /// The last status reported for each assigned task, for the session to send in
    /// full after it reconnects (updates sent to a failed manager may be lost).
    pub fn statuses(&self) -> Vec<StatusUpdate> {
        let runners = self.lock();
        let mut all: Vec<StatusUpdate> = (runners.iter())
            .map(|(id, handle)| StatusUpdate {
                task_id: id.clone(),
                status: lock(&handle.status).clone(),
            })
            .collect();
        all.sort_by(|a, b| a.task_id.cmp(&b.task_id));
        all
    }

    /// Ids of the tasks currently assigned, sorted.
    pub fn assigned(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.lock().keys().cloned().collect();
        ids.sort();
        ids
    }

    fn spawn(&self, task: Task) -> RunnerHandle {
        let grace = stop_grace(&task, self.config.stop_grace);
        let status = Arc::new(Mutex::new(task.status.clone().unwrap_or_default()));
        let (assignment, rx) = watch::channel(Assignment {
            task,
            removed: false,
        });
        let runner = Runner::new(
            self.executor.clone(),
            rx,
            self.updates.clone(),
            status.clone(),
            grace,
            self.cancel.child_token(),
        );
        tokio::spawn(runner.run());
        RunnerHandle { assignment, status }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, RunnerHandle>> {
        lock(&self.runners)
    }
}

/// The task's own stop grace period (`--stop-grace-period`), else the node's default.
fn stop_grace(task: &Task, default: Duration) -> Duration {
    task.spec
        .as_ref()
        .and_then(|spec| spec.container.as_ref())
        .map(|container| container.stop_grace_period_ms)
        .filter(|ms| *ms > 0)
        .map_or(default, Duration::from_millis)
}

impl Drop for TaskManager {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Locks `m`, recovering from poison: every critical section in this module is a
/// handful of map or field assignments that leave the data consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests;
