//! Layers unpacked once per node into `layers/sha256/<hex>/`, shared by every
//! container using them as overlay lower directories.

use std::fs::{self, File};
use std::io::{self, BufReader};
use std::path::PathBuf;

use super::compress::decompress;
use super::digest::{Digest, HashingReader};
use super::fsutil::{TempPath, sync_dir, temp_name};
use super::unpack::{UnpackError, unpack_tar};
use super::{Image, ImageError, ImageStore, io_at};

impl ImageStore {
    /// Where the layer blob `layer` is (or will be) unpacked.
    pub fn layer_dir(&self, layer: &Digest) -> PathBuf {
        self.layers_dir.join(layer.hex())
    }

    /// The image's unpacked layers, top-most first (overlayfs `lowerdir` order),
    /// unpacking those not yet on this node.
    pub fn lower_dirs(&self, image: &Image) -> Result<Vec<PathBuf>, ImageError> {
        let mut dirs = Vec::with_capacity(image.manifest.layers.len());
        for (i, layer) in image.manifest.layers.iter().enumerate() {
            let diff_id = image.config.rootfs.diff_ids.get(i);
            dirs.push(self.unpack_layer(&layer.digest, diff_id)?);
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
        let dest = self.layer_dir(layer);
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
        unpack_tar(&mut hashing, tmp.path(), self.fs.as_ref()).map_err(unpack_err)?;
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
                tracing::debug!(layer = %layer, "layer unpacked");
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
