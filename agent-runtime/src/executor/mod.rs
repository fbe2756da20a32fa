//! The real [`Executor`]: tasks run as containers of the [`container`](crate::container)
//! runtime, from images of the node's [`ImageStore`], fetched from the cluster
//! through an [`ImageSource`] when missing.
//!
//! - [`spec`]: a task's container configuration (pure: Docker's rules).
//! - [`users`]: user and group names looked up in the image.
//! - [`logs`]: reading the shim's log files as log lines.
//! - `controller`: the per-task [`Controller`].

mod controller;
pub mod logs;
pub mod spec;
#[cfg(test)]
mod tests;
pub mod users;

use std::path::PathBuf;
use std::sync::Arc;

use rswarm_proto::api::Task;

use crate::container::Runtime;
use crate::exec::{Controller, ExecError, Executor, LogLines, LogOptions, task_image};
use crate::idmap::IdMap;
use crate::image::ImageStore;
use crate::network::TaskNetwork;
use crate::network::tasks::{address_dir, recorded_tasks};
use crate::source::ImageSource;

/// How long the start-up cleanup waits for the node network to free the
/// addresses of tasks that no longer exist.
const CLEANUP_NETWORK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs a node's tasks as containers.
#[derive(Clone)]
pub struct ContainerExecutor {
    shared: Arc<Shared>,
}

/// What every controller of the executor uses.
pub(crate) struct Shared {
    /// The container runtime.
    pub runtime: Arc<Runtime>,
    /// The node's images.
    pub images: Arc<ImageStore>,
    /// Where missing images come from.
    pub source: Arc<dyn ImageSource>,
    /// The node's user namespace mapping (`--userns-remap`), if any.
    pub id_map: Option<IdMap>,
    /// The node's task network, when tasks get one.
    pub network: Option<NetworkHandle>,
}

/// The node's task network as the daemon learns it: `None` until the node knows
/// its subnet.
pub type NetworkHandle = tokio::sync::watch::Receiver<Option<Arc<TaskNetwork>>>;

impl ContainerExecutor {
    /// An executor running containers with `runtime` from images in `images`,
    /// fetching missing ones from `source`.
    pub fn new(
        runtime: Arc<Runtime>,
        images: Arc<ImageStore>,
        source: Arc<dyn ImageSource>,
    ) -> ContainerExecutor {
        ContainerExecutor {
            shared: Arc::new(Shared {
                runtime,
                images,
                source,
                id_map: None,
                network: None,
            }),
        }
    }

    /// The same executor running every container in a user namespace with
    /// `id_map` (`None`: without), as the node's `--userns-remap` says.
    pub fn with_id_map(self, id_map: Option<IdMap>) -> ContainerExecutor {
        ContainerExecutor {
            shared: Arc::new(Shared {
                runtime: self.shared.runtime.clone(),
                images: self.shared.images.clone(),
                source: self.shared.source.clone(),
                id_map,
                network: self.shared.network.clone(),
            }),
        }
    }

    /// The same executor giving each task an address and a namespace of its own
    /// on the node's task network, once `network` holds one.
    pub fn with_network(self, network: NetworkHandle) -> ContainerExecutor {
        ContainerExecutor {
            shared: Arc::new(Shared {
                runtime: self.shared.runtime.clone(),
                images: self.shared.images.clone(),
                source: self.shared.source.clone(),
                id_map: self.shared.id_map,
                network: Some(network),
            }),
        }
    }

    /// The container runtime (for cleanup at start and volume listings).
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.shared.runtime
    }
}

impl Executor for ContainerExecutor {
    fn controller(&self, task: &Task) -> Result<Box<dyn Controller>, ExecError> {
        task_image(task)?;
        crate::container::config::validate_id(&task.id).map_err(ExecError::InvalidSpec)?;
        Ok(Box::new(controller::ContainerController::new(
            task.clone(),
            self.shared.clone(),
        )))
    }

    fn cleanup(&self, keep: std::collections::HashSet<String>) {
        let runtime = self.shared.runtime.clone();
        let network = self.shared.network.clone();
        let stale: Vec<String> = recorded_tasks(&address_dir(runtime.root()))
            .into_iter()
            .filter(|id| !keep.contains(id))
            .collect();
        tokio::spawn(async move {
            match runtime.cleanup_orphans(&keep).await {
                Ok(removed) if !removed.is_empty() => {
                    tracing::info!(containers = ?removed, "removed containers of tasks that no longer exist");
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "cleaning up old containers failed"),
            }
            // Their containers are gone: free their addresses and namespaces too,
            // once the daemon knows the node network again. Only the tasks
            // recorded now: any attached later belongs to a live assignment.
            let (Some(mut network), false) = (network, stale.is_empty()) else {
                return;
            };
            let wait = async { network.wait_for(Option::is_some).await.map(|n| n.clone()) };
            let Ok(Ok(Some(net))) = tokio::time::timeout(CLEANUP_NETWORK_WAIT, wait).await else {
                tracing::warn!(tasks = ?stale, "the node network is unknown: old task addresses stay held");
                return;
            };
            for id in &stale {
                match net.detach(id).await {
                    Ok(()) => {
                        tracing::info!(task.id = %id, "freed the network of a task that no longer exists")
                    }
                    Err(err) => {
                        tracing::warn!(task.id = %id, error = %err, "cannot free an old task's network")
                    }
                }
            }
        });
    }

    fn logs(&self, task_id: &str, options: LogOptions) -> Result<LogLines, ExecError> {
        crate::container::config::validate_id(task_id).map_err(ExecError::Logs)?;
        let dir: PathBuf = self.shared.runtime.log_dir(task_id);
        if !dir.is_dir() {
            return Err(ExecError::Logs(format!(
                "task {task_id} has no logs on this node (its container was removed)"
            )));
        }
        let exit_file = self
            .shared
            .runtime
            .container_dir(task_id)
            .join(crate::container::state::EXIT_FILE);
        let container_dir = self.shared.runtime.container_dir(task_id);
        // Following ends once the container has exited (its shim wrote exit.json)
        // or was removed, after the last lines are read.
        Ok(logs::read(dir, options, move || {
            exit_file.exists() || !container_dir.exists()
        }))
    }
}
