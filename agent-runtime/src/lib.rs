//! rswarm container runtime, behind the Executor/Controller seam.
//!
//! # Layout
//! - [`exec`]: the seam itself: [`Executor`] hands out a [`Controller`] per task,
//!   whose idempotent operations the worker's task runner drives; [`ExecError`]
//!   says which task state a failure leads to.
//! - [`source`]: where a node gets images: the [`ImageSource`] the worker
//!   implements over the managers' image service.
//! - [`image`]: the node's image store: verified blobs, image import (rootfs
//!   tarball, `docker save`, OCI layout), layers unpacked once for overlayfs, and
//!   the image config turned into the process to run.
//! - [`executor`]: the real executor: tasks as containers, images fetched from the
//!   cluster, Docker's rules for command, env and user, logs.
//! - [`container`]: the container runtime: configuration, mount plan, the
//!   `rswarm-shim` process model (survives daemon restarts), stop, remove, volumes.
//! - [`idmap`]: user namespace remapping (`--userns-remap`): the node's id
//!   mapping, its parsing and the `/proc/<pid>/*_map` writes.
//! - [`cgroup`]: per-container cgroups on v1, v2 and hybrid hosts.
//! - [`none`]: the executor of a node without a container runtime: refuses tasks.
//! - `fake` (feature `test-util`): a fake executor on tokio timers with per-image
//!   knobs and a record of every call, for worker and cluster tests.
//! - `testing` (feature `test-util`): the test image's root filesystem, built
//!   around the `rswarm-testimg` program of this crate (nothing downloaded).
#![forbid(unsafe_code)]

pub mod cgroup;
pub mod container;
pub mod exec;
pub mod executor;
#[cfg(any(test, feature = "test-util"))]
pub mod fake;
pub mod idmap;
pub mod image;
pub mod network;
pub mod none;
pub mod source;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

pub use exec::{Controller, ExecError, Executor, ExitStatus, LogLine, LogLines, LogOptions};
pub use none::NoRuntime;
pub use source::{BlobSink, ImageSource, SourceError};
