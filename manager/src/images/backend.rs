//! The node's local image store, as the managers' image service sees it.
//!
//! The manager crate does not know how images are unpacked or run: the daemon hands
//! it a [`ImageBackend`] (the container runtime's image store). Every method blocks
//! on disk I/O: callers run them on tokio's blocking pool.

use std::io::Read;
use std::path::{Path, PathBuf};

use rswarm_proto::api::BlobRef;

/// What an import produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imported {
    /// The manifest's digest.
    pub id: String,
    /// The names the image was given (`NAME:TAG`), from `--name` or the archive.
    pub names: Vec<String>,
    /// Every blob: manifest, config, then layers bottom first.
    pub blobs: Vec<BlobRef>,
}

/// Why a local image operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The archive or the request is wrong (bad format, hostile layer, no name).
    #[error("{0}")]
    Invalid(String),
    /// The blob is not in this store.
    #[error("blob {0} not found")]
    NotFound(String),
    /// Anything else: disk full, a corrupted blob.
    #[error("{0}")]
    Failed(String),
}

/// A content-addressed local image store.
pub trait ImageBackend: Send + Sync + 'static {
    /// A directory on the same file system as the store, for spooling uploads.
    fn scratch_dir(&self) -> PathBuf;
    /// Imports the archive at `archive` (one image or several), naming the image
    /// `name` if given.
    fn import(&self, archive: &Path, name: Option<&str>) -> Result<Vec<Imported>, BackendError>;
    /// Whether the blob is stored here.
    fn has_blob(&self, digest: &str) -> bool;
    /// A reader of a stored blob that fails at its end if the content does not match
    /// the digest.
    fn open_blob(&self, digest: &str) -> Result<Box<dyn Read + Send>, BackendError>;
    /// Stores a blob, checking its digest before it becomes visible.
    fn write_blob(&self, digest: &str, data: &mut dyn Read) -> Result<(), BackendError>;
    /// Records `names` for the image `id` whose blobs are all stored.
    fn register(&self, id: &str, names: &[String]) -> Result<(), BackendError>;
    /// Forgets the image `id` and frees the blobs no other image uses.
    fn forget(&self, id: &str) -> Result<(), BackendError>;
}
