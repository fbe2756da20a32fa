//! The server's settings and where its upstreams come from.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How many upstreams are kept, as glibc's resolver does (`MAXNS`).
const MAX_UPSTREAMS: usize = 3;

/// How the DNS server answers what is not the cluster's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Upstream resolvers for names that are not the cluster's (usually from the
    /// host's resolv.conf, see [`upstreams_from_resolv_conf`]), tried in turn;
    /// empty: unknown names get NXDOMAIN.
    pub upstreams: Vec<SocketAddr>,
    /// Timeout of a forwarded query, per upstream (default 2 s).
    pub upstream_timeout: Duration,
    /// TTL of the cluster's answers (default 0 s). Endpoints change whenever
    /// tasks start, stop or move, and the server is on the node itself, so
    /// asking again costs a loopback-like round trip while a cached answer
    /// (Docker's embedded DNS says 600 s) can point at a task long gone; 0 tells
    /// clients and intermediate caches not to keep it.
    pub ttl: u32,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            upstreams: Vec::new(),
            upstream_timeout: Duration::from_secs(2),
            ttl: 0,
        }
    }
}

/// The upstream resolvers named in a resolv.conf text: its `nameserver` lines
/// in order, port 53, duplicates dropped, at most 3 (what glibc reads).
///
/// Loopback (`127.0.0.0/8`, `::1`) and unspecified addresses are skipped: a
/// resolver listening on the host's loopback (systemd-resolved's 127.0.0.53,
/// a local dnsmasq) is reachable only from the host's own network namespace,
/// not from a task network's namespace where the server may run, and in a
/// namespace of its own 127.0.0.53 is that namespace's loopback, where nothing
/// answers. Docker filters these the same way; on a host whose resolv.conf
/// names only systemd-resolved, pass `/run/systemd/resolve/resolv.conf`
/// (the real upstreams) instead. Addresses with an IPv6 zone (`fe80::1%eth0`)
/// are skipped too, since the zone is the host's interface.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut upstreams = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(Ok(ip)) = words.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        if ip.is_loopback() || ip.is_unspecified() || is_mapped_loopback(ip) {
            continue;
        }
        let upstream = SocketAddr::new(ip, 53);
        if !upstreams.contains(&upstream) {
            upstreams.push(upstream);
        }
        if upstreams.len() == MAX_UPSTREAMS {
            break;
        }
    }
    upstreams
}

/// `::ffff:127.x.y.z`, a loopback address written as IPv6.
fn is_mapped_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        IpAddr::V4(_) => false,
    }
}
