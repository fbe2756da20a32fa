//! One task's container through its life.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rswarm_proto::api::Task;
use rswarm_proto::validate::normalize_image_name;
use tracing::{debug, info, warn};

use super::Shared;
use super::spec::{Inputs, container_config, exit_status, task_resolv_conf};
use crate::cgroup::Limits;
use crate::container::{ContainerError, ContainerState, NetworkMode};
use crate::exec::{Controller, ExecError, ExitStatus, task_image};
use crate::image::{Digest, Image, ImageError};
use crate::network::TaskNetwork;
use crate::source::{BlobSink, SourceError};

/// How long `prepare` waits for the daemon to learn the node's task network.
const NETWORK_WAIT: Duration = Duration::from_secs(10);

/// The controller of one task; its container's id is the task id.
pub(crate) struct ContainerController {
    task: Task,
    shared: Arc<Shared>,
}

impl ContainerController {
    pub(crate) fn new(task: Task, shared: Arc<Shared>) -> Self {
        ContainerController { task, shared }
    }

    fn id(&self) -> &str {
        &self.task.id
    }

    /// The image, from the node's store, after fetching what is missing from the
    /// cluster. The cluster's record wins over a local name (a re-import moves it).
    async fn image(&self) -> Result<Image, ExecError> {
        let reference = task_image(&self.task)?.to_string();
        let name =
            normalize_image_name(&reference).map_err(|e| ExecError::InvalidSpec(e.to_string()))?;
        let record = match self.shared.source.resolve(&name).await {
            Ok(record) => Some(record),
            Err(SourceError::NotFound(_)) => None,
            Err(SourceError::Unavailable(why)) => {
                debug!(task = %self.id(), %why, "cannot ask the managers; trying the local store");
                return self.local_image(&name, &reference).await;
            }
        };
        let Some(record) = record else {
            return Err(ExecError::ImageNotFound { image: reference });
        };
        for blob in &record.blobs {
            let digest: Digest = blob
                .digest
                .parse()
                .map_err(|e| ExecError::Prepare(format!("bad digest {}: {e}", blob.digest)))?;
            if self.shared.images.has_blob(&digest) {
                continue;
            }
            let images = self.shared.images.clone();
            let target = digest.clone();
            let sink: BlobSink = Arc::new(move |reader| {
                images
                    .write_blob(&target, reader)
                    .map_err(|e| e.to_string())
            });
            self.shared
                .source
                .fetch_blob(&blob.digest, sink)
                .await
                .map_err(|e| ExecError::Prepare(format!("fetching image {reference}: {e}")))?;
        }
        let id: Digest = record
            .id
            .parse()
            .map_err(|e| ExecError::Prepare(format!("bad image id {}: {e}", record.id)))?;
        let images = self.shared.images.clone();
        blocking(move || images.add_image(&name, &id))
            .await?
            .map_err(|e| ExecError::Prepare(format!("image {reference}: {e}")))
    }

    async fn local_image(&self, name: &str, reference: &str) -> Result<Image, ExecError> {
        let images = self.shared.images.clone();
        let name = name.to_string();
        match blocking(move || images.resolve(&name)).await? {
            Ok(Some(image)) => Ok(image),
            Ok(None) | Err(ImageError::NotFound(_)) => Err(ExecError::ImageNotFound {
                image: reference.to_string(),
            }),
            Err(err) => Err(ExecError::Prepare(format!("image {reference}: {err}"))),
        }
    }

    /// The node's task network, waiting a moment for the daemon to learn it;
    /// `None` when the node gives tasks no network or still has none.
    async fn network(&self) -> Option<Arc<TaskNetwork>> {
        let mut rx = self.shared.network.clone()?;
        let ready = tokio::time::timeout(NETWORK_WAIT, rx.wait_for(Option::is_some)).await;
        match ready {
            Ok(Ok(net)) => net.clone(),
            _ => {
                warn!(task = %self.id(), "the node has no task network yet: the task gets none");
                None
            }
        }
    }

    /// The node's task network if it is known now.
    fn network_now(&self) -> Option<Arc<TaskNetwork>> {
        self.shared.network.as_ref()?.borrow().clone()
    }

    /// The limits the container was created with (for the OOM message).
    fn limits(&self) -> Limits {
        let path = self
            .shared
            .runtime
            .container_dir(self.id())
            .join(crate::container::CONFIG_FILE);
        crate::container::state::read_json::<crate::container::ContainerConfig>(&path)
            .ok()
            .flatten()
            .map(|config| config.limits)
            .unwrap_or_default()
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ExecError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ExecError::Prepare(format!("blocking task failed: {e}")))
}

fn exec_err(make: fn(String) -> ExecError) -> impl Fn(ContainerError) -> ExecError {
    move |err| make(err.to_string())
}

#[async_trait]
impl Controller for ContainerController {
    async fn prepare(&self) -> Result<(), ExecError> {
        match self.shared.runtime.state(self.id()).await {
            Ok(_) => return Ok(()), // created before (a repeated call or a daemon restart)
            Err(ContainerError::NotFound { .. }) => {}
            Err(err) => return Err(ExecError::Prepare(err.to_string())),
        }
        let image = self.image().await?;
        let images = self.shared.images.clone();
        let layers_of = image.clone();
        let id_map = self.shared.id_map;
        let lower_dirs = blocking(move || images.lower_dirs_mapped(&layers_of, id_map.as_ref()))
            .await?
            .map_err(|e| ExecError::Prepare(e.to_string()))?;
        let run = image.run_config();
        let runtime = self.shared.runtime.clone();
        let volume_dir = move |name: &str| {
            runtime
                .volume_dir_for(name, id_map.as_ref())
                .map_err(|e| e.to_string())
        };
        let reference = task_image(&self.task)?;
        let mut config = container_config(
            &self.task,
            Inputs {
                image: reference,
                run: &run,
                lower_dirs,
                volume_dir: &volume_dir,
                id_map,
            },
        )?;
        let network = self.network().await;
        if let Some(net) = &network {
            let gateway = net
                .network()
                .config()
                .gateway()
                .map_err(|e| ExecError::Prepare(format!("task network: {e}")))?;
            config.resolv_conf = task_resolv_conf(gateway.addr());
            let (_, path) = net
                .attach(self.id())
                .await
                .map_err(|e| ExecError::Prepare(format!("task network: {e}")))?;
            config.network = NetworkMode::Join { path };
        }
        if let Err(err) = self.shared.runtime.create(&config).await {
            if let Some(net) = &network
                && let Err(detach) = net.detach(self.id()).await
            {
                warn!(task = %self.id(), error = %detach, "cannot free the task's network");
            }
            return Err(ExecError::Prepare(err.to_string()));
        }
        info!(task = %self.id(), image = %reference, "container created");
        Ok(())
    }

    async fn address(&self) -> String {
        self.network_now()
            .and_then(|net| net.address(self.id()))
            .map(|a| a.to_string())
            .unwrap_or_default()
    }

    async fn start(&self) -> Result<(), ExecError> {
        let pid = self
            .shared
            .runtime
            .start(self.id())
            .await
            .map_err(exec_err(ExecError::Start))?;
        debug!(task = %self.id(), pid, "container started");
        Ok(())
    }

    async fn wait(&self) -> Result<ExitStatus, ExecError> {
        let exit = self
            .shared
            .runtime
            .wait(self.id())
            .await
            .map_err(exec_err(ExecError::Wait))?;
        Ok(exit_status(&exit, &self.limits()))
    }

    async fn shutdown(&self, grace: Duration) -> Result<(), ExecError> {
        match self.shared.runtime.state(self.id()).await {
            Ok(ContainerState::Running { .. }) => {}
            Ok(_) | Err(ContainerError::NotFound { .. }) => return Ok(()),
            Err(err) => return Err(ExecError::Stop(err.to_string())),
        }
        self.shared
            .runtime
            .stop(self.id(), grace)
            .await
            .map(|_| ())
            .map_err(exec_err(ExecError::Stop))
    }

    async fn terminate(&self) -> Result<(), ExecError> {
        self.shutdown(Duration::ZERO).await
    }

    async fn remove(&self) -> Result<(), ExecError> {
        self.shared
            .runtime
            .remove(self.id())
            .await
            .map_err(exec_err(ExecError::Remove))?;
        if let Some(net) = self.network_now() {
            net.detach(self.id())
                .await
                .map_err(|e| ExecError::Remove(format!("task network: {e}")))?;
        }
        debug!(task = %self.id(), "container removed");
        Ok(())
    }
}
