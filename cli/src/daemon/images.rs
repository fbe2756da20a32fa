//! The node's image store as the managers' image service uses it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rswarm_agent_runtime::image::{Digest, Image, ImageError, ImageStore};
use rswarm_manager::images::{BackendError, ImageBackend, Imported};
use rswarm_proto::api::BlobRef;

/// [`ImageStore`] behind the manager's [`ImageBackend`] seam.
pub struct StoreBackend {
    store: Arc<ImageStore>,
    scratch: PathBuf,
}

impl StoreBackend {
    /// The backend of `store`, spooling uploads into `scratch` (same file system).
    pub fn new(store: Arc<ImageStore>, scratch: PathBuf) -> StoreBackend {
        StoreBackend { store, scratch }
    }
}

fn digest(text: &str) -> Result<Digest, BackendError> {
    text.parse()
        .map_err(|e| BackendError::Invalid(format!("bad digest {text:?}: {e}")))
}

fn failed(err: ImageError) -> BackendError {
    match err {
        ImageError::Import(e) => BackendError::Invalid(e.to_string()),
        ImageError::Refs(e) => BackendError::Invalid(e.to_string()),
        ImageError::NotFound(what) => BackendError::NotFound(what),
        other => BackendError::Failed(other.to_string()),
    }
}

/// The record of an image as the cluster keeps it.
pub fn imported(image: &Image) -> Imported {
    let mut blobs = vec![
        BlobRef {
            digest: image.id.to_string(),
            size: image.manifest_size,
        },
        BlobRef {
            digest: image.manifest.config.digest.to_string(),
            size: image.manifest.config.size,
        },
    ];
    blobs.extend(image.manifest.layers.iter().map(|l| BlobRef {
        digest: l.digest.to_string(),
        size: l.size,
    }));
    Imported {
        id: image.id.to_string(),
        names: image.names.clone(),
        blobs,
    }
}

impl ImageBackend for StoreBackend {
    fn scratch_dir(&self) -> PathBuf {
        self.scratch.clone()
    }

    fn import(&self, archive: &Path, name: Option<&str>) -> Result<Vec<Imported>, BackendError> {
        let images = self.store.import_path(archive, name).map_err(failed)?;
        Ok(images.iter().map(imported).collect())
    }

    fn has_blob(&self, digest_text: &str) -> bool {
        digest(digest_text).is_ok_and(|d| self.store.has_blob(&d))
    }

    fn open_blob(&self, digest_text: &str) -> Result<Box<dyn Read + Send>, BackendError> {
        let d = digest(digest_text)?;
        if !self.store.has_blob(&d) {
            return Err(BackendError::NotFound(digest_text.to_owned()));
        }
        Ok(Box::new(self.store.open_blob(&d).map_err(failed)?))
    }

    fn write_blob(&self, digest_text: &str, data: &mut dyn Read) -> Result<(), BackendError> {
        let d = digest(digest_text)?;
        self.store.write_blob(&d, data).map_err(failed)
    }

    fn register(&self, id: &str, names: &[String]) -> Result<(), BackendError> {
        let d = digest(id)?;
        for name in names {
            self.store.add_image(name, &d).map_err(failed)?;
        }
        Ok(())
    }

    fn forget(&self, id: &str) -> Result<(), BackendError> {
        // The managers refuse to remove an image while a service uses it, so no
        // task of this node should still run on it.
        match self.store.remove(id, |_| false) {
            Ok(_) | Err(ImageError::NotFound(_)) => Ok(()),
            Err(err) => Err(failed(err)),
        }
    }
}
