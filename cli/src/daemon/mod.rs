//! The node daemon behind `rswarm init`, `rswarm join` and `rswarm daemon`.
//!
//! # Layout
//! - [`state`]: the data dir and the node record that lets `rswarm daemon` restart it.
//! - [`system`]: hostname, capacity and the address to advertise.
//! - [`bootstrap`]: creating a cluster (`init`) and joining one (`join`).
//! - [`serve`]: running a manager or a worker until SIGTERM or a role change.
//! - [`executor`]: which runtime runs this node's tasks.
//! - [`images`]: the node's image store behind the managers' image service.
//! - `mesh`: the leader's endpoint table served by the node's proxy.
//! - `fake_image` (feature `fake-executor`): fake task behaviours by image name.
//! - [`roles`]: switching role in place after `node promote` / `node demote`.

mod bootstrap;
mod executor;
#[cfg(any(test, feature = "fake-executor"))]
mod fake_image;
mod images;
mod mesh;
mod network;
mod roles;
mod serve;
mod state;
mod system;

use std::sync::Arc;

use anyhow::Context as _;
use rswarm_agent_runtime::image::ImageStore;
use rswarm_manager::raft::RaftNode;
use rswarm_proto::tls::Identity;
use tokio_util::sync::CancellationToken;

use crate::args::{DaemonArgs, InitArgs, JoinArgs};
use serve::{Exit, Start};
use state::{DataDir, NodeRecord};

/// Creates a cluster with this node as its first manager, then runs the node.
pub async fn init(args: InitArgs) -> anyhow::Result<()> {
    let dir = DataDir::new(&args.node.data_dir);
    dir.ensure_free()?;
    executor::validate(&args.node.executor)?;
    executor::userns_remap(&args.node)?;
    let engine = mesh::engine_from_env()?;
    let (record, identity, raft) = match bootstrap::init(&dir, &args).await {
        Ok(started) => started,
        Err(err) => {
            dir.discard_partial();
            return Err(err);
        }
    };
    run_node(dir, record, identity, Some(raft), Start::Init, engine).await
}

/// Joins an existing cluster through `manager_addr`, then runs the node.
pub async fn join(args: JoinArgs) -> anyhow::Result<()> {
    let dir = DataDir::new(&args.node.data_dir);
    dir.ensure_free()?;
    executor::validate(&args.node.executor)?;
    executor::userns_remap(&args.node)?;
    let engine = mesh::engine_from_env()?;
    let result = match bootstrap::join(&dir, &args).await {
        Ok(bootstrap::Joined::Worker(record, identity)) => {
            run_node(dir.clone(), record, identity, None, Start::Restart, engine).await
        }
        Ok(bootstrap::Joined::Manager(record, identity, raft)) => {
            run_node(
                dir.clone(),
                record,
                identity,
                Some(raft),
                Start::Join,
                engine,
            )
            .await
        }
        Err(err) => Err(err),
    };
    // A node that never completed its join has no record: leave nothing behind.
    if result.is_err() && !dir.holds_node() {
        dir.discard_partial();
    }
    result
}

/// Runs an already initialised or joined node from its data directory.
pub async fn run(args: DaemonArgs) -> anyhow::Result<()> {
    let engine = mesh::engine_from_env()?;
    let dir = DataDir::new(&args.data_dir);
    let record = dir.load()?;
    let identity = Identity::load(&dir.certs()).with_context(|| {
        format!(
            "cannot load the node's certificate from {}",
            dir.root.display()
        )
    })?;
    run_node(dir, record, identity, None, Start::Restart, engine).await
}

/// Runs the node in its role until SIGTERM/SIGINT, switching role in place when
/// the managers ask for it.
async fn run_node(
    dir: DataDir,
    mut record: NodeRecord,
    mut identity: Identity,
    mut raft: Option<RaftNode>,
    mut start: Start,
    proxy_engine: rswarm_worker::proxy::Engine,
) -> anyhow::Result<()> {
    let stop = CancellationToken::new();
    serve::on_signal(stop.clone())?;
    // Kept across role changes: what runs on this node does not depend on its role.
    let images =
        Arc::new(ImageStore::open(dir.images()).with_context(|| {
            format!("cannot open the image store in {}", dir.images().display())
        })?);
    let source = Arc::new(executor::LateSource::default());
    let node_executor = executor::for_node(&record, &dir.runtime(), &images, &source)?;
    let executor = node_executor.executor;
    let containers = node_executor.containers;
    let network = node_executor.network;
    loop {
        let exit = if record.is_manager() {
            let member = match raft.take() {
                Some(r) => r,
                None => bootstrap::open_raft(&dir, &record, &identity).await?,
            };
            let local = serve::Local {
                executor: &executor,
                images: &images,
                source: &source,
                containers: &containers,
                network: &network,
                proxy_engine,
            };
            serve::manager(&dir, &record, &identity, member, start, &stop, local).await?
        } else {
            let local = serve::Local {
                executor: &executor,
                images: &images,
                source: &source,
                containers: &containers,
                network: &network,
                proxy_engine,
            };
            serve::worker(&dir, &record, &identity, &stop, local).await?
        };
        if exit == Exit::Stopped {
            return Ok(());
        }
        (record, identity, start) = roles::change(&dir, record, identity, &stop).await?;
    }
}
