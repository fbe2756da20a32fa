//! `rswarm cluster ...`.

use std::io::Write;

use rswarm_proto::api::GetClusterStatusRequest;

use super::{Context, rpc_error, write_line};
use crate::args::{ClusterCommand, Format};
use crate::output;

/// Runs a `cluster` sub-command.
pub async fn run(
    ctx: &Context,
    command: ClusterCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Status => status(ctx, out).await,
    }
}

/// `cluster status`.
async fn status(ctx: &Context, out: &mut dyn Write) -> anyhow::Result<()> {
    let status = ctx
        .control()
        .await?
        .get_cluster_status(GetClusterStatusRequest {})
        .await
        .map_err(rpc_error)?
        .into_inner();
    match ctx.format {
        Format::Json => output::write_json(out, &output::cluster_status_json(&status)),
        Format::Table => write_line(out, &output::cluster_status_table(&status)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::test_support::{start, text};

    #[tokio::test]
    async fn status_as_json() {
        let (_fake, ctx, _dir) = start(Format::Json);
        let mut out = Vec::new();
        run(&ctx, ClusterCommand::Status, &mut out).await.unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["cluster_id"], "fake-cluster");
        assert_eq!(value["managers"][1]["id"], "node-2");
        assert_eq!(value["managers"][1]["leader"], true);
    }

    #[tokio::test]
    async fn status_as_table() {
        let (_fake, ctx, _dir) = start(Format::Table);
        let mut out = Vec::new();
        run(&ctx, ClusterCommand::Status, &mut out).await.unwrap();
        let out = text(out);
        assert!(out.contains("Cluster ID:    fake-cluster"), "{out}");
        assert!(out.contains("node-1 *"), "{out}");
    }
}
