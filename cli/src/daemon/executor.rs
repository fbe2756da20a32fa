//! Which runtime runs this node's tasks.

use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use rswarm_agent_runtime::container::Runtime;
use rswarm_agent_runtime::executor::ContainerExecutor;
use rswarm_agent_runtime::image::ImageStore;
use rswarm_agent_runtime::{BlobSink, Executor, ImageSource, NoRuntime, SourceError};
use rswarm_proto::api::Image;

/// The executors a node can be started with.
const NAMES: &str = "container, none or fake";

/// Checks an executor name before anything is created (init, join).
pub fn validate(name: &str) -> anyhow::Result<()> {
    match name {
        "container" => {
            if !nix::unistd::geteuid().is_root() {
                anyhow::bail!(
                    "the container executor needs root (namespaces, cgroups, mounts); run as root or pass --executor none"
                );
            }
            shim_path().map(|_| ())
        }
        "none" => Ok(()),
        #[cfg(feature = "fake-executor")]
        "fake" => Ok(()),
        #[cfg(not(feature = "fake-executor"))]
        "fake" => anyhow::bail!(
            "this rswarm was built without the fake executor (cargo feature fake-executor)"
        ),
        other => anyhow::bail!("unknown executor {other:?}: expected {NAMES}"),
    }
}

/// The `rswarm-shim` binary next to this executable.
fn shim_path() -> anyhow::Result<std::path::PathBuf> {
    let shim = Runtime::default_shim_path()?;
    if !shim.is_file() {
        anyhow::bail!(
            "the container shim {} is missing: it is built with the rest of rswarm (`cargo build --release --bins`)",
            shim.display()
        );
    }
    Ok(shim)
}

/// The executor named in the node record: `container` (real containers, the
/// default), `none` (tasks are refused with a reason), or `fake` (simulated tasks
/// whose behaviour follows their image name, see `fake_image`, for cluster tests;
/// only in builds with the `fake-executor` feature).
pub fn for_node(
    name: &str,
    runtime_dir: &Path,
    images: &Arc<ImageStore>,
    source: &Arc<LateSource>,
) -> anyhow::Result<NodeExecutor> {
    validate(name)?;
    match name {
        "container" => {
            let runtime = Arc::new(Runtime::new(runtime_dir, shim_path()?)?);
            let source: Arc<dyn ImageSource> = source.clone();
            Ok(NodeExecutor {
                executor: Arc::new(ContainerExecutor::new(
                    runtime.clone(),
                    images.clone(),
                    source,
                )),
                containers: Some(runtime),
            })
        }
        #[cfg(feature = "fake-executor")]
        "fake" => Ok(NodeExecutor {
            executor: Arc::new(super::fake_image::ByImage::new()),
            containers: None,
        }),
        _ => Ok(NodeExecutor {
            executor: Arc::new(NoRuntime),
            containers: None,
        }),
    }
}

/// The node's executor, and its container runtime when it runs containers (for
/// the volume API).
pub struct NodeExecutor {
    /// Runs the node's tasks.
    pub executor: Arc<dyn Executor>,
    /// The container runtime behind `executor`, if any.
    pub containers: Option<Arc<Runtime>>,
}

/// An [`ImageSource`] set once the node's session with the managers exists (the
/// executor outlives sessions: it is kept across role changes).
#[derive(Default)]
pub struct LateSource {
    current: RwLock<Option<Arc<dyn ImageSource>>>,
}

impl LateSource {
    /// Points the source at the current session's managers.
    pub fn set(&self, source: Arc<dyn ImageSource>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(source);
    }

    fn get(&self) -> Result<Arc<dyn ImageSource>, SourceError> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| SourceError::Unavailable("not connected to the managers yet".into()))
    }
}

#[async_trait]
impl ImageSource for LateSource {
    async fn resolve(&self, name: &str) -> Result<Image, SourceError> {
        self.get()?.resolve(name).await
    }

    async fn fetch_blob(&self, digest: &str, sink: BlobSink) -> Result<(), SourceError> {
        self.get()?.fetch_blob(digest, sink).await
    }
}
