//! Keeps every manager's image store complete: a manager fetches the blobs of each
//! image it does not hold from a manager that does, then records itself as a holder,
//! so images survive the loss of the manager they were imported on. Runs on every
//! manager, leader or not.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rswarm_proto::api::Image;
use rswarm_proto::blobs::fetch_blob;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tracing::{debug, info, warn};

use super::backend::ImageBackend;
use crate::controlapi::ControlError;
use crate::store::{Event, Object, Proposer, Store, StoreAction, update};

/// Opens a channel to the manager at an address (mTLS with the node's identity).
pub type Connector = Arc<dyn Fn(&str) -> Result<Channel, String> + Send + Sync>;

/// How long a failed replication waits before it is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// The replication loop of one manager.
pub struct Replicator<P> {
    store: Store,
    proposer: Arc<P>,
    backend: Arc<dyn ImageBackend>,
    node_id: String,
    connect: Connector,
}

impl<P: Proposer + 'static> Replicator<P> {
    /// A replicator for the manager `node_id`.
    pub fn new(
        store: Store,
        proposer: Arc<P>,
        backend: Arc<dyn ImageBackend>,
        node_id: String,
        connect: Connector,
    ) -> Self {
        Replicator {
            store,
            proposer,
            backend,
            node_id,
            connect,
        }
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let read_all = |tx: &crate::store::ReadTx<'_>| -> BTreeMap<String, Image> {
            tx.images().map(|i| (i.id.clone(), i.clone())).collect()
        };
        let (mut wanted, mut watch) = self.store.view_and_watch(read_all);
        wanted.retain(|_, image| !self.holds(image));
        loop {
            let mut failed = false;
            let ids: Vec<String> = wanted.keys().cloned().collect();
            for id in ids {
                let Some(image) = self.store.view(|tx| tx.image(&id).cloned()) else {
                    wanted.remove(&id);
                    continue;
                };
                match self.replicate(&image).await {
                    Ok(()) => {
                        wanted.remove(&id);
                    }
                    Err(err) => {
                        warn!(image = %id, error = %err, "image replication failed; will retry");
                        failed = true;
                    }
                }
            }
            let retry = tokio::time::sleep(if failed { RETRY } else { Duration::MAX / 4 });
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = retry => {}
                event = watch.recv() => match event {
                    None => return,
                    Some(Event::Created(Object::Image(image)) | Event::Updated(Object::Image(image))) => {
                        if !self.holds(&image) {
                            wanted.insert(image.id.clone(), image);
                        }
                    }
                    Some(Event::Removed(Object::Image(image))) => {
                        wanted.remove(&image.id);
                        self.forget(image.id).await;
                    }
                    Some(Event::Reset) => {
                        wanted = self.store.view(read_all);
                        wanted.retain(|_, image| !self.holds(image));
                    }
                    Some(_) => {}
                },
            }
        }
    }

    fn holds(&self, image: &Image) -> bool {
        image.holders.contains(&self.node_id)
    }

    /// Fetches every missing blob from a holder, registers the image locally and
    /// records this manager as a holder.
    async fn replicate(&self, image: &Image) -> Result<(), String> {
        for blob in &image.blobs {
            let backend = self.backend.clone();
            let digest = blob.digest.clone();
            let present = tokio::task::spawn_blocking(move || backend.has_blob(&digest))
                .await
                .map_err(|e| e.to_string())?;
            if !present {
                self.fetch_from_holders(image, &blob.digest).await?;
            }
        }
        let backend = self.backend.clone();
        let (id, names) = (image.id.clone(), image.names.clone());
        tokio::task::spawn_blocking(move || backend.register(&id, &names))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let node_id = self.node_id.clone();
        let id = image.id.clone();
        update::<_, ControlError, _>(&self.store, &*self.proposer, |tx| {
            Ok(match tx.image(&id) {
                Some(current) if !current.holders.contains(&node_id) => {
                    let mut image = current.clone();
                    image.holders.push(node_id.clone());
                    vec![StoreAction::UpdateImage(image)]
                }
                _ => Vec::new(),
            })
        })
        .await
        .map_err(|e| e.to_string())?;
        info!(image = %image.id, "image replicated to this manager");
        Ok(())
    }

    async fn fetch_from_holders(&self, image: &Image, digest: &str) -> Result<(), String> {
        let addrs: Vec<String> = self.store.view(|tx| {
            image
                .holders
                .iter()
                .filter(|h| **h != self.node_id)
                .filter_map(|h| tx.node(h))
                .filter_map(|n| n.manager_status.as_ref().map(|m| m.addr.clone()))
                .collect()
        });
        let mut last = format!("no manager holding {digest} is known");
        for addr in addrs {
            let channel = match (self.connect)(&addr) {
                Ok(channel) => channel,
                Err(err) => {
                    last = err;
                    continue;
                }
            };
            let backend = self.backend.clone();
            let owned = digest.to_owned();
            match fetch_blob(channel, digest, move |reader| {
                backend.write_blob(&owned, reader)
            })
            .await
            {
                Ok(()) => {
                    debug!(blob = %digest, from = %addr, "blob fetched");
                    return Ok(());
                }
                Err(err) => last = format!("{addr}: {err}"),
            }
        }
        Err(last)
    }

    async fn forget(&self, id: String) {
        let backend = self.backend.clone();
        let result = tokio::task::spawn_blocking(move || backend.forget(&id)).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(err)) => warn!(error = %err, "forgetting a removed image failed"),
            Err(err) => warn!(error = %err, "forgetting a removed image failed"),
        }
    }
}
