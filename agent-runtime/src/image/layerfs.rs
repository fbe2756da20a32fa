//! The privileged file operations of layer unpacking, behind a trait so their intent
//! is unit-tested without root (`RecordingFs`, feature `test-util`) and the real
//! ones ([`HostFs`]) as root.

use std::io;
use std::path::Path;
#[cfg(any(test, feature = "test-util"))]
use std::path::PathBuf;
#[cfg(any(test, feature = "test-util"))]
use std::sync::Mutex;

use crate::idmap::IdMap;
use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, Uid, XattrFlags, chownat, makedev, mknodat};

/// The xattr that makes an overlayfs directory hide the layers below it.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// File operations that need root.
pub trait LayerFs: Send + Sync + std::fmt::Debug {
    /// Creates an overlayfs whiteout at `path`: a character device 0:0, which hides
    /// the same name in the layers below.
    fn whiteout(&self, path: &Path) -> io::Result<()>;
    /// Marks `dir` opaque (`trusted.overlay.opaque=y`): the layers below contribute
    /// nothing to it.
    fn set_opaque(&self, dir: &Path) -> io::Result<()>;
    /// Sets the owner of `path`, without following a symlink there.
    fn lchown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()>;
    /// Sets an extended attribute carried by the archive (file capabilities), without
    /// following a symlink.
    fn set_xattr(&self, path: &Path, name: &str, value: &[u8]) -> io::Result<()>;
}

/// The real operations, for a daemon running as root.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostFs;

impl LayerFs for HostFs {
    fn whiteout(&self, path: &Path) -> io::Result<()> {
        mknodat(
            CWD,
            path,
            FileType::CharacterDevice,
            Mode::empty(),
            makedev(0, 0),
        )?;
        Ok(())
    }

    fn set_opaque(&self, dir: &Path) -> io::Result<()> {
        self.set_xattr(dir, OPAQUE_XATTR, b"y")
    }

    fn lchown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()> {
        chownat(
            CWD,
            path,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        Ok(())
    }

    fn set_xattr(&self, path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
        rustix::fs::lsetxattr(path, name, value, XattrFlags::empty())?;
        Ok(())
    }
}

/// Another [`LayerFs`] with every owner shifted by a user namespace mapping: the
/// layer as a container remapped by `map` sees it, owned by its own ids. An id the
/// mapping does not cover fails the unpacking (as in Docker).
#[derive(Debug)]
pub struct ShiftedFs<'a> {
    /// The operations doing the work.
    pub inner: &'a dyn LayerFs,
    /// The mapping.
    pub map: IdMap,
}

impl LayerFs for ShiftedFs<'_> {
    fn whiteout(&self, path: &Path) -> io::Result<()> {
        self.inner.whiteout(path)
    }

    fn set_opaque(&self, dir: &Path) -> io::Result<()> {
        self.inner.set_opaque(dir)
    }

    fn lchown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()> {
        let outside = |what: &str, id: u32| {
            io::Error::other(format!(
                "{what} {id} is outside the user namespace mapping {} (ids 0 to {})",
                self.map,
                self.map.size - 1
            ))
        };
        let host_uid = self
            .map
            .host_uid_of(uid)
            .ok_or_else(|| outside("uid", uid))?;
        let host_gid = self
            .map
            .host_gid_of(gid)
            .ok_or_else(|| outside("gid", gid))?;
        self.inner.lchown(path, host_uid, host_gid)
    }

    fn set_xattr(&self, path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
        self.inner.set_xattr(path, name, value)
    }
}

/// One privileged operation, as a [`RecordingFs`] saw it.
#[cfg(any(test, feature = "test-util"))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FsOp {
    /// A whiteout device at this path.
    Whiteout(PathBuf),
    /// This directory marked opaque.
    Opaque(PathBuf),
    /// This path given this owner.
    Chown(PathBuf, u32, u32),
    /// This xattr set on this path.
    Xattr(PathBuf, String, Vec<u8>),
}

/// Records the privileged operations instead of doing them.
#[cfg(any(test, feature = "test-util"))]
#[derive(Debug, Default)]
pub struct RecordingFs {
    /// Every operation in order, with paths relative to `root`.
    pub ops: Mutex<Vec<FsOp>>,
}

#[cfg(any(test, feature = "test-util"))]
impl RecordingFs {
    /// The recorded operations, with paths made relative to the directory named
    /// `.tmp-*` or `<hex>` that they were under (the layer being unpacked).
    pub fn ops(&self) -> Vec<FsOp> {
        self.ops.lock().unwrap().clone()
    }

    fn record(&self, op: FsOp) -> io::Result<()> {
        self.ops.lock().unwrap().push(op);
        Ok(())
    }
}

/// The part of `path` after the layer directory (the component starting with
/// `.tmp` (ours and test temp dirs) or a 64-hex name), so recorded paths do not
/// depend on temp names.
#[cfg(any(test, feature = "test-util"))]
fn rel(path: &Path) -> PathBuf {
    let comps: Vec<_> = path.components().collect();
    let pos = comps.iter().rposition(|c| {
        let s = c.as_os_str().to_string_lossy();
        s.starts_with(".tmp") || s.len() == 64
    });
    match pos {
        Some(i) => comps[i + 1..].iter().collect(),
        None => path.to_path_buf(),
    }
}

#[cfg(any(test, feature = "test-util"))]
impl LayerFs for RecordingFs {
    fn whiteout(&self, path: &Path) -> io::Result<()> {
        self.record(FsOp::Whiteout(rel(path)))
    }

    fn set_opaque(&self, dir: &Path) -> io::Result<()> {
        self.record(FsOp::Opaque(rel(dir)))
    }

    fn lchown(&self, path: &Path, uid: u32, gid: u32) -> io::Result<()> {
        self.record(FsOp::Chown(rel(path), uid, gid))
    }

    fn set_xattr(&self, path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
        self.record(FsOp::Xattr(rel(path), name.into(), value.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifted_owners_are_the_mapped_host_ids_and_others_are_refused() {
        let rec = RecordingFs::default();
        let fs = ShiftedFs {
            inner: &rec,
            map: "100000:200000:1000".parse().unwrap(),
        };
        fs.lchown(Path::new("/x/.tmp-l/etc/passwd"), 0, 0).unwrap();
        fs.lchown(Path::new("/x/.tmp-l/home/u"), 999, 5).unwrap();
        fs.set_opaque(Path::new("/x/.tmp-l/var")).unwrap();
        let err = fs.lchown(Path::new("/x/.tmp-l/big"), 1000, 0).unwrap_err();
        assert!(err.to_string().contains("uid 1000 is outside"), "{err}");
        let err = fs.lchown(Path::new("/x/.tmp-l/big"), 0, 65534).unwrap_err();
        assert!(err.to_string().contains("gid 65534 is outside"), "{err}");
        assert_eq!(
            rec.ops(),
            vec![
                FsOp::Chown("etc/passwd".into(), 100_000, 200_000),
                FsOp::Chown("home/u".into(), 100_999, 200_005),
                FsOp::Opaque("var".into()),
            ]
        );
    }
}
