//! The node's copy of the cluster's endpoint table: the leader's endpoints stream,
//! followed across leader changes, published through a watch channel for the
//! node's proxy and DNS server.

use std::time::Duration;

use rswarm_proto::api::{EndpointsMessage, EndpointsRequest};
use rswarm_proto::tls::Identity;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::dispatch::{Channels, leader};

/// Pause before reopening the stream.
const RETRY: Duration = Duration::from_millis(100);

/// Keeps `out` at the leader's latest endpoint table until `shutdown`. While no
/// leader answers, the last table stays: the proxy keeps serving what it knew.
pub async fn follow(
    identity: Identity,
    mut leader_rx: watch::Receiver<Option<String>>,
    out: watch::Sender<Option<EndpointsMessage>>,
    shutdown: CancellationToken,
) {
    let mut channels = Channels::new(identity);
    while let Some(addr) = leader(&mut leader_rx, &shutdown).await {
        let Some(mut client) = channels.client(&addr) else {
            tokio::time::sleep(RETRY).await;
            continue;
        };
        let opened = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = client.endpoints(EndpointsRequest {}) => r,
        };
        match opened {
            Ok(stream) => {
                info!(manager = %addr, "endpoint stream open");
                let mut stream = stream.into_inner();
                loop {
                    let msg = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        m = stream.message() => m,
                    };
                    match msg {
                        Ok(Some(table)) => {
                            out.send_if_modified(|current| {
                                let changed = current.as_ref() != Some(&table);
                                *current = Some(table);
                                changed
                            });
                        }
                        Ok(None) => break,
                        Err(status) => {
                            debug!(manager = %addr, %status, "endpoint stream ended");
                            break;
                        }
                    }
                }
            }
            Err(status) => debug!(manager = %addr, %status, "endpoint stream refused"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}
