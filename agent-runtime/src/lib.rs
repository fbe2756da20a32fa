//! rswarm container runtime, behind the Executor/Controller seam.
//!
//! # Layout
//! - [`exec`]: the seam itself: [`Executor`] hands out a [`Controller`] per task,
//!   whose idempotent operations the worker's task runner drives; [`ExecError`]
//!   says which task state a failure leads to.
//! - [`none`]: the executor of a node without a container runtime: refuses tasks.
//! - `fake` (feature `test-util`): a fake executor on tokio timers with per-image
//!   knobs and a record of every call, for worker and cluster tests.
#![forbid(unsafe_code)]

pub mod cgroup;
pub mod container;
pub mod exec;
#[cfg(any(test, feature = "test-util"))]
pub mod fake;
pub mod none;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

pub use exec::{Controller, ExecError, Executor, ExitStatus};
pub use none::NoRuntime;
