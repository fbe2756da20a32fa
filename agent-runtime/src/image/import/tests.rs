use super::*;

fn names(v: &[&[&str]]) -> Vec<Vec<String>> {
    v.iter()
        .map(|n| n.iter().map(|s| s.to_string()).collect())
        .collect()
}

#[test]
fn archive_names_are_normalised_and_deduplicated() {
    let got = choose_names(names(&[&["app", "app:latest", "app:1"]]), None, "x").unwrap();
    assert_eq!(got, names(&[&["app:latest", "app:1"]]));
}

#[test]
fn given_name_overrides_for_one_image() {
    let got = choose_names(names(&[&["app:1"]]), Some("mine"), "x").unwrap();
    assert_eq!(got, names(&[&["mine:latest"]]));
    let got = choose_names(names(&[&[]]), Some("mine:2"), "x").unwrap();
    assert_eq!(got, names(&[&["mine:2"]]));
}

#[test]
fn given_name_for_several_images_is_refused() {
    let err = choose_names(names(&[&["a"], &["b"]]), Some("mine"), "x").unwrap_err();
    assert_eq!(
        err.to_string(),
        "the archive holds 2 images: --name needs exactly one"
    );
}

#[test]
fn every_image_needs_a_name() {
    let err = choose_names(names(&[&["a"], &[]]), None, "this docker save archive").unwrap_err();
    assert_eq!(
        err.to_string(),
        "this docker save archive carries no image name: give one with --name"
    );
    let err = choose_names(names(&[&["Bad Name"]]), None, "x").unwrap_err();
    assert!(err.to_string().contains("invalid image name"), "{err}");
}

#[test]
fn directory_without_layout_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = BlobStore::new(dir.path().join("blobs")).unwrap();
    let importer = Importer {
        blobs: &blobs,
        tmp_dir: dir.path(),
    };
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = importer.import_dir(&empty, Some("x")).unwrap_err();
    assert!(err.to_string().contains("oci-layout"), "{err}");
}
