//! The seam between the worker and a container runtime.
//!
//! An [`Executor`] hands out one [`Controller`] per task; the worker's task runner
//! drives the controller one step at a time and turns what it returns into task
//! states. Every controller method is idempotent because the runner may call it again
//! after a daemon restart (re-adopting a task it had already prepared or started),
//! and every future it returns may be dropped half-way (the runner abandons a
//! `prepare` or `wait` when the managers ask for the task to stop).

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;
use rswarm_proto::api::{Task, TaskState};

/// Hands out the controllers of a node's tasks.
pub trait Executor: Send + Sync {
    /// The controller of `task`.
    ///
    /// Cheap and side-effect free: it neither pulls nor creates anything (that is
    /// [`Controller::prepare`]'s job). When the runtime already holds resources for
    /// `task.id` (a container created before a daemon restart), the controller it
    /// returns is attached to them, which is how a running task is re-adopted.
    /// Fails only when the task can never run here, e.g. its spec has no container.
    fn controller(&self, task: &Task) -> Result<Box<dyn Controller>, ExecError>;

    /// Frees what the runtime holds for tasks other than `keep`: called once the
    /// node has its first full assignment set after a start, so containers of tasks
    /// that no longer exist (removed while the daemon was down) do not linger. Runs
    /// in the background; the default holds nothing.
    fn cleanup(&self, keep: std::collections::HashSet<String>) {
        let _ = keep;
    }

    /// The logs the task's process wrote: the last `options.tail` lines (all when
    /// `None`), oldest first, then with `options.follow` new lines as they are
    /// written until the stream is dropped or the task is removed.
    ///
    /// The default is a runtime that keeps no logs.
    fn logs(&self, task_id: &str, options: LogOptions) -> Result<LogLines, ExecError> {
        let _ = options;
        Err(ExecError::Logs(format!(
            "task {task_id}: this node's runtime keeps no logs"
        )))
    }
}

/// Which lines [`Executor::logs`] returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Only the last this many lines; `None`: every line kept.
    pub tail: Option<u64>,
    /// Keep the stream open for new lines.
    pub follow: bool,
}

/// One line a task's process wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// When it was written, in nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// Written on stderr rather than stdout.
    pub stderr: bool,
    /// The line without its newline.
    pub data: Vec<u8>,
}

/// A task's log lines, oldest first.
pub type LogLines = Pin<Box<dyn Stream<Item = LogLine> + Send>>;

/// Runs one task's container through its life.
///
/// Methods are called in the order `prepare`, `start`, `wait`, then `shutdown` or
/// `terminate` when the task must stop early, and `remove` last. Each is idempotent:
/// calling it again once it has succeeded succeeds without doing anything twice, and
/// `shutdown`, `terminate` and `remove` succeed on a task that never started.
#[async_trait]
pub trait Controller: Send + Sync {
    /// Makes the task ready to start: pulls the image, creates the root filesystem,
    /// the network namespace and the container, without starting its process.
    ///
    /// Errors here mean the task cannot run on this node ([`ExecError::task_state`]
    /// maps them to REJECTED) so the managers place it again, maybe elsewhere.
    async fn prepare(&self) -> Result<(), ExecError>;

    /// Starts the prepared container's process and returns once it runs.
    ///
    /// Succeeds at once if the process is already running or has already exited
    /// (the exit is then reported by [`Controller::wait`]).
    async fn start(&self) -> Result<(), ExecError>;

    /// Returns when the task's process has exited, with how it exited.
    ///
    /// A non-zero exit is not an error: it is an [`ExitStatus`] the runner turns into
    /// FAILED. An error means the process could not be watched (e.g. the container
    /// vanished). Called on a process that has already exited, it returns the same
    /// status again. Dropping the future stops the watching, never the process.
    async fn wait(&self) -> Result<ExitStatus, ExecError>;

    /// Stops the process gracefully: sends the stop signal, waits up to `grace` for
    /// it to exit, then kills it. Returns once the process is gone; the container's
    /// resources stay until [`Controller::remove`].
    async fn shutdown(&self, grace: Duration) -> Result<(), ExecError>;

    /// Kills the process at once, without a grace period. Returns once it is gone.
    async fn terminate(&self) -> Result<(), ExecError>;

    /// Frees everything the task holds on the node: the process (killed if it still
    /// runs), the container, its root filesystem and its network. After `remove`,
    /// nothing of the task is left and the controller must not be used again.
    async fn remove(&self) -> Result<(), ExecError>;

    /// The task's address on the node's task network once prepared (for its
    /// status); empty when it has none.
    async fn address(&self) -> String {
        String::new()
    }
}

/// How a task's process exited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitStatus {
    /// The process's exit code (128 + signal number when a signal ended it).
    pub code: i32,
    /// Why it exited when the code alone does not say, e.g. "OOM killed (limit
    /// 64MiB)"; empty for an ordinary exit.
    pub reason: String,
}

impl ExitStatus {
    /// An ordinary exit with `code` and no further reason.
    pub fn code(code: i32) -> ExitStatus {
        ExitStatus {
            code,
            reason: String::new(),
        }
    }

    /// Whether the process exited with code 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// Why a controller operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The task's spec cannot be run by this runtime (no container, bad image name).
    #[error("invalid task spec: {0}")]
    InvalidSpec(String),
    /// The image does not exist in any registry the node can reach.
    #[error("image not found: {image}")]
    ImageNotFound {
        /// The image reference as written in the spec.
        image: String,
    },
    /// Preparing the container failed (root filesystem, network, container creation).
    #[error("prepare failed: {0}")]
    Prepare(String),
    /// The container's process could not be started.
    #[error("start failed: {0}")]
    Start(String),
    /// The running process could not be watched (e.g. its container vanished).
    #[error("wait failed: {0}")]
    Wait(String),
    /// The process could not be stopped.
    #[error("stop failed: {0}")]
    Stop(String),
    /// The task's resources could not be freed.
    #[error("remove failed: {0}")]
    Remove(String),
    /// The task's logs cannot be read.
    #[error("logs unavailable: {0}")]
    Logs(String),
}

impl ExecError {
    /// The terminal state a task reaches when this error ends it: REJECTED when the
    /// task could never have run here (so the managers may place it elsewhere),
    /// FAILED when it was started and then went wrong.
    pub fn task_state(&self) -> TaskState {
        match self {
            ExecError::InvalidSpec(_) | ExecError::ImageNotFound { .. } | ExecError::Prepare(_) => {
                TaskState::Rejected
            }
            ExecError::Start(_)
            | ExecError::Wait(_)
            | ExecError::Stop(_)
            | ExecError::Remove(_)
            | ExecError::Logs(_) => TaskState::Failed,
        }
    }
}

/// The image a task runs, or [`ExecError::InvalidSpec`] when the spec names none.
pub fn task_image(task: &Task) -> Result<&str, ExecError> {
    task.spec
        .as_ref()
        .and_then(|s| s.container.as_ref())
        .map(|c| c.image.as_str())
        .filter(|image| !image.is_empty())
        .ok_or_else(|| ExecError::InvalidSpec(format!("task {} has no container image", task.id)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rswarm_proto::api::{ContainerSpec, TaskSpec};

    #[test]
    fn errors_map_to_rejected_before_start_and_failed_after() {
        let image = ExecError::ImageNotFound {
            image: "nope:1".into(),
        };
        assert_eq!(image.task_state(), TaskState::Rejected);
        assert!(image.to_string().contains("image not found"));
        assert_eq!(
            ExecError::Prepare("x".into()).task_state(),
            TaskState::Rejected
        );
        assert_eq!(
            ExecError::InvalidSpec("x".into()).task_state(),
            TaskState::Rejected
        );
        assert_eq!(ExecError::Start("x".into()).task_state(), TaskState::Failed);
        assert_eq!(ExecError::Wait("x".into()).task_state(), TaskState::Failed);
    }

    #[test]
    fn task_image_requires_a_container_image() {
        let mut task = Task {
            id: "t1".into(),
            ..Default::default()
        };
        assert!(matches!(task_image(&task), Err(ExecError::InvalidSpec(_))));
        task.spec = Some(TaskSpec {
            container: Some(ContainerSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(task_image(&task).ok(), Some("busybox"));
    }
}
