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
            Box::new(pack_layout(path)?)
        } else {
            Box::new(
                std::fs::File::open(path)
                    .map_err(|e| anyhow::anyhow!("cannot open {file}: {e}"))?,
            )
        }
    };
    let mut client = ctx.images().await?;
    let (tx, rx) = mpsc::channel(4);
    // The file is read on a blocking thread while the upload streams.
    let reading = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
        let mut first = Some(name);
        let mut total = 0u64;
        loop {
            let mut buf = Vec::with_capacity(CHUNK);
            let n = (&mut reader).take(CHUNK as u64).read_to_end(&mut buf)?;
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

/// An OCI image layout directory packed into a temporary tar (the managers take
/// archives); the file is deleted when the returned handle closes.
fn pack_layout(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use std::io::Seek;
    if !dir.join("oci-layout").is_file() || !dir.join("index.json").is_file() {
        anyhow::bail!(
            "{} is a directory but not an OCI image layout (no oci-layout or index.json)",
            dir.display()
        );
    }
    let mut file = tempfile::tempfile()?;
    {
        let mut archive = tar::Builder::new(&mut file);
        archive.follow_symlinks(false);
        archive
            .append_dir_all(".", dir)
            .map_err(|e| anyhow::anyhow!("cannot pack {}: {e}", dir.display()))?;
        archive.finish()?;
    }
    file.seek(std::io::SeekFrom::Start(0))?;
    Ok(file)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oci_layout_directory_is_packed_whole() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("oci-layout"),
            "{\"imageLayoutVersion\":\"1.0.0\"}",
        )
        .unwrap();
        std::fs::write(dir.path().join("index.json"), "{}").unwrap();
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).unwrap();
        std::fs::write(dir.path().join("blobs/sha256/abc"), "blob").unwrap();
        let file = pack_layout(dir.path()).unwrap();
        let mut archive = tar::Archive::new(file);
        let mut names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert!(
            names.iter().any(|n| n.ends_with("blobs/sha256/abc")),
            "{names:?}"
        );
        assert!(names.iter().any(|n| n.ends_with("index.json")), "{names:?}");
        assert!(names.iter().any(|n| n.ends_with("oci-layout")), "{names:?}");
    }

    #[test]
    fn a_plain_directory_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let err = pack_layout(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not an OCI image layout"), "{err}");
    }
}
