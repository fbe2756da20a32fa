//! Removal, pruning and broken images.

use super::super::testutil::{TarBuilder, docker_save, sample_layer};
use super::super::*;
use super::{assert_no_temp, ls, store};

#[test]
fn remove_untags_then_deletes_unshared_content() {
    let (_d, store) = store();
    let base = sample_layer("base");
    let a_top = TarBuilder::new().file("a", b"a").finish();
    let b_top = TarBuilder::new().file("b", b"b").finish();
    let a = store
        .import(&docker_save(&[&base, &a_top], &["a:1", "a:2"])[..], None)
        .unwrap()
        .remove(0);
    let b = store
        .import(&docker_save(&[&base, &b_top], &["b:1"])[..], None)
        .unwrap()
        .remove(0);
    store.lower_dirs(&a).unwrap();
    store.lower_dirs(&b).unwrap();

    let removed = store
        .remove("a:1", |_| panic!("not asked while a name remains"))
        .unwrap();
    assert_eq!(removed.untagged, vec!["a:1".to_string()]);
    assert_eq!(removed.deleted, None);
    assert!(store.resolve("a:1").unwrap().is_none());
    assert!(store.resolve("a:2").unwrap().is_some());

    let err = store.remove("a:2", |img| img.id == a.id).unwrap_err();
    assert!(matches!(err, ImageError::InUse { .. }), "{err}");
    assert!(
        store.resolve("a:2").unwrap().is_some(),
        "refused removal keeps the name"
    );

    let removed = store.remove("a:2", |_| false).unwrap();
    assert_eq!(removed.deleted, Some(a.id.clone()));
    // Manifest, config and the top layer go; the shared base stays.
    assert_eq!(removed.blobs_deleted, 3);
    assert!(!store.has_blob(&a.id));
    assert!(!store.has_blob(&Digest::of(&a_top)));
    assert!(store.has_blob(&Digest::of(&base)));
    assert!(!store.layer_dir(&Digest::of(&a_top)).exists());
    assert!(store.layer_dir(&Digest::of(&base)).exists());
    let still = store.resolve("b:1").unwrap().unwrap();
    assert_eq!(store.lower_dirs(&still).unwrap().len(), 2);

    // By id: every name goes.
    let removed = store.remove(&b.id.to_string(), |_| false).unwrap();
    assert_eq!(removed.untagged, vec!["b:1".to_string()]);
    assert!(ls(&store.blobs_dir()).is_empty());
    assert!(ls(&store.layers_dir).is_empty());
    assert!(matches!(
        store.remove("b:1", |_| false),
        Err(ImageError::NotFound(_))
    ));
    assert_no_temp(&store);
}

#[test]
fn prune_deletes_what_no_name_references() {
    let (_d, store) = store();
    let old = store
        .import(&sample_layer("old")[..], Some("p"))
        .unwrap()
        .remove(0);
    store.lower_dirs(&old).unwrap();
    let new = store
        .import(&sample_layer("new")[..], Some("p"))
        .unwrap()
        .remove(0);
    store.lower_dirs(&new).unwrap();
    // A running container still uses the old layer: it stays, with its blob.
    let old_layer = old.layers()[0].clone();
    assert_eq!(store.prune(|l| *l == old_layer).unwrap(), 2);
    assert!(store.has_blob(&old_layer) && store.layer_dir(&old_layer).exists());
    assert!(!store.has_blob(&old.id));
    assert_eq!(store.prune(|_| false).unwrap(), 2);
    assert!(!store.has_blob(&old_layer) && !store.layer_dir(&old_layer).exists());
    assert_eq!(
        ls(&store.blobs_dir()).len(),
        3,
        "the new image's blobs stay"
    );
    assert_eq!(store.lower_dirs(&new).unwrap().len(), 1);
}

#[test]
fn broken_image_is_listed_and_removable() {
    let (_d, store) = store();
    let image = store
        .import(&sample_layer("b")[..], Some("broken"))
        .unwrap()
        .remove(0);
    fs::remove_file(store.blob_store().path(&image.manifest.config.digest)).unwrap();
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].size, &listed[0].names), (0, &image.names));
    assert!(store.resolve("broken").is_err());
    let removed = store.remove("broken", |_| true).unwrap();
    assert_eq!(removed.deleted, Some(image.id.clone()));
    assert!(!store.has_blob(&image.id));
    assert!(store.list().unwrap().is_empty());
    // The orphaned layer goes with the next prune.
    assert_eq!(store.prune(|_| false).unwrap(), 1);
    assert!(ls(&store.blobs_dir()).is_empty());
}
