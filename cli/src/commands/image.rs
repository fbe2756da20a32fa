//! `rswarm image ...`: import, list and remove the cluster's images.

use std::io::{Read, Write};

use rswarm_proto::api::{ImportImageChunk, ListImagesRequest, RemoveImageRequest};
use rswarm_proto::validate::normalize_image_name;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{Context, remove_each, rpc_error, write_line};
use crate::args::{Format, ImageCommand};
use crate::output;

/// Bytes per uploaded chunk.
const CHUNK: usize = 1 << 20;

/// Runs an `image` sub-command.
pub async fn run(ctx: &Context, command: ImageCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        ImageCommand::Import { name, file } => import(ctx, name, &file, out).await,
        ImageCommand::Ls => ls(ctx, out).await,
        ImageCommand::Rm { images } => rm(ctx, &images, out).await,
    }
}

/// A missing image API means the socket is a worker's: say where to go instead.
fn image_rpc_error(status: tonic::Status) -> anyhow::Error {
    if status.code() == tonic::Code::Unimplemented {
        anyhow::anyhow!(
            "this node serves no image API: run the command on a manager (or pass --host MANAGER)"
        )
    } else {
        rpc_error(status)
    }
}

async fn import(
    ctx: &Context,
    name: Option<String>,
    file: &str,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let name = name
        .map(|n| normalize_image_name(&n))
        .transpose()?
        .unwrap_or_default();
    let mut reader: Box<dyn Read + Send> = if file == "-" {
        Box::new(std::io::stdin())
    } else {
        let path = std::path::Path::new(file);
        if path.is_dir() {
            anyhow::bail!(
                "{file} is a directory: pack the OCI layout first (`tar -C {file} -cf - . | rswarm image import -`)"
            );
        }
        Box::new(std::fs::File::open(path).map_err(|e| anyhow::anyhow!("cannot open {file}: {e}"))?)
    };
    let mut client = ctx.images().await?;
    let (tx, rx) = mpsc::channel(4);
    // The file is read on a blocking thread while the upload streams.
    let reading = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
        let mut first = Some(name);
        let mut total = 0u64;
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = read_full(&mut reader, &mut buf)?;
            buf.truncate(n);
            total += n as u64;
            let last = n < CHUNK;
            if n > 0 || first.is_some() {
                let chunk = ImportImageChunk {
                    name: first.take().unwrap_or_default(),
                    data: buf,
                };
                if tx.blocking_send(chunk).is_err() {
                    return Ok(total); // the upload ended; its error says why
                }
            }
            if last {
                return Ok(total);
            }
        }
    });
    let response = client.import(ReceiverStream::new(rx)).await;
    let total = reading.await??;
    let images = response.map_err(image_rpc_error)?.into_inner().images;
    if total == 0 {
        anyhow::bail!("{file} is empty");
    }
    match ctx.format {
        Format::Json => {
            output::write_json(out, &serde_json::to_value(output::image_rows(&images))?)
        }
        Format::Table => {
            for image in &images {
                write_line(
                    out,
                    &format!(
                        "Imported {} ({})",
                        image.names.join(", "),
                        output::short_id(&image.id)
                    ),
                )?;
            }
            Ok(())
        }
    }
}

/// Reads until `buf` is full or the input ends.
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

async fn ls(ctx: &Context, out: &mut dyn Write) -> anyhow::Result<()> {
    let images = ctx
        .images()
        .await?
        .list(ListImagesRequest {})
        .await
        .map_err(image_rpc_error)?
        .into_inner()
        .images;
    let rows = output::image_rows(&images);
    match ctx.format {
        Format::Json => output::write_json(out, &serde_json::to_value(&rows)?),
        Format::Table => write_line(out, &output::images_table(&rows)),
    }
}

async fn rm(ctx: &Context, images: &[String], out: &mut dyn Write) -> anyhow::Result<()> {
    let client = ctx.images().await?;
    remove_each(ctx, images, out, |image| {
        let mut client = client.clone();
        async move {
            client
                .remove(RemoveImageRequest { image })
                .await
                .map(|_| ())
        }
    })
    .await
}
