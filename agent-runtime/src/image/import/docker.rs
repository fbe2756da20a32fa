//! A `docker save` archive: `manifest.json` lists each image's config file, layer
//! tars and repo tags.

use std::io::{BufRead, BufReader};

use serde::Deserialize;

use super::super::blobs::BlobStore;
use super::super::compress::Compression;
use super::super::config::ConfigFile;
use super::super::digest::Digest;
use super::super::oci::{self, Descriptor, Manifest};
use super::{ImportError, Prepared, Source, choose_names, json, store_manifest};

/// One image in `manifest.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SavedImage {
    /// Path of the config JSON in the archive.
    config: String,
    /// The image's names; `null` when saved by id.
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    /// Paths of the layer tars, bottom-most first.
    layers: Vec<String>,
}

/// Imports every image of a `docker save` archive.
pub fn import(
    blobs: &BlobStore,
    source: &dyn Source,
    name: Option<&str>,
) -> Result<Vec<Prepared>, ImportError> {
    let saved: Vec<SavedImage> = json("manifest.json", &source.read_small("manifest.json")?)?;
    if saved.is_empty() {
        return Err(ImportError::Invalid("manifest.json lists no image".into()));
    }
    let names = choose_names(
        saved
            .iter()
            .map(|s| s.repo_tags.clone().unwrap_or_default())
            .collect(),
        name,
        "this docker save archive",
    )?;
    saved
        .iter()
        .zip(names)
        .map(|(image, names)| {
            Ok(Prepared {
                names,
                manifest: import_one(blobs, source, image)?,
            })
        })
        .collect()
}

/// Stores one image's config and layers and an OCI manifest for them.
fn import_one(
    blobs: &BlobStore,
    source: &dyn Source,
    image: &SavedImage,
) -> Result<Digest, ImportError> {
    let config_bytes = source.read_small(&image.config)?;
    let config: ConfigFile = json(&image.config, &config_bytes)?;
    if config.rootfs.diff_ids.len() != image.layers.len() {
        return Err(ImportError::Invalid(format!(
            "{} lists {} layers but manifest.json {}",
            image.config,
            config.rootfs.diff_ids.len(),
            image.layers.len()
        )));
    }
    // Stored as is: the config digest stays Docker's image id, and Docker's config
    // is a superset of the OCI one.
    let config_digest = blobs.put(&config_bytes)?;
    let mut layers = Vec::new();
    for path in &image.layers {
        let staged = blobs.stage(source.open(path)?)?;
        let head = {
            let f = std::fs::File::open(staged.path()).map_err(|source| ImportError::Read {
                path: path.clone(),
                source,
            })?;
            let mut r = BufReader::new(f);
            Compression::detect(r.fill_buf().map_err(|source| ImportError::Read {
                path: path.clone(),
                source,
            })?)
        };
        let size = staged.size;
        let digest = blobs.commit(staged)?;
        layers.push(Descriptor {
            media_type: head.layer_media_type().into(),
            digest,
            size,
            annotations: Default::default(),
            platform: None,
        });
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(oci::MEDIA_MANIFEST.into()),
        config: Descriptor {
            media_type: oci::MEDIA_CONFIG.into(),
            digest: config_digest,
            size: config_bytes.len() as u64,
            annotations: Default::default(),
            platform: None,
        },
        layers,
        annotations: Default::default(),
    };
    store_manifest(blobs, &manifest)
}
