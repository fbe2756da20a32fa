//! Unpacks one layer tar into a directory, in overlayfs format, refusing hostile
//! entries. Symlinks are never followed: every parent of an entry is checked to be a
//! real directory of this layer, and files are created with `O_EXCL`.

use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

use rustix::fs::Timespec;
use rustix::fs::{AtFlags, CWD, FileType, Mode, Timestamps, makedev, mknodat, utimensat};
use tar::EntryType;

use super::layerfs::LayerFs;

/// Prefix of a whiteout's name in a layer tar.
const WHITEOUT_PREFIX: &str = ".wh.";
/// The name that marks its directory opaque.
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Extended attributes a layer may carry; others (notably `trusted.overlay.*`,
/// which would steer overlayfs) are dropped.
const ALLOWED_XATTR_PREFIXES: &[&str] = &["user.", "security.capability"];

/// Why a layer could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The layer holds an entry that could escape or harm the node.
    #[error("layer entry {entry:?} refused: {reason}")]
    Refused {
        /// The entry's path as written in the tar.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Creating an entry failed.
    #[error("layer entry {entry:?}: {source}")]
    Entry {
        /// The entry's path as written in the tar.
        entry: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The archive itself could not be read (corrupt tar or compression, or a blob
    /// that does not match its digest).
    #[error("layer archive: {0}")]
    Archive(io::Error),
}

/// A directory whose mode and mtime are set once its content is in place (creating
/// entries inside would change the mtime, and a read-only mode would stop them).
struct DeferredDir {
    /// The directory.
    path: PathBuf,
    /// Its permission bits.
    mode: u32,
    /// Its modification time, seconds since the epoch.
    mtime: u64,
}

/// Unpacks one tar stream into `root`, an empty directory.
struct Unpacker<'a> {
    /// The layer directory.
    root: &'a Path,
    /// The privileged operations.
    fs: &'a dyn LayerFs,
    /// Directories to finish at the end.
    dirs: Vec<DeferredDir>,
}

/// Unpacks the (decompressed) layer tar `reader` into `root`, an existing empty
/// directory. On error `root` holds a partial tree the caller removes.
pub fn unpack_tar(reader: impl Read, root: &Path, fs: &dyn LayerFs) -> Result<(), UnpackError> {
    let mut archive = tar::Archive::new(reader);
    // Root-owned unless the archive says otherwise; through `fs`, so a shifted
    // unpack gives it to the container's root.
    fs.lchown(root, 0, 0).map_err(|source| UnpackError::Entry {
        entry: "/".into(),
        source,
    })?;
    let mut unpacker = Unpacker {
        root,
        fs,
        dirs: Vec::new(),
    };
    for entry in archive.entries().map_err(UnpackError::Archive)? {
        let mut entry = entry.map_err(UnpackError::Archive)?;
        unpacker.entry(&mut entry)?;
    }
    unpacker.finish_dirs()
}

/// The entry's path as written, for messages.
fn shown(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// `path` made relative and free of `.`; `..` and absolute paths are refused.
fn clean(path: &Path) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err("path has a \"..\" component"),
            Component::RootDir | Component::Prefix(_) => return Err("absolute path"),
        }
    }
    Ok(out)
}

/// Whether a relative symlink target, followed from `dir` (relative to the layer
/// root), climbs above the root.
fn escapes(dir: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        // Resolved inside the container's root at run time, never on the host.
        return false;
    }
    let mut depth = dir.components().count() as i64;
    for c in target.components() {
        match c {
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    false
}

impl Unpacker<'_> {
    /// Unpacks one entry.
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw = entry.path().map_err(UnpackError::Archive)?.into_owned();
        let name = shown(&raw);
        let refuse = |reason: &str| UnpackError::Refused {
            entry: name.clone(),
            reason: reason.to_string(),
        };
        let io_err = |source| UnpackError::Entry {
            entry: name.clone(),
            source,
        };
        let rel = clean(&raw).map_err(refuse)?;
        let kind = entry.header().entry_type();
        match kind {
            EntryType::XGlobalHeader => return Ok(()),
            EntryType::Char | EntryType::Block => {
                return Err(refuse("device nodes are not allowed in layers"));
            }
            _ => {}
        }
        let file_name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(hidden) = file_name.strip_prefix(WHITEOUT_PREFIX) {
            return self.whiteout(&rel, &file_name, hidden, &name);
        }
        if rel.as_os_str().is_empty() && kind != EntryType::Directory {
            return Err(refuse("the layer root must be a directory"));
        }
        let parent = rel.parent().unwrap_or(Path::new(""));
        self.make_parents(parent, &name)?;
        let path = self.root.join(&rel);
        let header = entry.header();
        let mode = header.mode().map_err(UnpackError::Archive)? & 0o7777;
        let uid = header.uid().map_err(UnpackError::Archive)?;
        let gid = header.gid().map_err(UnpackError::Archive)?;
        let mtime = header.mtime().map_err(UnpackError::Archive)?;
        let (uid, gid) = (
            u32::try_from(uid).map_err(|_| refuse("uid out of range"))?,
            u32::try_from(gid).map_err(|_| refuse("gid out of range"))?,
        );
        match kind {
            EntryType::Directory => {
                if !rel.as_os_str().is_empty() {
                    match fs::symlink_metadata(&path) {
                        Ok(m) if m.is_dir() => {}
                        Ok(_) => {
                            remove_any(&path).map_err(io_err)?;
                            fs::create_dir(&path).map_err(io_err)?;
                        }
                        Err(_) => fs::create_dir(&path).map_err(io_err)?,
                    }
                }
                self.fs.lchown(&path, uid, gid).map_err(io_err)?;
                self.xattrs(entry, &path, &name)?;
                self.dirs.push(DeferredDir { path, mode, mtime });
                return Ok(());
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                remove_any(&path).map_err(io_err)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io_err)?;
                io::copy(entry, &mut file).map_err(UnpackError::Archive)?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::Archive)?
                    .ok_or_else(|| refuse("symlink without a target"))?
                    .into_owned();
                if escapes(parent, &target) {
                    return Err(refuse(&format!(
                        "symlink target {:?} escapes the layer root",
                        shown(&target)
                    )));
                }
                remove_any(&path).map_err(io_err)?;
                symlink(&target, &path).map_err(io_err)?;
                self.fs.lchown(&path, uid, gid).map_err(io_err)?;
                set_mtime(&path, mtime).map_err(io_err)?;
                return Ok(());
            }
            EntryType::Link => return self.hard_link(entry, &rel, &path, &name),
            EntryType::Fifo => {
                remove_any(&path).map_err(io_err)?;
                mknodat(
                    CWD,
                    &path,
                    FileType::Fifo,
                    Mode::from_raw_mode(0o600),
                    makedev(0, 0),
                )
                .map_err(|e| io_err(e.into()))?;
            }
            other => {
                return Err(refuse(&format!("unsupported tar entry type {other:?}")));
            }
        }
        // Owner first: chown clears setuid/setgid bits and file capabilities.
        self.fs.lchown(&path, uid, gid).map_err(io_err)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io_err)?;
        self.xattrs(entry, &path, &name)?;
        set_mtime(&path, mtime).map_err(io_err)
    }

    /// Makes sure every directory of `parent` (relative) exists as a real directory
    /// of this layer, creating missing ones; refuses to go through a symlink.
    fn make_parents(&self, parent: &Path, name: &str) -> Result<(), UnpackError> {
        let mut dir = self.root.to_path_buf();
        for c in parent.components() {
            dir.push(c);
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(UnpackError::Refused {
                        entry: name.to_string(),
                        reason: format!(
                            "its parent path goes through the symlink {:?}",
                            shown(dir.strip_prefix(self.root).unwrap_or(&dir))
                        ),
                    });
                }
                Ok(_) => {
                    return Err(UnpackError::Refused {
                        entry: name.to_string(),
                        reason: format!(
                            "its parent {:?} is not a directory",
                            shown(dir.strip_prefix(self.root).unwrap_or(&dir))
                        ),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&dir).map_err(|source| UnpackError::Entry {
                        entry: name.to_string(),
                        source,
                    })?;
                    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).map_err(
                        |source| UnpackError::Entry {
                            entry: name.to_string(),
                            source,
                        },
                    )?;
                    self.fs
                        .lchown(&dir, 0, 0)
                        .map_err(|source| UnpackError::Entry {
                            entry: name.to_string(),
                            source,
                        })?;
                }
                Err(source) => {
                    return Err(UnpackError::Entry {
                        entry: name.to_string(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Handles `.wh.NAME` (a whiteout for NAME) and `.wh..wh..opq` (opaque dir).
    fn whiteout(
        &mut self,
        rel: &Path,
        file_name: &str,
        hidden: &str,
        name: &str,
    ) -> Result<(), UnpackError> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        self.make_parents(parent, name)?;
        let dir = self.root.join(parent);
        let io_err = |source| UnpackError::Entry {
            entry: name.to_string(),
            source,
        };
        if file_name == OPAQUE_MARKER {
            return self.fs.set_opaque(&dir).map_err(io_err);
        }
        if hidden.starts_with(WHITEOUT_PREFIX) {
            // Other `.wh..wh.` names are aufs bookkeeping with no overlayfs meaning.
            return Ok(());
        }
        if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.contains('/') {
            return Err(UnpackError::Refused {
                entry: name.to_string(),
                reason: "whiteout of an invalid name".into(),
            });
        }
        let path = dir.join(hidden);
        remove_any(&path).map_err(io_err)?;
        self.fs.whiteout(&path).map_err(io_err)
    }

    /// Creates a hard link to an entry already unpacked in this layer.
    fn hard_link<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        rel: &Path,
        path: &Path,
        name: &str,
    ) -> Result<(), UnpackError> {
        let refuse = |reason: String| UnpackError::Refused {
            entry: name.to_string(),
            reason,
        };
        let raw_target = entry
            .link_name()
            .map_err(UnpackError::Archive)?
            .ok_or_else(|| refuse("hard link without a target".into()))?
            .into_owned();
        let shown_target = shown(&raw_target);
        let target_rel = clean(&raw_target)
            .map_err(|why| refuse(format!("hard link target {shown_target:?}: {why}")))?;
        if target_rel.as_os_str().is_empty() || target_rel == rel {
            return Err(refuse(format!("invalid hard link target {shown_target:?}")));
        }
        // The target's parents must be real directories of this layer too.
        let mut dir = self.root.to_path_buf();
        for c in target_rel.parent().unwrap_or(Path::new("")).components() {
            dir.push(c);
            match fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(refuse(format!(
                        "hard link target {shown_target:?} goes through a symlink or file"
                    )));
                }
                Err(_) => {
                    return Err(refuse(format!(
                        "hard link target {shown_target:?} is not in the layer"
                    )));
                }
            }
        }
        let target = self.root.join(&target_rel);
        let meta = fs::symlink_metadata(&target).map_err(|_| {
            refuse(format!(
                "hard link target {shown_target:?} is not in the layer"
            ))
        })?;
        if meta.is_dir() {
            return Err(refuse(format!(
                "hard link target {shown_target:?} is a directory"
            )));
        }
        if meta.file_type().is_symlink() {
            // The new name sits elsewhere, so the relative target is re-checked there.
            let link_target = fs::read_link(&target).map_err(|source| UnpackError::Entry {
                entry: name.to_string(),
                source,
            })?;
            if escapes(rel.parent().unwrap_or(Path::new("")), &link_target) {
                return Err(refuse(format!(
                    "hard link to symlink {shown_target:?} would escape the layer root"
                )));
            }
        }
        let io_err = |source| UnpackError::Entry {
            entry: name.to_string(),
            source,
        };
        remove_any(path).map_err(io_err)?;
        // linkat without AT_SYMLINK_FOLLOW: a symlink target is linked, not followed.
        fs::hard_link(&target, path).map_err(io_err)
    }

    /// Applies the extended attributes the entry carries in PAX headers.
    fn xattrs<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        path: &Path,
        name: &str,
    ) -> Result<(), UnpackError> {
        let Some(exts) = entry.pax_extensions().map_err(UnpackError::Archive)? else {
            return Ok(());
        };
        for ext in exts {
            let ext = ext.map_err(UnpackError::Archive)?;
            let Ok(key) = ext.key() else { continue };
            let Some(attr) = key.strip_prefix("SCHILY.xattr.") else {
                continue;
            };
            if ALLOWED_XATTR_PREFIXES.iter().any(|p| attr.starts_with(p)) {
                self.fs
                    .set_xattr(path, attr, ext.value_bytes())
                    .map_err(|source| UnpackError::Entry {
                        entry: name.to_string(),
                        source,
                    })?;
            } else {
                tracing::debug!(entry = name, xattr = attr, "layer xattr dropped");
            }
        }
        Ok(())
    }

    /// Sets the deferred directory modes and mtimes, deepest first.
    fn finish_dirs(&mut self) -> Result<(), UnpackError> {
        self.dirs
            .sort_by_key(|d| std::cmp::Reverse(d.path.components().count()));
        for d in &self.dirs {
            let io_err = |source| UnpackError::Entry {
                entry: shown(d.path.strip_prefix(self.root).unwrap_or(&d.path)),
                source,
            };
            fs::set_permissions(&d.path, fs::Permissions::from_mode(d.mode)).map_err(io_err)?;
            set_mtime(&d.path, d.mtime).map_err(io_err)?;
        }
        Ok(())
    }
}

/// Removes whatever is at `path` (never following a symlink); nothing there is fine.
fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Sets access and modification time of `path` (not following a symlink).
fn set_mtime(path: &Path, mtime: u64) -> io::Result<()> {
    let t = Timespec {
        tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: t,
        last_modification: t,
    };
    utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

#[cfg(test)]
mod tests;
