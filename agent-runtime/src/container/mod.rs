//! Containers: the configuration, the per-container shim process and the
//! daemon-side [`Runtime`].
//!
//! # Layout
//! - [`config`]: [`ContainerConfig`], stored as `config.json`.
//! - [`caps`]: capability names, Docker's default set, add/drop.
//! - [`mounts`]: the mount plan (pure) and its execution through [`mounts::Mounter`].
//! - [`shim`] (stage 1) and [`init`] (stage 2): what `rswarm-shim` runs.
//! - [`log`]: the container log with rotation; [`state`]: `state.json`/`exit.json`.
//! - [`net`]: bringing loopback up over rtnetlink.
//! - [`runtime`]: [`Runtime`], the async API the daemon calls.

pub mod caps;
pub mod config;
pub mod init;
pub mod log;
pub mod mounts;
pub mod net;
pub mod runtime;
pub mod shim;
pub mod state;
mod trash;
pub mod volumes;

use std::path::PathBuf;
use std::str::FromStr;

use nix::sys::signal::Signal;

pub use config::{ContainerConfig, LogConfig, MountSpec, NetworkMode, ProcessSpec};
pub use runtime::{ContainerState, Runtime};
pub use state::ExitInfo;
pub use volumes::VolumeInfo;

/// The container's configuration in its directory.
pub const CONFIG_FILE: &str = "config.json";
/// The container's cgroup directories in its directory.
pub const CGROUP_FILE: &str = "cgroup.json";

/// Why a container operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The configuration (or an id) is invalid; the message says what.
    #[error("invalid container config: {0}")]
    InvalidConfig(String),
    /// No container with this id exists.
    #[error("container {id} not found")]
    NotFound {
        /// The container id.
        id: String,
    },
    /// A container with this id exists with another configuration.
    #[error("container {id} already exists with another config")]
    AlreadyExists {
        /// The container id.
        id: String,
    },
    /// The container was never started, so there is nothing to wait for.
    #[error("container {id} was not started")]
    NotStarted {
        /// The container id.
        id: String,
    },
    /// The container could not be started.
    #[error("start container {id}: {message}")]
    Start {
        /// The container id.
        id: String,
        /// What the shim reported.
        message: String,
    },
    /// A volume is still mounted by containers of this node.
    #[error("volume {name} is in use by container(s) {users}")]
    VolumeInUse {
        /// The volume.
        name: String,
        /// The containers mounting it, comma-separated.
        users: String,
    },
    /// The shim vanished without recording how the container exited.
    #[error("the shim of container {id} is gone without recording an exit")]
    ShimLost {
        /// The container id.
        id: String,
    },
    /// Something did not happen in time.
    #[error("container {id}: timed out waiting for {what}")]
    Timeout {
        /// The container id.
        id: String,
        /// What was awaited.
        what: &'static str,
    },
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A cgroup operation failed.
    #[error(transparent)]
    Cgroup(#[from] crate::cgroup::CgroupError),
    /// A blocking task panicked or was cancelled.
    #[error("runtime task failed: {0}")]
    Task(String),
}

/// Parses a signal given as `SIGTERM`, `TERM` or a number.
pub fn signal_from_name(name: &str) -> Result<Signal, String> {
    let name = name.trim();
    if let Ok(n) = name.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("unknown signal number {n}"));
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&full).map_err(|_| format!("unknown signal {name:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_short_name_and_number() {
        assert_eq!(signal_from_name("SIGTERM").unwrap(), Signal::SIGTERM);
        assert_eq!(signal_from_name("quit").unwrap(), Signal::SIGQUIT);
        assert_eq!(signal_from_name("9").unwrap(), Signal::SIGKILL);
        assert!(signal_from_name("SIGNOPE").unwrap_err().contains("SIGNOPE"));
    }
}
