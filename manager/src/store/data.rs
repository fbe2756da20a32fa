//! The store's contents and the all-or-nothing application of a batch.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rswarm_proto::api::{Cluster, Image, Meta, Node, Service, Task};
use serde::{Deserialize, Serialize};

use super::{Event, Kind, Object, StoreAction, StoreError};

/// The serialisable contents of the store, as written into a Raft snapshot.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StoreSnapshot {
    /// Nodes by id.
    pub nodes: BTreeMap<String, Node>,
    /// Services by id.
    pub services: BTreeMap<String, Service>,
    /// Tasks by id.
    pub tasks: BTreeMap<String, Task>,
    /// The cluster object, once `init` has written it.
    pub cluster: Option<Cluster>,
    /// Images by id (manifest digest).
    pub images: BTreeMap<String, Image>,
}

/// The live contents: the snapshot plus indexes derived from it.
#[derive(Default)]
pub(super) struct StoreData {
    pub(super) objects: StoreSnapshot,
    /// Service name → id; names are unique. Only looked up, never iterated: hashed.
    service_names: HashMap<String, String>,
    /// Service id → its task ids.
    tasks_by_service: BTreeMap<String, BTreeSet<String>>,
    /// Image name (`NAME:TAG`) → image id; each name is held by one image at most.
    pub(super) image_names: HashMap<String, String>,
}

/// What to put back if a later action of the same batch is refused.
pub(super) enum Undo {
    Node(String, Option<Node>),
    Service(String, Option<Service>),
    Task(String, Option<Task>),
    Cluster(Option<Cluster>),
    Image(String, Option<Image>),
}

pub(super) fn meta_mut(meta: &mut Option<Meta>) -> &mut Meta {
    meta.get_or_insert_with(Meta::default)
}

fn version_of(meta: &Option<Meta>) -> u64 {
    meta.as_ref().map_or(0, |m| m.version)
}

/// Checks an update's base version and stamps the new one, keeping the creation time.
pub(super) fn stamp_update(
    kind: Kind,
    id: &str,
    new_meta: &mut Option<Meta>,
    old_meta: &Option<Meta>,
    index: u64,
) -> Result<(), StoreError> {
    let (expected, found) = (version_of(new_meta), version_of(old_meta));
    if expected != found {
        return Err(StoreError::VersionConflict {
            kind,
            id: id.to_owned(),
            expected,
            found,
        });
    }
    let created_at = old_meta.as_ref().map_or(0, |m| m.created_at);
    let meta = meta_mut(new_meta);
    meta.version = index;
    meta.created_at = created_at;
    Ok(())
}

impl StoreData {
    pub(super) fn from_snapshot(objects: StoreSnapshot) -> StoreData {
        let mut data = StoreData {
            objects,
            ..StoreData::default()
        };
        for (id, s) in &data.objects.services {
            data.service_names
                .insert(service_name(s).to_owned(), id.clone());
        }
        for (id, image) in &data.objects.images {
            for name in &image.names {
                data.image_names.insert(name.clone(), id.clone());
            }
        }
        for (id, t) in &data.objects.tasks {
            data.tasks_by_service
                .entry(t.service_id.clone())
                .or_default()
                .insert(id.clone());
        }
        data
    }

    pub(super) fn to_snapshot(&self) -> StoreSnapshot {
        self.objects.clone()
    }

    /// Applies every action or none; returns the events to publish.
    pub(super) fn apply(
        &mut self,
        index: u64,
        actions: &[StoreAction],
    ) -> Result<Vec<Event>, StoreError> {
        let mut undo = Vec::with_capacity(actions.len());
        let mut events = Vec::with_capacity(actions.len());
        for action in actions {
            match self.apply_one(index, action.clone(), &mut undo) {
                Ok(event) => events.push(event),
                Err(err) => {
                    while let Some(u) = undo.pop() {
                        self.revert(u);
                    }
                    return Err(err);
                }
            }
        }
        Ok(events)
    }

    fn apply_one(
        &mut self,
        index: u64,
        action: StoreAction,
        undo: &mut Vec<Undo>,
    ) -> Result<Event, StoreError> {
        use StoreAction as A;
        let event = match action {
            A::CreateNode(mut n) => {
                if self.objects.nodes.contains_key(&n.id) {
                    return Err(exists(Kind::Node, &n.id));
                }
                meta_mut(&mut n.meta).version = index;
                undo.push(Undo::Node(n.id.clone(), None));
                self.objects.nodes.insert(n.id.clone(), n.clone());
                Event::Created(Object::Node(n))
            }
            A::UpdateNode(mut n) => {
                let old = self
                    .objects
                    .nodes
                    .get(&n.id)
                    .ok_or_else(|| missing(Kind::Node, &n.id))?;
                stamp_update(Kind::Node, &n.id, &mut n.meta, &old.meta, index)?;
                undo.push(Undo::Node(n.id.clone(), Some(old.clone())));
                self.objects.nodes.insert(n.id.clone(), n.clone());
                Event::Updated(Object::Node(n))
            }
            A::RemoveNode { id } => {
                let old = self
                    .objects
                    .nodes
                    .remove(&id)
                    .ok_or_else(|| missing(Kind::Node, &id))?;
                undo.push(Undo::Node(id, Some(old.clone())));
                Event::Removed(Object::Node(old))
            }
            A::CreateService(mut s) => {
                if self.objects.services.contains_key(&s.id) {
                    return Err(exists(Kind::Service, &s.id));
                }
                self.check_name(&s, None)?;
                meta_mut(&mut s.meta).version = index;
                undo.push(Undo::Service(s.id.clone(), None));
                self.put_service(s.clone(), None);
                Event::Created(Object::Service(s))
            }
            A::UpdateService(mut s) => {
                let old = self
                    .objects
                    .services
                    .get(&s.id)
                    .ok_or_else(|| missing(Kind::Service, &s.id))?
                    .clone();
                stamp_update(Kind::Service, &s.id, &mut s.meta, &old.meta, index)?;
                self.check_name(&s, Some(&s.id))?;
                undo.push(Undo::Service(s.id.clone(), Some(old.clone())));
                self.put_service(s.clone(), Some(&old));
                Event::Updated(Object::Service(s))
            }
            A::RemoveService { id } => {
                let old = self
                    .objects
                    .services
                    .remove(&id)
                    .ok_or_else(|| missing(Kind::Service, &id))?;
                self.service_names.remove(service_name(&old));
                undo.push(Undo::Service(id, Some(old.clone())));
                Event::Removed(Object::Service(old))
            }
            A::CreateTask(mut t) => {
                if self.objects.tasks.contains_key(&t.id) {
                    return Err(exists(Kind::Task, &t.id));
                }
                meta_mut(&mut t.meta).version = index;
                undo.push(Undo::Task(t.id.clone(), None));
                self.put_task(t.clone(), None);
                Event::Created(Object::Task(t))
            }
            A::UpdateTask(mut t) => {
                let old = self
                    .objects
                    .tasks
                    .get(&t.id)
                    .ok_or_else(|| missing(Kind::Task, &t.id))?
                    .clone();
                stamp_update(Kind::Task, &t.id, &mut t.meta, &old.meta, index)?;
                undo.push(Undo::Task(t.id.clone(), Some(old.clone())));
                self.put_task(t.clone(), Some(&old));
                Event::Updated(Object::Task(t))
            }
            A::RemoveTask { id } => {
                let old = self
                    .take_task(&id)
                    .ok_or_else(|| missing(Kind::Task, &id))?;
                undo.push(Undo::Task(id, Some(old.clone())));
                Event::Removed(Object::Task(old))
            }
            A::CreateCluster(mut c) => {
                if let Some(existing) = &self.objects.cluster {
                    return Err(exists(Kind::Cluster, &existing.id));
                }
                meta_mut(&mut c.meta).version = index;
                undo.push(Undo::Cluster(None));
                self.objects.cluster = Some(c.clone());
                Event::Created(Object::Cluster(c))
            }
            A::UpdateCluster(mut c) => {
                let old = match &self.objects.cluster {
                    Some(old) if old.id == c.id => old.clone(),
                    _ => return Err(missing(Kind::Cluster, &c.id)),
                };
                stamp_update(Kind::Cluster, &c.id, &mut c.meta, &old.meta, index)?;
                undo.push(Undo::Cluster(Some(old)));
                self.objects.cluster = Some(c.clone());
                Event::Updated(Object::Cluster(c))
            }
            A::CreateImage(image) => self.create_image(index, image, undo)?,
            A::UpdateImage(image) => self.update_image(index, image, undo)?,
            A::RemoveImage { id } => self.remove_image(&id, undo)?,
        };
        Ok(event)
    }

    fn check_name(&self, s: &Service, own_id: Option<&str>) -> Result<(), StoreError> {
        let name = service_name(s);
        match self.service_names.get(name) {
            Some(existing) if Some(existing.as_str()) != own_id => Err(StoreError::NameConflict {
                kind: Kind::Service,
                name: name.to_owned(),
                existing_id: existing.clone(),
            }),
            _ => Ok(()),
        }
    }

    fn put_service(&mut self, s: Service, old: Option<&Service>) {
        if let Some(old) = old {
            self.service_names.remove(service_name(old));
        }
        self.service_names
            .insert(service_name(&s).to_owned(), s.id.clone());
        self.objects.services.insert(s.id.clone(), s);
    }

    fn put_task(&mut self, t: Task, old: Option<&Task>) {
        if let Some(old) = old {
            self.unindex_task(old);
        }
        self.tasks_by_service
            .entry(t.service_id.clone())
            .or_default()
            .insert(t.id.clone());
        self.objects.tasks.insert(t.id.clone(), t);
    }

    fn take_task(&mut self, id: &str) -> Option<Task> {
        let old = self.objects.tasks.remove(id)?;
        self.unindex_task(&old);
        Some(old)
    }

    fn unindex_task(&mut self, t: &Task) {
        if let Some(set) = self.tasks_by_service.get_mut(&t.service_id) {
            set.remove(&t.id);
            if set.is_empty() {
                self.tasks_by_service.remove(&t.service_id);
            }
        }
    }

    fn revert(&mut self, undo: Undo) {
        match undo {
            Undo::Node(id, old) => match old {
                Some(n) => {
                    self.objects.nodes.insert(id, n);
                }
                None => {
                    self.objects.nodes.remove(&id);
                }
            },
            Undo::Service(id, old) => {
                if let Some(current) = self.objects.services.remove(&id) {
                    self.service_names.remove(service_name(&current));
                }
                if let Some(s) = old {
                    self.put_service(s, None);
                }
            }
            Undo::Task(id, old) => {
                self.take_task(&id);
                if let Some(t) = old {
                    self.put_task(t, None);
                }
            }
            Undo::Cluster(old) => self.objects.cluster = old,
            Undo::Image(id, old) => self.revert_image(&id, old),
        }
    }
}

fn service_name(s: &Service) -> &str {
    s.spec.as_ref().map_or("", |spec| spec.name.as_str())
}

pub(super) fn exists(kind: Kind, id: &str) -> StoreError {
    StoreError::AlreadyExists {
        kind,
        id: id.to_owned(),
    }
}

pub(super) fn missing(kind: Kind, id: &str) -> StoreError {
    StoreError::NotFound {
        kind,
        id: id.to_owned(),
    }
}

/// A consistent read of the store.
pub struct ReadTx<'a> {
    pub(super) data: &'a StoreData,
}

impl<'a> ReadTx<'a> {
    pub(super) fn new(data: &'a StoreData) -> ReadTx<'a> {
        ReadTx { data }
    }

    /// Every node, by id.
    pub fn nodes(&self) -> impl Iterator<Item = &'a Node> + 'a {
        self.data.objects.nodes.values()
    }

    /// One node by exact id.
    pub fn node(&self, id: &str) -> Option<&'a Node> {
        self.data.objects.nodes.get(id)
    }

    /// Every service, by id.
    pub fn services(&self) -> impl Iterator<Item = &'a Service> + 'a {
        self.data.objects.services.values()
    }

    /// One service by exact id.
    pub fn service(&self, id: &str) -> Option<&'a Service> {
        self.data.objects.services.get(id)
    }

    /// One service by exact name.
    pub fn service_by_name(&self, name: &str) -> Option<&'a Service> {
        self.data
            .service_names
            .get(name)
            .and_then(|id| self.data.objects.services.get(id))
    }

    /// Every task, by id.
    pub fn tasks(&self) -> impl Iterator<Item = &'a Task> + 'a {
        self.data.objects.tasks.values()
    }

    /// One task by exact id.
    pub fn task(&self, id: &str) -> Option<&'a Task> {
        self.data.objects.tasks.get(id)
    }

    /// The tasks of one service.
    pub fn tasks_of_service(&self, service_id: &str) -> impl Iterator<Item = &'a Task> + 'a {
        let tasks = &self.data.objects.tasks;
        self.data
            .tasks_by_service
            .get(service_id)
            .into_iter()
            .flatten()
            .filter_map(move |id| tasks.get(id))
    }

    /// The cluster object, once created.
    pub fn cluster(&self) -> Option<&'a Cluster> {
        self.data.objects.cluster.as_ref()
    }
}
