//! The node's own record in its data dir: who it is and how to restart it.
//!
//! `node.json` is written last by `init` and `join`, so its presence means the node
//! was fully set up; `init` and `join` refuse a dir that has one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// File name of the node record.
const STATE_FILE: &str = "node.json";

/// Everything `rswarm daemon` needs to bring the node back.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NodeRecord {
    /// The node's id (also its certificate's CN).
    pub node_id: String,
    /// The cluster it belongs to.
    pub cluster_id: String,
    /// `manager` or `worker`.
    pub role: String,
    /// Raft id, for managers.
    pub raft_id: u64,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Address other nodes reach this one on.
    pub advertise: SocketAddr,
    /// Hostname reported to the cluster.
    pub hostname: String,
    /// Managers as last heard of; the first place a restarted node looks.
    pub manager_addrs: Vec<String>,
    /// Raft heartbeat interval (ms).
    pub heartbeat_ms: u64,
    /// Raft election timeout bounds (ms).
    pub election_min_ms: u64,
    /// Raft election timeout bounds (ms).
    pub election_max_ms: u64,
    /// The runtime that runs this node's tasks (`none` until the container runtime
    /// is built in; `fake` for cluster tests).
    #[serde(default = "default_executor")]
    pub executor: String,
    /// The user namespace mapping of this node's containers as `UID:GID:SIZE`
    /// (resolved from `--userns-remap` when the node was created); none: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns_remap: Option<String>,
}

fn default_executor() -> String {
    "none".to_owned()
}

impl NodeRecord {
    /// Whether this node is a manager.
    pub fn is_manager(&self) -> bool {
        self.role == "manager"
    }
}

/// The data dir's layout.
#[derive(Clone, Debug)]
pub struct DataDir {
    /// The root.
    pub root: PathBuf,
}

impl DataDir {
    /// The layout under `root`.
    pub fn new(root: &Path) -> DataDir {
        DataDir {
            root: root.to_path_buf(),
        }
    }

    /// The node's certificate, key and the cluster CA.
    pub fn certs(&self) -> PathBuf {
        self.root.join("certs")
    }

    /// The admin certificate written by `init`.
    pub fn admin(&self) -> PathBuf {
        self.root.join("admin")
    }

    /// Raft log and snapshots (managers).
    pub fn raft(&self) -> PathBuf {
        self.root.join("raft")
    }

    /// The container runtime's state: images, containers, volumes.
    pub fn runtime(&self) -> PathBuf {
        self.root.join("runtime")
    }

    /// The image store, shared by the node's containers and (on a manager) the
    /// cluster's image service.
    pub fn images(&self) -> PathBuf {
        self.runtime().join("images")
    }

    /// The control socket.
    pub fn socket(&self) -> PathBuf {
        self.root.join("rswarm.sock")
    }

    fn record_path(&self) -> PathBuf {
        self.root.join(STATE_FILE)
    }

    /// Whether a node was set up here.
    pub fn holds_node(&self) -> bool {
        self.record_path().exists()
    }

    /// Refuses a dir that already holds a node (for `init` and `join`).
    pub fn ensure_free(&self) -> anyhow::Result<()> {
        if self.holds_node() {
            anyhow::bail!(
                "{} already holds an rswarm node; start it with `rswarm daemon --data-dir {}` \
                 (or remove the directory to start afresh)",
                self.root.display(),
                self.root.display()
            );
        }
        Ok(())
    }

    /// Creates the dir, private to root.
    pub fn create(&self) -> anyhow::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .with_context(|| format!("cannot create data dir {}", self.root.display()))
    }

    /// Reads the node record.
    pub fn load(&self) -> anyhow::Result<NodeRecord> {
        let path = self.record_path();
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "{} holds no rswarm node (no {}); create one with `rswarm init` or `rswarm join`",
                self.root.display(),
                path.display()
            )
        })?;
        serde_json::from_slice(&bytes).with_context(|| format!("{} is corrupt", path.display()))
    }

    /// Writes the node record atomically and durably (tmp file, fsync, rename,
    /// fsync of the dir).
    pub fn save(&self, record: &NodeRecord) -> anyhow::Result<()> {
        use std::io::Write;
        let path = self.record_path();
        let tmp = self.root.join(format!("{STATE_FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&self.root)?.sync_all()
        };
        write().with_context(|| format!("cannot write {}", path.display()))
    }

    /// Removes what a failed `init`/`join` created, leaving the dir as it was.
    pub fn discard_partial(&self) {
        for dir in [self.certs(), self.admin(), self.raft()] {
            let _ = std::fs::remove_dir_all(dir);
        }
        let _ = std::fs::remove_file(self.socket());
        let _ = std::fs::remove_file(self.root.join(format!("{STATE_FILE}.tmp")));
        // Only removes the root if nothing else was in it.
        let _ = std::fs::remove_dir(&self.root);
    }
}
