//! An OCI image layout: `index.json` points at manifests (or nested indexes) in
//! `blobs/sha256/`, named by `org.opencontainers.image.ref.name` annotations.

use super::super::blobs::BlobStore;
use super::super::digest::Digest;
use super::super::oci::{
    self, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, Descriptor, Index, Manifest,
    host_architecture, oci_layer_media_type,
};
use super::{ImportError, Prepared, Source, choose_names, copy_blob, json, store_manifest};

/// Nested indexes followed at most.
const MAX_INDEX_DEPTH: usize = 4;

/// Where the layout keeps the blob `digest`.
fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// Reads a small blob of the layout and checks it against its descriptor.
fn read_verified(source: &dyn Source, desc: &Descriptor) -> Result<Vec<u8>, ImportError> {
    let bytes = source.read_small(&blob_path(&desc.digest))?;
    let actual = Digest::of(&bytes);
    if actual != desc.digest {
        return Err(ImportError::Invalid(format!(
            "blob {} does not match its digest (got {actual})",
            desc.digest
        )));
    }
    Ok(bytes)
}

/// Whether a media type is an index (OCI or Docker list).
fn is_index(media_type: &str) -> bool {
    media_type == oci::MEDIA_INDEX || media_type == oci::DOCKER_LIST
}

/// Imports every image listed in the layout's `index.json`.
pub fn import(
    blobs: &BlobStore,
    source: &dyn Source,
    name: Option<&str>,
) -> Result<Vec<Prepared>, ImportError> {
    let index: Index = json("index.json", &source.read_small("index.json")?)?;
    if index.manifests.is_empty() {
        return Err(ImportError::Invalid("index.json lists no image".into()));
    }
    let archive_names = index
        .manifests
        .iter()
        .map(|d| {
            d.annotations
                .get(ANNOTATION_CONTAINERD_NAME)
                .or_else(|| d.annotations.get(ANNOTATION_REF_NAME))
                .map(|n| vec![n.clone()])
                .unwrap_or_default()
        })
        .collect();
    let names = choose_names(archive_names, name, "this OCI layout")?;
    index
        .manifests
        .iter()
        .zip(names)
        .map(|(desc, names)| {
            let (desc, bytes) = pick_manifest(source, desc, 0)?;
            Ok(Prepared {
                names,
                manifest: import_manifest(blobs, source, &desc, &bytes)?,
            })
        })
        .collect()
}

/// Follows nested indexes to the manifest for this node's platform.
fn pick_manifest(
    source: &dyn Source,
    desc: &Descriptor,
    depth: usize,
) -> Result<(Descriptor, Vec<u8>), ImportError> {
    let bytes = read_verified(source, desc)?;
    if !is_index(&desc.media_type) {
        return Ok((desc.clone(), bytes));
    }
    if depth >= MAX_INDEX_DEPTH {
        return Err(ImportError::Invalid("image indexes nested too deep".into()));
    }
    let index: Index = json(&format!("index {}", desc.digest), &bytes)?;
    let arch = host_architecture();
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
        .collect();
    let chosen = match (candidates.first(), index.manifests.as_slice()) {
        (Some(d), _) => *d,
        (None, [only]) => only,
        _ => {
            return Err(ImportError::Invalid(format!(
                "index {} has no image for linux/{arch}",
                desc.digest
            )));
        }
    };
    pick_manifest(source, chosen, depth + 1)
}

/// Copies a manifest's config and layers and stores the manifest (rewritten with
/// OCI media types when it is a Docker one, which changes its digest).
fn import_manifest(
    blobs: &BlobStore,
    source: &dyn Source,
    desc: &Descriptor,
    bytes: &[u8],
) -> Result<Digest, ImportError> {
    let manifest: Manifest = json(&format!("manifest {}", desc.digest), bytes)?;
    let docker = desc.media_type == oci::DOCKER_MANIFEST
        || manifest.media_type.as_deref() == Some(oci::DOCKER_MANIFEST);
    let config_type = manifest.config.media_type.as_str();
    if config_type != oci::MEDIA_CONFIG
        && config_type != "application/vnd.docker.container.image.v1+json"
    {
        return Err(ImportError::Invalid(format!(
            "manifest {} is not a container image (config type {config_type})",
            desc.digest
        )));
    }
    let blob_descs = std::iter::once(&manifest.config).chain(&manifest.layers);
    for blob in blob_descs {
        copy_blob(blobs, source, &blob_path(&blob.digest), &blob.digest)?;
    }
    if !docker {
        // Kept byte for byte, so the image id is the layout's manifest digest.
        blobs.write(&desc.digest, bytes)?;
        return Ok(desc.digest.clone());
    }
    let mut converted = manifest;
    converted.media_type = Some(oci::MEDIA_MANIFEST.into());
    converted.config.media_type = oci::MEDIA_CONFIG.into();
    for layer in &mut converted.layers {
        layer.media_type = oci_layer_media_type(&layer.media_type).to_string();
    }
    store_manifest(blobs, &converted)
}
