//! A stored image as the rest of the runtime sees it.

use super::config::{ConfigFile, ImageConfig};
use super::digest::Digest;
use super::oci::Manifest;

/// An image in the store: its manifest and config, parsed and verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The manifest digest, the image's id.
    pub id: Digest,
    /// Size of the manifest blob in bytes.
    pub manifest_size: u64,
    /// The manifest: config and layers, bottom-most first.
    pub manifest: Manifest,
    /// The whole config blob.
    pub config: ConfigFile,
    /// Every name that points at the image (`name:tag`), sorted.
    pub names: Vec<String>,
}

impl Image {
    /// Every blob the image needs, manifest first, then config, then layers bottom-
    /// most first: what a node must fetch before [`super::ImageStore::add_image`].
    pub fn blobs(&self) -> Vec<Digest> {
        std::iter::once(self.id.clone())
            .chain(std::iter::once(self.manifest.config.digest.clone()))
            .chain(self.manifest.layers.iter().map(|l| l.digest.clone()))
            .collect()
    }

    /// The layer blob digests, bottom-most first.
    pub fn layers(&self) -> Vec<Digest> {
        self.manifest
            .layers
            .iter()
            .map(|l| l.digest.clone())
            .collect()
    }

    /// How to run the image (empty when the config has no `config` section).
    pub fn run_config(&self) -> ImageConfig {
        self.config.config.clone().unwrap_or_default()
    }

    /// Stored size: manifest, config and (compressed) layers.
    pub fn size(&self) -> u64 {
        self.manifest_size
            + self.manifest.config.size
            + self.manifest.layers.iter().map(|l| l.size).sum::<u64>()
    }

    /// A line for listings.
    pub fn summary(&self) -> ImageSummary {
        ImageSummary {
            names: self.names.clone(),
            id: self.id.clone(),
            size: self.size(),
            created: self.config.created.clone(),
        }
    }
}

/// One image in a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSummary {
    /// Its names (`name:tag`), sorted.
    pub names: Vec<String>,
    /// The manifest digest.
    pub id: Digest,
    /// Stored size in bytes (compressed layers, config, manifest).
    pub size: u64,
    /// When it was built (RFC 3339), when the config says.
    pub created: Option<String>,
}

/// What [`super::ImageStore::remove`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removed {
    /// The names removed.
    pub untagged: Vec<String>,
    /// The image id when its last name went and its content was deleted.
    pub deleted: Option<Digest>,
    /// How many blobs were deleted (blobs shared with other images stay).
    pub blobs_deleted: usize,
}
