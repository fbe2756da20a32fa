//! [`DnsServer`]: the UDP and TCP servers side by side, sharing one handler and
//! one bound on the queries in flight.

use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::answer::Handler;
use super::config::DnsConfig;
use super::records::Records;
use super::{tcp, udp};

/// Queries answered at once, UDP and TCP together; a UDP query beyond this is
/// dropped (the client retries), a TCP one waits.
const MAX_QUERIES: usize = 256;

/// The node-local DNS server.
#[derive(Debug)]
pub struct DnsServer {
    /// Its settings.
    config: DnsConfig,
}

impl DnsServer {
    /// A server with `config`; it serves once [`DnsServer::run`] is called.
    pub fn new(config: DnsConfig) -> Self {
        Self { config }
    }

    /// Serves UDP and TCP on already-bound sockets until `shutdown` is
    /// cancelled, answering from the latest value of `records`. Returns once
    /// both are closed and every query task has ended.
    pub async fn run(
        self,
        udp: UdpSocket,
        tcp: TcpListener,
        records: watch::Receiver<Arc<Records>>,
        shutdown: CancellationToken,
    ) {
        debug!(
            udp = ?udp.local_addr().ok(),
            tcp = ?tcp.local_addr().ok(),
            upstreams = ?self.config.upstreams,
            "DNS server starting"
        );
        let handler = Arc::new(Handler::new(self.config, records));
        let queries = Arc::new(Semaphore::new(MAX_QUERIES));
        tokio::join!(
            udp::serve(udp, Arc::clone(&handler), Arc::clone(&queries), &shutdown),
            tcp::serve(tcp, handler, queries, &shutdown),
        );
        debug!("DNS server stopped");
    }
}
