//! Layers shifted for user namespaces.

use tar::EntryType;

use super::super::layerfs::{FsOp, RecordingFs};
use super::super::testutil::{TarBuilder, docker_save};
use super::super::*;
use super::{assert_no_temp, ls};
use crate::idmap::IdMap;

#[test]
fn mapped_layers_are_unpacked_once_per_mapping_with_shifted_owners() {
    let d = tempfile::tempdir().unwrap();
    let rec = Arc::new(RecordingFs::default());
    let store = ImageStore::with_fs(d.path().join("images"), rec.clone()).unwrap();
    let layer = TarBuilder::new()
        .file("etc/passwd", b"root:x:0:0::/:/bin/sh\n")
        .raw(
            EntryType::Regular,
            "home/u/f",
            None,
            0o600,
            1000,
            1001,
            b"x",
        )
        .finish();
    let image = store
        .import(&docker_save(&[&layer], &["m:1"])[..], None)
        .unwrap()
        .remove(0);
    let map: IdMap = "100000:200000:65536".parse().unwrap();

    let plain = store.lower_dirs(&image).unwrap();
    let before = rec.ops().len();
    let mapped = store.lower_dirs_mapped(&image, Some(&map)).unwrap();
    let hex = Digest::of(&layer).hex().to_string();
    assert_eq!(
        mapped,
        vec![store.layers_dir.join(format!("{hex}@100000-200000-65536"))]
    );
    assert_ne!(plain, mapped);
    assert!(mapped[0].join("etc/passwd").is_file());
    let ops: Vec<FsOp> = rec.ops()[before..].to_vec();
    for expected in [
        FsOp::Chown("".into(), 100_000, 200_000),
        FsOp::Chown("etc".into(), 100_000, 200_000),
        FsOp::Chown("etc/passwd".into(), 100_000, 200_000),
        FsOp::Chown("home/u/f".into(), 101_000, 201_001),
    ] {
        assert!(ops.contains(&expected), "{expected:?} in {ops:#?}");
    }
    assert!(
        ops.iter()
            .all(|op| !matches!(op, FsOp::Chown(_, uid, _) if *uid < 100_000)),
        "{ops:#?}"
    );

    // Once per mapping: a second call unpacks nothing.
    let count = rec.ops().len();
    assert_eq!(store.lower_dirs_mapped(&image, Some(&map)).unwrap(), mapped);
    assert_eq!(rec.ops().len(), count);

    // An id outside the mapping fails the unpack with the reason.
    let small: IdMap = "100000:100000:1000".parse().unwrap();
    let err = store
        .lower_dirs_mapped(&image, Some(&small))
        .unwrap_err()
        .to_string();
    assert!(err.contains("uid 1000 is outside"), "{err}");
    assert_no_temp(&store);

    // Removing the image removes every copy.
    store.remove("m:1", |_| false).unwrap();
    assert!(
        ls(&store.layers_dir).is_empty(),
        "{:?}",
        ls(&store.layers_dir)
    );
}

#[test]
fn prune_removes_mapped_copies_of_unreferenced_layers() {
    let d = tempfile::tempdir().unwrap();
    let store =
        ImageStore::with_fs(d.path().join("images"), Arc::new(RecordingFs::default())).unwrap();
    let map: IdMap = "100000:100000:65536".parse().unwrap();
    let layer = TarBuilder::new().file("a", b"a").finish();
    let old = store
        .import(&docker_save(&[&layer], &["p:1"])[..], None)
        .unwrap()
        .remove(0);
    store.lower_dirs_mapped(&old, Some(&map)).unwrap();
    let newer = TarBuilder::new().file("b", b"b").finish();
    let new = store
        .import(&docker_save(&[&newer], &["p:1"])[..], None)
        .unwrap()
        .remove(0);
    let kept = store.lower_dirs_mapped(&new, Some(&map)).unwrap();
    let old_layer = old.layers()[0].clone();
    store.prune(|l| *l == old_layer).unwrap();
    assert!(store.layer_dir_mapped(&old_layer, Some(&map)).exists());
    store.prune(|_| false).unwrap();
    assert!(!store.layer_dir_mapped(&old_layer, Some(&map)).exists());
    assert!(kept[0].exists());
}
