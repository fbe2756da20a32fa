//! A fake executor for tests: no containers, only tokio timers and knobs.
//!
//! Each task's "container" is a small state machine (created, prepared, running,
//! exited, removed) kept per task id for the executor's whole life, so a second
//! controller for the same task (a worker re-adopting it) attaches to the same
//! state. Behaviour is chosen per image, falling back to a default; every controller
//! call is recorded so tests can assert on what the worker asked for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use rswarm_proto::api::{Task, TaskState};
use tokio::sync::watch;

use crate::exec::{
    Controller, ExecError, Executor, ExitStatus, LogLine, LogLines, LogOptions, task_image,
};

/// Exit code of a process that ended on the stop signal (128 + SIGTERM).
pub const STOPPED_EXIT_CODE: i32 = 143;
/// Exit code of a killed process (128 + SIGKILL).
pub const KILLED_EXIT_CODE: i32 = 137;

/// How the fake runtime behaves for a task.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FakeBehavior {
    /// How long the process runs before exiting by itself; `None` runs until stopped.
    pub run_for: Option<Duration>,
    /// Exit code when the process exits by itself.
    pub exit_code: i32,
    /// Exit reason when the process exits by itself (e.g. "OOM killed").
    pub exit_reason: String,
    /// How long `prepare` takes (an image pull, say).
    pub prepare_delay: Duration,
    /// When set, `prepare` fails with [`ExecError::Prepare`] and this message.
    pub prepare_error: Option<String>,
    /// When set, `start` fails with [`ExecError::Start`] and this message.
    pub start_error: Option<String>,
    /// When set, `shutdown` fails with [`ExecError::Stop`] and this message (and
    /// leaves the process running).
    pub shutdown_error: Option<String>,
    /// When true, `prepare` fails with [`ExecError::ImageNotFound`].
    pub image_missing: bool,
    /// When true, the process ignores the stop signal and `shutdown` kills it only
    /// after the grace period.
    pub ignores_stop_signal: bool,
    /// The address on the node's task network `address` reports (empty: none).
    pub address: String,
}

/// A controller operation the fake received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FakeOp {
    /// [`Controller::prepare`].
    Prepare,
    /// [`Controller::start`].
    Start,
    /// [`Controller::wait`].
    Wait,
    /// [`Controller::shutdown`] with its grace period.
    Shutdown(Duration),
    /// [`Controller::terminate`].
    Terminate,
    /// [`Controller::remove`].
    Remove,
}

/// One recorded controller call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeCall {
    /// The task the controller belongs to.
    pub task_id: String,
    /// What was asked.
    pub op: FakeOp,
}

/// Where a fake task's container is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FakeState {
    /// Known to the runtime, nothing prepared yet.
    Created,
    /// Prepared, process not started.
    Prepared,
    /// The process runs.
    Running,
    /// The process exited, the container is still there.
    Exited(ExitStatus),
    /// Everything freed; the exit status if the process had run.
    Removed(Option<ExitStatus>),
    /// The task claimed to be started but the runtime holds nothing for it (as after
    /// a node reboot): nothing can be done with it but remove it.
    Gone,
}

/// What all controllers of one executor share.
#[derive(Default)]
struct Shared {
    /// Behaviour for images without their own.
    default: FakeBehavior,
    /// Behaviour per image reference.
    images: HashMap<String, FakeBehavior>,
    /// Every controller call, in order.
    calls: Vec<FakeCall>,
    /// Each task's container state, by task id.
    tasks: HashMap<String, Arc<watch::Sender<FakeState>>>,
    /// Each task's log lines, by task id.
    logs: HashMap<String, Arc<watch::Sender<Vec<LogLine>>>>,
    /// The sets of tasks to keep each cleanup was called with.
    cleanups: Vec<std::collections::HashSet<String>>,
}

/// The fake [`Executor`]. Cloning shares the same state.
#[derive(Clone, Default)]
pub struct FakeExecutor {
    /// Behind a std mutex: it is never held across an `.await`.
    shared: Arc<Mutex<Shared>>,
}

impl FakeExecutor {
    /// A fake whose tasks run until stopped and exit 0.
    pub fn new() -> FakeExecutor {
        FakeExecutor::default()
    }

    /// A fake with `behavior` for every image.
    pub fn with_default(behavior: FakeBehavior) -> FakeExecutor {
        let fake = FakeExecutor::default();
        fake.set_default(behavior);
        fake
    }

    /// Sets the behaviour of images without their own (for controllers made later).
    pub fn set_default(&self, behavior: FakeBehavior) {
        self.lock().default = behavior;
    }

    /// Sets the behaviour of `image` (for controllers made later).
    pub fn set_image(&self, image: &str, behavior: FakeBehavior) {
        self.lock().images.insert(image.to_string(), behavior);
    }

    /// Every controller call so far, in order.
    pub fn calls(&self) -> Vec<FakeCall> {
        self.lock().calls.clone()
    }

    /// The operations called on `task_id`'s controllers, in order.
    pub fn ops(&self, task_id: &str) -> Vec<FakeOp> {
        let shared = self.lock();
        let calls = shared.calls.iter().filter(|c| c.task_id == task_id);
        calls.map(|c| c.op.clone()).collect()
    }

    /// The state of `task_id`'s container, if the fake has seen the task.
    pub fn state(&self, task_id: &str) -> Option<FakeState> {
        let shared = self.lock();
        shared.tasks.get(task_id).map(|s| s.borrow().clone())
    }

    /// Ids of the tasks whose process runs, sorted.
    pub fn running(&self) -> Vec<String> {
        let shared = self.lock();
        let mut ids: Vec<String> = (shared.tasks.iter())
            .filter(|(_, s)| *s.borrow() == FakeState::Running)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// The task sets [`Executor::cleanup`] was called with, in order.
    pub fn cleanups(&self) -> Vec<std::collections::HashSet<String>> {
        self.lock().cleanups.clone()
    }

    /// Makes `task_id`'s running process exit (or crash) with `status`. Returns
    /// false, changing nothing, when that process is not running.
    pub fn exit(&self, task_id: &str, status: ExitStatus) -> bool {
        let (state, logs) = {
            let shared = self.lock();
            match (shared.tasks.get(task_id), shared.logs.get(task_id)) {
                (Some(state), Some(logs)) => (state.clone(), logs.clone()),
                _ => return false,
            }
        };
        exit_if_running(&state, &logs, status)
    }

    /// The shared state; a poisoned lock is recovered because every update to it
    /// is a single assignment or push that cannot be left half-done.
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Executor for FakeExecutor {
    fn controller(&self, task: &Task) -> Result<Box<dyn Controller>, ExecError> {
        let image = task_image(task)?.to_string();
        let mut shared = self.lock();
        let behavior = shared.images.get(&image).unwrap_or(&shared.default).clone();
        // A task that reached STARTING before may have a process: unknown to this
        // runtime, it is gone (the real runtime would find no container either).
        let started = task
            .status
            .as_ref()
            .is_some_and(|s| s.state >= TaskState::Starting as i32);
        let initial = if started {
            FakeState::Gone
        } else {
            FakeState::Created
        };
        let state = shared.tasks.entry(task.id.clone());
        let state = state
            .or_insert_with(|| Arc::new(watch::Sender::new(initial)))
            .clone();
        let logs = shared
            .logs
            .entry(task.id.clone())
            .or_insert_with(|| Arc::new(watch::Sender::new(Vec::new())))
            .clone();
        Ok(Box::new(FakeController {
            task_id: task.id.clone(),
            image,
            behavior,
            state,
            logs,
            executor: self.clone(),
        }))
    }

    fn cleanup(&self, keep: std::collections::HashSet<String>) {
        self.lock().cleanups.push(keep);
    }

    /// A line when the task starts (stdout) and one when it exits (stderr).
    fn logs(&self, task_id: &str, options: LogOptions) -> Result<LogLines, ExecError> {
        let lines = self
            .lock()
            .logs
            .get(task_id)
            .cloned()
            .ok_or_else(|| ExecError::Logs(format!("no such task: {task_id}")))?;
        let rx = lines.subscribe();
        let skip = match options.tail {
            Some(tail) => rx.borrow().len().saturating_sub(tail as usize),
            None => 0,
        };
        let stream = futures::stream::unfold((rx, skip), move |(mut rx, next)| async move {
            loop {
                let line = rx.borrow_and_update().get(next).cloned();
                if let Some(line) = line {
                    return Some((line, (rx, next + 1)));
                }
                if !options.follow || rx.changed().await.is_err() {
                    return None;
                }
            }
        });
        Ok(Box::pin(stream))
    }
}

/// Appends a line to a task's fake log.
fn log_line(logs: &watch::Sender<Vec<LogLine>>, stderr: bool, text: String) {
    let timestamp_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    logs.send_modify(|lines| {
        lines.push(LogLine {
            timestamp_ns,
            stderr,
            data: text.into_bytes(),
        })
    });
}

/// One task's fake controller.
struct FakeController {
    /// The task's id, for the call log.
    task_id: String,
    /// The task's image, for [`ExecError::ImageNotFound`].
    image: String,
    /// Behaviour chosen when the controller was made.
    behavior: FakeBehavior,
    /// The container's state, shared with other controllers of the same task.
    state: Arc<watch::Sender<FakeState>>,
    /// The task's log lines, shared likewise.
    logs: Arc<watch::Sender<Vec<LogLine>>>,
    /// For recording calls.
    executor: FakeExecutor,
}

impl FakeController {
    fn record(&self, op: FakeOp) {
        let call = FakeCall {
            task_id: self.task_id.clone(),
            op,
        };
        self.executor.lock().calls.push(call);
    }

    fn current(&self) -> FakeState {
        self.state.borrow().clone()
    }

    /// Replaces the state with `next` when `from` accepts the current one.
    fn advance(&self, from: impl Fn(&FakeState) -> bool, next: FakeState) -> bool {
        self.state.send_if_modified(|s| {
            let apply = from(s);
            if apply {
                *s = next;
            }
            apply
        })
    }
}

/// Moves a running process to `Exited(status)` and logs it; false if it was not
/// running.
fn exit_if_running(
    state: &watch::Sender<FakeState>,
    logs: &watch::Sender<Vec<LogLine>>,
    status: ExitStatus,
) -> bool {
    let code = status.code;
    let exited = state.send_if_modified(|s| {
        let running = *s == FakeState::Running;
        if running {
            *s = FakeState::Exited(status);
        }
        running
    });
    if exited {
        log_line(logs, true, format!("exited with code {code}"));
    }
    exited
}

#[async_trait]
impl Controller for FakeController {
    async fn prepare(&self) -> Result<(), ExecError> {
        self.record(FakeOp::Prepare);
        if self.behavior.image_missing {
            let image = self.image.clone();
            return Err(ExecError::ImageNotFound { image });
        }
        if let Some(msg) = &self.behavior.prepare_error {
            return Err(ExecError::Prepare(msg.clone()));
        }
        match self.current() {
            FakeState::Created => {}
            FakeState::Removed(_) | FakeState::Gone => {
                return Err(ExecError::Prepare("container was removed".into()));
            }
            FakeState::Prepared | FakeState::Running | FakeState::Exited(_) => return Ok(()),
        }
        tokio::time::sleep(self.behavior.prepare_delay).await;
        self.advance(|s| *s == FakeState::Created, FakeState::Prepared);
        Ok(())
    }

    async fn start(&self) -> Result<(), ExecError> {
        self.record(FakeOp::Start);
        match self.current() {
            FakeState::Prepared => {}
            FakeState::Running | FakeState::Exited(_) => return Ok(()),
            FakeState::Created => return Err(ExecError::Start("container not prepared".into())),
            FakeState::Removed(_) | FakeState::Gone => {
                return Err(ExecError::Start("no such container".into()));
            }
        }
        if let Some(msg) = &self.behavior.start_error {
            return Err(ExecError::Start(msg.clone()));
        }
        if !self.advance(|s| *s == FakeState::Prepared, FakeState::Running) {
            return Ok(()); // Another controller of the same task started it.
        }
        log_line(&self.logs, false, format!("running image {}", self.image));
        if let Some(run_for) = self.behavior.run_for {
            let state = self.state.clone();
            let logs = self.logs.clone();
            let status = ExitStatus {
                code: self.behavior.exit_code,
                reason: self.behavior.exit_reason.clone(),
            };
            tokio::spawn(async move {
                tokio::time::sleep(run_for).await;
                exit_if_running(&state, &logs, status);
            });
        }
        Ok(())
    }

    async fn wait(&self) -> Result<ExitStatus, ExecError> {
        self.record(FakeOp::Wait);
        let mut rx = self.state.subscribe();
        let done = rx.wait_for(|s| {
            matches!(
                s,
                FakeState::Exited(_) | FakeState::Removed(_) | FakeState::Gone
            )
        });
        // The sender lives in `self.state`, so the channel cannot close under us.
        let state = done
            .await
            .map_err(|_| ExecError::Wait("state channel closed".into()))?;
        match &*state {
            FakeState::Exited(status) | FakeState::Removed(Some(status)) => Ok(status.clone()),
            FakeState::Removed(None) => {
                Err(ExecError::Wait("container removed before it ran".into()))
            }
            _ => Err(ExecError::Wait("no such container".into())),
        }
    }

    async fn address(&self) -> String {
        self.behavior.address.clone()
    }

    async fn shutdown(&self, grace: Duration) -> Result<(), ExecError> {
        self.record(FakeOp::Shutdown(grace));
        if let Some(msg) = &self.behavior.shutdown_error {
            return Err(ExecError::Stop(msg.clone()));
        }
        if self.current() != FakeState::Running {
            return Ok(());
        }
        if !self.behavior.ignores_stop_signal {
            exit_if_running(&self.state, &self.logs, ExitStatus::code(STOPPED_EXIT_CODE));
            return Ok(());
        }
        // The process ignores the signal: it may still exit by itself during the
        // grace period, otherwise it is killed when the period ends.
        let mut rx = self.state.subscribe();
        let exited = rx.wait_for(|s| *s != FakeState::Running);
        let _ = tokio::time::timeout(grace, exited).await;
        exit_if_running(&self.state, &self.logs, ExitStatus::code(KILLED_EXIT_CODE));
        Ok(())
    }

    async fn terminate(&self) -> Result<(), ExecError> {
        self.record(FakeOp::Terminate);
        exit_if_running(&self.state, &self.logs, ExitStatus::code(KILLED_EXIT_CODE));
        Ok(())
    }

    async fn remove(&self) -> Result<(), ExecError> {
        self.record(FakeOp::Remove);
        exit_if_running(&self.state, &self.logs, ExitStatus::code(KILLED_EXIT_CODE));
        self.state.send_modify(|s| {
            *s = match s {
                FakeState::Exited(status) => FakeState::Removed(Some(status.clone())),
                FakeState::Removed(status) => FakeState::Removed(status.clone()),
                _ => FakeState::Removed(None),
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests;
