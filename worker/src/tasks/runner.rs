//! One task's runner: drives the task forward one state at a time, like swarmkit's
//! `exec.Do`, and reports every transition.
//!
//! The runner owns the task's observed status. Each turn of its loop reads the
//! latest assignment and takes exactly one step: report the next state, or run the
//! controller operation that earns it (`prepare` for READY, `start` for RUNNING,
//! `wait` for COMPLETE/FAILED). Operations that can take long are abandoned when the
//! managers ask the task to stop, which the controller contract allows.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rswarm_agent_runtime::{Controller, ExecError, Executor, ExitStatus};
use rswarm_proto::api::{Task, TaskState, TaskStatus};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use super::{StatusUpdate, lock};

/// First pause before retrying a failed stop or remove; doubled up to the maximum.
const RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest pause between retries of a failed stop or remove.
const RETRY_MAX: Duration = Duration::from_secs(10);
/// A failed `remove` is retried this many times before the task is left behind.
const REMOVE_ATTEMPTS: u32 = 5;
/// How long a running task with an address on the task network keeps running
/// after the managers ask it to stop, before its stop signal. The same change
/// marks it draining in the endpoint table, which reaches every node's proxy
/// and DNS server well within this (under 100 ms): without the pause, a proxy
/// that learns of the drain a moment after the worker may still send a new
/// connection to a process that is already exiting, and the client gets a
/// reset instead of a reply.
pub(super) const DRAIN_DELAY: Duration = Duration::from_millis(250);

/// The managers' latest word on a task.
#[derive(Clone, Debug)]
pub(super) struct Assignment {
    /// The managers' copy: only `desired_state` (and the spec) matter once running.
    pub task: Task,
    /// The task is no longer assigned to this node: stop it and free everything.
    pub removed: bool,
}

/// Drives one task; see the module doc.
pub(super) struct Runner {
    /// The task's id, for reports and logs.
    task_id: String,
    /// Hands out the task's controller.
    executor: Arc<dyn Executor>,
    /// The latest assignment, updated by the manager.
    assignment: watch::Receiver<Assignment>,
    /// Where transitions are reported.
    updates: mpsc::UnboundedSender<StatusUpdate>,
    /// The task's observed status: starts as the managers' copy, then only moves
    /// forward.
    status: TaskStatus,
    /// A copy of `status` the manager reads for full resends.
    shared: Arc<Mutex<TaskStatus>>,
    /// Time the process gets between the stop signal and the kill.
    grace: Duration,
    /// Cancelled when the manager goes away: the runner leaves the task as it is.
    cancel: CancellationToken,
    /// The assignment's sender is gone: no further change will come.
    closed: bool,
}

impl Runner {
    /// A runner for the task in `assignment`.
    pub(super) fn new(
        executor: Arc<dyn Executor>,
        assignment: watch::Receiver<Assignment>,
        updates: mpsc::UnboundedSender<StatusUpdate>,
        shared: Arc<Mutex<TaskStatus>>,
        grace: Duration,
        cancel: CancellationToken,
    ) -> Runner {
        let (task_id, status) = {
            let a = assignment.borrow();
            (a.task.id.clone(), a.task.status.clone().unwrap_or_default())
        };
        Runner {
            task_id,
            executor,
            assignment,
            updates,
            status,
            shared,
            grace,
            cancel,
            closed: false,
        }
    }

    /// Runs the task until it is removed (or the manager goes away).
    pub(super) async fn run(self) {
        let task = self.assignment.borrow().task.clone();
        let span = info_span!("task", task.id = %task.id, service.id = %task.service_id);
        self.drive(task).instrument(span).await;
    }

    async fn drive(mut self, task: Task) {
        let ctl = match self.executor.controller(&task) {
            Ok(ctl) => ctl,
            Err(err) => {
                warn!(error = %err, "task cannot run here");
                self.fail(&err);
                return;
            }
        };
        let ctl = &*ctl;
        loop {
            if self.cancel.is_cancelled() {
                return;
            }
            let (removed, desired) = {
                let a = self.assignment.borrow_and_update();
                (a.removed, a.task.desired_state)
            };
            if self.closed && !removed {
                return; // The manager dropped this runner without removing the task.
            }
            let state = self.status.state;
            let keep_going = if state >= TaskState::Complete as i32 {
                if removed {
                    self.remove(ctl).await;
                    return;
                }
                self.changed().await
            } else if removed || desired > TaskState::Running as i32 {
                self.stop(ctl).await
            } else if state < TaskState::Running as i32 && next_state(state) as i32 > desired {
                // Not asked to go further yet (e.g. desired READY: prepare only).
                self.changed().await
            } else {
                self.step(ctl, state).await;
                true
            };
            if !keep_going {
                return;
            }
        }
    }

    /// Takes one step forward from `state` (below COMPLETE).
    async fn step(&mut self, ctl: &dyn Controller, state: i32) {
        match next_state(state) {
            TaskState::Ready => match self.interruptible(ctl.prepare()).await {
                Some(Ok(())) => {
                    self.status.address = ctl.address().await;
                    self.report(TaskState::Ready, "prepared", String::new(), 0)
                }
                Some(Err(err)) => self.fail(&err),
                None => {}
            },
            TaskState::Running => match self.interruptible(ctl.start()).await {
                Some(Ok(())) => self.report(TaskState::Running, "started", String::new(), 0),
                Some(Err(err)) => self.fail(&err),
                None => {}
            },
            TaskState::Complete => match self.interruptible(ctl.wait()).await {
                Some(Ok(exit)) => self.exited(exit),
                Some(Err(err)) => {
                    // The managers replace a FAILED task, so one that can no longer be
                    // watched must not be left running beside its replacement.
                    if let Err(kill) = ctl.terminate().await {
                        warn!(error = %kill, "unwatchable task could not be killed");
                    }
                    self.fail(&err);
                }
                None => {}
            },
            next => self.report(next, state_message(next), String::new(), 0),
        }
    }

    /// Reports how the process exited.
    fn exited(&mut self, exit: ExitStatus) {
        if exit.success() {
            self.report(TaskState::Complete, "finished", String::new(), 0);
            return;
        }
        let err = if exit.reason.is_empty() {
            format!("task: non-zero exit ({})", exit.code)
        } else {
            exit.reason
        };
        self.report(TaskState::Failed, "failed", err, exit.code);
    }

    /// Ends the task in the state `err` leads to.
    fn fail(&mut self, err: &ExecError) {
        let state = err.task_state();
        let message = if state == TaskState::Rejected {
            "rejected"
        } else {
            "failed"
        };
        self.report(state, message, err.to_string(), 0);
    }

    /// Stops the process (stop signal, kill after the grace period; a running
    /// task with an address after [`DRAIN_DELAY`]) and reports SHUTDOWN. Retried until it works: a process that may still run must not be
    /// reported stopped. False when the manager went away meanwhile.
    async fn stop(&mut self, ctl: &dyn Controller) -> bool {
        if self.status.state == TaskState::Running as i32 && !self.status.address.is_empty() {
            debug!(
                delay_ms = DRAIN_DELAY.as_millis() as u64,
                "stopping once the proxies have drained the task"
            );
            tokio::select! {
                _ = self.cancel.cancelled() => return false,
                _ = tokio::time::sleep(DRAIN_DELAY) => {}
            }
        }
        let mut pause = RETRY_MIN;
        loop {
            let stopped = tokio::select! {
                _ = self.cancel.cancelled() => return false,
                r = ctl.shutdown(self.grace) => r,
            };
            let result = match stopped {
                Ok(()) => Ok(()),
                Err(err) => {
                    warn!(error = %err, "graceful shutdown failed, killing");
                    ctl.terminate().await
                }
            };
            match result {
                Ok(()) => break,
                Err(err) => warn!(error = %err, retry_in = ?pause, "task could not be stopped"),
            }
            if !self.pause(&mut pause).await {
                return false;
            }
        }
        self.report(TaskState::Shutdown, "shutdown", String::new(), 0);
        true
    }

    /// Frees the task's resources, retrying a few times.
    async fn remove(&mut self, ctl: &dyn Controller) {
        let mut pause = RETRY_MIN;
        for attempt in 1..=REMOVE_ATTEMPTS {
            match ctl.remove().await {
                Ok(()) => {
                    debug!("task removed");
                    return;
                }
                Err(err) => warn!(error = %err, attempt, "task could not be removed"),
            }
            if attempt < REMOVE_ATTEMPTS && !self.pause(&mut pause).await {
                return;
            }
        }
        error!("giving up removing the task: its resources stay on the node");
    }

    /// Sleeps `pause` (then doubles it); false when the manager went away meanwhile.
    async fn pause(&self, pause: &mut Duration) -> bool {
        let slept = tokio::select! {
            _ = self.cancel.cancelled() => false,
            _ = tokio::time::sleep(*pause) => true,
        };
        *pause = (*pause * 2).min(RETRY_MAX);
        slept
    }

    /// Runs `op` unless the task must stop first: None when the managers asked for
    /// a stop or a removal (or the manager went away) before `op` finished.
    async fn interruptible<T>(&mut self, op: impl Future<Output = T>) -> Option<T> {
        tokio::pin!(op);
        loop {
            tokio::select! {
                out = &mut op => return Some(out),
                _ = self.cancel.cancelled() => return None,
                changed = self.assignment.changed() => {
                    // A closed channel must end the wait too: `changed` would
                    // return at once forever after.
                    self.closed |= changed.is_err();
                    if self.closed || self.stop_wanted() {
                        return None;
                    }
                }
            }
        }
    }

    /// Waits for the next assignment change; false when there will be none.
    async fn changed(&mut self) -> bool {
        let changed = tokio::select! {
            _ = self.cancel.cancelled() => return false,
            changed = self.assignment.changed() => changed,
        };
        self.closed |= changed.is_err();
        !self.closed
    }

    fn stop_wanted(&self) -> bool {
        let a = self.assignment.borrow();
        a.removed || a.task.desired_state > TaskState::Running as i32
    }

    /// Moves the observed status to `state` and reports it. Ignored unless it moves
    /// forward from a non-terminal state: reports never go backwards, never repeat a
    /// state, and a finished task's outcome is never rewritten.
    fn report(&mut self, state: TaskState, message: &str, err: String, exit_code: i32) {
        let current = self.status.state;
        if current >= TaskState::Complete as i32 || state as i32 <= current {
            debug!(?state, current, "transition ignored");
            return;
        }
        self.status = TaskStatus {
            state: state as i32,
            // The wall clock may step back; the reported timeline must not.
            timestamp: now_ms().max(self.status.timestamp),
            message: message.to_string(),
            err,
            exit_code,
            address: self.status.address.clone(),
        };
        *lock(&self.shared) = self.status.clone();
        if state >= TaskState::Running {
            info!(?state, err = %self.status.err, exit_code, "task state");
        } else {
            debug!(?state, "task state");
        }
        let update = StatusUpdate {
            task_id: self.task_id.clone(),
            status: self.status.clone(),
        };
        if self.updates.send(update).is_err() {
            debug!("status dropped: nobody listens");
        }
    }
}

/// The state a runner moves a task to from `state` (below COMPLETE); COMPLETE
/// stands for "the process exited" from RUNNING.
fn next_state(state: i32) -> TaskState {
    const ORDER: [TaskState; 6] = [
        TaskState::Accepted,
        TaskState::Preparing,
        TaskState::Ready,
        TaskState::Starting,
        TaskState::Running,
        TaskState::Complete,
    ];
    (ORDER.into_iter())
        .find(|s| *s as i32 > state)
        .unwrap_or(TaskState::Complete)
}

/// The status message of a state reached without a controller operation.
fn state_message(state: TaskState) -> &'static str {
    match state {
        TaskState::Accepted => "accepted",
        TaskState::Preparing => "preparing",
        TaskState::Starting => "starting",
        _ => "",
    }
}

/// Unix milliseconds now.
fn now_ms() -> u64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}
