//! A control API server with canned data, served on a Unix socket, to run the
//! commands end to end in tests.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use rswarm_proto::api::control_server::{Control, ControlServer};
use rswarm_proto::api::{
    ClusterStatus, ContainerSpec, CreateServiceRequest, GetClusterStatusRequest, GetNodeRequest,
    GetServiceRequest, JoinTokenRequest, JoinTokenResponse, ListNodesRequest, ListNodesResponse,
    ListServicesRequest, ListServicesResponse, ListTasksRequest, ListTasksResponse, ManagerInfo,
    ManagerStatus, Node, NodeDescription, NodeRole, NodeSpec, NodeState, NodeStatus,
    RemoveNodeRequest, RemoveNodeResponse, RemoveServiceResponse, ReplicatedService,
    ScaleServiceRequest, Service, ServiceSpec, ServiceSummary, Task, TaskSpec, UpdateNodeRequest,
    UpdateServiceRequest, service_spec::Mode,
};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

use super::Context;
use crate::args::{Format, Host};

/// What the fake serves and what it was asked.
#[derive(Debug, Clone)]
pub struct FakeState {
    /// Served by ListNodes/GetNode.
    pub nodes: Vec<Node>,
    /// Served by ListServices/GetService.
    pub services: Vec<ServiceSummary>,
    /// Served by GetClusterStatus.
    pub cluster: ClusterStatus,
    /// Served by ListTasks (filtered by service and desired state).
    pub tasks: Vec<Task>,
    /// Successive task lists: each ListTasks call first moves the next one, if any,
    /// into `tasks`, so that a test can script a rollout.
    pub task_script: VecDeque<Vec<Task>>,
    /// Every ListTasks request, in order.
    pub task_queries: Vec<ListTasksRequest>,
    /// Every request that changes something, in order, as debug strings.
    pub calls: Vec<String>,
    /// How many ListNodes calls to answer `Unavailable` (as during a leader
    /// change) before answering again.
    pub list_nodes_unavailable: usize,
}

impl FakeState {
    /// The service with id or name `reference`.
    fn service_mut(&mut self, reference: &str) -> Result<&mut Service, Status> {
        self.services
            .iter_mut()
            .filter_map(|s| s.service.as_mut())
            .find(|s| {
                s.id == reference || s.spec.as_ref().is_some_and(|spec| spec.name == reference)
            })
            .ok_or_else(|| Status::not_found(format!("service {reference} not found")))
    }
}

/// The fake control API. The std mutex is fine: no `.await` while it is held.
#[derive(Debug, Clone)]
pub struct FakeControl {
    /// Shared with the test.
    pub state: Arc<Mutex<FakeState>>,
}

impl Default for FakeControl {
    fn default() -> Self {
        let node = |id: &str, hostname: &str, role: NodeRole, raft_id: u64| Node {
            id: id.into(),
            role: role.into(),
            spec: Some(NodeSpec::default()),
            description: Some(NodeDescription {
                hostname: hostname.into(),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                state: NodeState::Ready.into(),
                message: String::new(),
                addr: format!("127.0.0.{raft_id}:4242"),
                port_errors: Vec::new(),
            }),
            manager_status: (role == NodeRole::Manager).then(|| ManagerStatus {
                raft_id,
                addr: format!("127.0.0.{raft_id}:4242"),
            }),
            ..Default::default()
        };
        let service = Service {
            endpoint: None,
            id: "svc1".into(),
            meta: None,
            spec: Some(ServiceSpec {
                name: "web".into(),
                task: Some(TaskSpec {
                    container: Some(ContainerSpec {
                        image: "nginx".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                mode: Some(Mode::Replicated(ReplicatedService { replicas: 2 })),
                ..Default::default()
            }),
        };
        let state = FakeState {
            nodes: vec![
                node("node-1", "alpha", NodeRole::Manager, 1),
                node("node-2", "beta", NodeRole::Manager, 2),
                node("node-3", "gamma", NodeRole::Worker, 3),
            ],
            services: vec![ServiceSummary {
                service: Some(service),
                replicas_desired: 2,
                replicas_running: 1,
            }],
            cluster: ClusterStatus {
                cluster_id: "fake-cluster".into(),
                raft_term: 3,
                last_applied: 12,
                node_id: "node-1".into(),
                managers: vec![
                    ManagerInfo {
                        raft_id: 1,
                        node_id: "node-1".into(),
                        addr: "127.0.0.1:4242".into(),
                        leader: false,
                        reachable: true,
                    },
                    ManagerInfo {
                        raft_id: 2,
                        node_id: "node-2".into(),
                        addr: "127.0.0.2:4242".into(),
                        leader: true,
                        reachable: true,
                    },
                ],
            },
            tasks: Vec::new(),
            task_script: VecDeque::new(),
            task_queries: Vec::new(),
            calls: Vec::new(),
            list_nodes_unavailable: 0,
        };
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }
}

impl FakeControl {
    /// Locks the state; a panicking test thread poisons it, which fails the test.
    pub fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap()
    }

    fn node(&self, reference: &str) -> Result<Node, Status> {
        self.lock()
            .nodes
            .iter()
            .find(|n| {
                n.id == reference
                    || n.description
                        .as_ref()
                        .is_some_and(|d| d.hostname == reference)
            })
            .cloned()
            .ok_or_else(|| Status::not_found(format!("node {reference} not found")))
    }

    fn record(&self, call: String) {
        self.lock().calls.push(call);
    }
}

#[tonic::async_trait]
impl Control for FakeControl {
    async fn scale_service(
        &self,
        request: Request<ScaleServiceRequest>,
    ) -> Result<Response<Service>, Status> {
        let ScaleServiceRequest {
            reference,
            replicas,
        } = request.into_inner();
        let mut state = self.lock();
        let service = state.service_mut(&reference)?;
        let spec = service.spec.get_or_insert_default();
        match spec.mode.as_mut() {
            Some(Mode::Replicated(r)) => r.replicas = replicas,
            _ => {
                return Err(Status::failed_precondition(format!(
                    "service {} is global: scale only applies to replicated services",
                    spec.name
                )));
            }
        }
        let service = service.clone();
        state.calls.push(format!("scale {reference} {replicas}"));
        Ok(Response::new(service))
    }

    /// Replaces the spec of the service named by id or name, refusing a stale
    /// version as the managers do; each update bumps the version by one.
    async fn update_service(
        &self,
        request: Request<UpdateServiceRequest>,
    ) -> Result<Response<Service>, Status> {
        let UpdateServiceRequest {
            reference,
            version,
            spec,
        } = request.into_inner();
        let mut state = self.lock();
        let service = state.service_mut(&reference)?;
        let meta = service.meta.get_or_insert_default();
        if version != 0 && version != meta.version {
            return Err(Status::failed_precondition(format!(
                "service changed since version {version} was read"
            )));
        }
        meta.version += 1;
        service.spec = spec;
        let service = service.clone();
        state.calls.push(format!("update {reference} {version}"));
        Ok(Response::new(service))
    }

    async fn list_tasks(
        &self,
        request: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        let request = request.into_inner();
        let mut state = self.lock();
        state.task_queries.push(request.clone());
        if let Some(next) = state.task_script.pop_front() {
            state.tasks = next;
        }
        let desired =
            match request.desired_state.as_str() {
                "" => None,
                name => Some(crate::output::names::parse_task_state(name).ok_or_else(|| {
                    Status::invalid_argument(format!("unknown task state {name:?}"))
                })? as i32),
            };
        let service_id = match request.service.as_str() {
            "" => None,
            reference => Some(
                state
                    .services
                    .iter()
                    .filter_map(|s| s.service.as_ref())
                    .find(|s| {
                        s.id == reference
                            || s.spec.as_ref().is_some_and(|spec| spec.name == reference)
                    })
                    .map(|s| s.id.clone())
                    .or_else(|| {
                        state
                            .tasks
                            .iter()
                            .any(|t| t.service_id == reference)
                            .then(|| reference.to_string())
                    })
                    .ok_or_else(|| Status::not_found(format!("service {reference} not found")))?,
            ),
        };
        let tasks = state
            .tasks
            .iter()
            .filter(|t| service_id.as_ref().is_none_or(|id| *id == t.service_id))
            .filter(|t| desired.is_none_or(|d| t.desired_state == d))
            .cloned()
            .collect();
        Ok(Response::new(ListTasksResponse { tasks }))
    }

    async fn get_cluster_status(
        &self,
        _: Request<GetClusterStatusRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        Ok(Response::new(self.lock().cluster.clone()))
    }

    async fn list_nodes(
        &self,
        _: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        let mut state = self.lock();
        if state.list_nodes_unavailable > 0 {
            state.list_nodes_unavailable -= 1;
            return Err(Status::unavailable("no leader yet"));
        }
        Ok(Response::new(ListNodesResponse {
            nodes: state.nodes.clone(),
        }))
    }

    async fn get_node(&self, request: Request<GetNodeRequest>) -> Result<Response<Node>, Status> {
        self.node(&request.into_inner().reference)
            .map(Response::new)
    }

    async fn update_node(
        &self,
        request: Request<UpdateNodeRequest>,
    ) -> Result<Response<Node>, Status> {
        let request = request.into_inner();
        self.record(format!("{request:?}"));
        self.node(&request.reference).map(Response::new)
    }

    async fn promote_node(
        &self,
        request: Request<GetNodeRequest>,
    ) -> Result<Response<Node>, Status> {
        let reference = request.into_inner().reference;
        let mut node = self.node(&reference)?;
        self.record(format!("promote {reference}"));
        node.spec.get_or_insert_default().desired_role = NodeRole::Manager.into();
        Ok(Response::new(node))
    }

    async fn demote_node(
        &self,
        request: Request<GetNodeRequest>,
    ) -> Result<Response<Node>, Status> {
        let reference = request.into_inner().reference;
        let mut node = self.node(&reference)?;
        self.record(format!("demote {reference}"));
        node.spec.get_or_insert_default().desired_role = NodeRole::Worker.into();
        Ok(Response::new(node))
    }

    async fn remove_node(
        &self,
        request: Request<RemoveNodeRequest>,
    ) -> Result<Response<RemoveNodeResponse>, Status> {
        let request = request.into_inner();
        self.node(&request.reference)?;
        self.record(format!("{request:?}"));
        Ok(Response::new(RemoveNodeResponse {}))
    }

    async fn create_service(
        &self,
        request: Request<CreateServiceRequest>,
    ) -> Result<Response<Service>, Status> {
        let spec = request.into_inner().spec;
        self.record(format!("create {spec:?}"));
        let service = Service {
            endpoint: None,
            id: "new-service-id".into(),
            meta: None,
            spec,
        };
        self.lock().services.push(ServiceSummary {
            service: Some(service.clone()),
            replicas_desired: 0,
            replicas_running: 0,
        });
        Ok(Response::new(service))
    }

    async fn list_services(
        &self,
        _: Request<ListServicesRequest>,
    ) -> Result<Response<ListServicesResponse>, Status> {
        let services = self.lock().services.clone();
        Ok(Response::new(ListServicesResponse { services }))
    }

    async fn get_service(
        &self,
        request: Request<GetServiceRequest>,
    ) -> Result<Response<Service>, Status> {
        let reference = request.into_inner().reference;
        self.lock()
            .services
            .iter()
            .filter_map(|s| s.service.clone())
            .find(|s| {
                s.id == reference || s.spec.as_ref().is_some_and(|spec| spec.name == reference)
            })
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("service {reference} not found")))
    }

    async fn remove_service(
        &self,
        request: Request<GetServiceRequest>,
    ) -> Result<Response<RemoveServiceResponse>, Status> {
        let reference = request.into_inner().reference;
        self.record(format!("remove service {reference}"));
        Ok(Response::new(RemoveServiceResponse {}))
    }

    async fn get_join_token(
        &self,
        request: Request<JoinTokenRequest>,
    ) -> Result<Response<JoinTokenResponse>, Status> {
        let request = request.into_inner();
        if request.role != "worker" && request.role != "manager" {
            return Err(Status::invalid_argument(format!(
                "invalid role \"{}\"",
                request.role
            )));
        }
        Ok(Response::new(JoinTokenResponse {
            token: format!("SWMTKN-{}-{}", request.role, request.rotate),
            manager_addrs: vec!["127.0.0.1:4242".into(), "127.0.0.2:4242".into()],
        }))
    }
}

/// Serves `fake` on the connections of `incoming` until the test ends.
pub async fn serve(fake: FakeControl, incoming: UnixListenerStream) {
    let served = tonic::transport::Server::builder()
        .add_service(ControlServer::new(fake))
        .serve_with_incoming(incoming)
        .await;
    if let Err(err) = served {
        panic!("fake control API stopped: {err}");
    }
}

/// A fake control API on a fresh socket, and a context pointing at it. Keep the
/// directory alive for the test's duration.
pub fn start(format: Format) -> (FakeControl, Context, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rswarm.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let fake = FakeControl::default();
    tokio::spawn(serve(fake.clone(), UnixListenerStream::new(listener)));
    let context = Context {
        host: Host::Unix(path),
        cert_dir: dir.path().to_path_buf(),
        format,
        tty: false,
    };
    (fake, context, dir)
}

/// Output written by a command, as text.
pub fn text(out: Vec<u8>) -> String {
    String::from_utf8(out).unwrap()
}
