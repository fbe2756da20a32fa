//! Service commands: create (with its published ports checked cluster-wide and a
//! virtual IP from the task network pool), update, list, remove.

use rswarm_proto::api::{
    EndpointMode, ListServicesResponse, ListTasksRequest, ListTasksResponse, Meta, Service,
    ServiceEndpoint, ServiceSpec, ServiceSummary, TaskState, service_spec,
};
use rswarm_proto::validate::validate_service_spec;

use super::{ControlApi, ControlError, RaftView, new_id, now_ms, ports, resolve};
use crate::network;
use crate::store::{Kind, Proposer, ReadTx, StoreAction, StoreError, update};

/// How many replicas a service wants: its count when replicated, one per schedulable
/// node when global.
fn replicas_desired(tx: &ReadTx<'_>, service: &Service) -> u64 {
    match service.spec.as_ref().and_then(|s| s.mode.as_ref()) {
        Some(service_spec::Mode::Replicated(r)) => r.replicas,
        Some(service_spec::Mode::Global(_)) => {
            tx.nodes().filter(|n| n.takes_new_tasks()).count() as u64
        }
        None => 0,
    }
}

impl<P: Proposer, R: RaftView> ControlApi<P, R> {
    pub(super) async fn create_service(&self, spec: ServiceSpec) -> Result<Service, ControlError> {
        validate_service_spec(&spec)?;
        let now = now_ms();
        let id = new_id();
        update(&self.store, self.proposer.as_ref(), |tx| {
            let mut spec = spec.clone();
            ports::assign_published(tx, &mut spec, None, None)?;
            ports::check_conflicts(tx, &spec, None)?;
            let mut actions = Vec::new();
            let endpoint = virtual_ip_for(tx, &spec)?;
            if let Some(cluster) = tx.cluster()
                && (endpoint.is_some() || ports_differ(&spec, &ServiceSpec::default()))
            {
                // Rewriting the cluster object makes concurrent creations conflict
                // on its version, so two services never get one VIP or one port.
                actions.push(StoreAction::UpdateCluster(cluster.clone()));
            }
            actions.push(StoreAction::CreateService(Service {
                id: id.clone(),
                meta: Some(Meta {
                    version: 0,
                    created_at: now,
                    updated_at: now,
                }),
                spec: Some(spec.clone()),
                endpoint,
            }));
            Ok(actions)
        })
        .await
        .map_err(|e| match e {
            ControlError::Store(StoreError::NameConflict { name, .. }) => {
                ControlError::Refused(format!(
                    "a service named {name:?} already exists; choose another name or remove it first"
                ))
            }
            other => other,
        })?;
        self.store
            .view(|tx| tx.service(&id).cloned())
            .ok_or(ControlError::NotFound {
                kind: Kind::Service,
                reference: id,
            })
    }

    /// Replaces a service's spec. The name and the mode (replicated or global) stay;
    /// the published ports are checked against the other services' as at creation;
    /// `version` (when not 0) must still be the service's, so that two clients
    /// editing the same spec do not undo each other's change. An unchanged spec
    /// writes nothing. The orchestrator rolls the tasks out from there.
    pub(super) async fn update_service(
        &self,
        reference: &str,
        version: u64,
        spec: ServiceSpec,
    ) -> Result<Service, ControlError> {
        validate_service_spec(&spec)?;
        // The id found by the last attempt, to read the service back by (its name
        // could be taken by another service in between).
        let found = std::sync::Mutex::new(String::new());
        update(&self.store, self.proposer.as_ref(), |tx| {
            let mut service = resolve::service(tx, reference)?.clone();
            if let Ok(mut found) = found.lock() {
                found.clone_from(&service.id);
            }
            let current = service.spec.clone().unwrap_or_default();
            let current_version = service.meta.as_ref().map_or(0, |m| m.version);
            if version != 0 && version != current_version {
                return Err(ControlError::Refused(format!(
                    "service {:?} changed since version {version} was read (it is at version \
                     {current_version} now): read it again and retry",
                    current.name
                )));
            }
            if spec.name != current.name {
                return Err(ControlError::Refused(format!(
                    "a service cannot be renamed ({:?} to {:?}): create a new service instead",
                    current.name, spec.name
                )));
            }
            if mode_name(&spec) != mode_name(&current) {
                return Err(ControlError::Refused(format!(
                    "service {:?} is {}: its mode cannot change to {} (create a new service \
                     instead)",
                    current.name,
                    mode_name(&current),
                    mode_name(&spec)
                )));
            }
            let mut spec = spec.clone();
            ports::assign_published(tx, &mut spec, Some(&service.id), Some(&current))?;
            if spec == current {
                return Ok(vec![]);
            }
            ports::check_conflicts(tx, &spec, Some(&service.id))?;
            // A change of endpoint mode takes the VIP away or gives one.
            let new_vip = is_dnsrr(&current) && !is_dnsrr(&spec);
            if new_vip {
                service.endpoint = virtual_ip_for(tx, &spec)?;
            } else if is_dnsrr(&spec) {
                service.endpoint = None;
            }
            service.spec = Some(spec.clone());
            service.meta.get_or_insert_default().updated_at = now_ms();
            let mut actions = Vec::new();
            // As at creation: rewriting the cluster object makes a concurrent create
            // or update conflict on its version, so two services never get one
            // port or one VIP.
            if (new_vip || ports_differ(&spec, &current))
                && let Some(cluster) = tx.cluster()
            {
                actions.push(StoreAction::UpdateCluster(cluster.clone()));
            }
            actions.push(StoreAction::UpdateService(service));
            Ok(actions)
        })
        .await?;
        let id = found.into_inner().unwrap_or_default();
        self.store
            .view(|tx| tx.service(&id).cloned())
            .ok_or(ControlError::NotFound {
                kind: Kind::Service,
                reference: reference.to_string(),
            })
    }

    pub(super) fn list_services(&self) -> ListServicesResponse {
        self.store.view(|tx| ListServicesResponse {
            services: tx
                .services()
                .map(|s| ServiceSummary {
                    service: Some(s.clone()),
                    replicas_desired: replicas_desired(tx, s),
                    replicas_running: tx
                        .tasks_of_service(&s.id)
                        .filter(|t| {
                            t.desired_state == TaskState::Running as i32
                                && t.status
                                    .as_ref()
                                    .is_some_and(|st| st.state == TaskState::Running as i32)
                        })
                        .count() as u64,
                })
                .collect(),
        })
    }

    pub(super) async fn remove_service(&self, reference: &str) -> Result<(), ControlError> {
        update(&self.store, self.proposer.as_ref(), |tx| {
            let service = resolve::service(tx, reference)?;
            let mut actions = vec![StoreAction::RemoveService {
                id: service.id.clone(),
            }];
            actions.extend(
                tx.tasks_of_service(&service.id)
                    .map(|t| StoreAction::RemoveTask { id: t.id.clone() }),
            );
            Ok(actions)
        })
        .await
    }
}

fn mode_name(spec: &ServiceSpec) -> &'static str {
    match spec.mode {
        Some(service_spec::Mode::Global(_)) => "global",
        Some(service_spec::Mode::Replicated(_)) => "replicated",
        None => "without a mode",
    }
}

/// Whether `spec` asks for no virtual IP (endpoint mode DNSRR).
fn is_dnsrr(spec: &ServiceSpec) -> bool {
    spec.endpoint
        .as_ref()
        .is_some_and(|e| e.mode == EndpointMode::Dnsrr as i32)
}

/// A free virtual IP from the task network pool for a service of `spec`; none
/// without a task network or for a DNSRR service. The pool exhausted is refused.
fn virtual_ip_for(
    tx: &ReadTx<'_>,
    spec: &ServiceSpec,
) -> Result<Option<ServiceEndpoint>, ControlError> {
    if is_dnsrr(spec) {
        return Ok(None);
    }
    let Some(cluster) = tx.cluster().filter(|c| !c.network_pool.is_empty()) else {
        return Ok(None);
    };
    let Ok(pool) = network::parse_pool(&cluster.network_pool) else {
        return Ok(None);
    };
    if network::vip_range(&pool).is_none() {
        return Ok(None);
    }
    let taken = tx
        .services()
        .filter_map(|s| s.endpoint.as_ref())
        .map(|e| e.virtual_ip.as_str());
    match network::free_vip(&pool, taken) {
        Some(virtual_ip) => Ok(Some(ServiceEndpoint { virtual_ip })),
        None => Err(ControlError::Refused(format!(
            "no virtual IP is left in the task network pool {}: remove a service first",
            cluster.network_pool
        ))),
    }
}

fn ports_differ(a: &ServiceSpec, b: &ServiceSpec) -> bool {
    let ports = |s: &ServiceSpec| s.endpoint.as_ref().map(|e| e.ports.clone());
    ports(a) != ports(b)
}

/// Parses a task state name as `service ps --filter desired-state=` takes it.
fn parse_task_state(name: &str) -> Result<TaskState, ControlError> {
    let wanted = format!("TASK_STATE_{}", name.trim().to_ascii_uppercase());
    TaskState::from_str_name(&wanted).ok_or_else(|| {
        ControlError::Refused(format!(
            "unknown task state {name:?}: expected one of new, pending, assigned, accepted, \
             preparing, ready, starting, running, complete, shutdown, failed, rejected, \
             remove, orphaned"
        ))
    })
}

impl<P: Proposer, R: RaftView> ControlApi<P, R> {
    pub(super) async fn scale_service(
        &self,
        reference: &str,
        replicas: u64,
    ) -> Result<Service, ControlError> {
        update(&self.store, self.proposer.as_ref(), |tx| {
            let mut service = resolve::service(tx, reference)?.clone();
            let spec = service.spec.get_or_insert_default();
            match spec.mode.as_mut() {
                Some(service_spec::Mode::Replicated(r)) => {
                    if r.replicas == replicas {
                        return Ok(vec![]);
                    }
                    r.replicas = replicas;
                }
                _ => {
                    return Err(ControlError::Refused(format!(
                        "service {} is global: scale only applies to replicated services",
                        spec.name
                    )));
                }
            }
            service.meta.get_or_insert_default().updated_at = now_ms();
            Ok(vec![StoreAction::UpdateService(service)])
        })
        .await?;
        self.store
            .view(|tx| resolve::service(tx, reference).cloned())
    }

    pub(super) fn list_tasks(
        &self,
        req: &ListTasksRequest,
    ) -> Result<ListTasksResponse, ControlError> {
        let desired = match req.desired_state.as_str() {
            "" => None,
            name => Some(parse_task_state(name)? as i32),
        };
        self.store.view(|tx| {
            let service_id = match req.service.as_str() {
                "" => None,
                reference => Some(resolve::service(tx, reference)?.id.clone()),
            };
            let tasks = tx
                .tasks()
                .filter(|t| service_id.as_ref().is_none_or(|s| *s == t.service_id))
                .filter(|t| desired.is_none_or(|d| t.desired_state == d))
                .cloned()
                .collect();
            Ok(ListTasksResponse { tasks })
        })
    }
}
