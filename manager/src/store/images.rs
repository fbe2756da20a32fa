//! Images in the store: their records and the name index.

use rswarm_proto::api::Image;

use super::data::{ReadTx, StoreData, Undo, exists, meta_mut, missing, stamp_update};
use super::{Event, Kind, Object, StoreError};

impl StoreData {
    pub(super) fn create_image(
        &mut self,
        index: u64,
        mut image: Image,
        undo: &mut Vec<Undo>,
    ) -> Result<Event, StoreError> {
        if self.objects.images.contains_key(&image.id) {
            return Err(exists(Kind::Image, &image.id));
        }
        self.check_image_names(&image)?;
        meta_mut(&mut image.meta).version = index;
        undo.push(Undo::Image(image.id.clone(), None));
        self.put_image(image.clone());
        Ok(Event::Created(Object::Image(image)))
    }

    pub(super) fn update_image(
        &mut self,
        index: u64,
        mut image: Image,
        undo: &mut Vec<Undo>,
    ) -> Result<Event, StoreError> {
        let old = self
            .objects
            .images
            .get(&image.id)
            .ok_or_else(|| missing(Kind::Image, &image.id))?
            .clone();
        stamp_update(Kind::Image, &image.id, &mut image.meta, &old.meta, index)?;
        self.check_image_names(&image)?;
        undo.push(Undo::Image(image.id.clone(), Some(old)));
        self.take_image(&image.id);
        self.put_image(image.clone());
        Ok(Event::Updated(Object::Image(image)))
    }

    pub(super) fn remove_image(
        &mut self,
        id: &str,
        undo: &mut Vec<Undo>,
    ) -> Result<Event, StoreError> {
        let old = self
            .take_image(id)
            .ok_or_else(|| missing(Kind::Image, id))?;
        undo.push(Undo::Image(id.to_owned(), Some(old.clone())));
        Ok(Event::Removed(Object::Image(old)))
    }

    pub(super) fn revert_image(&mut self, id: &str, old: Option<Image>) {
        self.take_image(id);
        if let Some(image) = old {
            self.put_image(image);
        }
    }

    /// Refuses a name another image holds (moving a name is two actions: take it off
    /// the old image first, in the same batch).
    fn check_image_names(&self, image: &Image) -> Result<(), StoreError> {
        for name in &image.names {
            match self.image_names.get(name) {
                Some(holder) if *holder != image.id => {
                    return Err(StoreError::NameConflict {
                        kind: Kind::Image,
                        name: name.clone(),
                        existing_id: holder.clone(),
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn put_image(&mut self, image: Image) {
        for name in &image.names {
            self.image_names.insert(name.clone(), image.id.clone());
        }
        self.objects.images.insert(image.id.clone(), image);
    }

    fn take_image(&mut self, id: &str) -> Option<Image> {
        let old = self.objects.images.remove(id)?;
        for name in &old.names {
            if self
                .image_names
                .get(name)
                .is_some_and(|holder| holder == id)
            {
                self.image_names.remove(name);
            }
        }
        Some(old)
    }
}

impl<'a> ReadTx<'a> {
    /// Every image, by id.
    pub fn images(&self) -> impl Iterator<Item = &'a Image> + 'a {
        self.data.objects.images.values()
    }

    /// One image by exact id.
    pub fn image(&self, id: &str) -> Option<&'a Image> {
        self.data.objects.images.get(id)
    }

    /// The image holding an exact name (`NAME:TAG`).
    pub fn image_by_name(&self, name: &str) -> Option<&'a Image> {
        self.data
            .image_names
            .get(name)
            .and_then(|id| self.data.objects.images.get(id))
    }
}

#[cfg(test)]
mod tests {
    use rswarm_proto::api::Image;

    use crate::store::{Kind, Store, StoreAction, StoreError};

    fn image(id: &str, names: &[&str]) -> Image {
        Image {
            id: id.into(),
            names: names.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn names_are_unique_and_move_in_one_batch() {
        let store = Store::new();
        store
            .apply(
                1,
                &[StoreAction::CreateImage(image("sha256:a", &["web:1"]))],
            )
            .unwrap();
        let err = store
            .apply(
                2,
                &[StoreAction::CreateImage(image("sha256:b", &["web:1"]))],
            )
            .unwrap_err();
        assert!(matches!(
            err,
            StoreError::NameConflict {
                kind: Kind::Image,
                ..
            }
        ));
        assert!(
            store.view(|tx| tx.image("sha256:b").is_none()),
            "nothing applied"
        );
        let mut old = store.view(|tx| tx.image("sha256:a").cloned()).unwrap();
        old.names.clear();
        store
            .apply(
                3,
                &[
                    StoreAction::UpdateImage(old),
                    StoreAction::CreateImage(image("sha256:b", &["web:1", "web:latest"])),
                ],
            )
            .unwrap();
        store.view(|tx| {
            assert_eq!(tx.image_by_name("web:1").unwrap().id, "sha256:b");
            assert_eq!(tx.image_by_name("web:latest").unwrap().id, "sha256:b");
            assert!(tx.image("sha256:a").unwrap().names.is_empty());
        });
    }

    #[test]
    fn a_refused_batch_puts_the_name_index_back() {
        let store = Store::new();
        store
            .apply(
                1,
                &[StoreAction::CreateImage(image("sha256:a", &["web:1"]))],
            )
            .unwrap();
        let err = store.apply(
            2,
            &[
                StoreAction::RemoveImage {
                    id: "sha256:a".into(),
                },
                StoreAction::RemoveImage {
                    id: "sha256:zzz".into(),
                },
            ],
        );
        assert!(err.is_err());
        assert_eq!(
            store.view(|tx| tx.image_by_name("web:1").map(|i| i.id.clone())),
            Some("sha256:a".into())
        );
    }

    #[test]
    fn images_survive_a_snapshot_with_their_index() {
        let store = Store::new();
        store
            .apply(
                1,
                &[StoreAction::CreateImage(image("sha256:a", &["web:1"]))],
            )
            .unwrap();
        let copy = Store::new();
        copy.restore(store.snapshot());
        assert_eq!(
            copy.view(|tx| tx.image_by_name("web:1").map(|i| i.id.clone())),
            Some("sha256:a".into())
        );
    }
}
