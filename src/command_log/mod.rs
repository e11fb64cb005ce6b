//! The command log: the durable order of every shard's changes.
//!
//! Each shard's group commit appends one record to its partition of the
//! log and waits until it is durable; only then does the shard apply the
//! same changes to RocksDB (without RocksDB's own write-ahead log and
//! without a sync) and answer. So the log is the write-ahead log, and
//! RocksDB is the checkpoint: a periodic flush of RocksDB's memtables,
//! after which the log behind it is trimmed. Recovery opens the
//! checkpoint and replays each partition's tail ([`replay`]).
//!
//! A record holds a batch's effects (the [`crate::storage::Changes`]
//! write-set, absolute puts and deletes), not its commands: replaying an
//! effect twice leaves the same state, so recovery needs no knowledge of
//! which effects the checkpoint already holds beyond a position per
//! partition, and no version skew in the card rules can replay differently.
//!
//! * [`CommandLog`]: the trait (append with a fence, read, trim) that
//!   every log implements.
//! * [`record`]: the file log's versioned record format, a SHA-256 hash
//!   chain.
//! * [`file`]: the local log (the default): segment files, one group
//!   commit (one `fdatasync`) for every shard of the node at once.
//! * [`jetstream`]: the replicated log (issue #21, step 1): a NATS
//!   JetStream stream, one subject per partition, fenced appends by the
//!   server's expected-last-subject-sequence, dedup by message id
//!   (docs/CLUSTER.md).
//! * [`memory`]: the same contract in memory, for tests.
//! * [`replay`]: recovery, checkpoints and offline verification.

pub mod file;
pub mod jetstream;
pub mod memory;
pub mod record;
pub mod replay;

pub use file::FileLog;
pub use jetstream::JetStreamLog;
pub use memory::MemLog;

use std::fmt;

/// A partition of the log: one shard's stream of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition(pub u32);

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// Where a record sits in the log. Positions grow with every append, over
/// the whole log; one partition's positions grow too, but with gaps (the
/// local log numbers all partitions' records in one sequence, as a
/// JetStream stream numbers all its subjects' messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position(pub u64);

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What an append expects of its partition: a stale writer (an older
/// epoch, or one that missed an append) is refused instead of interleaving
/// its records with the new owner's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    /// The writer's epoch; an append below the partition's epoch fails.
    pub epoch: u64,
    /// The partition's last position as the writer knows it; `None` when
    /// the writer knows of no record in the partition.
    pub expected_last: Option<Position>,
}

impl Fence {
    /// The fence of a writer that takes `partition` over at `epoch`, after
    /// whatever the log holds.
    pub fn resume(log: &dyn CommandLog, partition: Partition, epoch: u64) -> Fence {
        Fence {
            epoch,
            expected_last: log
                .partitions()
                .into_iter()
                .find(|state| state.partition == partition)
                .and_then(|state| state.last),
        }
    }
}

/// A log failure, typed by what the caller does next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// Another writer owns the partition now, or appended since: stop
    /// writing to it (nothing was appended).
    #[error("log: partition {partition} is fenced: epoch {epoch}, last {last:?}")]
    Fenced {
        partition: Partition,
        epoch: u64,
        last: Option<Position>,
    },
    /// The disk failed; whether the append is durable is unknown. The
    /// engine stops: only a restart, which replays the log, is safe.
    #[error("log: the disk failed: {0}")]
    Io(String),
    /// A record does not decode or breaks the hash chain: the log is
    /// damaged. Restore it from a backup.
    #[error("log: damaged: {0}")]
    Corrupt(String),
    /// A record or a batch is larger than the log takes.
    #[error("log: too large: {0}")]
    TooLarge(String),
}

/// A record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub position: Position,
    pub partition: Partition,
    pub epoch: u64,
    pub payload: Vec<u8>,
}

/// Visits one record of a read; `Err` stops the read.
pub type VisitEntry<'a> = dyn FnMut(&Entry) -> Result<(), LogError> + 'a;

/// A durable, ordered log of opaque records, in partitions.
///
/// Kept small so that a replicated stream can implement it: appends are
/// fenced (epoch and expected last position) and durable when they return;
/// reads are by partition from a position; trims drop what a checkpoint
/// covers.
pub trait CommandLog: Send + Sync {
    /// Appends `payload` to `partition` once `fence` holds, and returns
    /// when it is durable. Concurrent appends (other partitions, other
    /// threads) share one sync.
    fn append(
        &self,
        partition: Partition,
        fence: Fence,
        payload: &[u8],
    ) -> Result<Position, LogError>;

    /// Visits `partition`'s records after `after` (all of them for
    /// `None`), in order.
    fn read(
        &self,
        partition: Partition,
        after: Option<Position>,
        visit: &mut VisitEntry<'_>,
    ) -> Result<(), LogError>;

    /// Visits every partition's records in log order, skipping each
    /// partition's records up to `after(partition)`. Log order puts a
    /// record after every record whose append had returned before its own
    /// began. Recovery replays this way, not partition by partition: a few
    /// keys are written by one partition and later by another (a refund's
    /// credit is recorded by the refund's home shard and deleted by the
    /// card's shard once that record is durable), and only the log's order
    /// puts the later write last.
    fn read_all(
        &self,
        after: &dyn Fn(Partition) -> Option<Position>,
        visit: &mut VisitEntry<'_>,
    ) -> Result<(), LogError>;

    /// Lets the log drop `partition`'s records up to and including `upto`
    /// (a checkpoint holds their effects). The log may keep them longer.
    fn trim(&self, partition: Partition, upto: Position) -> Result<(), LogError>;

    /// The partitions holding records, and each one's last position and
    /// epoch: what a writer builds its first fence from.
    fn partitions(&self) -> Vec<PartitionState>;
}

/// A partition's last record as the log knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionState {
    pub partition: Partition,
    pub last: Option<Position>,
    pub epoch: u64,
}

impl PartitionState {
    /// A partition without records.
    pub fn empty(partition: Partition) -> PartitionState {
        PartitionState {
            partition,
            last: None,
            epoch: 0,
        }
    }
}

/// Checks `fence` against a partition's state, and records the append
/// that passes it at `position`: the one rule every implementation shares.
pub(crate) fn fence_and_advance(
    partitions: &mut std::collections::BTreeMap<Partition, PartitionState>,
    partition: Partition,
    fence: Fence,
    position: Position,
) -> Result<(), LogError> {
    let state = partitions
        .entry(partition)
        .or_insert(PartitionState::empty(partition));
    check_fence(state, fence)?;
    state.last = Some(position);
    state.epoch = fence.epoch;
    Ok(())
}

/// Checks `fence` against a partition's state.
pub(crate) fn check_fence(state: &PartitionState, fence: Fence) -> Result<(), LogError> {
    if fence.epoch < state.epoch || fence.expected_last != state.last {
        return Err(LogError::Fenced {
            partition: state.partition,
            epoch: state.epoch,
            last: state.last,
        });
    }
    Ok(())
}
