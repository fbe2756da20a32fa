//! The node's [`ImageSource`]: the managers' image service, leader first, then the
//! other managers in turn, so that a manager that is down or lags does not stop a
//! task from getting its image.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use rswarm_agent_runtime::{BlobSink, ImageSource, SourceError};
use rswarm_proto::api::images_client::ImagesClient;
use rswarm_proto::api::{Image, ResolveImageRequest};
use rswarm_proto::blobs::{FetchError, fetch_blob};
use rswarm_proto::tls::{Identity, node_channel};
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::session::ManagerList;

/// The managers' images, over mTLS with the node's identity.
#[derive(Clone)]
pub struct ManagerImages {
    identity: Identity,
    managers: ManagerList,
    leader: watch::Receiver<Option<String>>,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl ManagerImages {
    /// Images from the managers in `managers`, the one `leader` names first.
    pub fn new(
        identity: Identity,
        managers: ManagerList,
        leader: watch::Receiver<Option<String>>,
    ) -> Self {
        ManagerImages {
            identity,
            managers,
            leader,
            channels: Arc::default(),
        }
    }

    /// Manager addresses to try, leader first.
    fn candidates(&self) -> Vec<String> {
        let mut addrs: Vec<String> = self.leader.borrow().iter().cloned().collect();
        let known = self
            .managers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for addr in known {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        addrs
    }

    fn channel(&self, addr: &str) -> Result<Channel, String> {
        let mut cache = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(channel) = cache.get(addr) {
            return Ok(channel.clone());
        }
        let channel = node_channel(addr, &self.identity).map_err(|e| format!("{addr}: {e}"))?;
        cache.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }
}

#[async_trait]
impl ImageSource for ManagerImages {
    async fn resolve(&self, name: &str) -> Result<Image, SourceError> {
        let mut last = format!("no manager is known to ask for image {name}");
        for addr in self.candidates() {
            let channel = match self.channel(&addr) {
                Ok(channel) => channel,
                Err(err) => {
                    last = err;
                    continue;
                }
            };
            let request = ResolveImageRequest {
                name: name.to_owned(),
            };
            match ImagesClient::new(channel).resolve(request).await {
                Ok(image) => return Ok(image.into_inner()),
                // Every manager has the same records: one that answers is enough.
                Err(status) if status.code() == tonic::Code::NotFound => {
                    return Err(SourceError::NotFound(format!("image {name}")));
                }
                Err(status) => last = format!("{addr}: {}", status.message()),
            }
        }
        Err(SourceError::Unavailable(last))
    }

    async fn fetch_blob(&self, digest: &str, sink: BlobSink) -> Result<(), SourceError> {
        let mut last = SourceError::Unavailable(format!("no manager is known to fetch {digest}"));
        for addr in self.candidates() {
            let channel = match self.channel(&addr) {
                Ok(channel) => channel,
                Err(err) => {
                    last = SourceError::Unavailable(err);
                    continue;
                }
            };
            let sink = sink.clone();
            match fetch_blob(channel, digest, move |reader| sink(reader)).await {
                Ok(()) => return Ok(()),
                Err(FetchError::NotFound(_)) => {
                    last = SourceError::NotFound(format!("blob {digest}"));
                }
                Err(err) => last = SourceError::Unavailable(format!("{addr}: {err}")),
            }
        }
        Err(last)
    }
}
