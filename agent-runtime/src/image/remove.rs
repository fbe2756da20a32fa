//! Removing names, and an image's content once no name points at it.

use std::collections::BTreeSet;
use std::fs;
use std::io;

use super::digest::Digest;
use super::fsutil::temp_name;
use super::layers::MAPPED_SEPARATOR;
use super::{Image, ImageError, ImageStore, Removed, find, io_at, names_of, normalize};

impl ImageStore {
    /// Removes a name. Given an id (or unique id prefix), removes every name of that
    /// image. When no name points at the image any more, its blobs and unpacked
    /// layers are deleted, except those another image uses.
    ///
    /// `in_use` is asked before content is deleted (containers still running on the
    /// image's layers); when it says yes nothing is changed and the error says so.
    pub fn remove(
        &self,
        name: &str,
        in_use: impl Fn(&Image) -> bool,
    ) -> Result<Removed, ImageError> {
        let lock = self.refs.lock()?;
        let mut refs = self.refs.load()?;
        let id = find(&refs, name)?.ok_or_else(|| ImageError::NotFound(name.to_string()))?;
        let untagged = match normalize(name) {
            Ok(n) if refs.get(&n) == Some(&id) => vec![n],
            _ => names_of(&refs, &id),
        };
        for n in &untagged {
            refs.remove(n);
        }
        if refs.values().any(|d| *d == id) {
            self.refs.save(&lock, &refs)?;
            return Ok(Removed {
                untagged,
                deleted: None,
                blobs_deleted: 0,
            });
        }
        // An unreadable image can still be removed: only its manifest goes then,
        // the rest is left to `prune`.
        let image = match self.load(&id, untagged.clone()) {
            Ok(image) => Some(image),
            Err(err) => {
                tracing::warn!(image = %id, %err, "removing an unreadable image");
                None
            }
        };
        if let Some(image) = &image
            && in_use(image)
        {
            return Err(ImageError::InUse {
                name: name.to_string(),
                id,
            });
        }
        let (blobs, layers) = match &image {
            Some(image) => (image.blobs(), image.layers()),
            None => (vec![id.clone()], Vec::new()),
        };
        // The name goes first: from then on the image is invisible, and a crash
        // below leaves only unreferenced blobs behind.
        self.refs.save(&lock, &refs)?;
        let mut kept: BTreeSet<Digest> = BTreeSet::new();
        let others: BTreeSet<&Digest> = refs.values().collect();
        for other in others {
            match self.load(other, Vec::new()) {
                Ok(other) => kept.extend(other.blobs()),
                Err(err) => {
                    // What it shares is unknown: keep all but the manifest.
                    tracing::warn!(image = %other, %err, "unreadable image, sharing unknown");
                    kept.extend(blobs.iter().filter(|b| **b != id).cloned());
                }
            }
        }
        let mut blobs_deleted = 0;
        for blob in &blobs {
            if !kept.contains(blob) && self.blobs.has(blob) {
                self.blobs.remove(blob)?;
                blobs_deleted += 1;
            }
        }
        for layer in &layers {
            if !kept.contains(layer) {
                self.remove_layer_dir(layer)?;
            }
        }
        tracing::info!(image = %id, blobs_deleted, "image removed");
        Ok(Removed {
            untagged,
            deleted: Some(id),
            blobs_deleted,
        })
    }

    /// Deletes every blob and unpacked layer no named image references: what a
    /// crashed import or a name moved to a newer image left behind. Layers for which
    /// `layer_in_use` says yes (a container still runs on them) stay, with their blob.
    /// Returns how many blobs and layer directories were deleted. Not to be run while
    /// blobs are being fetched for [`ImageStore::add_image`]: until registered they
    /// are unreferenced too.
    pub fn prune(&self, layer_in_use: impl Fn(&Digest) -> bool) -> Result<usize, ImageError> {
        let _lock = self.refs.lock()?;
        let refs = self.refs.load()?;
        let mut kept: BTreeSet<Digest> = BTreeSet::new();
        for id in refs.values().collect::<BTreeSet<_>>() {
            kept.extend(self.load(id, Vec::new())?.blobs());
        }
        let mut deleted = 0;
        for (dir, is_layer) in [(self.layers_dir.clone(), true), (self.blobs_dir(), false)] {
            for entry in fs::read_dir(&dir).map_err(io_at(&dir))? {
                let entry = entry.map_err(io_at(&dir))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                // Shifted copies of a layer (`<hex>@<mapping>`) go with the layer.
                let hex = match is_layer {
                    true => name.split(MAPPED_SEPARATOR).next().unwrap_or(name),
                    false => name,
                };
                let Ok(digest) = Digest::from_hex(hex) else {
                    continue; // temp entries of work in progress
                };
                if kept.contains(&digest) || layer_in_use(&digest) {
                    continue;
                }
                if is_layer {
                    self.remove_unpacked(&entry.path(), name)?;
                } else {
                    self.blobs.remove(&digest)?;
                }
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Deletes an unpacked layer and its copies shifted for user namespaces.
    fn remove_layer_dir(&self, layer: &Digest) -> Result<(), ImageError> {
        let mapped_prefix = format!("{}{MAPPED_SEPARATOR}", layer.hex());
        let dir = &self.layers_dir;
        for entry in fs::read_dir(dir).map_err(io_at(dir))? {
            let entry = entry.map_err(io_at(dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name == layer.hex() || name.starts_with(&mapped_prefix) {
                self.remove_unpacked(&entry.path(), name)?;
            }
        }
        Ok(())
    }

    /// Deletes one unpacked layer directory: renamed away first, so its final name
    /// never points at a half-deleted tree.
    fn remove_unpacked(&self, dir: &std::path::Path, name: &str) -> Result<(), ImageError> {
        let doomed = self.layers_dir.join(temp_name(&format!("rm-{name}")));
        match fs::rename(dir, &doomed) {
            Ok(()) => fs::remove_dir_all(&doomed).map_err(io_at(&doomed)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_at(dir)(e)),
        }
    }
}
