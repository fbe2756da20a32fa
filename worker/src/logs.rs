//! The node's side of `service logs`: the leader asks for the logs of some of this
//! node's tasks over a subscription stream; each request is answered on its own
//! publish stream with lines read through the executor.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use rswarm_agent_runtime::{Executor, LogOptions};
use rswarm_proto::api::logs_client::LogsClient;
use rswarm_proto::api::{
    LogEntry, LogStream, LogSubscription, LogSubscriptionsRequest, PublishLogsMessage,
};
use rswarm_proto::tls::{Identity, node_channel};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tracing::debug;

/// Pause before opening the subscription stream again.
const RETRY: Duration = Duration::from_millis(500);
/// Most lines in one published message.
const BATCH_LINES: usize = 256;

/// Answers the leader's log requests until `shutdown`, following the leader.
pub async fn serve(
    identity: Identity,
    mut leader: watch::Receiver<Option<String>>,
    executor: Arc<dyn Executor>,
    shutdown: CancellationToken,
) {
    let active: Arc<Mutex<HashMap<String, CancellationToken>>> = Arc::default();
    loop {
        let Some(addr) = crate::dispatch::leader(&mut leader, &shutdown).await else {
            return;
        };
        let channel = match node_channel(&addr, &identity) {
            Ok(channel) => channel,
            Err(err) => {
                debug!(manager = %addr, %err, "no channel for log subscriptions");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let mut client = LogsClient::new(channel.clone());
        let opened = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = client.subscriptions(LogSubscriptionsRequest {}) => r,
        };
        let mut stream = match opened {
            Ok(stream) => stream.into_inner(),
            Err(status) => {
                debug!(manager = %addr, %status, "log subscriptions refused");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return,
                // A new leader serves the subscriptions from now on.
                _ = leader.changed() => break,
                m = stream.message() => m,
            };
            let Ok(Some(subscription)) = message else {
                break;
            };
            let mut map = active.lock().unwrap_or_else(PoisonError::into_inner);
            if subscription.close {
                if let Some(token) = map.remove(&subscription.id) {
                    token.cancel();
                }
                continue;
            }
            let token = shutdown.child_token();
            if let Some(old) = map.insert(subscription.id.clone(), token.clone()) {
                old.cancel(); // asked again after a reconnect: the new answer replaces it
            }
            drop(map);
            let (executor, channel, active) = (executor.clone(), channel.clone(), active.clone());
            tokio::spawn(async move {
                let id = subscription.id.clone();
                publish(subscription, channel, executor, token).await;
                active
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id);
            });
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Answers one subscription: every line of its tasks, in batches, until the lines
/// end (without follow), the leader says stop, or the leader goes away.
async fn publish(
    subscription: LogSubscription,
    channel: Channel,
    executor: Arc<dyn Executor>,
    stop: CancellationToken,
) {
    let options = LogOptions {
        tail: u64::try_from(subscription.tail).ok(),
        follow: subscription.follow,
    };
    let mut errors = Vec::new();
    let mut streams = Vec::new();
    for task_id in &subscription.task_ids {
        match executor.logs(task_id, options) {
            Ok(lines) => {
                let task_id = task_id.clone();
                streams.push(lines.map(move |line| LogEntry {
                    task_id: task_id.clone(),
                    timestamp_ns: line.timestamp_ns,
                    stream: if line.stderr {
                        LogStream::Stderr as i32
                    } else {
                        LogStream::Stdout as i32
                    },
                    data: line.data,
                    ..Default::default()
                }));
            }
            Err(err) => errors.push(err.to_string()),
        }
    }
    let (tx, rx) = mpsc::channel(4);
    let first = PublishLogsMessage {
        subscription_id: subscription.id.clone(),
        entries: Vec::new(),
        error: errors.join("; "),
    };
    if tx.send(first).await.is_err() {
        return;
    }
    let call = tokio::spawn(async move {
        LogsClient::new(channel)
            .publish(ReceiverStream::new(rx))
            .await
    });
    let mut lines = futures::stream::select_all(streams).ready_chunks(BATCH_LINES);
    loop {
        let batch = tokio::select! {
            _ = stop.cancelled() => break,
            batch = lines.next() => batch,
        };
        let Some(entries) = batch else { break };
        let message = PublishLogsMessage {
            entries,
            ..Default::default()
        };
        if tx.send(message).await.is_err() {
            break;
        }
    }
    drop(tx);
    if let Ok(Err(status)) = call.await {
        debug!(subscription = %subscription.id, %status, "publishing logs failed");
    }
}
