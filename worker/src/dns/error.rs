//! The DNS server's errors.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// What can go wrong answering a query; each is logged and the client gets
/// SERVFAIL (forwarding) or nothing (encoding), the server keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// A socket towards an upstream failed (bind, connect, send or receive).
    #[error("upstream {upstream}: {source}")]
    Upstream {
        /// The upstream resolver.
        upstream: SocketAddr,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The upstream did not answer in time.
    #[error("upstream {upstream} did not answer within {timeout:?}")]
    UpstreamTimeout {
        /// The upstream resolver.
        upstream: SocketAddr,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// The upstream sent something that is not an answer to the query.
    #[error("upstream {upstream} sent a reply that does not match the query")]
    BadReply {
        /// The upstream resolver.
        upstream: SocketAddr,
    },
    /// The query is shorter than a DNS header, so it cannot be forwarded.
    #[error("a query of {len} bytes is shorter than a DNS header")]
    ShortQuery {
        /// The query's length.
        len: usize,
    },
    /// There was no upstream to ask.
    #[error("no upstream resolver configured")]
    NoUpstreams,
    /// A response could not be serialised.
    #[error("cannot encode the response: {0}")]
    Encode(#[from] hickory_proto::ProtoError),
}
