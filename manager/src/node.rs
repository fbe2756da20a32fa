//! A manager as the node daemon runs it: the Raft member plus the services other
//! nodes and clients call.

use std::sync::Arc;
use std::time::Duration;

use rswarm_proto::api::control_server::ControlServer;
use rswarm_proto::api::dispatcher_server::DispatcherServer;
use rswarm_proto::api::images_server::ImagesServer;
use rswarm_proto::api::logs_server::LogsServer;
use rswarm_proto::api::node_ca_server::NodeCaServer;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::transport::server::Router;

use crate::controlapi::ControlApi;
use crate::dispatcher::DispatcherService;
use crate::images::{Connector, ImageBackend, ImageService, Replicator};
use crate::logs::{LeaderLink, LogBroker, LogService};
use crate::nodeca::NodeCaService;
use crate::orchestrator::Orchestrator;
use crate::raft::RaftNode;
use crate::scheduler::Scheduler;
use crate::store::Store;

/// What a manager needs beyond Raft to serve images and relay logs: its node id,
/// a way to reach the other managers, and the node's local image store.
#[derive(Clone)]
pub struct ManagerSetup {
    /// This manager's node id (recorded as a holder of the images it stores).
    pub node_id: String,
    /// Opens mTLS channels to other managers.
    pub connect: Connector,
    /// The local image store; without one, image calls are unimplemented.
    pub images: Option<Arc<dyn ImageBackend>>,
}

/// A running manager: its Raft member, which is also how it proposes writes and
/// sees the group.
pub struct Manager {
    raft: Arc<RaftNode>,
    setup: Option<ManagerSetup>,
    logs: Arc<LogBroker>,
}

/// The leader as the log service sees it: Raft's view plus a channel to it.
struct RaftLeader {
    raft: Arc<RaftNode>,
    connect: Option<Connector>,
}

impl LeaderLink for RaftLeader {
    fn is_leader(&self) -> bool {
        self.raft.is_leader()
    }

    fn leader_channel(&self) -> Result<Channel, String> {
        let (_, addr) = self.raft.leader().ok_or("no leader is known")?;
        let connect = self
            .connect
            .as_ref()
            .ok_or("this manager cannot reach other managers")?;
        connect(&addr)
    }
}

impl Manager {
    /// A manager around its Raft member, without images or relaying (tests).
    pub fn new(raft: RaftNode) -> Arc<Manager> {
        Manager::with_setup(raft, None)
    }

    /// A manager that also serves images and relays log requests, per `setup`.
    pub fn with_setup(raft: RaftNode, setup: Option<ManagerSetup>) -> Arc<Manager> {
        Arc::new(Manager {
            raft: Arc::new(raft),
            setup,
            logs: Arc::default(),
        })
    }

    /// This manager's copy of the store.
    pub fn store(&self) -> &Store {
        self.raft.store()
    }

    fn image_service(&self) -> Option<ImagesServer<ImageService<RaftNode>>> {
        let setup = self.setup.as_ref()?;
        let backend = setup.images.clone()?;
        Some(
            ImagesServer::new(ImageService::new(
                self.store().clone(),
                self.raft.clone(),
                backend,
                setup.node_id.clone(),
            ))
            .max_decoding_message_size(8 << 20),
        )
    }

    fn log_service(&self) -> LogsServer<LogService<RaftLeader>> {
        LogsServer::new(LogService::new(
            self.store().clone(),
            self.logs.clone(),
            Arc::new(RaftLeader {
                raft: self.raft.clone(),
                connect: self.setup.as_ref().map(|s| s.connect.clone()),
            }),
        ))
    }

    /// The services served over mTLS TCP: control (managers and admins), node CA
    /// (anyone: the join endpoint), Raft (managers only), dispatcher (nodes). The
    /// dispatcher's monitor, the orchestrator and the scheduler (the last two act
    /// only while this manager leads) run until `shutdown`.
    pub fn tcp_router(
        &self,
        mut server: tonic::transport::Server,
        heartbeat: Duration,
        shutdown: CancellationToken,
    ) -> Router {
        let store = self.store().clone();
        let dispatcher = Arc::new(DispatcherService::new(
            store.clone(),
            self.raft.clone(),
            self.raft.clone(),
            heartbeat,
        ));
        tokio::spawn(dispatcher.clone().run(shutdown.clone()));
        tokio::spawn(
            Orchestrator::new(store.clone(), self.raft.clone(), self.raft.clone())
                .run(shutdown.clone()),
        );
        if let Some(setup) = &self.setup
            && let Some(backend) = &setup.images
        {
            tokio::spawn(
                Replicator::new(
                    store.clone(),
                    self.raft.clone(),
                    backend.clone(),
                    setup.node_id.clone(),
                    setup.connect.clone(),
                )
                .run(shutdown.clone()),
            );
        }
        tokio::spawn(
            Scheduler::new(store.clone(), self.raft.clone(), self.raft.clone()).run(shutdown),
        );
        server
            .add_service(ControlServer::new(ControlApi::new(
                store.clone(),
                self.raft.clone(),
                self.raft.clone(),
            )))
            .add_service(NodeCaServer::new(NodeCaService::new(
                store,
                self.raft.clone(),
                self.raft.clone(),
            )))
            .add_service(InterceptedService::new(
                self.raft.service(),
                rswarm_proto::tls::manager_interceptor,
            ))
            .add_service(DispatcherServer::from_arc(dispatcher))
            .add_optional_service(self.image_service())
            .add_service(self.log_service())
    }

    /// The control API alone, for the local Unix socket.
    pub fn local_router(&self, mut server: tonic::transport::Server) -> Router {
        server
            .add_service(ControlServer::new(ControlApi::new(
                self.store().clone(),
                self.raft.clone(),
                self.raft.clone(),
            )))
            .add_optional_service(self.image_service())
            .add_service(self.log_service())
    }
}
