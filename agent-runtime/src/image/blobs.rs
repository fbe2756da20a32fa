//! The content-addressed blob store: `blobs/sha256/<hex>`, verified on write and read.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use super::digest::{Digest, HashingReader, VerifiedReader};
use super::fsutil::{TempPath, sync_dir, temp_name};

/// What went wrong with a blob.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The store has no blob with this digest.
    #[error("blob {0} is not in the store")]
    Missing(Digest),
    /// Written content does not hash to the digest it was announced with.
    #[error("blob content does not match its digest: expected {expected}, got {actual}")]
    Mismatch {
        /// The digest the writer announced.
        expected: Digest,
        /// The digest of what was actually received.
        actual: Digest,
    },
    /// A stored blob no longer hashes to its name (disk corruption or tampering).
    #[error("stored blob {digest} is corrupt: {source}")]
    Corrupt {
        /// The blob's name.
        digest: Digest,
        /// The read error, naming the digest actually found.
        source: io::Error,
    },
    /// A file-system operation on the store failed.
    #[error("blob store {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// Attaches the path to an io error.
fn io_at(path: &Path) -> impl FnOnce(io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A content-addressed store of blobs in one directory, named by their sha256 hex.
#[derive(Clone, Debug)]
pub struct BlobStore {
    /// The `blobs/sha256` directory.
    dir: PathBuf,
}

/// A blob written to a temp file in the store's directory and hashed, not yet named.
pub struct Staged {
    /// The temp file, removed on drop unless committed.
    tmp: TempPath,
    /// What the content hashes to.
    pub digest: Digest,
    /// How many bytes it holds.
    pub size: u64,
}

impl BlobStore {
    /// Opens (creating it if needed) the store in `dir`.
    pub fn new(dir: PathBuf) -> Result<Self, BlobError> {
        fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        Ok(BlobStore { dir })
    }

    /// The directory holding the blobs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob `digest` lives (whether or not it is there).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    /// Whether the blob is stored (its content is checked when read, not here).
    pub fn has(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// The stored blob's size in bytes.
    pub fn size(&self, digest: &Digest) -> Result<u64, BlobError> {
        let path = self.path(digest);
        match fs::metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(BlobError::Missing(digest.clone()))
            }
            Err(e) => Err(io_at(&path)(e)),
        }
    }

    /// Opens a blob for reading; the reader fails at its end when the content does
    /// not match the digest.
    pub fn open(&self, digest: &Digest) -> Result<VerifiedReader<BufReader<File>>, BlobError> {
        let path = self.path(digest);
        match File::open(&path) {
            Ok(f) => Ok(VerifiedReader::new(BufReader::new(f), digest.clone())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(BlobError::Missing(digest.clone()))
            }
            Err(e) => Err(io_at(&path)(e)),
        }
    }

    /// Reads a whole (small) blob, verified.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, BlobError> {
        let mut out = Vec::new();
        self.open(digest)?
            .read_to_end(&mut out)
            .map_err(|source| self.read_error(digest, source))?;
        Ok(out)
    }

    /// Re-hashes a stored blob.
    pub fn verify(&self, digest: &Digest) -> Result<(), BlobError> {
        self.open(digest)?
            .finish()
            .map_err(|source| self.read_error(digest, source))
    }

    /// Names a read failure: corruption when the content did not match.
    pub fn read_error(&self, digest: &Digest, source: io::Error) -> BlobError {
        if source.kind() == io::ErrorKind::InvalidData {
            BlobError::Corrupt {
                digest: digest.clone(),
                source,
            }
        } else {
            io_at(&self.path(digest))(source)
        }
    }

    /// Copies `reader` into a temp file in the store's directory, flushed to disk, and
    /// hashes it on the way.
    pub fn stage(&self, reader: impl Read) -> Result<Staged, BlobError> {
        let tmp = TempPath::new(self.dir.join(temp_name("blob")));
        let path = tmp.path().to_path_buf();
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_at(&path))?;
        let mut hashing = HashingReader::new(reader);
        io::copy(&mut hashing, &mut f).map_err(io_at(&path))?;
        f.flush().map_err(io_at(&path))?;
        f.sync_all().map_err(io_at(&path))?;
        let (digest, size) = hashing.finish().map_err(io_at(&path))?;
        Ok(Staged { tmp, digest, size })
    }

    /// Names a staged blob by its digest. Replacing an existing blob is harmless:
    /// same name, same content.
    pub fn commit(&self, staged: Staged) -> Result<Digest, BlobError> {
        let dest = self.path(&staged.digest);
        staged.tmp.persist(&dest).map_err(io_at(&dest))?;
        sync_dir(&self.dir).map_err(io_at(&self.dir))?;
        Ok(staged.digest)
    }

    /// Stores `reader`'s content, which must hash to `expected`; on a mismatch the
    /// error names both digests and nothing is kept.
    pub fn write(&self, expected: &Digest, reader: impl Read) -> Result<(), BlobError> {
        let staged = self.stage(reader)?;
        if &staged.digest != expected {
            return Err(BlobError::Mismatch {
                expected: expected.clone(),
                actual: staged.digest.clone(),
            });
        }
        self.commit(staged)?;
        Ok(())
    }

    /// Stores `bytes` under their own digest.
    pub fn put(&self, bytes: &[u8]) -> Result<Digest, BlobError> {
        let staged = self.stage(bytes)?;
        self.commit(staged)
    }

    /// Deletes a blob; a blob already gone is not an error.
    pub fn remove(&self, digest: &Digest) -> Result<(), BlobError> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_at(&path)(e)),
        }
    }
}

impl Staged {
    /// The temp file holding the content.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path().join("blobs/sha256")).unwrap();
        (dir, store)
    }

    fn entries(store: &BlobStore) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&store.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn write_then_read() {
        let (_d, store) = store();
        let data = b"layer bytes";
        let digest = Digest::of(data);
        assert!(!store.has(&digest));
        store.write(&digest, &data[..]).unwrap();
        assert!(store.has(&digest));
        assert_eq!(store.size(&digest).unwrap(), data.len() as u64);
        assert_eq!(store.read(&digest).unwrap(), data);
        assert_eq!(entries(&store), vec![digest.hex().to_string()]);
        // Writing it again is fine.
        store.write(&digest, &data[..]).unwrap();
    }

    #[test]
    fn write_mismatch_names_both_and_keeps_nothing() {
        let (_d, store) = store();
        let expected = Digest::of(b"what was announced");
        let err = store.write(&expected, &b"something else"[..]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&expected.to_string()), "{msg}");
        assert!(
            msg.contains(&Digest::of(b"something else").to_string()),
            "{msg}"
        );
        assert!(!store.has(&expected));
        assert!(entries(&store).is_empty(), "{:?}", entries(&store));
    }

    #[test]
    fn corrupt_blob_fails_on_read() {
        let (_d, store) = store();
        let digest = store.put(b"config json").unwrap();
        fs::write(store.path(&digest), b"config jsoN").unwrap();
        let err = store.read(&digest).unwrap_err();
        assert!(matches!(err, BlobError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains(&digest.to_string()));
        assert!(store.verify(&digest).is_err());
        let mut r = store.open(&digest).unwrap();
        assert!(io::copy(&mut r, &mut io::sink()).is_err());
    }

    #[test]
    fn missing_blob() {
        let (_d, store) = store();
        let d = Digest::of(b"nope");
        assert!(matches!(store.open(&d), Err(BlobError::Missing(_))));
        assert!(matches!(store.size(&d), Err(BlobError::Missing(_))));
        store.remove(&d).unwrap();
    }

    #[test]
    fn staged_blob_dropped_leaves_nothing() {
        let (_d, store) = store();
        let staged = store.stage(&b"abc"[..]).unwrap();
        assert_eq!(staged.digest, Digest::of(b"abc"));
        assert!(staged.path().exists());
        drop(staged);
        assert!(entries(&store).is_empty());
    }
}
