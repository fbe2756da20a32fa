//! The TCP server: length-prefixed messages, several per connection, each
//! answered in its own task and written back as it is ready (RFC 7766).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::answer::{Handler, Transport};

/// Connections served at once; one beyond this is closed as it is accepted.
const MAX_CONNECTIONS: usize = 64;
/// A connection with no message for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Writing one answer may take this long before the connection is closed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Answers of one connection waiting to be written.
const PENDING_ANSWERS: usize = 16;
/// The pause after a failed accept (out of descriptors), so it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts connections on `listener` until `shutdown` is cancelled; then the
/// open connections are closed.
pub(super) async fn serve(
    listener: TcpListener,
    handler: Arc<Handler>,
    queries: Arc<Semaphore>,
    shutdown: &CancellationToken,
) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        debug!(%err, "DNS accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                    debug!(%peer, "too many DNS connections; closed one");
                    continue;
                };
                let handler = Arc::clone(&handler);
                let queries = Arc::clone(&queries);
                tasks.spawn(connection(stream, peer, handler, queries, permit));
            }
        }
    }
    tasks.shutdown().await;
}

/// Serves one connection until the client closes it, falls idle or sends a
/// malformed message; answers already being worked on are still written,
/// except after a malformed message.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    handler: Arc<Handler>,
    queries: Arc<Semaphore>,
    _permit: OwnedSemaphorePermit,
) {
    let (mut reader, writer) = stream.into_split();
    let (answers, pending) = mpsc::channel(PENDING_ANSWERS);
    // Dropping the set (this task being aborted) ends the writer and handlers.
    let mut tasks = JoinSet::new();
    tasks.spawn(write_answers(writer, pending, peer));
    loop {
        let packet = match tokio::time::timeout(IDLE_TIMEOUT, read_message(&mut reader)).await {
            Ok(Ok(Some(packet))) => packet,
            Ok(Ok(None)) => break,
            Ok(Err(err)) => {
                debug!(%peer, %err, "DNS connection read failed");
                break;
            }
            Err(_) => {
                debug!(%peer, "idle DNS connection closed");
                break;
            }
        };
        let Some(request) = Handler::parse(&packet) else {
            debug!(%peer, "malformed DNS message; connection closed");
            return;
        };
        let Ok(permit) = Arc::clone(&queries).acquire_owned().await else {
            return;
        };
        let handler = Arc::clone(&handler);
        let sender = answers.clone();
        tasks.spawn(async move {
            let _permit = permit;
            if let Some(answer) = handler.answer(&packet, &request, Transport::Tcp).await {
                // The writer has stopped only when the connection is dead.
                let _ = sender.send(answer).await;
            }
        });
        while tasks.try_join_next().is_some() {}
        if answers.is_closed() {
            break;
        }
    }
    // The writer ends once the last handler has sent its answer.
    drop(answers);
    while tasks.join_next().await.is_some() {}
}

/// One length-prefixed message; `None` at a clean end of the stream.
async fn read_message(reader: &mut OwnedReadHalf) -> io::Result<Option<Vec<u8>>> {
    let mut prefix = [0u8; 2];
    match reader.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err),
    }
    let mut packet = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
    reader.read_exact(&mut packet).await?;
    Ok(Some(packet))
}

/// Writes each answer with its length prefix until every sender is gone or a
/// write fails, then closes the connection's sending side.
async fn write_answers(
    mut writer: OwnedWriteHalf,
    mut pending: mpsc::Receiver<Vec<u8>>,
    peer: SocketAddr,
) {
    while let Some(answer) = pending.recv().await {
        let Ok(len) = u16::try_from(answer.len()) else {
            debug!(%peer, len = answer.len(), "DNS answer too long for TCP; dropped");
            continue;
        };
        let mut framed = Vec::with_capacity(answer.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&answer);
        match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&framed)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                debug!(%peer, %err, "DNS answer not written; connection closed");
                return;
            }
            Err(_) => {
                debug!(%peer, "DNS answer not written in time; connection closed");
                return;
            }
        }
    }
    let _ = tokio::time::timeout(WRITE_TIMEOUT, writer.shutdown()).await;
}
