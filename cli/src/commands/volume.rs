//! `rswarm volume ...`: the named volumes of one node (the one whose socket or
//! address the command uses), as `docker volume` lists the local daemon's.

use std::io::Write;

use rswarm_proto::api::volumes_client::VolumesClient;
use rswarm_proto::api::{ListVolumesRequest, RemoveVolumeRequest};

use super::{Context, remove_each, rpc_error, write_line};
use crate::args::{Format, VolumeCommand};
use crate::client;
use crate::output;

/// Runs a `volume` sub-command.
pub async fn run(ctx: &Context, command: VolumeCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    let channel = client::connect(&ctx.host, &ctx.cert_dir).await?;
    let mut client = VolumesClient::new(channel);
    match command {
        VolumeCommand::Ls => {
            let volumes = client
                .list(ListVolumesRequest {})
                .await
                .map_err(volume_error)?
                .into_inner()
                .volumes;
            match ctx.format {
                Format::Json => {
                    let rows: Vec<serde_json::Value> = volumes
                        .iter()
                        .map(|v| {
                            serde_json::json!({
                                "name": v.name,
                                "path": v.path,
                                "size_bytes": v.size_bytes,
                                "used_by": v.used_by,
                            })
                        })
                        .collect();
                    output::write_json(out, &serde_json::Value::Array(rows))
                }
                Format::Table => write_line(out, &output::volumes_table(&volumes)),
            }
        }
        VolumeCommand::Rm { volumes } => {
            remove_each(ctx, &volumes, out, |name| {
                let mut client = client.clone();
                async move {
                    client
                        .remove(RemoveVolumeRequest { name })
                        .await
                        .map(|_| ())
                }
            })
            .await
        }
    }
}

/// A node without a container runtime serves no volumes: say so.
fn volume_error(status: tonic::Status) -> anyhow::Error {
    if status.code() == tonic::Code::Unimplemented {
        anyhow::anyhow!("this node runs no containers, so it has no volumes (see its --executor)")
    } else {
        rpc_error(status)
    }
}
