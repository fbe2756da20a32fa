//! Which runtime runs this node's tasks.

use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use anyhow::Context as _;
use async_trait::async_trait;
use rswarm_agent_runtime::container::Runtime;
use rswarm_agent_runtime::executor::ContainerExecutor;
use rswarm_agent_runtime::idmap::IdMap;
use rswarm_agent_runtime::image::ImageStore;
use rswarm_agent_runtime::{BlobSink, Executor, ImageSource, NoRuntime, SourceError};
use rswarm_proto::api::Image;

use super::state::NodeRecord;
use crate::args::NodeArgs;

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

/// The node's user namespace mapping from `--userns-remap` (checked before
/// anything is created): `None` when absent; only with the container executor.
pub fn userns_remap(args: &NodeArgs) -> anyhow::Result<Option<IdMap>> {
    let Some(value) = &args.userns_remap else {
        return Ok(None);
    };
    if args.executor != "container" {
        anyhow::bail!(
            "--userns-remap needs the container executor (this node uses --executor {})",
            args.executor
        );
    }
    Ok(Some(IdMap::resolve(value)?))
}

/// The executor named in the node record: `container` (real containers, the
/// default), `none` (tasks are refused with a reason), or `fake` (simulated tasks
/// whose behaviour follows their image name, see `fake_image`, for cluster tests;
/// only in builds with the `fake-executor` feature). Containers run in a user
/// namespace when the record has a mapping.
pub fn for_node(
    record: &NodeRecord,
    runtime_dir: &Path,
    images: &Arc<ImageStore>,
    source: &Arc<LateSource>,
) -> anyhow::Result<NodeExecutor> {
    let name = record.executor.as_str();
    validate(name)?;
    let id_map: Option<IdMap> = record
        .userns_remap
        .as_deref()
        .map(str::parse)
        .transpose()
        .context("the node record's userns_remap")?;
    match name {
        "container" => {
            let runtime = Arc::new(Runtime::new(runtime_dir, shim_path()?)?);
            let source: Arc<dyn ImageSource> = source.clone();
            if let Some(map) = &id_map {
                tracing::info!(map = %map, "containers run in user namespaces");
            }
            let (network, network_rx) = tokio::sync::watch::channel(None);
            Ok(NodeExecutor {
                executor: Arc::new(
                    ContainerExecutor::new(runtime.clone(), images.clone(), source)
                        .with_id_map(id_map)
                        .with_network(network_rx),
                ),
                containers: Some(runtime),
                network: Some(network),
            })
        }
        #[cfg(feature = "fake-executor")]
        "fake" => Ok(NodeExecutor {
            executor: Arc::new(super::fake_image::ByImage::new()),
            containers: None,
            network: None,
        }),
        _ => Ok(NodeExecutor {
            executor: Arc::new(NoRuntime),
            containers: None,
            network: None,
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
    /// Where the node's task network is published for `executor` (containers
    /// only).
    pub network: Option<super::network::NetworkSender>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn node(args: &[&str]) -> NodeArgs {
        let mut argv = vec!["rswarm", "init"];
        argv.extend_from_slice(args);
        match crate::args::Cli::try_parse_from(argv).unwrap().command {
            crate::args::Command::Init(init) => init.node,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn userns_remap_is_checked_before_the_node_is_created() {
        assert_eq!(userns_remap(&node(&[])).unwrap(), None);
        let map = userns_remap(&node(&["--userns-remap", "200000:300000:65536"]))
            .unwrap()
            .unwrap();
        assert_eq!(map.to_string(), "200000:300000:65536");
        let default = userns_remap(&node(&["--userns-remap", "default"]))
            .unwrap()
            .unwrap();
        assert!(default.host_uid > 0 && default.size > 0);
        let err = userns_remap(&node(&["--userns-remap", "0:0:65536"])).unwrap_err();
        assert!(err.to_string().contains("host's root"), "{err}");
        let err = userns_remap(&node(&["--userns-remap", "lots"])).unwrap_err();
        assert!(err.to_string().contains("UID:GID:SIZE"), "{err}");
        let err =
            userns_remap(&node(&["--executor", "none", "--userns-remap", "default"])).unwrap_err();
        assert!(err.to_string().contains("container executor"), "{err}");
    }
}
