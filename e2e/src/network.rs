//! A private L2 segment: a hub network namespace holding a bridge, and one network
//! namespace per node (or client) joined to it by a veth pair. Everything is created
//! inside namespaces of our own, with `ip` (iproute2); the host's interfaces and routes
//! are never touched.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, bail};

use crate::sys;

/// Every namespace (and temporary directory) the harness creates starts with this,
/// followed by the creating process's id and a dash.
pub const PREFIX: &str = "rswarm-e2e-";

/// Name of the bridge inside the hub namespace.
const BRIDGE: &str = "br0";
/// Name of a node's end of its veth, inside the node's namespace.
const NODE_LINK: &str = "eth0";

/// Numbers namespaces uniquely within this process (tests of one binary run in
/// parallel threads and share the pid).
static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// `rswarm-e2e-<pid>-`: the prefix of every namespace this process creates.
pub fn process_prefix() -> String {
    format!("{PREFIX}{}-", std::process::id())
}

/// Runs `ip ARGS`, returning stdout, or an error with the command and its stderr.
pub fn ip(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("cannot run ip {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "ip {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Names of all network namespaces (`ip netns list` prints `NAME (id: N)`).
pub fn list_netns() -> anyhow::Result<Vec<String>> {
    Ok(ip(&["netns", "list"])?
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// The pid embedded in a harness namespace or directory name, if it is one.
pub fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

/// Kills the processes still inside namespace `ns` and deletes it. Every process in a
/// harness namespace was started by the harness.
fn delete_netns(ns: &str) -> anyhow::Result<()> {
    if let Ok(pids) = ip(&["netns", "pids", ns]) {
        for pid in pids
            .lines()
            .filter_map(|line| line.trim().parse::<u32>().ok())
        {
            // Best effort: the process may have exited meanwhile.
            let _ = sys::signal(pid, libc::SIGKILL);
        }
    }
    ip(&["netns", "del", ns]).map(drop)
}

/// Removes namespaces and temporary directories left by harness processes that no
/// longer exist (a run killed before its cleanup ran). Returns what was removed.
pub fn remove_stale() -> anyhow::Result<Vec<String>> {
    let me = std::process::id();
    let stale = |name: &str| owner_pid(name).is_some_and(|pid| pid != me && !sys::pid_alive(pid));
    let mut removed = Vec::new();
    for ns in list_netns()? {
        if stale(&ns) {
            if let Err(err) = delete_netns(&ns) {
                // Another harness process may have removed it meanwhile.
                if list_netns()?.contains(&ns) {
                    return Err(err.context(format!("cannot remove stale namespace {ns}")));
                }
            }
            removed.push(ns);
        }
    }
    let tmp = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if stale(&name) && entry.path().is_dir() {
                match std::fs::remove_dir_all(entry.path()) {
                    Ok(()) => {}
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => {
                        return Err(anyhow::Error::new(err).context(format!(
                            "cannot remove stale directory {}",
                            entry.path().display()
                        )));
                    }
                }
                removed.push(entry.path().display().to_string());
            }
        }
    }
    Ok(removed)
}

/// One namespace attached to the segment.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// The namespace's name (`rswarm-e2e-<pid>-<n>`).
    pub netns: String,
    /// Its address on the segment.
    pub ip: Ipv4Addr,
    /// The hub's end of its veth, inside the hub namespace: taking it down cuts the
    /// namespace off without changing anything inside it.
    pub hub_link: String,
}

/// The segment: a hub namespace with a bridge, and the namespaces attached to it.
/// Dropping it deletes them all.
#[derive(Debug)]
pub struct Network {
    /// The hub namespace's name.
    hub: String,
    /// Third octet of the segment's `10.213.<k>.0/24`.
    subnet: u8,
    /// Attached namespaces, in creation order.
    attached: Vec<Attachment>,
}

impl Network {
    /// Creates the hub namespace and its bridge. Removes stale namespaces of dead
    /// harness processes first.
    pub fn new() -> anyhow::Result<Network> {
        remove_stale()?;
        let hub = format!(
            "{}hub{}",
            process_prefix(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &hub])?;
        // From here on, Drop removes the hub whatever fails next.
        let network = Network {
            hub,
            // Parallel test binaries use different subnets; they could not collide
            // anyway (each segment is private), but distinct ones keep logs unambiguous.
            subnet: u8::try_from(std::process::id() % 250).unwrap_or(0) + 1,
            attached: Vec::new(),
        };
        let hub = network.hub.as_str();
        ip(&["-n", hub, "link", "set", "lo", "up"])?;
        ip(&["-n", hub, "link", "add", BRIDGE, "type", "bridge"])?;
        ip(&["-n", hub, "link", "set", BRIDGE, "up"])?;
        Ok(network)
    }

    /// The hub namespace's name.
    pub fn hub(&self) -> &str {
        &self.hub
    }

    /// The segment's prefix, `10.213.<k>.0/24`.
    pub fn subnet(&self) -> String {
        format!("10.213.{}.0/24", self.subnet)
    }

    /// Every namespace of this segment, hub included.
    pub fn namespaces(&self) -> Vec<String> {
        let mut all: Vec<String> = self.attached.iter().map(|a| a.netns.clone()).collect();
        all.push(self.hub.clone());
        all
    }

    /// Creates a namespace with `lo` up and `eth0` on the bridge at `10.213.<k>.<host>`.
    pub fn attach(&mut self, host: u8) -> anyhow::Result<Attachment> {
        if host == 0 || host == 255 {
            bail!("host number {host} is not a usable address");
        }
        let ip_addr = Ipv4Addr::new(10, 213, self.subnet, host);
        if self.attached.iter().any(|a| a.ip == ip_addr) {
            bail!("{ip_addr} is already attached");
        }
        let netns = format!(
            "{}{}",
            process_prefix(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let hub_link = format!("v{host}");
        ip(&["netns", "add", &netns])?;
        let attachment = Attachment {
            netns,
            ip: ip_addr,
            hub_link,
        };
        // Registered before configuring, so that Drop removes it if a step fails.
        self.attached.push(attachment.clone());
        let (ns, hub, link) = (
            attachment.netns.as_str(),
            self.hub.as_str(),
            attachment.hub_link.as_str(),
        );
        let cidr = format!("{ip_addr}/24");
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&[
            "-n", hub, "link", "add", link, "type", "veth", "peer", "name", NODE_LINK, "netns", ns,
        ])?;
        ip(&["-n", hub, "link", "set", link, "master", BRIDGE])?;
        ip(&["-n", hub, "link", "set", link, "up"])?;
        ip(&["-n", ns, "addr", "add", &cidr, "dev", NODE_LINK])?;
        ip(&["-n", ns, "link", "set", NODE_LINK, "up"])?;
        Ok(attachment)
    }

    /// Brings the hub's end of `attachment`'s veth up or down.
    pub fn set_link(&self, attachment: &Attachment, up: bool) -> anyhow::Result<()> {
        set_hub_link(&self.hub, &attachment.hub_link, up)
    }
}

/// Brings link `link` of hub namespace `hub` up or down.
pub fn set_hub_link(hub: &str, link: &str, up: bool) -> anyhow::Result<()> {
    let state = if up { "up" } else { "down" };
    ip(&["-n", hub, "link", "set", link, state]).map(drop)
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in self.namespaces() {
            if let Err(err) = delete_netns(&ns) {
                eprintln!("e2e: cannot delete network namespace {ns}: {err:#}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_parses_only_harness_names() {
        assert_eq!(owner_pid("rswarm-e2e-123-4"), Some(123));
        assert_eq!(owner_pid("rswarm-e2e-123-hub0"), Some(123));
        assert_eq!(owner_pid("rswarm-e2e-123"), None);
        assert_eq!(owner_pid("rswarm-e2e-x-1"), None);
        assert_eq!(owner_pid("other-123-4"), None);
    }

    #[test]
    fn process_prefix_has_the_pid() {
        let prefix = process_prefix();
        assert_eq!(owner_pid(&format!("{prefix}0")), Some(std::process::id()));
    }
}
