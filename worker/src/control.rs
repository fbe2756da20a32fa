//! The control API on a worker's local socket: workers hold no cluster state, so
//! every call is refused with a message that says where the managers are.

use rswarm_proto::api::control_server::Control;
use rswarm_proto::api::*;
use tonic::{Request, Response, Status};

use crate::session::ManagerList;

/// Refuses control calls on a worker.
pub struct WorkerControl {
    /// The managers' addresses, as the node's session last heard them.
    managers: ManagerList,
}

impl WorkerControl {
    /// A refusing control service naming `managers`.
    pub fn new(managers: ManagerList) -> WorkerControl {
        WorkerControl { managers }
    }

    fn refuse(&self) -> Status {
        let managers = self
            .managers
            .read()
            .map(|m| m.join(", "))
            .unwrap_or_default();
        Status::failed_precondition(format!(
            "this node is a worker: control commands run on a manager; managers: {} \
             (use --host MANAGER_ADDR with the admin certificate, or run the command on a manager)",
            if managers.is_empty() {
                "unknown"
            } else {
                &managers
            }
        ))
    }
}

/// Each method of the control API, refused the same way.
macro_rules! refuse_all {
    ($($method:ident($req:ty) -> $resp:ty;)*) => {
        #[tonic::async_trait]
        impl Control for WorkerControl {
            $(
                async fn $method(&self, _req: Request<$req>) -> Result<Response<$resp>, Status> {
                    Err(self.refuse())
                }
            )*
        }
    };
}

refuse_all! {
    get_cluster_status(GetClusterStatusRequest) -> ClusterStatus;
    list_nodes(ListNodesRequest) -> ListNodesResponse;
    get_node(GetNodeRequest) -> Node;
    update_node(UpdateNodeRequest) -> Node;
    promote_node(GetNodeRequest) -> Node;
    demote_node(GetNodeRequest) -> Node;
    remove_node(RemoveNodeRequest) -> RemoveNodeResponse;
    create_service(CreateServiceRequest) -> Service;
    list_services(ListServicesRequest) -> ListServicesResponse;
    get_service(GetServiceRequest) -> Service;
    remove_service(GetServiceRequest) -> RemoveServiceResponse;
    scale_service(ScaleServiceRequest) -> Service;
    update_service(UpdateServiceRequest) -> Service;
    list_tasks(ListTasksRequest) -> ListTasksResponse;
    get_join_token(JoinTokenRequest) -> JoinTokenResponse;
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, RwLock};

    use super::*;

    #[tokio::test]
    async fn every_call_names_the_managers() {
        let managers = Arc::new(RwLock::new(vec!["10.1.0.1:4242".to_owned()]));
        let control = WorkerControl::new(managers);
        let err = control
            .list_services(Request::new(ListServicesRequest {}))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert!(err.message().contains("this node is a worker"));
        assert!(err.message().contains("10.1.0.1:4242"));
    }
}
