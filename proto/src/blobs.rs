//! Fetching an image blob from a manager into a blocking sink (the local blob store,
//! which checks the digest as it writes). Shared by managers, which replicate images
//! between themselves, and by nodes, which fetch what their tasks need.

use std::io::{self, Read};

use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::api::FetchBlobRequest;
use crate::api::images_client::ImagesClient;

/// Largest message a blob stream may carry: a chunk is 256 KiB, keep headroom.
const MAX_MESSAGE: usize = 8 << 20;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The manager does not hold the blob.
    #[error("blob {0} not found on this manager")]
    NotFound(String),
    /// The RPC failed or broke off.
    #[error("fetching blob {digest}: {status}")]
    Rpc {
        /// The blob.
        digest: String,
        /// What the manager or the transport said.
        status: String,
    },
    /// The sink refused the bytes (e.g. digest mismatch, disk full).
    #[error("storing blob {digest}: {reason}")]
    Sink {
        /// The blob.
        digest: String,
        /// Why.
        reason: String,
    },
}

/// Streams blob `digest` from the manager behind `channel` into `sink`, which reads
/// it on tokio's blocking pool. Returns once the sink has consumed the whole blob.
pub async fn fetch_blob<F, E>(channel: Channel, digest: &str, sink: F) -> Result<(), FetchError>
where
    F: FnOnce(&mut dyn Read) -> Result<(), E> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let rpc_error = |status: tonic::Status| {
        if status.code() == tonic::Code::NotFound {
            FetchError::NotFound(digest.to_owned())
        } else {
            FetchError::Rpc {
                digest: digest.to_owned(),
                status: status.message().to_owned(),
            }
        }
    };
    let mut stream = ImagesClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .fetch_blob(FetchBlobRequest {
            digest: digest.to_owned(),
        })
        .await
        .map_err(rpc_error)?
        .into_inner();
    let (tx, rx) = mpsc::channel::<io::Result<Vec<u8>>>(4);
    let writer = tokio::task::spawn_blocking(move || {
        let mut reader = ChannelReader {
            rx,
            current: Vec::new(),
            pos: 0,
        };
        sink(&mut reader).map_err(|e| e.to_string())
    });
    let mut transport = None;
    loop {
        match stream.message().await {
            Ok(Some(chunk)) => {
                if tx.send(Ok(chunk.data)).await.is_err() {
                    break; // the sink gave up; its error says why
                }
            }
            Ok(None) => break,
            Err(status) => {
                let _ = tx
                    .send(Err(io::Error::other(status.message().to_owned())))
                    .await;
                transport = Some(rpc_error(status));
                break;
            }
        }
    }
    drop(tx);
    let stored = writer.await.map_err(|e| FetchError::Sink {
        digest: digest.to_owned(),
        reason: e.to_string(),
    })?;
    if let Some(err) = transport {
        return Err(err);
    }
    stored.map_err(|reason| FetchError::Sink {
        digest: digest.to_owned(),
        reason,
    })
}

/// A blocking [`Read`] over chunks sent through a channel; an `Err` chunk ends the
/// read with that error, a closed channel is the end of the blob.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.current.len() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.current = chunk;
                    self.pos = 0;
                }
                Some(Err(err)) => return Err(err),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_reader_joins_chunks_and_passes_errors_on() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(Ok(b"hello ".to_vec())).await.unwrap();
        tx.send(Ok(Vec::new())).await.unwrap();
        tx.send(Ok(b"world".to_vec())).await.unwrap();
        tx.send(Err(io::Error::other("cut"))).await.unwrap();
        drop(tx);
        let result = tokio::task::spawn_blocking(move || {
            let mut reader = ChannelReader {
                rx,
                current: Vec::new(),
                pos: 0,
            };
            let mut got = Vec::new();
            let err = reader.read_to_end(&mut got).unwrap_err();
            (got, err.to_string())
        })
        .await
        .unwrap();
        assert_eq!(result.0, b"hello world");
        assert_eq!(result.1, "cut");
    }
}
