//! The node's image store: content-addressed blobs, image import, layers unpacked
//! once in overlayfs format, and the image config turned into a process.
//!
//! # Layout on disk (`dir`, normally `<runtime root>/images`)
//! ```text
//! blobs/sha256/<hex>      layers, configs, manifests (verified on write and read)
//! layers/sha256/<hex>/    a layer unpacked once (hex = layer blob digest)
//! refs.json               name:tag -> manifest digest (atomic rewrite)
//! refs.lock               serialises imports, registrations and removals
//! tmp/                    scratch space of imports
//! ```
//! Every method blocks on file I/O: async callers use `spawn_blocking`.
//!
//! # Parts
//! - [`digest`]: [`Digest`] and verifying readers; [`blobs`]: the blob store.
//! - [`import`]: rootfs tarballs, `docker save` archives, OCI layouts.
//! - [`unpack`] and [`layerfs`]: hostile-safe layer unpacking, whiteouts.
//! - [`config`]: the image config and Docker's entrypoint/cmd/env rules.
//! - [`refs`]: names and `refs.json`.

pub mod blobs;
pub mod compress;
pub mod config;
pub mod digest;
mod fsutil;
pub mod import;
pub mod layerfs;
mod layers;
mod model;
pub mod oci;
pub mod refs;
mod remove;
#[cfg(test)]
mod testutil;
pub mod unpack;

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use blobs::{BlobError, BlobStore};
pub use config::{ConfigError, ConfigFile, ImageConfig, ProcessSpec};
pub use digest::{Digest, VerifiedReader};
pub use import::ImportError;
pub use layerfs::{HostFs, LayerFs};
pub use model::{Image, ImageSummary, Removed};
pub use refs::{RefsError, normalize};
pub use unpack::UnpackError;

use import::{Importer, Prepared};
use oci::Manifest;
use refs::{RefMap, Refs, RefsLock};

/// What went wrong in the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No image has this name or id.
    #[error("no image {0}")]
    NotFound(String),
    /// An id prefix matches several images.
    #[error("image id prefix {0} matches several images")]
    Ambiguous(String),
    /// The image's content is still used (by a container) and cannot be deleted.
    #[error("image {name} ({id}) is in use")]
    InUse {
        /// The name being removed.
        name: String,
        /// The image id.
        id: Digest,
    },
    /// A stored manifest or config is unusable.
    #[error("image {id}: {reason}")]
    Invalid {
        /// The manifest digest.
        id: Digest,
        /// What is wrong.
        reason: String,
    },
    /// A layer could not be unpacked.
    #[error("layer {layer}: {source}")]
    Unpack {
        /// The layer blob digest.
        layer: Digest,
        /// Why.
        source: UnpackError,
    },
    /// A layer's uncompressed content does not match the config's `diff_ids`.
    #[error("layer {layer}: uncompressed digest {actual} differs from the config's {expected}")]
    DiffId {
        /// The layer blob digest.
        layer: Digest,
        /// The config's diff_id.
        expected: Digest,
        /// What the layer uncompressed to.
        actual: Digest,
    },
    /// A blob operation failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// An import failed.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// A name or `refs.json` problem.
    #[error(transparent)]
    Refs(#[from] RefsError),
    /// A file-system operation on the store failed.
    #[error("image store {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// Attaches a path to an io error.
fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The images of one node.
#[derive(Clone, Debug)]
pub struct ImageStore {
    /// The store's root directory.
    dir: PathBuf,
    /// `blobs/sha256`.
    blobs: BlobStore,
    /// `layers/sha256`.
    layers_dir: PathBuf,
    /// Scratch space for imports.
    tmp_dir: PathBuf,
    /// `refs.json`.
    refs: Refs,
    /// Privileged operations of unpacking.
    fs: Arc<dyn LayerFs>,
}

impl ImageStore {
    /// Opens (creating it if needed) the store in `dir`, unpacking as root.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, ImageError> {
        Self::with_fs(dir, Arc::new(HostFs))
    }

    /// Opens the store with other privileged operations (a recording fake in tests).
    pub fn with_fs(dir: impl Into<PathBuf>, fs: Arc<dyn LayerFs>) -> Result<Self, ImageError> {
        let dir = dir.into();
        let blobs = BlobStore::new(dir.join("blobs").join("sha256"))?;
        let layers_dir = dir.join("layers").join("sha256");
        let tmp_dir = dir.join("tmp");
        for d in [&layers_dir, &tmp_dir] {
            fs::create_dir_all(d).map_err(io_at(d))?;
        }
        for d in [blobs.dir(), &layers_dir, &tmp_dir] {
            fsutil::remove_stale_temps(d);
        }
        Ok(ImageStore {
            refs: Refs::new(&dir),
            dir,
            blobs,
            layers_dir,
            tmp_dir,
            fs,
        })
    }

    /// The store's root directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The blob store, for distribution.
    pub fn blob_store(&self) -> &BlobStore {
        &self.blobs
    }

    /// Whether the blob is stored.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blobs.has(digest)
    }

    /// Opens a blob; the reader fails at its end when the content is corrupt.
    pub fn open_blob(&self, digest: &Digest) -> Result<impl Read + use<>, ImageError> {
        Ok(self.blobs.open(digest)?)
    }

    /// A stored blob's size in bytes.
    pub fn blob_size(&self, digest: &Digest) -> Result<u64, ImageError> {
        Ok(self.blobs.size(digest)?)
    }

    /// Stores a blob fetched from elsewhere; fails (keeping nothing) when the
    /// content does not hash to `digest`.
    pub fn write_blob(&self, digest: &Digest, reader: impl Read) -> Result<(), ImageError> {
        Ok(self.blobs.write(digest, reader)?)
    }

    /// Imports an archive (rootfs tarball, `docker save` or OCI layout tar; plain,
    /// gzip or zstd) and names its images; `name` sets the name of a single-image
    /// archive. Returns the imported images.
    pub fn import(&self, reader: impl Read, name: Option<&str>) -> Result<Vec<Image>, ImageError> {
        let importer = self.importer();
        // Spooled without the lock: reading stdin may take long.
        let staged = importer.stage(reader)?;
        let lock = self.refs.lock()?;
        let prepared = importer.import_staged(staged, name)?;
        self.register(&lock, prepared)
    }

    /// Imports from a path: an image layout directory (OCI, or an unpacked `docker
    /// save`), or an archive file as [`ImageStore::import`] takes.
    pub fn import_path(&self, path: &Path, name: Option<&str>) -> Result<Vec<Image>, ImageError> {
        if !path.is_dir() {
            let f = fs::File::open(path).map_err(io_at(path))?;
            return self.import(BufReader::new(f), name);
        }
        let lock = self.refs.lock()?;
        let prepared = self.importer().import_dir(path, name)?;
        self.register(&lock, prepared)
    }

    /// Names an image whose blobs were fetched with [`ImageStore::write_blob`], after
    /// checking every blob it references is present and matches its digest.
    pub fn add_image(&self, name: &str, manifest: &Digest) -> Result<Image, ImageError> {
        let name = normalize(name)?;
        let lock = self.refs.lock()?;
        let image = self.load(manifest, Vec::new())?;
        for blob in image.blobs() {
            self.blobs.verify(&blob)?;
        }
        let mut images = self.register(
            &lock,
            vec![Prepared {
                names: vec![name],
                manifest: manifest.clone(),
            }],
        )?;
        images
            .pop()
            .ok_or_else(|| ImageError::NotFound(manifest.to_string()))
    }

    /// The image a name (`name[:tag]`), a full id (`sha256:<hex>`) or a unique id
    /// prefix of at least 12 hex characters stands for.
    pub fn resolve(&self, name: &str) -> Result<Option<Image>, ImageError> {
        let refs = self.refs.load()?;
        match find(&refs, name)? {
            Some(id) => Ok(Some(self.load(&id, names_of(&refs, &id))?)),
            None => Ok(None),
        }
    }

    /// Every image, sorted by first name. An image whose manifest or config cannot
    /// be read is listed with size 0.
    pub fn list(&self) -> Result<Vec<ImageSummary>, ImageError> {
        let refs = self.refs.load()?;
        let mut by_id: BTreeMap<&Digest, Vec<String>> = BTreeMap::new();
        for (name, id) in &refs {
            by_id.entry(id).or_default().push(name.clone());
        }
        let mut out = Vec::new();
        for (id, names) in by_id {
            // A broken image is still listed, so it can be seen and removed.
            let summary = match self.load(id, names.clone()) {
                Ok(image) => image.summary(),
                Err(err) => {
                    tracing::warn!(image = %id, %err, "unreadable image");
                    ImageSummary {
                        names,
                        id: id.clone(),
                        size: 0,
                        created: None,
                    }
                }
            };
            out.push(summary);
        }
        out.sort_by(|a, b| a.names.cmp(&b.names));
        Ok(out)
    }

    /// The `blobs/sha256` directory.
    fn blobs_dir(&self) -> PathBuf {
        self.dir.join("blobs").join("sha256")
    }

    /// The importer over this store's blobs.
    fn importer(&self) -> Importer<'_> {
        Importer {
            blobs: &self.blobs,
            tmp_dir: &self.tmp_dir,
        }
    }

    /// Checks the prepared images are complete and points their names at them,
    /// in one atomic rewrite of `refs.json` (the last step of any import).
    fn register(&self, lock: &RefsLock, prepared: Vec<Prepared>) -> Result<Vec<Image>, ImageError> {
        for p in &prepared {
            let image = self.load(&p.manifest, Vec::new())?;
            for blob in image.blobs() {
                if !self.blobs.has(&blob) {
                    return Err(BlobError::Missing(blob).into());
                }
            }
        }
        let mut refs = self.refs.load()?;
        for p in &prepared {
            for name in &p.names {
                if let Some(old) = refs.insert(name.clone(), p.manifest.clone())
                    && old != p.manifest
                {
                    tracing::info!(name = %name, old = %old, new = %p.manifest, "image name moved");
                }
            }
        }
        self.refs.save(lock, &refs)?;
        prepared
            .iter()
            .map(|p| self.load(&p.manifest, names_of(&refs, &p.manifest)))
            .collect()
    }

    /// Reads and checks an image's manifest and config.
    fn load(&self, id: &Digest, names: Vec<String>) -> Result<Image, ImageError> {
        let invalid = |reason: String| ImageError::Invalid {
            id: id.clone(),
            reason,
        };
        let bytes = self.blobs.read(id)?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| invalid(format!("manifest: {e}")))?;
        let config_bytes = self.blobs.read(&manifest.config.digest)?;
        let config: ConfigFile =
            serde_json::from_slice(&config_bytes).map_err(|e| invalid(format!("config: {e}")))?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(invalid(format!(
                "config lists {} layers, manifest {}",
                config.rootfs.diff_ids.len(),
                manifest.layers.len()
            )));
        }
        Ok(Image {
            id: id.clone(),
            manifest_size: bytes.len() as u64,
            manifest,
            config,
            names,
        })
    }
}

/// The names pointing at `id`, sorted.
fn names_of(refs: &RefMap, id: &Digest) -> Vec<String> {
    refs.iter()
        .filter(|(_, d)| *d == id)
        .map(|(n, _)| n.clone())
        .collect()
}

/// The manifest digest `name` stands for: a name, a full id or an id prefix.
fn find(refs: &RefMap, name: &str) -> Result<Option<Digest>, ImageError> {
    if let Ok(normal) = normalize(name)
        && let Some(id) = refs.get(&normal)
    {
        return Ok(Some(id.clone()));
    }
    if let Ok(id) = name.parse::<Digest>() {
        return Ok(refs.values().any(|d| *d == id).then_some(id));
    }
    let prefix = name.strip_prefix("sha256:").unwrap_or(name);
    if prefix.len() < 12 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let mut matches: Vec<&Digest> = refs
        .values()
        .filter(|d| d.hex().starts_with(prefix))
        .collect();
    matches.sort();
    matches.dedup();
    match matches.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).clone())),
        _ => Err(ImageError::Ambiguous(name.to_string())),
    }
}

#[cfg(test)]
mod tests;
