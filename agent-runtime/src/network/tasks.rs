//! The task addresses of a node: which address of the node's subnet each task
//! holds. One file per task under the runtime's directory records it, so a
//! restarted daemon keeps handing out the same addresses and never reuses one a
//! running container holds.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use tokio::sync::Mutex;
use tracing::info;

use super::{Ipv4Net, NetError, NodeNetwork};

/// A node's task network with its address book.
#[derive(Debug)]
pub struct TaskNetwork {
    network: NodeNetwork,
    /// One file per task, named by the task id, holding its address.
    dir: PathBuf,
    /// Serialises allocations, so two tasks never pick the same address.
    lock: Mutex<()>,
}

impl TaskNetwork {
    /// The task side of `network`, recording addresses in `dir`.
    pub fn new(network: NodeNetwork, dir: impl Into<PathBuf>) -> Self {
        Self {
            network,
            dir: dir.into(),
            lock: Mutex::new(()),
        }
    }

    /// The node network.
    pub fn network(&self) -> &NodeNetwork {
        &self.network
    }

    /// The address recorded for the task, if any.
    pub fn address(&self, task_id: &str) -> Option<Ipv4Addr> {
        read_address(&self.dir.join(task_id))
    }

    /// Gives the task an address (the one it already holds, else the lowest
    /// free one) and its own namespace on the bridge; returns the address and
    /// the namespace file for the container to join.
    pub async fn attach(&self, task_id: &str) -> Result<(Ipv4Addr, PathBuf), NetError> {
        let _guard = self.lock.lock().await;
        let subnet = self.network.config().subnet;
        let address = match self.address(task_id).filter(|a| subnet.contains(*a)) {
            Some(a) => a,
            None => {
                let used = self.used()?;
                let a = pick_address(subnet, &used).ok_or_else(|| {
                    NetError::Config(format!("no free task address left in {subnet}"))
                })?;
                fs::create_dir_all(&self.dir)
                    .map_err(|e| NetError::io("create the task address directory", &self.dir, e))?;
                let path = self.dir.join(task_id);
                fs::write(&path, a.to_string())
                    .map_err(|e| NetError::io("record the task address in", &path, e))?;
                a
            }
        };
        let attachment = self.network.attach_task(task_id, address).await?;
        info!(task.id = %task_id, %address, "task attached to the node network");
        Ok((address, attachment.netns))
    }

    /// Removes the task's interface and namespace and frees its address.
    pub async fn detach(&self, task_id: &str) -> Result<(), NetError> {
        let _guard = self.lock.lock().await;
        self.network.detach_task(task_id).await?;
        let path = self.dir.join(task_id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(NetError::io("free the task address in", &path, e)),
        }
    }

    /// The addresses recorded for all tasks.
    fn used(&self) -> Result<HashSet<Ipv4Addr>, NetError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashSet::new()),
            Err(e) => return Err(NetError::io("list the task addresses in", &self.dir, e)),
        };
        Ok(entries
            .filter_map(Result::ok)
            .filter_map(|e| read_address(&e.path()))
            .collect())
    }
}

/// The task address directory under a runtime's state directory.
pub fn address_dir(runtime_root: &Path) -> PathBuf {
    runtime_root.join("network")
}

/// The tasks holding an address recorded in `dir` (an [`address_dir`]).
pub fn recorded_tasks(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn read_address(path: &Path) -> Option<Ipv4Addr> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The lowest host of `subnet` after the gateway (its first host) that is not
/// in `used`.
pub fn pick_address(subnet: Ipv4Net, used: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    (2..)
        .map_while(|n| subnet.host(n))
        .find(|a| !used.contains(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lowest_free_host_after_the_gateway_is_picked() {
        let subnet: Ipv4Net = "10.231.3.0/24".parse().unwrap();
        let mut used = HashSet::new();
        assert_eq!(
            pick_address(subnet, &used),
            Some(Ipv4Addr::new(10, 231, 3, 2))
        );
        used.insert(Ipv4Addr::new(10, 231, 3, 2));
        used.insert(Ipv4Addr::new(10, 231, 3, 4));
        assert_eq!(
            pick_address(subnet, &used),
            Some(Ipv4Addr::new(10, 231, 3, 3))
        );
    }

    #[test]
    fn a_full_subnet_has_no_address() {
        let subnet: Ipv4Net = "10.231.3.0/30".parse().unwrap();
        let used: HashSet<_> = [Ipv4Addr::new(10, 231, 3, 2)].into();
        assert_eq!(pick_address(subnet, &used), None);
    }
}
