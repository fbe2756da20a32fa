//! The executor of a node that has no container runtime: every task is refused
//! (REJECTED, with a message that says why), so that the managers' view stays true
//! to what runs. It is the default until the container runtime is built in.

use rswarm_proto::api::Task;

use crate::exec::{Controller, ExecError, Executor};

/// Refuses every task.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoRuntime;

impl Executor for NoRuntime {
    fn controller(&self, _task: &Task) -> Result<Box<dyn Controller>, ExecError> {
        Err(ExecError::Prepare(
            "this node has no container runtime to run tasks with".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use rswarm_proto::api::TaskState;

    use super::*;

    #[test]
    fn every_task_is_rejected_with_a_reason() {
        let err = NoRuntime.controller(&Task::default()).err().unwrap();
        assert_eq!(err.task_state(), TaskState::Rejected);
        assert!(err.to_string().contains("no container runtime"));
    }
}
