use std::sync::Arc;

use super::layerfs::RecordingFs;
use super::testutil::{
    TarBuilder, docker_save, gzip, oci_layout, sample_layer, tar_of, write_tree, zstd,
};
use super::*;

mod mapped;
mod removal;

pub(super) fn store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        ImageStore::with_fs(dir.path().join("images"), Arc::new(RecordingFs::default())).unwrap();
    (dir, store)
}

/// Names in a directory, sorted.
pub(super) fn ls(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// No temp entry is left anywhere in the store.
pub(super) fn assert_no_temp(store: &ImageStore) {
    for d in [
        store.blobs_dir(),
        store.layers_dir.clone(),
        store.tmp_dir.clone(),
    ] {
        let temps: Vec<String> = ls(&d)
            .into_iter()
            .filter(|n| n.starts_with(fsutil::TMP_PREFIX))
            .collect();
        assert!(
            temps.is_empty(),
            "temp entries left in {}: {temps:?}",
            d.display()
        );
    }
}

#[test]
fn imports_plain_rootfs_tarball() {
    let (_d, store) = store();
    let layer = sample_layer("plain");
    let images = store.import(&layer[..], Some("base")).unwrap();
    assert_eq!(images.len(), 1);
    let image = &images[0];
    assert_eq!(image.names, vec!["base:latest".to_string()]);
    assert_eq!(image.manifest.layers.len(), 1);
    assert_eq!(image.manifest.layers[0].digest, Digest::of(&layer));
    assert_eq!(image.manifest.layers[0].media_type, oci::MEDIA_LAYER_TAR);
    assert_eq!(image.config.rootfs.diff_ids, vec![Digest::of(&layer)]);
    assert_eq!(image.config.os, "linux");
    assert!(image.config.created.is_some());
    assert_eq!(image.run_config(), ImageConfig::default());
    // The id is the manifest digest.
    assert_eq!(
        Digest::of(&store.blob_store().read(&image.id).unwrap()),
        image.id
    );

    let dirs = store.lower_dirs(image).unwrap();
    assert_eq!(dirs, vec![store.layer_dir(&Digest::of(&layer))]);
    assert_eq!(fs::read(dirs[0].join("etc/motd")).unwrap(), b"plain");
    let resolved = store.resolve("base").unwrap().unwrap();
    assert_eq!(&resolved, image);
    assert_eq!(store.list().unwrap(), vec![image.summary()]);
    assert_no_temp(&store);
}

#[test]
fn imports_compressed_rootfs_tarballs() {
    let (_d, store) = store();
    let layer = sample_layer("compressed");
    for (bytes, media_type, name) in [
        (gzip(&layer), oci::MEDIA_LAYER_GZIP, "gz"),
        (zstd(&layer), oci::MEDIA_LAYER_ZSTD, "zst:1"),
    ] {
        let image = store.import(&bytes[..], Some(name)).unwrap().remove(0);
        let desc = &image.manifest.layers[0];
        assert_eq!(desc.media_type, media_type);
        // The layer is the tarball as given; the diff id is the uncompressed tar.
        assert_eq!(desc.digest, Digest::of(&bytes));
        assert_eq!(image.config.rootfs.diff_ids, vec![Digest::of(&layer)]);
        let dirs = store.lower_dirs(&image).unwrap();
        assert_eq!(fs::read(dirs[0].join("etc/motd")).unwrap(), b"compressed");
    }
    assert_no_temp(&store);
}

#[test]
fn rootfs_without_name_is_refused_and_leaves_nothing() {
    let (_d, store) = store();
    let err = store.import(&sample_layer("x")[..], None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "a root filesystem tarball carries no image name: give one with --name"
    );
    assert!(ls(&store.blobs_dir()).is_empty());
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn empty_and_garbage_inputs_are_refused() {
    let (_d, store) = store();
    let err = store.import(&b""[..], Some("x")).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    let err = store
        .import(
            &b"this is not a tar archive at all, just text"[..],
            Some("x"),
        )
        .unwrap_err();
    assert!(err.to_string().contains("not a tar archive"), "{err}");
    assert!(ls(&store.blobs_dir()).is_empty());
}

#[test]
fn imports_docker_save_archive() {
    let (_d, store) = store();
    let base = sample_layer("base");
    let top = TarBuilder::new()
        .file("etc/motd", b"top")
        .file("etc/.wh.gone", b"")
        .finish();
    let archive = docker_save(&[&base, &top], &["app:1", "app:latest", "app"]);
    let image = store.import(&archive[..], None).unwrap().remove(0);
    assert_eq!(
        image.names,
        vec!["app:1".to_string(), "app:latest".to_string()]
    );
    assert_eq!(image.layers(), vec![Digest::of(&base), Digest::of(&top)]);
    assert_eq!(
        image.manifest.media_type.as_deref(),
        Some(oci::MEDIA_MANIFEST)
    );
    let process = image.run_config().process("app", &[], &[], &[]).unwrap();
    assert_eq!(process.argv, vec!["/bin/hello".to_string()]);
    assert_eq!(process.cwd, "/srv");

    let dirs = store.lower_dirs(&image).unwrap();
    assert_eq!(
        dirs,
        vec![
            store.layer_dir(&Digest::of(&top)),
            store.layer_dir(&Digest::of(&base))
        ],
        "top-most first"
    );
    assert_eq!(fs::read(dirs[0].join("etc/motd")).unwrap(), b"top");
    assert_eq!(image.blobs().len(), 4);
    assert_eq!(image.blobs()[0], image.id);
    // The name given replaces the archive's.
    let renamed = store
        .import(&archive[..], Some("other:2"))
        .unwrap()
        .remove(0);
    assert_eq!(renamed.id, image.id);
    assert_eq!(
        renamed.names,
        vec![
            "app:1".to_string(),
            "app:latest".to_string(),
            "other:2".to_string()
        ]
    );
    assert_no_temp(&store);
}

#[test]
fn imports_compressed_docker_save_with_linked_layers() {
    let (_d, store) = store();
    let layer = sample_layer("shared");
    // `docker save` writes a layer used twice once and symlinks the second copy.
    let config = testutil::sample_config(&[&layer, &layer]);
    let config_name = format!("{}.json", Digest::of(&config).hex());
    let manifest = serde_json::json!([{
        "Config": config_name, "RepoTags": ["linked:v1"],
        "Layers": ["aaa/layer.tar", "bbb/layer.tar"],
    }]);
    let archive = TarBuilder::new()
        .file(&config_name, &config)
        .file("aaa/layer.tar", &layer)
        .symlink("bbb/layer.tar", "../aaa/layer.tar")
        .file("manifest.json", &serde_json::to_vec(&manifest).unwrap())
        .finish();
    let image = store.import(&gzip(&archive)[..], None).unwrap().remove(0);
    assert_eq!(image.names, vec!["linked:v1".to_string()]);
    assert_eq!(image.layers(), vec![Digest::of(&layer), Digest::of(&layer)]);
    assert_eq!(store.lower_dirs(&image).unwrap().len(), 2);
    assert_no_temp(&store);
}

#[test]
fn docker_save_without_tags_needs_a_name() {
    let (_d, store) = store();
    let archive = docker_save(&[&sample_layer("x")], &[]);
    let err = store.import(&archive[..], None).unwrap_err();
    assert!(err.to_string().contains("give one with --name"), "{err}");
    let image = store.import(&archive[..], Some("named")).unwrap().remove(0);
    assert_eq!(image.names, vec!["named:latest".to_string()]);
}

#[test]
fn imports_oci_layout_tar_and_directory() {
    let (d, store) = store();
    let layer = sample_layer("oci");
    let files = oci_layout(&[&layer], Some("web:2"));
    let image = store.import(&tar_of(&files)[..], None).unwrap().remove(0);
    assert_eq!(image.names, vec!["web:2".to_string()]);
    // The id is the layout's own manifest digest, kept byte for byte.
    let (_, index) = files.iter().find(|(p, _)| p == "index.json").unwrap();
    let index: oci::Index = serde_json::from_slice(index).unwrap();
    assert_eq!(image.id, index.manifests[0].digest);
    assert_eq!(image.manifest.layers[0].media_type, oci::MEDIA_LAYER_GZIP);
    let dirs = store.lower_dirs(&image).unwrap();
    assert_eq!(fs::read(dirs[0].join("etc/motd")).unwrap(), b"oci");

    let layout = d.path().join("layout");
    write_tree(&layout, &oci_layout(&[&layer], None));
    let err = store.import_path(&layout, None).unwrap_err();
    assert!(err.to_string().contains("give one with --name"), "{err}");
    let from_dir = store
        .import_path(&layout, Some("web:dir"))
        .unwrap()
        .remove(0);
    assert_eq!(from_dir.id, image.id);
    assert_eq!(
        store.resolve("web:dir").unwrap().unwrap().names,
        vec!["web:2".to_string(), "web:dir".to_string()]
    );
    assert_no_temp(&store);
}

#[test]
fn oci_layout_with_a_corrupt_blob_is_refused() {
    let (_d, store) = store();
    let mut files = oci_layout(&[&sample_layer("x")], Some("bad"));
    // Corrupt the layer (the first file) without changing its name.
    files[0].1[20] ^= 0xff;
    let err = store.import(&tar_of(&files)[..], None).unwrap_err();
    assert!(
        err.to_string().contains("does not match its digest"),
        "{err}"
    );
    assert!(store.list().unwrap().is_empty());
    assert_no_temp(&store);
}

#[test]
fn corrupt_stored_layer_fails_unpack_and_leaves_nothing() {
    let (_d, store) = store();
    let layer = sample_layer("x");
    let image = store.import(&layer[..], Some("c")).unwrap().remove(0);
    let path = store.blob_store().path(&image.layers()[0]);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1; // in the tar padding: only the digest check can see it
    fs::write(&path, bytes).unwrap();
    let err = store.lower_dirs(&image).unwrap_err();
    assert!(
        err.to_string().contains("does not match its digest"),
        "{err}"
    );
    assert!(ls(&store.layers_dir).is_empty());
    assert!(store.open_blob(&image.layers()[0]).is_ok());
    let mut r = store.open_blob(&image.layers()[0]).unwrap();
    assert!(io::copy(&mut r, &mut io::sink()).is_err());
}

#[test]
fn hostile_layer_is_refused_without_partial_dir() {
    let (_d, store) = store();
    let layer = TarBuilder::new()
        .file("ok/first", b"fine")
        .file("../../etc/cron.d/evil", b"* * * * * root sh")
        .finish();
    let image = store.import(&layer[..], Some("evil")).unwrap().remove(0);
    let err = store.lower_dirs(&image).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("\"../../etc/cron.d/evil\""), "{msg}");
    assert!(msg.contains("refused"), "{msg}");
    assert!(
        ls(&store.layers_dir).is_empty(),
        "{:?}",
        ls(&store.layers_dir)
    );
}

#[test]
fn diff_id_mismatch_is_refused() {
    let (_d, store) = store();
    let layer = sample_layer("a");
    let image = store.import(&layer[..], Some("d")).unwrap().remove(0);
    let wrong = Digest::of(b"other");
    let err = store
        .unpack_layer(&image.layers()[0], Some(&wrong))
        .unwrap_err();
    assert!(matches!(err, ImageError::DiffId { .. }), "{err}");
    assert!(ls(&store.layers_dir).is_empty());
}

#[test]
fn concurrent_unpacks_of_one_layer_agree() {
    let (_d, store) = store();
    let image = store
        .import(&sample_layer("race")[..], Some("r"))
        .unwrap()
        .remove(0);
    let dirs: Vec<Vec<PathBuf>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| store.lower_dirs(&image).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(dirs.iter().all(|d| d == &dirs[0]));
    assert_eq!(fs::read(dirs[0][0].join("etc/motd")).unwrap(), b"race");
    assert_eq!(
        ls(&store.layers_dir),
        vec![image.layers()[0].hex().to_string()]
    );
}

#[test]
fn resolves_names_ids_and_prefixes() {
    let (_d, store) = store();
    let image = store
        .import(&sample_layer("r")[..], Some("reg:5000/team/app:v1"))
        .unwrap()
        .remove(0);
    for query in [
        "reg:5000/team/app:v1".to_string(),
        image.id.to_string(),
        image.id.hex()[..12].to_string(),
    ] {
        assert_eq!(
            store.resolve(&query).unwrap().map(|i| i.id),
            Some(image.id.clone()),
            "{query}"
        );
    }
    assert_eq!(store.resolve("reg:5000/team/app").unwrap(), None);
    assert_eq!(store.resolve(&image.id.hex()[..8]).unwrap(), None);
}

#[test]
fn import_moves_an_existing_name() {
    let (_d, store) = store();
    let first = store
        .import(&sample_layer("1")[..], Some("n"))
        .unwrap()
        .remove(0);
    let second = store
        .import(&sample_layer("2")[..], Some("n"))
        .unwrap()
        .remove(0);
    assert_ne!(first.id, second.id);
    assert_eq!(store.resolve("n").unwrap().unwrap().id, second.id);
    assert_eq!(store.list().unwrap().len(), 1);
    let refs: BTreeMap<String, Digest> =
        serde_json::from_slice(&fs::read(store.dir().join("refs.json")).unwrap()).unwrap();
    assert_eq!(refs.get("n:latest"), Some(&second.id));
}

#[test]
fn add_image_after_fetching_blobs() {
    let (_d, source) = store();
    let (_d2, dest) = store();
    let archive = docker_save(&[&sample_layer("f")], &["fetched:1"]);
    let image = source.import(&archive[..], None).unwrap().remove(0);

    // Nothing fetched yet.
    let err = dest.add_image("fetched:1", &image.id).unwrap_err();
    assert!(err.to_string().contains("not in the store"), "{err}");
    for blob in image.blobs() {
        assert!(!dest.has_blob(&blob));
        let size = source.blob_size(&blob).unwrap();
        dest.write_blob(&blob, source.open_blob(&blob).unwrap())
            .unwrap();
        assert_eq!(dest.blob_size(&blob).unwrap(), size);
    }
    // A corrupt layer is caught.
    let layer_path = dest.blob_store().path(&image.layers()[0]);
    let good = fs::read(&layer_path).unwrap();
    let mut bad = good.clone();
    bad[600] ^= 1;
    fs::write(&layer_path, &bad).unwrap();
    let err = dest.add_image("fetched:1", &image.id).unwrap_err();
    assert!(err.to_string().contains("corrupt"), "{err}");
    assert!(dest.list().unwrap().is_empty());
    fs::write(&layer_path, &good).unwrap();

    let added = dest.add_image("fetched", &image.id).unwrap();
    assert_eq!(added.names, vec!["fetched:latest".to_string()]);
    assert_eq!(added.id, image.id);
    assert_eq!(dest.lower_dirs(&added).unwrap().len(), 1);
}

#[test]
fn write_blob_mismatch_keeps_nothing() {
    let (_d, store) = store();
    let expected = Digest::of(b"announced");
    let err = store.write_blob(&expected, &b"received"[..]).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&expected.to_string()) && msg.contains(&Digest::of(b"received").to_string())
    );
    assert!(ls(&store.blobs_dir()).is_empty());
}

#[test]
fn stale_temps_of_dead_processes_are_removed_on_open() {
    let (d, store) = store();
    // pid 0 is never a live process; our own pid is.
    let stale = store.layers_dir.join(".tmp-abc-0-1-2");
    let live = store
        .layers_dir
        .join(format!(".tmp-abc-{}-1-2", std::process::id()));
    fs::create_dir(&stale).unwrap();
    fs::write(stale.join("f"), b"x").unwrap();
    fs::create_dir(&live).unwrap();
    let stale_blob = store.blobs_dir().join(".tmp-blob-0-5-6");
    fs::write(&stale_blob, b"x").unwrap();
    ImageStore::with_fs(d.path().join("images"), Arc::new(RecordingFs::default())).unwrap();
    assert!(!stale.exists() && !stale_blob.exists());
    assert!(live.exists());
}
