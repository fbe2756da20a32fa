//! The node daemon behind `rswarm init`, `rswarm join` and `rswarm daemon`.

use crate::args::{DaemonArgs, InitArgs, JoinArgs};

/// Creates a cluster with this node as its first manager, then runs the node.
pub async fn init(args: InitArgs) -> anyhow::Result<()> {
    let InitArgs {
        data_dir,
        listen,
        advertise,
        hostname,
        raft,
    } = args;
    let _ = (data_dir, listen, advertise, hostname, raft);
    anyhow::bail!("node daemon not built in")
}

/// Joins an existing cluster through `manager_addr`, then runs the node.
pub async fn join(args: JoinArgs) -> anyhow::Result<()> {
    let JoinArgs {
        token,
        data_dir,
        listen,
        advertise,
        hostname,
        raft,
        manager_addr,
    } = args;
    let _ = (
        token,
        data_dir,
        listen,
        advertise,
        hostname,
        raft,
        manager_addr,
    );
    anyhow::bail!("node daemon not built in")
}

/// Runs an already initialised or joined node from its data directory.
pub async fn run(args: DaemonArgs) -> anyhow::Result<()> {
    let DaemonArgs { data_dir } = args;
    let _ = data_dir;
    anyhow::bail!("node daemon not built in")
}
