//! Running a node until SIGTERM/SIGINT: its servers, its dispatcher session, and a
//! clean stop (servers drained, Raft shut down, the socket removed).

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use rswarm_agent_runtime::Executor;
use rswarm_agent_runtime::container::Runtime;
use rswarm_agent_runtime::image::ImageStore;
use rswarm_manager::images::Connector;
use rswarm_manager::node::{Manager, ManagerSetup};
use rswarm_manager::raft::RaftNode;
use rswarm_proto::api::control_server::ControlServer;
use rswarm_proto::api::volumes_server::VolumesServer;
use rswarm_proto::tls::{Identity, node_channel, server_tls_config};
use rswarm_worker::control::WorkerControl;
use rswarm_worker::dispatch;
use rswarm_worker::images::ManagerImages;
use rswarm_worker::session::{ManagerList, Session, SessionState};
use rswarm_worker::tasks::TaskManager;
use rswarm_worker::volumes::VolumeService;
use tokio::net::UnixListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tracing::{error, info, warn};

use super::bootstrap;
use super::executor::LateSource;
use super::images::StoreBackend;
use super::network::NetworkSender;
use super::state::{DataDir, NodeRecord};
use super::system;

/// The node's heartbeat period towards the dispatcher.
const NODE_HEARTBEAT: Duration = Duration::from_secs(1);

/// How a manager comes up.
pub enum Start {
    /// Created the cluster: print the join commands once serving.
    Init,
    /// Certified by the cluster: ask to become a Raft voter, then save the record.
    Join,
    /// Restarted from its data dir.
    Restart,
}

/// Why a node's run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM/SIGINT: the daemon stops.
    Stopped,
    /// The managers want this node in the other role (`node promote` / `demote`).
    ChangeRole,
}

/// Cancels `token` on SIGTERM or SIGINT.
pub fn on_signal(token: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: stopping"),
            _ = int.recv() => info!("SIGINT: stopping"),
        }
        token.cancel();
    });
    Ok(())
}

/// Binds the control socket, private to root (mode 0600).
fn bind_socket(dir: &DataDir) -> anyhow::Result<UnixListener> {
    let path = dir.socket();
    // A socket left by a killed daemon refuses connections; replace it.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("cannot bind the control socket {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))?;
    Ok(listener)
}

/// Starts the dispatcher session and persists the managers' addresses it learns,
/// so that a node restarted after a manager change still finds the cluster.
fn start_session(
    dir: &DataDir,
    record: &NodeRecord,
    identity: &Identity,
    managers: ManagerList,
    shutdown: CancellationToken,
    role_change: CancellationToken,
    local: &Local<'_>,
) -> JoinHandle<()> {
    let executor = local.executor;
    let (mut session, mut states) = Session::new(
        identity.clone(),
        record.advertise.to_string(),
        system::describe(&record.hostname),
        managers.clone(),
    );
    local.source.set(Arc::new(ManagerImages::new(
        identity.clone(),
        managers,
        session.leader(),
    )));
    // Tasks: assignments from the leader drive the runners; their reports go back.
    let (tasks, reports) = TaskManager::new(executor.clone());
    tokio::spawn(dispatch::assignments(
        identity.clone(),
        session.leader(),
        tasks,
        shutdown.clone(),
    ));
    tokio::spawn(dispatch::report(
        identity.clone(),
        session.leader(),
        dispatch::batcher(reports),
        shutdown.clone(),
    ));
    tokio::spawn(rswarm_worker::logs::serve(
        identity.clone(),
        session.leader(),
        executor.clone(),
        shutdown.clone(),
    ));
    if let Some(network) = local.network {
        tokio::spawn(super::network::follow(
            states.clone(),
            record.advertise.ip(),
            rswarm_agent_runtime::network::tasks::address_dir(&dir.runtime()),
            network.clone(),
        ));
        // Tasks have addresses only with a task network: only then can the
        // node's proxy reach them.
        let proxy = super::mesh::start(
            identity.clone(),
            record.node_id.clone(),
            record.listen.port(),
            local.proxy_engine,
            session.leader(),
            network.subscribe(),
            shutdown.clone(),
        );
        session.report_port_errors(proxy);
    }
    let session = tokio::spawn(session.run(shutdown.clone()));
    let dir = dir.clone();
    let mut saved = record.clone();
    let role = record.role.clone();
    tokio::spawn(async move {
        while states.changed().await.is_ok() {
            let Some(SessionState {
                managers,
                desired_role,
                ..
            }) = states.borrow_and_update().clone()
            else {
                continue;
            };
            let wanted = if desired_role == rswarm_proto::api::NodeRole::Manager {
                "manager"
            } else {
                "worker"
            };
            if wanted != role && !role_change.is_cancelled() {
                info!(role, wanted, "the managers ask this node to change role");
                role_change.cancel();
            }
            if !managers.is_empty() && managers != saved.manager_addrs {
                saved.manager_addrs = managers;
                if let Err(err) = dir.save(&saved) {
                    warn!(%err, "cannot record the managers' addresses");
                }
            }
        }
    });
    session
}

/// What runs on this node whatever its role.
pub struct Local<'a> {
    /// Runs the node's tasks.
    pub executor: &'a Arc<dyn Executor>,
    /// The node's image store.
    pub images: &'a Arc<ImageStore>,
    /// Where the executor gets missing images: set to this session's managers.
    pub source: &'a Arc<LateSource>,
    /// The container runtime, when the node runs containers.
    pub containers: &'a Option<Arc<Runtime>>,
    /// Where the node's task network is published, when tasks get one.
    pub network: &'a Option<NetworkSender>,
    /// The I/O the node's proxy relays with.
    pub proxy_engine: rswarm_worker::proxy::Engine,
}

impl Local<'_> {
    /// The node's volume API, served on its local socket when it runs containers.
    fn volume_service(&self) -> Option<VolumesServer<VolumeService>> {
        self.containers
            .as_ref()
            .map(|runtime| VolumesServer::new(VolumeService::new(runtime.clone())))
    }
}

/// Runs a manager.
pub async fn manager(
    dir: &DataDir,
    record: &NodeRecord,
    identity: &Identity,
    raft: RaftNode,
    start: Start,
    stop: &CancellationToken,
    local: Local<'_>,
) -> anyhow::Result<Exit> {
    let mut record = record.clone();
    // Servers stop on SIGTERM and on a role change; the latter keeps the daemon.
    let shutdown = stop.child_token();
    let role_change = CancellationToken::new();
    let connect_identity = identity.clone();
    let connect: Connector = Arc::new(move |addr: &str| {
        node_channel(addr, &connect_identity).map_err(|e| format!("{addr}: {e}"))
    });
    let manager = Manager::with_setup(
        raft.clone(),
        Some(ManagerSetup {
            node_id: record.node_id.clone(),
            connect,
            images: Some(Arc::new(StoreBackend::new(
                local.images.clone(),
                dir.runtime().join("uploads"),
            ))),
        }),
    );
    // Beside the VIP listeners of the node's proxy on the same port.
    let tcp = rswarm_worker::sockets::listen_daemon(record.listen)
        .with_context(|| format!("cannot listen on {}", record.listen))?;
    let tls = server_tls_config(identity)?;
    let tcp_server = manager
        .tcp_router(
            Server::builder().tls_config(tls)?,
            NODE_HEARTBEAT,
            shutdown.clone(),
        )
        // Without TCP_NODELAY, small gRPC frames wait for delayed ACKs (~40 ms).
        .serve_with_incoming_shutdown(
            TcpIncoming::from(tcp).with_nodelay(Some(true)),
            shutdown.clone().cancelled_owned(),
        );
    let tcp_server = tokio::spawn(tcp_server);
    let socket = bind_socket(dir)?;
    let local_server = tokio::spawn(
        manager
            .local_router(Server::builder())
            .add_optional_service(local.volume_service())
            .serve_with_incoming_shutdown(
                UnixListenerStream::new(socket),
                shutdown.clone().cancelled_owned(),
            ),
    );
    match start {
        Start::Init => print_join_commands(&manager, &record),
        Start::Join => {
            if let Err(err) = bootstrap::admit(&raft, &record, &record.manager_addrs.clone()).await
            {
                shutdown.cancel();
                let _ = raft.shutdown().await;
                return Err(err);
            }
            dir.save(&record)?;
            info!(node.id = %record.node_id, "joined the cluster as a manager");
        }
        Start::Restart => {}
    }
    if record.manager_addrs.is_empty() {
        record.manager_addrs.push(record.advertise.to_string());
    }
    let managers: ManagerList = Arc::new(RwLock::new(record.manager_addrs.clone()));
    let session = start_session(
        dir,
        &record,
        identity,
        managers,
        shutdown.clone(),
        role_change.clone(),
        &local,
    );
    info!(node.id = %record.node_id, addr = %record.advertise, "manager running");
    let exit = tokio::select! {
        _ = shutdown.cancelled() => Exit::Stopped,
        _ = role_change.cancelled() => Exit::ChangeRole,
    };
    shutdown.cancel();
    for (name, server) in [("tcp", tcp_server), ("local", local_server)] {
        match server.await {
            Ok(Err(err)) => error!(server = name, %err, "server failed"),
            Err(err) => error!(server = name, %err, "server task failed"),
            Ok(Ok(())) => {}
        }
    }
    let _ = session.await;
    if let Err(err) = raft.shutdown().await {
        warn!(%err, "Raft did not stop cleanly");
    }
    let _ = std::fs::remove_file(dir.socket());
    info!(?exit, "manager stopped");
    Ok(exit)
}

fn print_join_commands(manager: &Arc<Manager>, record: &NodeRecord) {
    let tokens = manager.store().view(|tx| {
        (
            rswarm_manager::controlapi::join_token(tx, false),
            rswarm_manager::controlapi::join_token(tx, true),
        )
    });
    let (Ok(worker), Ok(mgr)) = tokens else {
        warn!("cannot read the join tokens back");
        return;
    };
    println!(
        "Swarm initialized: current node ({}) is now a manager.\n\n\
         To add a worker to this swarm, run the following command:\n\n    \
         rswarm join --token {worker} {addr}\n\n\
         To add a manager to this swarm, run the following command:\n\n    \
         rswarm join --token {mgr} {addr}\n",
        record.node_id,
        addr = record.advertise
    );
}

/// Runs a worker: its session with the managers and a local socket that points
/// control commands at them.
pub async fn worker(
    dir: &DataDir,
    record: &NodeRecord,
    identity: &Identity,
    stop: &CancellationToken,
    local: Local<'_>,
) -> anyhow::Result<Exit> {
    let shutdown = stop.child_token();
    let role_change = CancellationToken::new();
    let managers: ManagerList = Arc::new(RwLock::new(record.manager_addrs.clone()));
    let socket = bind_socket(dir)?;
    let local_server = tokio::spawn(
        Server::builder()
            .add_service(ControlServer::new(WorkerControl::new(managers.clone())))
            .add_optional_service(local.volume_service())
            .serve_with_incoming_shutdown(
                UnixListenerStream::new(socket),
                shutdown.clone().cancelled_owned(),
            ),
    );
    let session = start_session(
        dir,
        record,
        identity,
        managers,
        shutdown.clone(),
        role_change.clone(),
        &local,
    );
    info!(node.id = %record.node_id, addr = %record.advertise, "worker running");
    let exit = tokio::select! {
        _ = shutdown.cancelled() => Exit::Stopped,
        _ = role_change.cancelled() => Exit::ChangeRole,
    };
    shutdown.cancel();
    if let Ok(Err(err)) = local_server.await {
        error!(%err, "local server failed");
    }
    let _ = session.await;
    let _ = std::fs::remove_file(dir.socket());
    info!(?exit, "worker stopped");
    Ok(exit)
}
