//! The node-local DNS server: tasks resolve the cluster's names (services,
//! `tasks.<service>`) through it, and everything else through the host's
//! resolvers.
//!
//! It answers from whatever [`Records`] its watch channel holds, replaced as a
//! whole on every endpoint change. A known name answers A queries with all its
//! addresses (authoritative, rotated per query so clients spread) and every
//! other type with NODATA, so clients fall back to A at once. Unknown names are
//! forwarded as they are to the upstreams in turn (SERVFAIL when none answer,
//! NXDOMAIN when there are none). UDP answers fit 512 bytes (or the client's
//! EDNS size, at most 1232) with TC set when cut; TCP carries several
//! length-prefixed messages per connection. hickory-proto is used for the wire
//! format only; the serving is ours.
//!
//! # Layout
//! - [`records`]: what to answer ([`Records`]).
//! - [`config`]: [`DnsConfig`] and [`upstreams_from_resolv_conf`].
//! - `server`: [`DnsServer::run`], the UDP and TCP servers side by side.
//! - `udp`, `tcp`: receiving queries and sending answers.
//! - `answer`: one query's answer, the rules and the size limit.
//! - `forward`: relaying to the upstreams.
//! - `error`: [`DnsError`].

pub mod config;
pub mod records;

mod answer;
mod error;
mod forward;
mod server;
mod tcp;
mod udp;

#[cfg(test)]
mod tests;

pub use config::{DnsConfig, upstreams_from_resolv_conf};
pub use error::DnsError;
pub use records::Records;
pub use server::DnsServer;
