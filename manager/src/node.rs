//! A manager as the node daemon runs it: the Raft member plus the services other
//! nodes and clients call.

use std::sync::Arc;
use std::time::Duration;

use rswarm_proto::api::control_server::ControlServer;
use rswarm_proto::api::dispatcher_server::DispatcherServer;
use rswarm_proto::api::images_server::ImagesServer;
use rswarm_proto::api::node_ca_server::NodeCaServer;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::Router;

use crate::controlapi::ControlApi;
use crate::dispatcher::DispatcherService;
use crate::images::{Connector, ImageBackend, ImageService, Replicator};
use crate::nodeca::NodeCaService;
use crate::orchestrator::Orchestrator;
use crate::raft::RaftNode;
use crate::scheduler::Scheduler;
use crate::store::Store;

/// What a manager needs to serve images: the node's local image store, its own
/// node id (recorded as a holder), and a way to reach the other managers.
#[derive(Clone)]
pub struct ImageSetup {
    /// The local image store.
    pub backend: Arc<dyn ImageBackend>,
    /// This manager's node id.
    pub node_id: String,
    /// Opens mTLS channels to other managers, to replicate images from them.
    pub connect: Connector,
}

/// A running manager: its Raft member, which is also how it proposes writes and
/// sees the group.
pub struct Manager {
    raft: Arc<RaftNode>,
    images: Option<ImageSetup>,
}

impl Manager {
    /// A manager around its Raft member, without an image store (image calls are
    /// then unimplemented).
    pub fn new(raft: RaftNode) -> Arc<Manager> {
        Manager::with_images(raft, None)
    }

    /// A manager that also serves images from `images`.
    pub fn with_images(raft: RaftNode, images: Option<ImageSetup>) -> Arc<Manager> {
        Arc::new(Manager {
            raft: Arc::new(raft),
            images,
        })
    }

    /// This manager's copy of the store.
    pub fn store(&self) -> &Store {
        self.raft.store()
    }

    fn image_service(&self) -> Option<ImagesServer<ImageService<RaftNode>>> {
        self.images.as_ref().map(|setup| {
            ImagesServer::new(ImageService::new(
                self.store().clone(),
                self.raft.clone(),
                setup.backend.clone(),
                setup.node_id.clone(),
            ))
            .max_decoding_message_size(8 << 20)
        })
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
        if let Some(setup) = &self.images {
            tokio::spawn(
                Replicator::new(
                    store.clone(),
                    self.raft.clone(),
                    setup.backend.clone(),
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
    }
}
