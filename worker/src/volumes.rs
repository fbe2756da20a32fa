//! The node's named volumes over its local socket (`rswarm volume ls/rm`).

use std::sync::Arc;

use rswarm_agent_runtime::container::{ContainerError, Runtime};
use rswarm_proto::api::volumes_server::Volumes;
use rswarm_proto::api::{
    ListVolumesRequest, ListVolumesResponse, RemoveVolumeRequest, RemoveVolumeResponse, Volume,
};
use rswarm_proto::tls::require_manager_or_admin;
use tonic::{Request, Response, Status};

/// The volume service of a node running containers.
pub struct VolumeService {
    runtime: Arc<Runtime>,
}

impl VolumeService {
    /// Volumes of `runtime`.
    pub fn new(runtime: Arc<Runtime>) -> Self {
        VolumeService { runtime }
    }
}

fn status(err: ContainerError) -> Status {
    match err {
        ContainerError::NotFound { .. } => Status::not_found(err.to_string()),
        ContainerError::VolumeInUse { .. } => Status::failed_precondition(err.to_string()),
        ContainerError::InvalidConfig(_) => Status::invalid_argument(err.to_string()),
        other => Status::internal(other.to_string()),
    }
}

#[tonic::async_trait]
impl Volumes for VolumeService {
    async fn list(
        &self,
        request: Request<ListVolumesRequest>,
    ) -> Result<Response<ListVolumesResponse>, Status> {
        require_manager_or_admin(&request)?;
        let volumes = self
            .runtime
            .volumes()
            .await
            .map_err(status)?
            .into_iter()
            .map(|v| Volume {
                name: v.name,
                path: v.path.display().to_string(),
                size_bytes: v.size_bytes,
                used_by: v.used_by,
            })
            .collect();
        Ok(Response::new(ListVolumesResponse { volumes }))
    }

    async fn remove(
        &self,
        request: Request<RemoveVolumeRequest>,
    ) -> Result<Response<RemoveVolumeResponse>, Status> {
        require_manager_or_admin(&request)?;
        let name = request.into_inner().name;
        self.runtime.remove_volume(&name).await.map_err(status)?;
        Ok(Response::new(RemoveVolumeResponse {}))
    }
}
