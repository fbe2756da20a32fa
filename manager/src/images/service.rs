//! The `Images` gRPC service: import, list, remove, and the blob fetches of nodes.

use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use rswarm_proto::api::images_server::Images;
use rswarm_proto::api::*;
use rswarm_proto::tls::{require_manager_or_admin, require_node};
use rswarm_proto::validate::normalize_image_name;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::info;

use super::backend::{BackendError, ImageBackend, Imported};
use crate::controlapi::ControlError;
use crate::store::{Kind, Proposer, ReadTx, Store, StoreAction, update};

/// Bytes per streamed blob chunk: large enough to keep per-message overhead low,
/// well under gRPC's 4 MiB message limit.
const CHUNK: usize = 256 * 1024;

/// The image service of one manager.
pub struct ImageService<P> {
    store: Store,
    proposer: Arc<P>,
    backend: Arc<dyn ImageBackend>,
    /// This manager's node id, recorded as a holder of what it imports.
    node_id: String,
}

impl<P: Proposer + 'static> ImageService<P> {
    /// A service storing blobs in `backend` and records through `proposer`.
    pub fn new(
        store: Store,
        proposer: Arc<P>,
        backend: Arc<dyn ImageBackend>,
        node_id: String,
    ) -> Self {
        ImageService {
            store,
            proposer,
            backend,
            node_id,
        }
    }

    /// Writes the upload to a scratch file and imports it into the local store.
    async fn import_upload(
        &self,
        mut chunks: Streaming<ImportImageChunk>,
    ) -> Result<Vec<Imported>, Status> {
        let first = chunks
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty upload: no image archive was sent"))?;
        let name = match first.name.trim() {
            "" => None,
            name => Some(normalize_image_name(name).map_err(ControlError::from)?),
        };
        let scratch = self.backend.scratch_dir();
        tokio::fs::create_dir_all(&scratch)
            .await
            .map_err(internal)?;
        let path = scratch.join(format!("upload-{}", uuid::Uuid::new_v4()));
        let spool = Spool(path.clone());
        let mut file = tokio::fs::File::create(&path).await.map_err(internal)?;
        file.write_all(&first.data).await.map_err(internal)?;
        while let Some(chunk) = chunks.message().await? {
            file.write_all(&chunk.data).await.map_err(internal)?;
        }
        file.flush().await.map_err(internal)?;
        drop(file);
        let backend = self.backend.clone();
        let imported = tokio::task::spawn_blocking(move || {
            let _spool = spool;
            backend.import(&path, name.as_deref())
        })
        .await
        .map_err(internal)?
        .map_err(backend_status)?;
        Ok(imported)
    }
}

impl<P: Proposer + 'static> ImageService<P> {
    /// Records an imported image in the store, this manager as its holder.
    async fn record(&self, imported: Imported) -> Result<Image, Status> {
        let names = imported
            .names
            .iter()
            .map(|n| normalize_image_name(n))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ControlError::from)?;
        if names.is_empty() {
            return Err(Status::invalid_argument(
                "the archive names no image: give it a name with --name NAME[:TAG]",
            ));
        }
        let node_id = self.node_id.clone();
        update::<_, ControlError, _>(&self.store, &*self.proposer, |tx| {
            Ok(record_import(tx, &imported, &names, &node_id))
        })
        .await?;
        info!(image = %imported.id, names = ?names, "image imported");
        self.store
            .view(|tx| tx.image(&imported.id).cloned())
            .ok_or_else(|| {
                Status::unavailable("the import was committed but is not applied here yet")
            })
    }
}

/// Removes the spooled upload whatever happens to the import.
struct Spool(std::path::PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn internal(err: impl std::fmt::Display) -> Status {
    Status::internal(err.to_string())
}

fn backend_status(err: BackendError) -> Status {
    match err {
        BackendError::Invalid(msg) => Status::invalid_argument(msg),
        BackendError::NotFound(_) => Status::not_found(err.to_string()),
        BackendError::Failed(msg) => Status::internal(msg),
    }
}

/// The actions that record an import: names move from the images holding them, an
/// image left without a name goes, and the imported one is created or gains names
/// and this manager as a holder.
pub(super) fn record_import(
    tx: &ReadTx<'_>,
    imported: &Imported,
    names: &[String],
    node_id: &str,
) -> Vec<StoreAction> {
    let mut actions = Vec::new();
    let mut stripped: Vec<Image> = Vec::new();
    for name in names {
        let Some(holder) = tx.image_by_name(name) else {
            continue;
        };
        if holder.id == imported.id {
            continue;
        }
        match stripped.iter_mut().find(|i| i.id == holder.id) {
            Some(image) => image.names.retain(|n| n != name),
            None => {
                let mut image = holder.clone();
                image.names.retain(|n| n != name);
                stripped.push(image);
            }
        }
    }
    for image in stripped {
        if image.names.is_empty() {
            actions.push(StoreAction::RemoveImage { id: image.id });
        } else {
            actions.push(StoreAction::UpdateImage(image));
        }
    }
    match tx.image(&imported.id) {
        Some(existing) => {
            let mut image = existing.clone();
            for name in names {
                if !image.names.contains(name) {
                    image.names.push(name.clone());
                }
            }
            if !image.holders.iter().any(|h| h == node_id) {
                image.holders.push(node_id.to_owned());
            }
            if image != *existing {
                actions.push(StoreAction::UpdateImage(image));
            }
        }
        None => actions.push(StoreAction::CreateImage(Image {
            id: imported.id.clone(),
            meta: None,
            names: names.to_vec(),
            blobs: imported.blobs.clone(),
            holders: vec![node_id.to_owned()],
        })),
    }
    actions
}

/// Finds an image by name, exact id, or unique prefix of the id's hex.
pub(super) fn find_image<'a>(tx: &ReadTx<'a>, reference: &str) -> Result<&'a Image, ControlError> {
    let reference = reference.trim();
    if let Some(image) = tx.image(reference) {
        return Ok(image);
    }
    if let Ok(name) = normalize_image_name(reference)
        && let Some(image) = tx.image_by_name(&name)
    {
        return Ok(image);
    }
    let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
    let not_found = || ControlError::NotFound {
        kind: Kind::Image,
        reference: reference.to_owned(),
    };
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found());
    }
    let matches: Vec<&Image> = tx
        .images()
        .filter(|i| i.id.trim_start_matches("sha256:").starts_with(hex))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(not_found()),
        many => Err(ControlError::Ambiguous {
            kind: Kind::Image,
            reference: reference.to_owned(),
            matches: many
                .iter()
                .map(|i| i.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The services whose image is one of `names`, by service name.
pub(super) fn users_of(tx: &ReadTx<'_>, names: &[String]) -> Vec<String> {
    let mut users: Vec<String> = tx
        .services()
        .filter_map(|s| s.spec.as_ref())
        .filter(|spec| {
            spec.task
                .as_ref()
                .and_then(|t| t.container.as_ref())
                .and_then(|c| normalize_image_name(&c.image).ok())
                .is_some_and(|image| names.contains(&image))
        })
        .map(|spec| spec.name.clone())
        .collect();
    users.sort();
    users
}

/// What removing `reference` does: drop one name when the image has others and the
/// reference is a name, else remove the whole image; refused while a service uses a
/// name that would go.
fn plan_remove(
    tx: &ReadTx<'_>,
    reference: &str,
) -> Result<(Image, Vec<StoreAction>, bool), ControlError> {
    let image = find_image(tx, reference)?.clone();
    let by_name = normalize_image_name(reference)
        .ok()
        .filter(|name| image.names.contains(name));
    let going: Vec<String> = match &by_name {
        Some(name) if image.names.len() > 1 => vec![name.clone()],
        _ => image.names.clone(),
    };
    let users = users_of(tx, &going);
    if !users.is_empty() {
        return Err(ControlError::Refused(format!(
            "image {} is in use by service{} {}: remove or update {} first",
            going.join(", "),
            if users.len() > 1 { "s" } else { "" },
            users.join(", "),
            if users.len() > 1 { "them" } else { "it" },
        )));
    }
    if going.len() < image.names.len() {
        let mut updated = image.clone();
        updated.names.retain(|n| !going.contains(n));
        Ok((
            updated.clone(),
            vec![StoreAction::UpdateImage(updated)],
            false,
        ))
    } else {
        let id = image.id.clone();
        Ok((image, vec![StoreAction::RemoveImage { id }], true))
    }
}

type BlobStream = Pin<Box<dyn Stream<Item = Result<BlobChunk, Status>> + Send>>;

#[tonic::async_trait]
impl<P: Proposer + 'static> Images for ImageService<P> {
    async fn import(
        &self,
        request: Request<Streaming<ImportImageChunk>>,
    ) -> Result<Response<ImportImageResponse>, Status> {
        require_manager_or_admin(&request)?;
        let mut images = Vec::new();
        for imported in self.import_upload(request.into_inner()).await? {
            images.push(self.record(imported).await?);
        }
        Ok(Response::new(ImportImageResponse { images }))
    }

    async fn list(
        &self,
        request: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        require_manager_or_admin(&request)?;
        let mut images: Vec<Image> = self.store.view(|tx| tx.images().cloned().collect());
        images.sort_by(|a, b| a.names.first().cmp(&b.names.first()).then(a.id.cmp(&b.id)));
        Ok(Response::new(ListImagesResponse { images }))
    }

    async fn remove(
        &self,
        request: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        require_manager_or_admin(&request)?;
        let reference = request.into_inner().image;
        let outcome = std::sync::Mutex::new(None);
        update::<_, ControlError, _>(&self.store, &*self.proposer, |tx| {
            let (image, actions, deleted) = plan_remove(tx, &reference)?;
            *outcome
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((image, deleted));
            Ok(actions)
        })
        .await?;
        let (image, deleted) = outcome
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .ok_or_else(|| Status::internal("no removal was planned"))?;
        info!(image = %image.id, deleted, "image removed");
        Ok(Response::new(RemoveImageResponse {
            image: Some(image),
            deleted,
        }))
    }

    async fn resolve(
        &self,
        request: Request<ResolveImageRequest>,
    ) -> Result<Response<Image>, Status> {
        require_node(&request)?;
        let name = request.into_inner().name;
        let normalized = normalize_image_name(&name).map_err(ControlError::from)?;
        self.store
            .view(|tx| tx.image_by_name(&normalized).cloned())
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("image not found: {name}")))
    }

    type FetchBlobStream = BlobStream;

    async fn fetch_blob(
        &self,
        request: Request<FetchBlobRequest>,
    ) -> Result<Response<BlobStream>, Status> {
        require_node(&request)?;
        let digest = request.into_inner().digest;
        let backend = self.backend.clone();
        let reader = {
            let digest = digest.clone();
            tokio::task::spawn_blocking(move || backend.open_blob(&digest))
                .await
                .map_err(internal)?
                .map_err(backend_status)?
        };
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || send_blob(reader, &tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Streams a blob in chunks until its end, an error (sent on), or the receiver going.
fn send_blob(
    mut reader: Box<dyn std::io::Read + Send>,
    tx: &mpsc::Sender<Result<BlobChunk, Status>>,
) {
    loop {
        let mut buf = Vec::with_capacity(CHUNK);
        if let Err(err) = (&mut reader).take(CHUNK as u64).read_to_end(&mut buf) {
            let _ = tx.blocking_send(Err(Status::data_loss(err.to_string())));
            return;
        }
        let filled = buf.len();
        if filled == 0 {
            return;
        }
        if tx.blocking_send(Ok(BlobChunk { data: buf })).is_err() || filled < CHUNK {
            return;
        }
    }
}
