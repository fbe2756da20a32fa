//! Image import: tells the three accepted formats apart and stores each image as an
//! OCI manifest, an OCI config and its layers, all as verified blobs.
//!
//! - A root filesystem tarball (like `docker import`): one layer, an empty config.
//! - A `docker save` archive: `manifest.json`, configs and layer tars.
//! - An OCI image layout: `oci-layout`, `index.json` and `blobs/sha256/...`, as a
//!   tar or a directory.
//!
//! Archives may be plain, gzip or zstd. Only blobs are written here; names are
//! registered by the caller once every blob is in place, so a crash never leaves a
//! half image visible.

mod docker;
mod oci;
mod rootfs;
mod source;

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

pub use source::{DirSource, Source, TarIndex, TarSource};

use super::blobs::{BlobError, BlobStore, Staged};
use super::compress::{Compression, decompress};
use super::digest::{Digest, DigestError, HashingReader};
use super::fsutil::{TempPath, temp_name};
use super::oci::Manifest;
use super::refs::{RefsError, normalize};

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input is empty.
    #[error("the input is empty")]
    Empty,
    /// The input is not a tar archive (plain, gzip or zstd).
    #[error("not a tar archive (plain, gzip or zstd): {0}")]
    NotTar(String),
    /// Neither the archive nor the caller names the image.
    #[error("{0} carries no image name: give one with --name")]
    NoName(&'static str),
    /// `--name` given for an archive holding several images.
    #[error("the archive holds {0} images: --name needs exactly one")]
    NameForMany(usize),
    /// A name in the archive or the one given is invalid.
    #[error(transparent)]
    Name(#[from] RefsError),
    /// The archive's structure is wrong.
    #[error("invalid image archive: {0}")]
    Invalid(String),
    /// A JSON document in the archive does not parse.
    #[error("invalid image archive: {what}: {source}")]
    Json {
        /// Which document.
        what: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A digest in the archive is malformed.
    #[error("invalid image archive: {0}")]
    Digest(#[from] DigestError),
    /// Reading the archive failed.
    #[error("reading {path}: {source}")]
    Read {
        /// What was read.
        path: String,
        /// The underlying error.
        source: io::Error,
    },
    /// Storing a blob failed (or its content did not match its digest).
    #[error(transparent)]
    Blob(#[from] BlobError),
}

/// One imported image: its manifest is stored, its names not yet registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prepared {
    /// Normalised names (`name:tag`) to register, at least one.
    pub names: Vec<String>,
    /// The stored manifest's digest, the image's id.
    pub manifest: Digest,
}

/// Parses a JSON document of the archive.
fn json<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, ImportError> {
    serde_json::from_slice(bytes).map_err(|source| ImportError::Json {
        what: what.to_string(),
        source,
    })
}

/// Stores a manifest as a blob and returns its digest.
fn store_manifest(blobs: &BlobStore, manifest: &Manifest) -> Result<Digest, ImportError> {
    let bytes = serde_json::to_vec(manifest).map_err(|source| ImportError::Json {
        what: "manifest".into(),
        source,
    })?;
    Ok(blobs.put(&bytes)?)
}

/// The names each image gets: `name` (for a single image) overrides the archive's;
/// every image needs one. `what` says what the input is, for the error.
fn choose_names(
    archive: Vec<Vec<String>>,
    name: Option<&str>,
    what: &'static str,
) -> Result<Vec<Vec<String>>, ImportError> {
    if let Some(name) = name {
        if archive.len() != 1 {
            return Err(ImportError::NameForMany(archive.len()));
        }
        return Ok(vec![vec![normalize(name)?]]);
    }
    archive
        .into_iter()
        .map(|names| {
            if names.is_empty() {
                return Err(ImportError::NoName(what));
            }
            let mut out = Vec::new();
            for n in names {
                let n = normalize(&n)?;
                if !out.contains(&n) {
                    out.push(n);
                }
            }
            Ok(out)
        })
        .collect()
}

/// Writes the file `path` of `source` as the blob `digest`, verified, unless stored.
fn copy_blob(
    blobs: &BlobStore,
    source: &dyn Source,
    path: &str,
    digest: &Digest,
) -> Result<(), ImportError> {
    if blobs.has(digest) {
        return Ok(());
    }
    let reader = source.open(path)?;
    blobs.write(digest, reader)?;
    Ok(())
}

/// Imports archives into a blob store.
pub struct Importer<'a> {
    /// Where blobs go.
    pub blobs: &'a BlobStore,
    /// Scratch space on the same file system (decompressed archives).
    pub tmp_dir: &'a Path,
}

impl Importer<'_> {
    /// Copies the whole input into a temp blob (stdin cannot be read twice).
    pub fn stage(&self, reader: impl Read) -> Result<Staged, ImportError> {
        let staged = self.blobs.stage(reader)?;
        if staged.size == 0 {
            return Err(ImportError::Empty);
        }
        Ok(staged)
    }

    /// Imports a staged archive of any of the three formats.
    pub fn import_staged(
        &self,
        staged: Staged,
        name: Option<&str>,
    ) -> Result<Vec<Prepared>, ImportError> {
        let read_err = |source| ImportError::Read {
            path: "the input".into(),
            source,
        };
        let file = File::open(staged.path()).map_err(read_err)?;
        let (compression, stream) = decompress(BufReader::new(file)).map_err(read_err)?;
        let mut hashing = HashingReader::new(stream);
        let index = TarIndex::scan(&mut hashing)?;
        let (diff_id, _) = hashing.finish().map_err(read_err)?;
        let is_archive = index.contains("manifest.json")
            || (index.contains("oci-layout") && index.contains("index.json"));
        if !is_archive {
            return rootfs::import(self.blobs, staged, compression, diff_id, name);
        }
        // Archive members are read by offset, which needs the tar uncompressed.
        let (source, _scratch) = match compression {
            Compression::None => (
                TarSource {
                    path: staged.path().to_path_buf(),
                    index,
                },
                None,
            ),
            _ => {
                let (path, scratch) = self.decompress_to_file(staged.path())?;
                let f = File::open(&path).map_err(read_err)?;
                let index = TarIndex::scan(BufReader::new(f))?;
                (TarSource { path, index }, Some(scratch))
            }
        };
        self.import_source(&source, name)
    }

    /// Imports an image layout (OCI, or an unpacked `docker save`) in a directory.
    pub fn import_dir(&self, dir: &Path, name: Option<&str>) -> Result<Vec<Prepared>, ImportError> {
        self.import_source(
            &DirSource {
                root: dir.to_path_buf(),
            },
            name,
        )
    }

    /// Imports from an archive's files, choosing the format by its marker files.
    fn import_source(
        &self,
        source: &dyn Source,
        name: Option<&str>,
    ) -> Result<Vec<Prepared>, ImportError> {
        // Docker 25+ writes both; its manifest.json carries full names while
        // index.json may carry only tags, so manifest.json wins.
        if source.has("manifest.json") {
            docker::import(self.blobs, source, name)
        } else if source.has("oci-layout") && source.has("index.json") {
            oci::import(self.blobs, source, name)
        } else {
            Err(ImportError::Invalid(
                "neither manifest.json (docker save) nor oci-layout and index.json (OCI layout)"
                    .into(),
            ))
        }
    }

    /// Decompresses `path` into a scratch file, removed when the guard drops.
    fn decompress_to_file(&self, path: &Path) -> Result<(PathBuf, TempPath), ImportError> {
        let read_err = |source| ImportError::Read {
            path: "the input".into(),
            source,
        };
        let scratch = TempPath::new(self.tmp_dir.join(temp_name("archive")));
        let out_path = scratch.path().to_path_buf();
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&out_path)
            .map_err(read_err)?;
        let (_, mut stream) =
            decompress(BufReader::new(File::open(path).map_err(read_err)?)).map_err(read_err)?;
        io::copy(&mut stream, &mut out).map_err(read_err)?;
        Ok((out_path, scratch))
    }
}

#[cfg(test)]
mod tests;
