//! Layers unpacked once per node into `layers/sha256/<hex>/`, shared by every
//! container using them as overlay lower directories. Containers in a user
//! namespace get a copy unpacked once per mapping, owned by their ids:
//! `layers/sha256/<hex>@<uid>-<gid>-<size>/`.

use std::fs::{self, File};
use std::io::{self, BufReader};
use std::path::PathBuf;

use super::compress::decompress;
use super::digest::{Digest, HashingReader};
use super::fsutil::{TempPath, sync_dir, temp_name};
use super::layerfs::{LayerFs, ShiftedFs};
use super::unpack::{UnpackError, unpack_tar};
use crate::idmap::IdMap;

/// Separates a layer's digest from the mapping in a shifted copy's directory name.
pub(super) const MAPPED_SEPARATOR: char = '@';
use super::{Image, ImageError, ImageStore, io_at};

impl ImageStore {
    /// Where the layer blob `layer` is (or will be) unpacked.
    pub fn layer_dir(&self, layer: &Digest) -> PathBuf {
        self.layer_dir_mapped(layer, None)
    }

    /// Where the layer blob `layer` is (or will be) unpacked for containers with
    /// the user namespace mapping `map` (`None`: unshifted).
    pub fn layer_dir_mapped(&self, layer: &Digest, map: Option<&IdMap>) -> PathBuf {
        match map {
            None => self.layers_dir.join(layer.hex()),
            Some(map) => self.layers_dir.join(format!(
                "{}{MAPPED_SEPARATOR}{}",
                layer.hex(),
                map.dir_suffix()
            )),
        }
    }

    /// The image's unpacked layers, top-most first (overlayfs `lowerdir` order),
    /// unpacking those not yet on this node.
    pub fn lower_dirs(&self, image: &Image) -> Result<Vec<PathBuf>, ImageError> {
        self.lower_dirs_mapped(image, None)
    }

    /// Like [`ImageStore::lower_dirs`], for containers in a user namespace with
    /// the mapping `map`: the layers' owners are shifted into the mapping's host
    /// range, so the image's files show as owned by the container's ids.
    pub fn lower_dirs_mapped(
        &self,
        image: &Image,
        map: Option<&IdMap>,
    ) -> Result<Vec<PathBuf>, ImageError> {
        let mut dirs = Vec::with_capacity(image.manifest.layers.len());
        for (i, layer) in image.manifest.layers.iter().enumerate() {
            let diff_id = image.config.rootfs.diff_ids.get(i);
            dirs.push(self.unpack_layer_mapped(&layer.digest, diff_id, map)?);
        }
        dirs.reverse();
        Ok(dirs)
    }

    /// Unpacks one layer unless already done, and returns its directory.
    ///
    /// The layer is unpacked into a temp directory next to its final place and
    /// renamed in once complete, so a directory under its final name is always
    /// whole. Two callers racing on the same layer both unpack; the second rename
    /// finds the place taken and its copy is dropped.
    pub fn unpack_layer(
        &self,
        layer: &Digest,
        diff_id: Option<&Digest>,
    ) -> Result<PathBuf, ImageError> {
        self.unpack_layer_mapped(layer, diff_id, None)
    }

    /// Unpacks one layer for the mapping `map` unless already done (see
    /// [`ImageStore::unpack_layer`]), and returns its directory.
    pub fn unpack_layer_mapped(
        &self,
        layer: &Digest,
        diff_id: Option<&Digest>,
        map: Option<&IdMap>,
    ) -> Result<PathBuf, ImageError> {
        let dest = self.layer_dir_mapped(layer, map);
        if dest.is_dir() {
            return Ok(dest);
        }
        let tmp = TempPath::new(self.layers_dir.join(temp_name(layer.hex())));
        fs::create_dir(tmp.path()).map_err(io_at(tmp.path()))?;
        let unpack_err = |source| ImageError::Unpack {
            layer: layer.clone(),
            source,
        };
        let mut blob = self.blobs.open(layer)?;
        let (_, stream) = decompress(BufReader::new(&mut blob))
            .map_err(|e| unpack_err(UnpackError::Archive(e)))?;
        let mut hashing = HashingReader::new(stream);
        let shifted;
        let fs: &dyn LayerFs = match map {
            None => self.fs.as_ref(),
            Some(map) => {
                shifted = ShiftedFs {
                    inner: self.fs.as_ref(),
                    map: *map,
                };
                &shifted
            }
        };
        unpack_tar(&mut hashing, tmp.path(), fs).map_err(unpack_err)?;
        let (actual, _) = hashing
            .finish()
            .map_err(|e| unpack_err(UnpackError::Archive(e)))?;
        // The compressed blob is checked against its own digest too, to its end.
        blob.finish()
            .map_err(|e| ImageError::Blob(self.blobs.read_error(layer, e)))?;
        if let Some(expected) = diff_id
            && *expected != actual
        {
            return Err(ImageError::DiffId {
                layer: layer.clone(),
                expected: expected.clone(),
                actual,
            });
        }
        // Flushed before the rename, so a crash never leaves a named but empty layer.
        let root = File::open(tmp.path()).map_err(io_at(tmp.path()))?;
        rustix::fs::syncfs(&root).map_err(|e| io_at(tmp.path())(e.into()))?;
        match tmp.persist(&dest) {
            Ok(()) => {
                sync_dir(&self.layers_dir).map_err(io_at(&self.layers_dir))?;
                tracing::debug!(layer = %layer, map = ?map, "layer unpacked");
                Ok(dest)
            }
            // Another caller renamed its copy in first; ours is removed on drop.
            Err(e) if dest.is_dir() && is_taken(&e) => Ok(dest),
            Err(e) => Err(io_at(&dest)(e)),
        }
    }
}

/// Whether a rename failed because the destination directory exists.
fn is_taken(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::AlreadyExists | io::ErrorKind::DirectoryNotEmpty
    )
}
