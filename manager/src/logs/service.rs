//! The `Logs` gRPC service: clients ask any manager, nodes answer the leader.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use rswarm_proto::api::logs_client::LogsClient;
use rswarm_proto::api::logs_server::Logs;
use rswarm_proto::api::*;
use rswarm_proto::tls::{require_manager_or_admin, require_node};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};
use tracing::debug;

use super::broker::{LogBroker, LogPlan};
use crate::controlapi::{ControlError, resolve};
use crate::store::{ReadTx, Store};

/// Where the leader is, and how to reach it: followers relay client requests there.
pub trait LeaderLink: Send + Sync + 'static {
    /// Whether this manager leads now.
    fn is_leader(&self) -> bool;
    /// A channel to the leader, if one is known.
    fn leader_channel(&self) -> Result<Channel, String>;
}

/// The log service of one manager.
pub struct LogService<L> {
    store: Store,
    broker: Arc<LogBroker>,
    leader: Arc<L>,
}

impl<L: LeaderLink> LogService<L> {
    /// A service over this manager's broker (used while it leads).
    pub fn new(store: Store, broker: Arc<LogBroker>, leader: Arc<L>) -> Self {
        LogService {
            store,
            broker,
            leader,
        }
    }
}

/// The nodes and tasks whose logs a request for `service` covers.
pub fn plan_for(tx: &ReadTx<'_>, request: &ServiceLogsRequest) -> Result<LogPlan, ControlError> {
    let service = resolve::service(tx, &request.service)?;
    let name = service.spec.as_ref().map_or("", |s| s.name.as_str());
    let global = matches!(
        service.spec.as_ref().and_then(|s| s.mode.as_ref()),
        Some(service_spec::Mode::Global(_))
    );
    let mut plan = LogPlan {
        follow: request.follow,
        tail: request.tail,
        ..Default::default()
    };
    for task in tx.tasks_of_service(&service.id) {
        if task.node_id.is_empty() {
            continue;
        }
        let task_name = if global {
            format!("{name}.{}", task.node_id)
        } else {
            format!("{name}.{}", task.slot)
        };
        plan.nodes
            .entry(task.node_id.clone())
            .or_default()
            .push((task.id.clone(), task_name));
        if let Some(node) = tx.node(&task.node_id) {
            let host = node
                .description
                .as_ref()
                .map_or(node.id.as_str(), |d| d.hostname.as_str());
            plan.hostnames.insert(node.id.clone(), host.to_owned());
        }
    }
    for tasks in plan.nodes.values_mut() {
        tasks.sort();
    }
    Ok(plan)
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// A client's stream that ends the subscription when dropped.
struct ClientStream {
    rx: mpsc::Receiver<ServiceLogsMessage>,
    broker: Arc<LogBroker>,
    id: String,
}

impl Stream for ClientStream {
    type Item = Result<ServiceLogsMessage, Status>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|m| m.map(Ok))
    }
}

impl Drop for ClientStream {
    fn drop(&mut self) {
        self.broker.unsubscribe(&self.id);
    }
}

/// A node's subscription stream that unregisters the node when dropped.
struct NodeStream {
    rx: mpsc::UnboundedReceiver<LogSubscription>,
    broker: Arc<LogBroker>,
    node_id: String,
    generation: u64,
}

impl Stream for NodeStream {
    type Item = Result<LogSubscription, Status>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|m| m.map(Ok))
    }
}

impl Drop for NodeStream {
    fn drop(&mut self) {
        self.broker.unregister_node(&self.node_id, self.generation);
    }
}

#[tonic::async_trait]
impl<L: LeaderLink> Logs for LogService<L> {
    type ServiceLogsStream = BoxStream<ServiceLogsMessage>;

    async fn service_logs(
        &self,
        request: Request<ServiceLogsRequest>,
    ) -> Result<Response<Self::ServiceLogsStream>, Status> {
        require_manager_or_admin(&request)?;
        let request = request.into_inner();
        if !self.leader.is_leader() {
            let channel = self
                .leader
                .leader_channel()
                .map_err(|e| Status::unavailable(format!("cannot reach the leader: {e}")))?;
            let stream = LogsClient::new(channel)
                .service_logs(request)
                .await?
                .into_inner();
            return Ok(Response::new(Box::pin(stream)));
        }
        let plan = self
            .store
            .view(|tx| plan_for(tx, &request))
            .map_err(Status::from)?;
        let (id, rx) = self.broker.subscribe(plan);
        debug!(subscription = %id, service = %request.service, "log subscription");
        Ok(Response::new(Box::pin(ClientStream {
            rx,
            broker: self.broker.clone(),
            id,
        })))
    }

    type SubscriptionsStream = BoxStream<LogSubscription>;

    async fn subscriptions(
        &self,
        request: Request<LogSubscriptionsRequest>,
    ) -> Result<Response<Self::SubscriptionsStream>, Status> {
        let peer = require_node(&request)?;
        if !self.leader.is_leader() {
            return Err(Status::failed_precondition(
                "not the leader: log subscriptions are served by the leader",
            ));
        }
        let (generation, rx) = self.broker.register_node(&peer.node_id);
        Ok(Response::new(Box::pin(NodeStream {
            rx,
            broker: self.broker.clone(),
            node_id: peer.node_id,
            generation,
        })))
    }

    async fn publish(
        &self,
        request: Request<Streaming<PublishLogsMessage>>,
    ) -> Result<Response<PublishLogsResponse>, Status> {
        let peer = require_node(&request)?;
        let mut stream = request.into_inner();
        let Some(first) = stream.next().await.transpose()? else {
            return Ok(Response::new(PublishLogsResponse {}));
        };
        let id = first.subscription_id.clone();
        let Some(publisher) = self.broker.publisher(&id, &peer.node_id) else {
            // The client has gone, or this node was not asked: nothing to forward.
            return Ok(Response::new(PublishLogsResponse {}));
        };
        let mut error = None;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            if !message.error.is_empty() {
                error = Some(message.error);
            }
            if !message.entries.is_empty() && !publisher.send(message.entries).await {
                break;
            }
            next = match stream.next().await {
                Some(Ok(m)) => Some(m),
                Some(Err(status)) => {
                    error.get_or_insert_with(|| {
                        format!("log stream broke off: {}", status.message())
                    });
                    None
                }
                None => None,
            };
        }
        self.broker.finished(&id, &peer.node_id, error);
        Ok(Response::new(PublishLogsResponse {}))
    }
}

/// Groups `(node, task)` pairs, for tests.
#[cfg(test)]
pub(super) fn tasks_by_node(plan: &LogPlan) -> std::collections::HashMap<&str, Vec<&str>> {
    plan.nodes
        .iter()
        .map(|(node, tasks)| {
            (
                node.as_str(),
                tasks.iter().map(|(_, n)| n.as_str()).collect(),
            )
        })
        .collect()
}
