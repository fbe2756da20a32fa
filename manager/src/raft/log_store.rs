//! The durable Raft log: entries, vote and committed log id in a redb database.
//!
//! Every write that openraft relies on for safety (appended entries, the vote) is
//! committed with [`Durability::Immediate`] (fsync) before openraft is told it is done.
//! redb calls block, so they run on tokio's blocking pool.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader, StorageIOError};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Entry, LogId, StorageError, TypeConfig, Vote, decode, encode};

/// Log index → postcard-encoded [`Entry`].
const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
/// Key → postcard-encoded metadata value.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";

/// Errors opening the log database.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// The database file cannot be opened or created.
    #[error("cannot open Raft log database {path}: {source}")]
    Open {
        /// The database file.
        path: String,
        /// The cause.
        #[source]
        source: redb::Error,
    },
}

/// The redb-backed log store; cheap to clone (the reader openraft asks for is a clone).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    /// Opens (or creates) the log database at `path`.
    pub fn open(path: &Path) -> Result<LogStore, LogStoreError> {
        let open = || -> Result<Database, redb::Error> {
            let db = Database::create(path)?;
            // Create the tables up front so that readers never see them missing.
            let tx = db.begin_write()?;
            tx.open_table(ENTRIES)?;
            tx.open_table(META)?;
            tx.commit()?;
            Ok(db)
        };
        let db = open().map_err(|source| LogStoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Ok(LogStore { db: Arc::new(db) })
    }

    /// Runs a blocking database job on the blocking pool.
    async fn blocking<T, F>(&self, job: F) -> Result<T, redb::Error>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, redb::Error> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || job(&db))
            .await
            .map_err(|e| redb::Error::Io(std::io::Error::other(e)))?
    }

    async fn read_meta<T>(&self, key: &'static str) -> Result<Option<T>, redb::Error>
    where
        T: serde::de::DeserializeOwned + Send + 'static,
    {
        self.blocking(move |db| {
            let tx = db.begin_read()?;
            let table = tx.open_table(META)?;
            match table.get(key)? {
                None => Ok(None),
                Some(v) => Ok(Some(decode(v.value()).map_err(codec_err)?)),
            }
        })
        .await
    }

    async fn write_meta<T>(
        &self,
        key: &'static str,
        value: &T,
        durability: Durability,
    ) -> Result<(), redb::Error>
    where
        T: serde::Serialize,
    {
        let bytes = encode(value).map_err(codec_err)?;
        self.blocking(move |db| {
            let mut tx = db.begin_write()?;
            tx.set_durability(durability)?;
            {
                let mut table = tx.open_table(META)?;
                table.insert(key, bytes.as_slice())?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

fn codec_err(e: postcard::Error) -> redb::Error {
    redb::Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

fn owned_bound(b: Bound<&u64>) -> Bound<u64> {
    match b {
        Bound::Included(x) => Bound::Included(*x),
        Bound::Excluded(x) => Bound::Excluded(*x),
        Bound::Unbounded => Bound::Unbounded,
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let range = (
            owned_bound(range.start_bound()),
            owned_bound(range.end_bound()),
        );
        self.blocking(move |db| {
            let tx = db.begin_read()?;
            let table = tx.open_table(ENTRIES)?;
            let mut out = Vec::new();
            for item in table.range::<u64>(range)? {
                let (_, v) = item?;
                out.push(decode::<Entry>(v.value()).map_err(codec_err)?);
            }
            Ok(out)
        })
        .await
        .map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let (last_purged, last) = self
            .blocking(|db| {
                let tx = db.begin_read()?;
                let meta = tx.open_table(META)?;
                let last_purged: Option<LogId> = match meta.get(KEY_LAST_PURGED)? {
                    None => None,
                    Some(v) => decode(v.value()).map_err(codec_err)?,
                };
                let entries = tx.open_table(ENTRIES)?;
                let last = match entries.last()? {
                    None => None,
                    Some((_, v)) => Some(decode::<Entry>(v.value()).map_err(codec_err)?.log_id),
                };
                Ok((last_purged, last))
            })
            .await
            .map_err(|e| StorageIOError::read_logs(&e))?;
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last.or(last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.write_meta(KEY_VOTE, vote, Durability::Immediate)
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_meta(KEY_VOTE)
            .await
            .map_err(|e| StorageIOError::read_vote(&e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not fsynced: losing it in a crash only means fewer entries are re-applied at
        // start-up before the leader confirms them again; the next append makes it durable.
        self.write_meta(KEY_COMMITTED, &committed, Durability::None)
            .await
            .map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let committed: Option<Option<LogId>> = self
            .read_meta(KEY_COMMITTED)
            .await
            .map_err(|e| StorageIOError::read(&e))?;
        Ok(committed.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut encoded = Vec::new();
        for entry in entries {
            let bytes = encode(&entry).map_err(|e| StorageIOError::write_logs(&e))?;
            encoded.push((entry.log_id.index, bytes));
        }
        let result = self
            .blocking(move |db| {
                let mut tx = db.begin_write()?;
                tx.set_durability(Durability::Immediate)?;
                {
                    let mut table = tx.open_table(ENTRIES)?;
                    for (index, bytes) in &encoded {
                        table.insert(*index, bytes.as_slice())?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = StorageIOError::write_logs(&e);
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(err.into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "truncating Raft log");
        self.blocking(move |db| {
            let mut tx = db.begin_write()?;
            tx.set_durability(Durability::Immediate)?;
            {
                let mut table = tx.open_table(ENTRIES)?;
                table.retain_in(log_id.index.., |_, _| false)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "purging Raft log");
        let purged = encode(&Some(log_id)).map_err(|e| StorageIOError::write_logs(&e))?;
        self.blocking(move |db| {
            let mut tx = db.begin_write()?;
            tx.set_durability(Durability::Immediate)?;
            {
                let mut meta = tx.open_table(META)?;
                meta.insert(KEY_LAST_PURGED, purged.as_slice())?;
                let mut table = tx.open_table(ENTRIES)?;
                table.retain_in(..=log_id.index, |_, _| false)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};
    use tempfile::TempDir;

    use super::*;
    use crate::raft::state_machine::StateMachine;
    use crate::store::Store;

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
        async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
            let dir = tempfile::tempdir().expect("temp dir");
            let log = LogStore::open(&dir.path().join("log.redb")).expect("open log");
            let sm = StateMachine::open(dir.path(), Store::new()).expect("open state machine");
            Ok((dir, log, sm))
        }
    }

    #[test]
    fn openraft_conformance_suite() {
        Suite::test_all(Builder).expect("conformance suite");
    }

    fn log_id(term: u64, index: u64) -> LogId {
        openraft::LogId::new(openraft::CommittedLeaderId::new(term, 1), index)
    }

    #[tokio::test]
    async fn vote_committed_and_purge_survive_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("log.redb");
        {
            let mut log = LogStore::open(&path).expect("open");
            log.save_vote(&Vote::new(3, 7)).await.expect("vote");
            log.save_committed(Some(log_id(3, 9)))
                .await
                .expect("committed");
            log.purge(log_id(2, 4)).await.expect("purge");
        }
        let mut log = LogStore::open(&path).expect("reopen");
        assert_eq!(
            log.read_vote().await.expect("read vote"),
            Some(Vote::new(3, 7))
        );
        assert_eq!(
            log.read_committed().await.expect("read committed"),
            Some(log_id(3, 9))
        );
        let state = log.get_log_state().await.expect("log state");
        assert_eq!(state.last_purged_log_id, Some(log_id(2, 4)));
        assert_eq!(state.last_log_id, Some(log_id(2, 4)));

        // A committed id saved last (not fsynced) still survives a clean close.
        log.save_committed(Some(log_id(3, 12)))
            .await
            .expect("committed");
        drop(log);
        let mut log = LogStore::open(&path).expect("reopen");
        assert_eq!(
            log.read_committed().await.expect("read committed"),
            Some(log_id(3, 12))
        );
    }
}
