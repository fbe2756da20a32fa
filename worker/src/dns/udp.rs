//! The UDP server: one task per datagram.

use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::answer::{Handler, Transport};

/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

/// Answers datagrams on `socket` until `shutdown` is cancelled; then the query
/// tasks still running are ended.
pub(super) async fn serve(
    socket: UdpSocket,
    handler: Arc<Handler>,
    queries: Arc<Semaphore>,
    shutdown: &CancellationToken,
) {
    let socket = Arc::new(socket);
    let mut tasks = JoinSet::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            received = socket.recv_from(&mut buf) => {
                let (len, client) = match received {
                    Ok(received) => received,
                    Err(err) => {
                        debug!(%err, "DNS receive failed");
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&queries).try_acquire_owned() else {
                    debug!(%client, "too many DNS queries in flight; dropped one");
                    continue;
                };
                let packet = buf[..len].to_vec();
                let handler = Arc::clone(&handler);
                let socket = Arc::clone(&socket);
                tasks.spawn(async move {
                    let _permit = permit;
                    let Some(request) = Handler::parse(&packet) else {
                        return;
                    };
                    let Some(answer) = handler.answer(&packet, &request, Transport::Udp).await
                    else {
                        return;
                    };
                    if let Err(err) = socket.send_to(&answer, client).await {
                        debug!(%client, %err, "DNS answer not sent");
                    }
                });
            }
        }
    }
    tasks.shutdown().await;
}
