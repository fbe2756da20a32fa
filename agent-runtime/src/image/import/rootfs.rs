//! A root filesystem tarball (like `docker import`): the tarball as given becomes
//! the single layer of an image with an empty config.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::super::blobs::{BlobStore, Staged};
use super::super::compress::Compression;
use super::super::config::{ConfigFile, ImageConfig, RootFs};
use super::super::digest::Digest;
use super::super::oci::{self, Descriptor, Manifest, host_architecture};
use super::{ImportError, Prepared, choose_names, store_manifest};

/// Stores `staged` (the tarball, `diff_id` its uncompressed digest) as a one-layer
/// image named `name`.
pub fn import(
    blobs: &BlobStore,
    staged: Staged,
    compression: Compression,
    diff_id: Digest,
    name: Option<&str>,
) -> Result<Vec<Prepared>, ImportError> {
    let names = choose_names(vec![Vec::new()], name, "a root filesystem tarball")?
        .pop()
        .unwrap_or_default();
    let size = staged.size;
    let layer = blobs.commit(staged)?;
    let config = ConfigFile {
        created: OffsetDateTime::now_utc().format(&Rfc3339).ok(),
        architecture: host_architecture().to_string(),
        os: "linux".into(),
        config: Some(ImageConfig::default()),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![diff_id],
        },
    };
    let config_bytes = serde_json::to_vec(&config).map_err(|source| ImportError::Json {
        what: "config".into(),
        source,
    })?;
    let config_digest = blobs.put(&config_bytes)?;
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
        layers: vec![Descriptor {
            media_type: compression.layer_media_type().into(),
            digest: layer,
            size,
            annotations: Default::default(),
            platform: None,
        }],
        annotations: Default::default(),
    };
    Ok(vec![Prepared {
        names,
        manifest: store_manifest(blobs, &manifest)?,
    }])
}
