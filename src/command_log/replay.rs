//! Recovery, checkpoints and offline verification: how the log and
//! RocksDB (the checkpoint) meet.
//!
//! * Each shard's writer appends its batch's changes to the log, then
//!   applies them to RocksDB together with `log-applied/<partition>` = the
//!   record's position (one atomic write): [`append_then_apply`]; then
//!   tells [`Checkpoints`].
//! * [`Checkpoints::take`] flushes RocksDB (every column family at one
//!   point: atomic flush), then trims each partition up to what it had
//!   applied before the flush began.
//! * [`recover`], at start-up, replays each partition's records after its
//!   recorded position into RocksDB, takes a checkpoint and trims: the log
//!   a run starts with is empty, so the shard count may change freely.
//!
//! Restart time is then the checkpoint's open plus a tail of at most one
//! checkpoint interval of records, however many payments came before.

use super::file::{self, Scan};
use super::{CommandLog, Fence, LogError, Partition, Position};
use crate::storage::{Cf, Changes, StorageError, Store, log_applied_key};
use crate::telemetry;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Where the log and the store meet, one of them failed: at start-up the
/// engine does not start; in a writer it stops.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What [`recover`] replayed (logged at start-up, asserted by tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    pub partitions: usize,
    pub records: u64,
    pub changes: u64,
}

/// Makes `changes` durable: appends them to `partition` under `fence`
/// (which moves to the new record), then applies them to `store` with the
/// record's position, in one atomic write that needs no sync of its own.
pub fn append_then_apply(
    log: &dyn CommandLog,
    store: &dyn Store,
    partition: Partition,
    fence: &mut Fence,
    changes: &mut Changes,
) -> Result<Position, RecoveryError> {
    let position = log.append(partition, *fence, changes.as_bytes())?;
    fence.expected_last = Some(position);
    changes.put_log_applied(partition.0, position.0);
    store.apply(changes)?;
    Ok(position)
}

/// Takes a checkpoint of `store` and trims every partition of `log` up to
/// its end: for a caller that knows nothing is being appended meanwhile
/// (start-up, the simulator).
pub fn checkpoint_all(store: &dyn Store, log: &dyn CommandLog) -> Result<(), RecoveryError> {
    store.checkpoint()?;
    for state in log.partitions() {
        if let Some(last) = state.last {
            log.trim(state.partition, last)?;
        }
    }
    Ok(())
}

/// The position up to which the checkpoint holds `partition`'s records.
pub fn applied(store: &dyn Store, partition: Partition) -> Result<Option<Position>, StorageError> {
    match store.get(Cf::Meta, &log_applied_key(partition.0))? {
        None => Ok(None),
        Some(bytes) => {
            let bytes: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
                StorageError::Corrupt(format!(
                    "log position of {partition}: {} bytes",
                    bytes.len()
                ))
            })?;
            Ok(Some(Position(u64::from_le_bytes(bytes))))
        }
    }
}

/// Refuses a log that ends before positions the checkpoint records (a
/// deleted or older log directory): replaying it would skip records.
pub fn check_not_behind(store: &dyn Store, next: Position) -> Result<(), StorageError> {
    let prefix = log_applied_key(0);
    let prefix = &prefix[..prefix.len() - 4];
    let mut ahead = None;
    store.scan_from(Cf::Meta, prefix, &mut |key, value| {
        if !key.starts_with(prefix) {
            return Ok(false);
        }
        let position = crate::storage::records::decode_u64(value)?;
        if position >= next.0 {
            ahead = Some(position);
        }
        Ok(true)
    })?;
    match ahead {
        Some(position) => Err(StorageError::Inconsistent(format!(
            "the database holds log position {position}, but the log ends before {next}: \
             start with the log directory this database was written with"
        ))),
        None => Ok(()),
    }
}

/// Replays every partition's records after the checkpoint's position into
/// `store`, in log order (see [`CommandLog::read_all`]).
fn replay_tail(store: &dyn Store, log: &dyn CommandLog) -> Result<Replayed, RecoveryError> {
    let mut from = BTreeMap::new();
    for state in log.partitions() {
        let partition = state.partition;
        let applied = applied(store, partition)?;
        if applied > state.last {
            return Err(StorageError::Inconsistent(format!(
                "the checkpoint holds {partition} up to position {}, past the log's last \
                 record {:?}: the log is older than the database",
                applied.map_or(0, |p| p.0),
                state.last.map(|p| p.0)
            ))
            .into());
        }
        from.insert(partition, applied);
    }
    let mut replayed = Replayed {
        partitions: from.len(),
        ..Replayed::default()
    };
    let mut failed = None;
    let result = log.read_all(&|p| from.get(&p).copied().flatten(), &mut |entry| {
        let mut changes = Changes::from_bytes(&entry.payload).map_err(|e| {
            LogError::Corrupt(format!("{} at {}: {e}", entry.partition, entry.position))
        })?;
        replayed.records += 1;
        replayed.changes += changes.len() as u64;
        changes.put_log_applied(entry.partition.0, entry.position.0);
        store.apply(&changes).map_err(|e| {
            failed = Some(e);
            LogError::Io("stopped by a storage failure".into())
        })
    });
    if let Some(error) = failed {
        return Err(error.into());
    }
    result?;
    Ok(replayed)
}

/// Brings `store` up to the end of `log`, checkpoints, and trims the log.
pub fn recover(store: &dyn Store, log: &dyn CommandLog) -> Result<Replayed, RecoveryError> {
    let replayed = replay_tail(store, log)?;
    checkpoint_all(store, log)?;
    Ok(replayed)
}

/// What `kessai log verify` found.
#[derive(Debug, Clone)]
pub struct Verified {
    pub scan: Scan,
    /// The records after the checkpoint, which a start would replay.
    pub tail: Replayed,
}

/// Checks a stopped engine's log in `dir` against its checkpoint `store`
/// and replays it there: every record whole and in the hash chain, the
/// checkpoint not ahead of the log, and every record after the checkpoint a
/// whole write-set of known column families, applied to `store` in log
/// order exactly as a start would. Give it a [`crate::storage::Overlay`]
/// over the read-only checkpoint to write nothing.
pub fn verify(dir: &Path, store: &dyn Store) -> Result<Verified, RecoveryError> {
    let mut from: BTreeMap<Partition, Option<Position>> = BTreeMap::new();
    let mut tail = Replayed::default();
    let mut failed = None;
    let scan = file::scan(dir, &mut |_, entry, _| {
        let Some(entry) = entry else { return Ok(()) };
        let start = match from.get(&entry.partition) {
            Some(start) => *start,
            None => {
                let start = applied(store, entry.partition).map_err(|e| {
                    failed = Some(e);
                    LogError::Io("stopped by a storage failure".into())
                })?;
                from.insert(entry.partition, start);
                start
            }
        };
        if Some(entry.position) > start {
            let mut changes = Changes::from_bytes(&entry.payload).map_err(|e| {
                LogError::Corrupt(format!("{} at {}: {e}", entry.partition, entry.position))
            })?;
            tail.records += 1;
            tail.changes += changes.len() as u64;
            changes.put_log_applied(entry.partition.0, entry.position.0);
            store.apply(&changes).map_err(|e| {
                failed = Some(e);
                LogError::Io("stopped by a storage failure".into())
            })?;
        }
        Ok(())
    });
    if let Some(error) = failed {
        return Err(error.into());
    }
    let scan = scan?;
    check_not_behind(store, scan.next)?;
    tail.partitions = from.len();
    Ok(Verified { scan, tail })
}

/// What each partition's writer has applied, for the next checkpoint.
pub struct Checkpoints {
    /// Per partition (shard index), the last applied position (0: none).
    applied: Vec<AtomicU64>,
}

impl Checkpoints {
    pub fn new(partitions: usize) -> Checkpoints {
        Checkpoints {
            applied: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// `partition`'s records up to `position` are applied to the store.
    pub fn applied(&self, partition: Partition, position: Position) {
        self.applied[partition.0 as usize].store(position.0, Ordering::Release);
    }

    /// Flushes the store, then trims what the flush covers.
    pub fn take(&self, store: &dyn Store, log: &dyn CommandLog) -> Result<(), RecoveryError> {
        let started = Instant::now();
        // Read before the flush: the flush holds at least this much.
        let covered: Vec<u64> = self
            .applied
            .iter()
            .map(|a| a.load(Ordering::Acquire))
            .collect();
        store.checkpoint()?;
        for (index, position) in covered.into_iter().enumerate() {
            if position > 0 {
                log.trim(Partition(index as u32), Position(position))?;
            }
        }
        metrics::histogram!(telemetry::LOG_CHECKPOINT_US)
            .record(started.elapsed().as_micros() as f64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command_log::MemLog;
    use crate::storage::MemStore;

    fn append(log: &MemLog, partition: u32, meta: &[u8]) -> Position {
        let mut changes = Changes::new();
        changes.put(Cf::Meta, b"k", meta);
        let fence = Fence::resume(log, Partition(partition), 1);
        log.append(Partition(partition), fence, changes.as_bytes())
            .expect("append")
    }

    #[test]
    fn recovery_replays_only_what_the_checkpoint_lacks() {
        let (store, log) = (MemStore::new(), MemLog::new());
        append(&log, 0, b"first");
        let second = append(&log, 0, b"second");
        // The checkpoint already holds the second record: it must not be
        // replayed (its effect may have been overwritten since).
        let mut held = Changes::new();
        held.put(Cf::Meta, b"k", b"later");
        held.put_log_applied(0, second.0);
        store.commit(&held).expect("commit");
        append(&log, 1, b"other");
        let replayed = recover(&store, &log).expect("recover");
        assert_eq!(
            replayed,
            Replayed {
                partitions: 2,
                records: 1,
                changes: 1
            }
        );
        assert_eq!(store.get_meta("k").expect("get"), Some(b"other".to_vec()));
        assert_eq!(
            applied(&store, Partition(1)).expect("get"),
            Some(Position(3))
        );
        let mut left = 0;
        for p in [0, 1] {
            log.read(Partition(p), None, &mut |_| {
                left += 1;
                Ok(())
            })
            .expect("read");
        }
        assert_eq!(left, 0, "recovery trims what it checkpointed");
    }

    #[test]
    fn recovery_replays_in_log_order_across_partitions() {
        // A key written by partition 1, then overwritten by partition 0
        // once that was durable (as a refund's credit is recorded, then
        // deleted by the card's shard): the later write must win.
        let (store, log) = (MemStore::new(), MemLog::new());
        append(&log, 1, b"recorded");
        append(&log, 0, b"applied");
        recover(&store, &log).expect("recover");
        assert_eq!(store.get_meta("k").expect("get"), Some(b"applied".to_vec()));
    }

    #[test]
    fn a_checkpoint_ahead_of_the_log_refuses_to_start() {
        let (store, log) = (MemStore::new(), MemLog::new());
        append(&log, 0, b"x");
        let mut ahead = Changes::new();
        ahead.put_log_applied(0, 99);
        store.commit(&ahead).expect("commit");
        assert!(matches!(
            recover(&store, &log),
            Err(RecoveryError::Storage(StorageError::Inconsistent(_)))
        ));
    }
}
