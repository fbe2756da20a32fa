//! Service commands: create, list, remove.

use rswarm_proto::api::{
    ListServicesResponse, Meta, NodeAvailability, NodeState, Service, ServiceSpec, ServiceSummary,
    TaskState, service_spec,
};
use rswarm_proto::validate::validate_service_spec;

use super::{ControlApi, ControlError, RaftView, new_id, now_ms, resolve};
use crate::store::{Kind, Proposer, ReadTx, StoreAction, StoreError, update};

/// How many replicas a service wants: its count when replicated, one per schedulable
/// node when global.
fn replicas_desired(tx: &ReadTx<'_>, service: &Service) -> u64 {
    match service.spec.as_ref().and_then(|s| s.mode.as_ref()) {
        Some(service_spec::Mode::Replicated(r)) => r.replicas,
        Some(service_spec::Mode::Global(_)) => tx
            .nodes()
            .filter(|n| {
                n.status
                    .as_ref()
                    .is_some_and(|s| s.state == NodeState::Ready as i32)
                    && n.spec
                        .as_ref()
                        .is_none_or(|s| s.availability == NodeAvailability::Active as i32)
            })
            .count() as u64,
        None => 0,
    }
}

impl<P: Proposer, R: RaftView> ControlApi<P, R> {
    pub(super) async fn create_service(&self, spec: ServiceSpec) -> Result<Service, ControlError> {
        validate_service_spec(&spec)?;
        let now = now_ms();
        let service = Service {
            id: new_id(),
            meta: Some(Meta {
                version: 0,
                created_at: now,
                updated_at: now,
            }),
            spec: Some(spec),
        };
        let id = service.id.clone();
        self.proposer
            .propose(vec![StoreAction::CreateService(service)])
            .await
            .map_err(|e| match ControlError::from(e) {
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
