//! The task manager against the fake executor, with tokio time paused so that
//! timers fire as soon as every runner is idle.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rswarm_agent_runtime::ExitStatus;
use rswarm_agent_runtime::fake::{
    FakeBehavior, FakeExecutor, FakeOp, FakeState, STOPPED_EXIT_CODE,
};
use rswarm_proto::api::{ContainerSpec, Task, TaskSpec, TaskState, TaskStatus};
use tokio::sync::mpsc;

use super::*;

fn task(id: &str, image: &str) -> Task {
    Task {
        id: id.into(),
        service_id: "svc".into(),
        spec: Some(TaskSpec {
            container: Some(ContainerSpec {
                image: image.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        desired_state: TaskState::Running as i32,
        status: Some(TaskStatus {
            state: TaskState::Assigned as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn with_desired(mut task: Task, desired: TaskState) -> Task {
    task.desired_state = desired as i32;
    task
}

fn with_status(mut task: Task, state: TaskState) -> Task {
    task.status = Some(TaskStatus {
        state: state as i32,
        timestamp: 1,
        ..Default::default()
    });
    task
}

fn manager(fake: &FakeExecutor) -> (TaskManager, Reports) {
    let (manager, rx) = TaskManager::new(Arc::new(fake.clone()));
    (manager, Reports::new(rx))
}

/// Collects the reports and checks, as each arrives, that a task's reports only
/// move forward and their timestamps never go back.
struct Reports {
    rx: mpsc::UnboundedReceiver<StatusUpdate>,
    seen: HashMap<String, Vec<TaskStatus>>,
}

impl Reports {
    fn new(rx: mpsc::UnboundedReceiver<StatusUpdate>) -> Reports {
        Reports {
            rx,
            seen: HashMap::new(),
        }
    }

    fn record(&mut self, update: StatusUpdate) {
        let history = self.seen.entry(update.task_id.clone()).or_default();
        if let Some(last) = history.last() {
            assert!(
                update.status.state > last.state,
                "{}: {last:?} then {:?}",
                update.task_id,
                update.status
            );
            assert!(update.status.timestamp >= last.timestamp);
        }
        assert!(update.status.timestamp > 0);
        history.push(update.status);
    }

    /// Waits until `task_id` is reported at `state` or past it.
    async fn until(&mut self, task_id: &str, state: TaskState) -> TaskStatus {
        loop {
            let last = self.seen.get(task_id).and_then(|h| h.last());
            if let Some(last) = last.filter(|l| l.state >= state as i32) {
                return last.clone();
            }
            let next = tokio::time::timeout(Duration::from_secs(600), self.rx.recv()).await;
            match next {
                Ok(Some(update)) => self.record(update),
                other => panic!(
                    "{task_id} never reached {state:?}: {other:?}, saw {:?}",
                    self.states(task_id)
                ),
            }
        }
    }

    /// Lets every runner settle, then takes whatever was reported meanwhile.
    async fn settle(&mut self) -> usize {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let mut count = 0;
        while let Ok(update) = self.rx.try_recv() {
            self.record(update);
            count += 1;
        }
        count
    }

    fn states(&self, task_id: &str) -> Vec<TaskState> {
        let history = self.seen.get(task_id).into_iter().flatten();
        history
            .map(|s| TaskState::try_from(s.state).unwrap())
            .collect()
    }
}

/// The session shares the manager across its tasks.
#[test]
fn the_manager_can_be_shared() {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<TaskManager>();
    shared::<StatusBatcher>();
}

const TO_RUNNING: [TaskState; 5] = [
    TaskState::Accepted,
    TaskState::Preparing,
    TaskState::Ready,
    TaskState::Starting,
    TaskState::Running,
];

fn then(last: &[TaskState]) -> Vec<TaskState> {
    TO_RUNNING.iter().chain(last).copied().collect()
}

mod assignments;
mod lifecycle;
