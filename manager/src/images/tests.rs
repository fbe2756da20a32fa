//! The image service's decisions over a store: recording imports, finding images,
//! refusing to remove an image a service uses.

use rswarm_proto::api::*;

use super::Imported;
use super::service::{find_image, record_import, users_of};
use crate::controlapi::ControlError;
use crate::store::{Store, StoreAction};

fn imported(id: &str) -> Imported {
    Imported {
        id: id.into(),
        names: vec![],
        blobs: vec![BlobRef {
            digest: id.into(),
            size: 10,
        }],
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn apply(store: &Store, index: u64, actions: Vec<StoreAction>) {
    store.apply(index, &actions).unwrap();
}

fn service(name: &str, image: &str) -> Service {
    Service {
        id: format!("id-{name}"),
        spec: Some(ServiceSpec {
            name: name.into(),
            task: Some(TaskSpec {
                container: Some(ContainerSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn an_import_creates_then_gains_names_and_holders() {
    let store = Store::new();
    let actions =
        store.view(|tx| record_import(tx, &imported("sha256:aa"), &names(&["web:1"]), "m1"));
    apply(&store, 1, actions);
    let actions =
        store.view(|tx| record_import(tx, &imported("sha256:aa"), &names(&["web:latest"]), "m2"));
    apply(&store, 2, actions);
    let image = store.view(|tx| tx.image("sha256:aa").cloned()).unwrap();
    assert_eq!(image.names, ["web:1", "web:latest"]);
    assert_eq!(image.holders, ["m1", "m2"]);
    let again =
        store.view(|tx| record_import(tx, &imported("sha256:aa"), &names(&["web:1"]), "m1"));
    assert!(again.is_empty(), "a repeated import changes nothing");
}

#[test]
fn a_name_moves_to_the_new_image_and_a_nameless_one_goes() {
    let store = Store::new();
    let first =
        store.view(|tx| record_import(tx, &imported("sha256:aa"), &names(&["web:1"]), "m1"));
    apply(&store, 1, first);
    let second = store.view(|tx| {
        record_import(
            tx,
            &imported("sha256:bb"),
            &names(&["web:1", "web:2"]),
            "m1",
        )
    });
    apply(&store, 2, second);
    store.view(|tx| {
        assert!(tx.image("sha256:aa").is_none(), "left without a name");
        assert_eq!(tx.image_by_name("web:1").unwrap().id, "sha256:bb");
    });
}

#[test]
fn images_are_found_by_name_id_or_prefix() {
    let store = Store::new();
    for (i, id) in ["sha256:abc123", "sha256:abd456"].iter().enumerate() {
        let n = format!("img{i}");
        let actions =
            store.view(|tx| record_import(tx, &imported(id), &[format!("{n}:latest")], "m1"));
        apply(&store, i as u64 + 1, actions);
    }
    store.view(|tx| {
        assert_eq!(find_image(tx, "img0").unwrap().id, "sha256:abc123");
        assert_eq!(find_image(tx, "img1:latest").unwrap().id, "sha256:abd456");
        assert_eq!(find_image(tx, "sha256:abd456").unwrap().id, "sha256:abd456");
        assert_eq!(find_image(tx, "abc").unwrap().id, "sha256:abc123");
        assert!(matches!(
            find_image(tx, "ab"),
            Err(ControlError::Ambiguous { .. })
        ));
        assert!(matches!(
            find_image(tx, "nope"),
            Err(ControlError::NotFound { .. })
        ));
    });
}

#[test]
fn services_using_an_image_are_found_through_normalised_names() {
    let store = Store::new();
    apply(
        &store,
        1,
        vec![
            StoreAction::CreateService(service("web", "web")),
            StoreAction::CreateService(service("api", "api:2")),
            StoreAction::CreateService(service("fake", "fake/crash:1:100")),
        ],
    );
    store.view(|tx| {
        assert_eq!(users_of(tx, &names(&["web:latest"])), ["web"]);
        assert_eq!(
            users_of(tx, &names(&["api:2", "web:latest"])),
            ["api", "web"]
        );
        assert!(users_of(tx, &names(&["api:1"])).is_empty());
    });
}
