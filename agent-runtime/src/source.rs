//! Where a node gets the images its tasks need: the cluster's managers, which hold
//! every imported image. The worker implements this over gRPC; the runtime only
//! sees the trait.

use std::io::Read;
use std::sync::Arc;

use async_trait::async_trait;
use rswarm_proto::api::Image;

/// Consumes one blob's bytes on a blocking thread (the local blob store, which
/// checks the digest as it writes). May be called again after a failed attempt, to
/// fetch from another manager.
pub type BlobSink = Arc<dyn Fn(&mut dyn Read) -> Result<(), String> + Send + Sync>;

/// Why an image could not be had from the cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// No image of that name is known to the cluster (or no manager holds the blob).
    #[error("{0} not found")]
    NotFound(String),
    /// No manager could be reached, or a transfer broke off.
    #[error("{0}")]
    Unavailable(String),
}

/// The cluster's images, as seen from a node.
#[async_trait]
pub trait ImageSource: Send + Sync {
    /// The cluster's record of the image called `name` (`NAME[:TAG]`).
    async fn resolve(&self, name: &str) -> Result<Image, SourceError>;
    /// Streams blob `digest` into `sink`.
    async fn fetch_blob(&self, digest: &str, sink: BlobSink) -> Result<(), SourceError>;
}
