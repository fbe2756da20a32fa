//! Images: imported on any manager, recorded in the store, replicated between the
//! managers' local stores, and fetched from there by the nodes that run them.
//!
//! - [`backend`]: the local image store seam (the daemon plugs in the runtime's).
//! - [`service`]: the `Images` gRPC service (import, list, remove, resolve, blobs).
//! - [`replicate`]: each manager fetching the images it does not hold yet.

mod backend;
mod replicate;
mod service;
#[cfg(test)]
mod tests;

pub use backend::{BackendError, ImageBackend, Imported};
pub use replicate::{Connector, Replicator};
pub use service::ImageService;
