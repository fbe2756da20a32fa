//! Which runtime runs this node's tasks.

use std::sync::Arc;

use rswarm_agent_runtime::{Executor, NoRuntime};

/// The executor named in the node record: `none` (tasks are refused with a
/// reason), or `fake` (simulated tasks whose behaviour follows their image name,
/// see `fake_image`, for cluster tests; only in builds with the
/// `fake-executor` feature).
pub fn for_node(name: &str) -> anyhow::Result<Arc<dyn Executor>> {
    match name {
        "none" => Ok(Arc::new(NoRuntime)),
        #[cfg(feature = "fake-executor")]
        "fake" => Ok(Arc::new(super::fake_image::ByImage::new())),
        #[cfg(not(feature = "fake-executor"))]
        "fake" => anyhow::bail!(
            "this rswarm was built without the fake executor (cargo feature fake-executor)"
        ),
        other => anyhow::bail!("unknown executor {other:?}: expected none or fake"),
    }
}
