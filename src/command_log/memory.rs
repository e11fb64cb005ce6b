//! The command log in memory: the same contract as [`super::FileLog`],
//! for tests (and the simulator, once it drives the shards' writers).

use super::{
    CommandLog, Entry, Fence, LogError, Partition, PartitionState, Position, VisitEntry,
    fence_and_advance,
};
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemLog {
    inner: Mutex<Inner>,
    /// The largest record it takes (none: any).
    max_record_bytes: Option<usize>,
}

#[derive(Default)]
struct Inner {
    last_position: u64,
    entries: Vec<Entry>,
    partitions: BTreeMap<Partition, PartitionState>,
}

impl MemLog {
    pub fn new() -> MemLog {
        MemLog::default()
    }

    /// A log that refuses records above `max_record_bytes`, as a
    /// replicated one does.
    pub fn with_max_record_bytes(max_record_bytes: usize) -> MemLog {
        MemLog {
            max_record_bytes: Some(max_record_bytes),
            ..MemLog::default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every mutation below completes or panics before changing state.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl MemLog {
    /// Visits the entries `keep` keeps, in order, outside the lock.
    fn visit_where(
        &self,
        keep: impl Fn(&Entry) -> bool,
        visit: &mut VisitEntry<'_>,
    ) -> Result<(), LogError> {
        let entries: Vec<Entry> = self
            .lock()
            .entries
            .iter()
            .filter(|e| keep(e))
            .cloned()
            .collect();
        entries.iter().try_for_each(visit)
    }
}

impl CommandLog for MemLog {
    fn append(
        &self,
        partition: Partition,
        fence: Fence,
        payload: &[u8],
    ) -> Result<Position, LogError> {
        if let Some(max) = self.max_record_bytes
            && payload.len() > max
        {
            return Err(LogError::TooLarge(format!(
                "a record of {} bytes, above {max}",
                payload.len()
            )));
        }
        let mut inner = self.lock();
        let position = Position(inner.last_position + 1);
        fence_and_advance(&mut inner.partitions, partition, fence, position)?;
        inner.last_position = position.0;
        inner.entries.push(Entry {
            position,
            partition,
            epoch: fence.epoch,
            payload: payload.to_vec(),
        });
        Ok(position)
    }

    fn read(
        &self,
        partition: Partition,
        after: Option<Position>,
        visit: &mut VisitEntry<'_>,
    ) -> Result<(), LogError> {
        self.visit_where(
            |e| e.partition == partition && Some(e.position) > after,
            visit,
        )
    }

    fn read_all(
        &self,
        after: &dyn Fn(Partition) -> Option<Position>,
        visit: &mut VisitEntry<'_>,
    ) -> Result<(), LogError> {
        self.visit_where(|e| Some(e.position) > after(e.partition), visit)
    }

    fn trim(&self, partition: Partition, upto: Position) -> Result<(), LogError> {
        self.lock()
            .entries
            .retain(|e| e.partition != partition || e.position > upto);
        Ok(())
    }

    fn partitions(&self) -> Vec<PartitionState> {
        self.lock().partitions.values().copied().collect()
    }
}
