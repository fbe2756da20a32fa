//! The Raft state machine: committed batches applied to the in-memory [`Store`], and
//! snapshots of it kept as files in `<dir>/snapshots/`.
//!
//! A snapshot file is the postcard encoding of [`SnapshotFile`]; the same bytes are what
//! is sent to followers. Files are written to a temporary name, fsynced, renamed and the
//! directory fsynced, so a crash leaves either the old or the new snapshot, never half of
//! one. Only the newest snapshot is kept.

use std::fs;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};

use super::{
    Entry, LogId, Response, Responses, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
    decode, encode,
};
use crate::store::{Store, StoreSnapshot};

const SNAPSHOT_EXT: &str = "snap";

/// The contents of a snapshot file (and of a snapshot sent to a follower).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SnapshotFile {
    /// The last log id included in the snapshot.
    pub last_applied: Option<LogId>,
    /// The membership as of `last_applied`.
    pub last_membership: StoredMembership,
    /// The store's contents as of `last_applied`.
    pub store: StoreSnapshot,
}

/// Errors opening the state machine.
#[derive(Debug, thiserror::Error)]
pub enum StateMachineError {
    /// The snapshot directory cannot be created or listed.
    #[error("cannot use snapshot directory {path}: {source}")]
    Dir {
        /// The directory.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The newest snapshot file cannot be read or decoded.
    #[error("cannot load snapshot {path}: {reason}")]
    Load {
        /// The snapshot file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// The state machine over a [`Store`].
pub struct StateMachine {
    store: Store,
    snapshot_dir: PathBuf,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    /// Distinguishes snapshots built at the same log id.
    snapshot_seq: u64,
}

impl StateMachine {
    /// Opens the state machine in `dir`, loading the newest snapshot into `store`.
    pub fn open(dir: &Path, store: Store) -> Result<StateMachine, StateMachineError> {
        let snapshot_dir = dir.join("snapshots");
        let dir_err = |source| StateMachineError::Dir {
            path: snapshot_dir.display().to_string(),
            source,
        };
        fs::create_dir_all(&snapshot_dir).map_err(dir_err)?;
        let mut sm = StateMachine {
            store,
            snapshot_dir: snapshot_dir.clone(),
            last_applied: None,
            last_membership: StoredMembership::default(),
            snapshot_seq: 0,
        };
        if let Some(path) = newest_snapshot(&snapshot_dir).map_err(dir_err)? {
            let load_err = |reason: String| StateMachineError::Load {
                path: path.display().to_string(),
                reason,
            };
            let bytes = fs::read(&path).map_err(|e| load_err(e.to_string()))?;
            let file: SnapshotFile = decode(&bytes).map_err(|e| load_err(e.to_string()))?;
            tracing::info!(snapshot = %path.display(), last_applied = ?file.last_applied, "loaded Raft snapshot");
            sm.last_applied = file.last_applied;
            sm.last_membership = file.last_membership;
            sm.store.restore(file.store);
        }
        Ok(sm)
    }
}

/// Writes `bytes` as the snapshot `id` in `dir` and removes every other snapshot.
fn persist(dir: &Path, id: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{id}.tmp"));
    let dest = dir.join(format!("{id}.{SNAPSHOT_EXT}"));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &dest)?;
    fs::File::open(dir)?.sync_all()?;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path != dest {
            // A stale file only wastes space; the newest one is already durable.
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(file = %path.display(), error = %e, "cannot remove old snapshot");
            }
        }
    }
    Ok(())
}

/// The newest complete snapshot file: names start with the zero-padded log index.
fn newest_snapshot(dir: &Path) -> std::io::Result<Option<PathBuf>> {
    let mut best: Option<PathBuf> = None;
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some(SNAPSHOT_EXT) {
            continue;
        }
        if best
            .as_ref()
            .is_none_or(|b| path.file_name() > b.file_name())
        {
            best = Some(path);
        }
    }
    Ok(best)
}

/// The snapshot id: the zero-padded index first so that names sort by recency.
fn snapshot_id(last_applied: Option<LogId>, seq: u64) -> String {
    match last_applied {
        Some(l) => format!(
            "{:020}-{}-{}-{seq}",
            l.index, l.leader_id.term, l.leader_id.node_id
        ),
        None => format!("{:020}-0-0-{seq}", 0),
    }
}

/// Builds a snapshot from state captured when the builder was created.
pub struct SnapshotBuilder {
    file: SnapshotFile,
    id: String,
    snapshot_dir: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let bytes = encode(&self.file).map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        let meta = SnapshotMeta {
            last_log_id: self.file.last_applied,
            last_membership: self.file.last_membership.clone(),
            snapshot_id: self.id.clone(),
        };
        let (dir, id, data) = (self.snapshot_dir.clone(), self.id.clone(), bytes.clone());
        tokio::task::spawn_blocking(move || persist(&dir, &id, &data))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        tracing::info!(snapshot_id = %self.id, "built Raft snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Responses>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut responses = Vec::new();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            let index = entry.log_id.index;
            let entry_responses = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(proposals) => self
                    .store
                    .apply_each(
                        index,
                        proposals.requests.iter().map(|r| r.actions.as_slice()),
                    )
                    .into_iter()
                    .map(|result| {
                        if let Err(e) = &result {
                            tracing::debug!(index, error = %e, "store rejected a batch");
                        }
                        Response { result }
                    })
                    .collect(),
                EntryPayload::Membership(m) => {
                    self.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    Vec::new()
                }
            };
            responses.push(Responses {
                responses: entry_responses,
            });
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        // Captured here, between applies, so the data matches `last_applied` even though
        // openraft builds the snapshot concurrently with later applies.
        self.snapshot_seq += 1;
        SnapshotBuilder {
            file: SnapshotFile {
                last_applied: self.last_applied,
                last_membership: self.last_membership.clone(),
                store: self.store.snapshot(),
            },
            id: snapshot_id(self.last_applied, self.snapshot_seq),
            snapshot_dir: self.snapshot_dir.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let file: SnapshotFile = decode(&bytes)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        // The snapshot must be durable before the state it replaces is dropped.
        let id = sanitize_id(&meta.snapshot_id);
        let (dir, id2) = (self.snapshot_dir.clone(), id.clone());
        tokio::task::spawn_blocking(move || persist(&dir, &id2, &bytes))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        tracing::info!(snapshot_id = %id, last_log_id = ?meta.last_log_id, "installed Raft snapshot");
        self.last_applied = meta.last_log_id;
        self.last_membership = meta.last_membership.clone();
        self.store.restore(file.store);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let dir = self.snapshot_dir.clone();
        let loaded = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            match newest_snapshot(&dir)? {
                None => Ok(None),
                Some(path) => Ok(Some((path.clone(), fs::read(&path)?))),
            }
        })
        .await
        .map_err(|e| StorageIOError::read_snapshot(None, &e))?
        .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        let Some((path, bytes)) = loaded else {
            return Ok(None);
        };
        let file: SnapshotFile =
            decode(&bytes).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        let snapshot_id = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        Ok(Some(Snapshot {
            meta: SnapshotMeta {
                last_log_id: file.last_applied,
                last_membership: file.last_membership,
                snapshot_id,
            },
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}

/// A snapshot id received from a leader becomes a file name: keep it to safe characters.
fn sanitize_id(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use openraft::{BasicNode, CommittedLeaderId, Membership};
    use rswarm_proto::api::Node;

    use super::*;
    use crate::raft::{Proposals, Request};
    use crate::store::StoreAction;

    fn entry(index: u64, payload: EntryPayload<TypeConfig>) -> Entry {
        Entry {
            log_id: openraft::LogId::new(CommittedLeaderId::new(1, 1), index),
            payload,
        }
    }

    fn create(id: &str) -> EntryPayload<TypeConfig> {
        EntryPayload::Normal(Proposals {
            requests: vec![Request {
                actions: vec![StoreAction::CreateNode(Node {
                    id: id.to_string(),
                    ..Default::default()
                })],
            }],
        })
    }

    fn snapshot_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir.join("snapshots"))
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn snapshots_keep_only_the_newest_and_reload_on_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::new();
        let mut sm = StateMachine::open(dir.path(), store.clone()).expect("open");
        let nodes = std::collections::BTreeMap::from([(1u64, BasicNode::new("a:1"))]);
        let membership = Membership::new(vec![std::collections::BTreeSet::from([1u64])], nodes);
        let responses = sm
            .apply([
                entry(1, EntryPayload::Membership(membership.clone())),
                entry(2, create("x")),
                entry(3, create("x")),
            ])
            .await
            .expect("apply");
        assert_eq!(responses[1].responses[0].result, Ok(()));
        assert!(
            responses[2].responses[0].result.is_err(),
            "a rejected batch is a response"
        );

        let mut builder = sm.get_snapshot_builder().await;
        // Applied after the builder was made: must not leak into that snapshot.
        sm.apply([entry(4, create("y"))]).await.expect("apply");
        let first = builder.build_snapshot().await.expect("build");
        assert_eq!(first.meta.last_log_id.map(|l| l.index), Some(3));
        let second = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .expect("build");
        assert_eq!(
            snapshot_files(dir.path()),
            vec![format!("{}.{SNAPSHOT_EXT}", second.meta.snapshot_id)]
        );
        let expected = store.snapshot();
        drop(sm);

        let reopened = Store::new();
        let mut sm = StateMachine::open(dir.path(), reopened.clone()).expect("reopen");
        assert_eq!(reopened.snapshot(), expected);
        let (applied, stored) = sm.applied_state().await.expect("applied state");
        assert_eq!(applied.map(|l| l.index), Some(4));
        assert_eq!(stored.membership(), &membership);
        let current = sm
            .get_current_snapshot()
            .await
            .expect("read")
            .expect("some");
        assert_eq!(current.meta, second.meta);
    }
}
