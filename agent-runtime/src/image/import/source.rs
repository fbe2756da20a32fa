//! Random access to the files of an image archive: a tar (indexed once, then read by
//! offset) or a directory (an OCI layout on disk).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use super::ImportError;

/// Largest JSON document (manifest, index, config) read into memory.
pub const MAX_JSON: u64 = 16 << 20;

/// Links followed at most when resolving a path in an archive.
const MAX_LINK_HOPS: usize = 16;

/// The files of an image archive, by path relative to its root.
pub trait Source {
    /// Whether `path` names a file.
    fn has(&self, path: &str) -> bool;
    /// Opens the file at `path`.
    fn open(&self, path: &str) -> Result<Box<dyn Read + '_>, ImportError>;

    /// Reads a small (JSON) file whole.
    fn read_small(&self, path: &str) -> Result<Vec<u8>, ImportError> {
        let mut out = Vec::new();
        self.open(path)?
            .take(MAX_JSON + 1)
            .read_to_end(&mut out)
            .map_err(|source| ImportError::Read {
                path: path.to_string(),
                source,
            })?;
        if out.len() as u64 > MAX_JSON {
            return Err(ImportError::Invalid(format!(
                "{path} is larger than {MAX_JSON} bytes"
            )));
        }
        Ok(out)
    }
}

/// `path` relative, without `.` and with `..` applied; `None` when it climbs out.
pub fn clean(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => parts.push(n.to_str()?),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(parts.join("/"))
}

/// What an archive entry is.
#[derive(Clone, Debug)]
pub enum TarItem {
    /// File content at this offset of the (uncompressed) tar, this long.
    File {
        /// Byte offset of the content.
        offset: u64,
        /// Content length.
        size: u64,
    },
    /// A symlink with this target.
    Symlink(String),
    /// A hard link to this archive path.
    Hardlink(String),
    /// Anything else (directories).
    Other,
}

/// The entries of a tar archive, by cleaned path.
#[derive(Debug, Default)]
pub struct TarIndex {
    /// Entries by cleaned path; a later entry replaces an earlier one.
    pub items: HashMap<String, TarItem>,
}

impl TarIndex {
    /// Indexes the tar stream `reader`, reading it to its end-of-archive marker.
    pub fn scan(reader: impl Read) -> Result<TarIndex, ImportError> {
        let mut index = TarIndex::default();
        let mut archive = tar::Archive::new(reader);
        let not_tar = |e: io::Error| ImportError::NotTar(e.to_string());
        for entry in archive.entries().map_err(not_tar)? {
            let entry = entry.map_err(not_tar)?;
            let path = entry.path().map_err(not_tar)?;
            let Some(path) = path.to_str().and_then(clean) else {
                continue;
            };
            let link = || -> Result<String, ImportError> {
                Ok(entry
                    .link_name()
                    .map_err(not_tar)?
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default())
            };
            let item = match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => TarItem::File {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                },
                tar::EntryType::Symlink => TarItem::Symlink(link()?),
                tar::EntryType::Link => TarItem::Hardlink(link()?),
                _ => TarItem::Other,
            };
            index.items.insert(path, item);
        }
        Ok(index)
    }

    /// Whether the archive has an entry (of any kind) at `path` (already clean).
    pub fn contains(&self, path: &str) -> bool {
        self.items.contains_key(path)
    }

    /// The offset and size of the file at `path`, following links.
    pub fn locate(&self, path: &str) -> Option<(u64, u64)> {
        let mut current = clean(path)?;
        for _ in 0..MAX_LINK_HOPS {
            match self.items.get(&current)? {
                TarItem::File { offset, size } => return Some((*offset, *size)),
                TarItem::Hardlink(target) => current = clean(target)?,
                TarItem::Symlink(target) => {
                    let dir = Path::new(&current).parent().unwrap_or(Path::new(""));
                    let joined = if target.starts_with('/') {
                        target.clone()
                    } else {
                        dir.join(target).to_string_lossy().into_owned()
                    };
                    current = clean(&joined)?;
                }
                TarItem::Other => return None,
            }
        }
        None
    }
}

/// An uncompressed tar file and its index.
pub struct TarSource {
    /// The tar file.
    pub path: PathBuf,
    /// Its entries.
    pub index: TarIndex,
}

impl Source for TarSource {
    fn has(&self, path: &str) -> bool {
        self.index.locate(path).is_some()
    }

    fn open(&self, path: &str) -> Result<Box<dyn Read + '_>, ImportError> {
        let (offset, size) = self
            .index
            .locate(path)
            .ok_or_else(|| ImportError::Invalid(format!("the archive has no file {path}")))?;
        let read_err = |source| ImportError::Read {
            path: path.to_string(),
            source,
        };
        let mut f = File::open(&self.path).map_err(read_err)?;
        f.seek(SeekFrom::Start(offset)).map_err(read_err)?;
        Ok(Box::new(io::BufReader::new(f.take(size))))
    }
}

/// An image layout unpacked in a directory.
pub struct DirSource {
    /// The layout's root.
    pub root: PathBuf,
}

impl DirSource {
    /// The file for `path`, refusing paths that climb out of the root.
    fn file(&self, path: &str) -> Option<PathBuf> {
        let cleaned = clean(path)?;
        (!cleaned.is_empty()).then(|| self.root.join(cleaned))
    }
}

impl Source for DirSource {
    fn has(&self, path: &str) -> bool {
        self.file(path).is_some_and(|p| p.is_file())
    }

    fn open(&self, path: &str) -> Result<Box<dyn Read + '_>, ImportError> {
        let file = self
            .file(path)
            .ok_or_else(|| ImportError::Invalid(format!("invalid path {path:?} in the layout")))?;
        let f = File::open(&file).map_err(|source| ImportError::Read {
            path: file.display().to_string(),
            source,
        })?;
        Ok(Box::new(io::BufReader::new(f)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::testutil::TarBuilder;
    use super::*;

    #[test]
    fn cleans_paths() {
        assert_eq!(clean("./a/b/../c").as_deref(), Some("a/c"));
        assert_eq!(clean("/a").as_deref(), Some("a"));
        assert_eq!(clean("../a"), None);
    }

    #[test]
    fn locates_through_links() {
        let tar = TarBuilder::new()
            .file("./x/layer.tar", b"content")
            .symlink("y/layer.tar", "../x/layer.tar")
            .hardlink("z", "x/layer.tar")
            .symlink("loop", "loop")
            .finish();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar");
        std::fs::write(&path, &tar).unwrap();
        let src = TarSource {
            index: TarIndex::scan(&tar[..]).unwrap(),
            path,
        };
        for p in ["x/layer.tar", "y/layer.tar", "z"] {
            assert_eq!(src.read_small(p).unwrap(), b"content", "{p}");
        }
        assert!(!src.has("loop"));
        assert!(src.open("nope").is_err());
    }

    #[test]
    fn dir_source_stays_inside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.json"), b"{}").unwrap();
        let src = DirSource {
            root: dir.path().to_path_buf(),
        };
        assert!(src.has("index.json"));
        assert!(!src.has("../index.json"));
        assert!(src.open("../../etc/passwd").is_err());
    }
}
