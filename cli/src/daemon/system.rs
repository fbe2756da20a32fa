//! What the node learns about its host: hostname, capacity, an address to advertise.

use std::net::{IpAddr, SocketAddr};

use rswarm_proto::api::NodeDescription;

/// The system's hostname.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Hostname, CPUs and memory, as reported to the managers.
pub fn describe(hostname: &str) -> NodeDescription {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    NodeDescription {
        hostname: hostname.to_owned(),
        nano_cpus: cpus * 1_000_000_000,
        memory_bytes: total_memory().unwrap_or(0),
        os: "linux".into(),
        arch: std::env::consts::ARCH.into(),
    }
}

fn total_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The address to advertise: `--advertise`, else the listen address if it names an
/// IP, else the only non-loopback IPv4 address of the host.
pub fn advertise_addr(
    advertise: Option<SocketAddr>,
    listen: SocketAddr,
) -> anyhow::Result<SocketAddr> {
    if let Some(a) = advertise {
        if a.ip().is_unspecified() {
            anyhow::bail!("--advertise {a} is not an address other nodes can reach");
        }
        return Ok(a);
    }
    if !listen.ip().is_unspecified() {
        return Ok(listen);
    }
    let candidates: Vec<IpAddr> = nix::ifaddrs::getifaddrs()
        .map_err(|e| anyhow::anyhow!("cannot list network interfaces: {e}"))?
        .filter_map(|i| i.address?.as_sockaddr_in().map(|a| IpAddr::V4(a.ip())))
        .filter(|ip| !ip.is_loopback())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    match candidates.as_slice() {
        [ip] => Ok(SocketAddr::new(*ip, listen.port())),
        [] => anyhow::bail!(
            "no address to advertise: the host has no non-loopback IPv4 address; give --advertise IP:PORT"
        ),
        many => anyhow::bail!(
            "could not choose an address to advertise: the host has several ({}); give --advertise IP:PORT",
            many.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
