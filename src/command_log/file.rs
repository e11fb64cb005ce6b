//! The local command log: segment files in `<data_dir>/log`, one group
//! commit for every shard of the node.
//!
//! Every shard's writer thread calls [`FileLog::append`] with its batch.
//! The record is staged (numbered, hashed into the chain) under one lock;
//! then the first appender that finds no write in flight becomes the
//! leader: it takes everything staged, writes it with one `pwrite` and one
//! `fdatasync`, and wakes the others whose records that sync covered. So
//! the node pays one sync per group commit however many shards it runs,
//! and a shard count tunes CPU parallelism only (issue #20).
//!
//! Segments are named by their first position (20 digits, `.klog`) and
//! preallocated to `segment_bytes`, so a sync writes data, not the file's
//! size. A run never appends to a segment an earlier run wrote: it starts
//! a new one, so a torn tail left by a crash stays where it was and is
//! skipped by every reader (it was never acknowledged).
//!
//! Staged bytes are bounded by the shards themselves: each writer thread
//! has one append in flight, of one group commit.

use super::record::{self, Decoded, GENESIS, Hash, PAYLOAD_BYTES_MAX};
use super::{
    CommandLog, Entry, Fence, LogError, Partition, PartitionState, Position, VisitEntry,
    fence_and_advance,
};
use crate::telemetry;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

const SEGMENT_SUFFIX: &str = ".klog";
/// A segment starts with `"KSEG" | version 1 | 3 zero bytes | first
/// position u64 LE | the hash of the record before it | 20 zero bytes`, so
/// the chain's head survives a trim of every record before it.
const SEGMENT_MAGIC: [u8; 4] = *b"KSEG";
const SEGMENT_HEADER_BYTES: usize = 68;
/// A sync's buffer above this is freed after it, not kept for the next.
const SPARE_BYTES_MAX: usize = 4 << 20;

pub struct FileLog {
    dir: PathBuf,
    segment_bytes: u64,
    inner: Mutex<Inner>,
    /// Signalled when a sync completes (or fails).
    synced: Condvar,
    /// The segment being appended to; only the leader touches it.
    tail: Mutex<Tail>,
}

/// What appends share, under one lock.
struct Inner {
    next: u64,
    prev: Hash,
    partitions: BTreeMap<Partition, PartitionState>,
    /// Records staged for the next sync, and what they hold (each
    /// partition once, with its last position).
    staged: Vec<u8>,
    staged_first: Option<Position>,
    staged_partitions: Vec<(Partition, Position)>,
    /// The buffers of the last sync, emptied, for the next one to stage
    /// into: a warm log allocates nothing per sync (issue #20).
    spare: Vec<u8>,
    spare_partitions: Vec<(Partition, Position)>,
    /// Every position up to this one is durable.
    durable: u64,
    leader: bool,
    /// Set when a write or sync failed: nothing more is acknowledged.
    failed: Option<String>,
    /// Segments in position order, by first position: which partitions'
    /// records each holds, up to which position.
    segments: BTreeMap<u64, BTreeMap<Partition, Position>>,
    /// Per partition, what a checkpoint covers.
    trimmed: BTreeMap<Partition, Position>,
}

struct Tail {
    file: File,
    first: u64,
    offset: u64,
}

/// What opening found: for start-up logs and `kessai log verify`.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    pub segments: usize,
    pub records: u64,
    pub bytes: u64,
    /// The hash the oldest kept segment names as the one before it (zeros
    /// if the log was never trimmed): where verification starts.
    pub base: Hash,
    pub head: Hash,
    /// Torn tails skipped (one per crash that interrupted a write).
    pub torn_tails: usize,
    /// The position the next record takes.
    pub next: Position,
}

impl FileLog {
    /// Opens the log in `dir` (creating it), checks every record and the
    /// chain, and starts a new segment for this run's appends.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<(FileLog, Scan), LogError> {
        std::fs::create_dir_all(dir).map_err(|e| io("create the log dir", dir, e))?;
        let mut inner = Inner {
            next: 1,
            prev: GENESIS,
            partitions: BTreeMap::new(),
            staged: Vec::new(),
            staged_first: None,
            staged_partitions: Vec::new(),
            spare: Vec::new(),
            spare_partitions: Vec::new(),
            durable: 0,
            leader: false,
            failed: None,
            segments: BTreeMap::new(),
            trimmed: BTreeMap::new(),
        };
        let scan = scan(dir, &mut |first, entry, hash| {
            let held = inner.segments.entry(first).or_default();
            match entry {
                Some(entry) => {
                    held.insert(entry.partition, entry.position);
                    inner.partitions.insert(
                        entry.partition,
                        PartitionState {
                            partition: entry.partition,
                            last: Some(entry.position),
                            epoch: entry.epoch,
                        },
                    );
                    inner.next = entry.position.0 + 1;
                    inner.prev = hash;
                }
                // An empty segment still carries the next position and
                // the chain's head.
                None => {
                    inner.next = inner.next.max(first);
                    inner.prev = hash;
                }
            }
            Ok(())
        })?;
        inner.durable = inner.next - 1;
        let tail = Tail::create(dir, inner.next, &inner.prev, segment_bytes)?;
        inner.segments.entry(tail.first).or_default();
        Ok((
            FileLog {
                dir: dir.to_path_buf(),
                segment_bytes,
                inner: Mutex::new(inner),
                synced: Condvar::new(),
                tail: Mutex::new(tail),
            },
            scan,
        ))
    }

    /// The position the next record will take.
    pub fn next_position(&self) -> Position {
        Position(self.lock().next)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Appends change the shared state only in whole steps, and a
        // failed sync is recorded in it: poison carries no news.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stages one record; answers its position.
    fn stage(
        inner: &mut Inner,
        partition: Partition,
        fence: Fence,
        payload: &[u8],
    ) -> Result<Position, LogError> {
        if payload.len() > PAYLOAD_BYTES_MAX {
            return Err(LogError::TooLarge(format!(
                "a record of {} bytes, above {PAYLOAD_BYTES_MAX}",
                payload.len()
            )));
        }
        let position = Position(inner.next);
        fence_and_advance(&mut inner.partitions, partition, fence, position)?;
        inner.next += 1;
        if inner.staged_first.is_none() {
            let inner = &mut *inner;
            std::mem::swap(&mut inner.staged, &mut inner.spare);
            std::mem::swap(&mut inner.staged_partitions, &mut inner.spare_partitions);
        }
        let prev = inner.prev;
        inner.prev = record::encode_into(
            &mut inner.staged,
            partition,
            fence.epoch,
            position,
            &prev,
            payload,
        );
        inner.staged_first.get_or_insert(position);
        match inner
            .staged_partitions
            .iter_mut()
            .find(|(p, _)| *p == partition)
        {
            Some((_, last)) => *last = position,
            None => inner.staged_partitions.push((partition, position)),
        }
        Ok(position)
    }

    /// As the leader: writes and syncs everything staged, with the lock
    /// released meanwhile; returns with it held again.
    fn lead<'a>(&'a self, mut inner: MutexGuard<'a, Inner>) -> MutexGuard<'a, Inner> {
        inner.leader = true;
        let mut bytes = std::mem::take(&mut inner.staged);
        let first = inner.staged_first.take().expect("something is staged");
        let mut held = std::mem::take(&mut inner.staged_partitions);
        let last = inner.next - 1;
        drop(inner);

        let started = Instant::now();
        let written = self.write(first.0, &bytes);
        let sync_us = started.elapsed().as_micros() as u64;
        metrics::histogram!(telemetry::LOG_SYNC_US).record(sync_us as f64);
        metrics::histogram!(telemetry::LOG_SYNC_BYTES).record(bytes.len() as f64);

        let mut inner = self.lock();
        inner.leader = false;
        match written {
            Ok(segment) => {
                let segment = inner.segments.entry(segment).or_default();
                segment.extend(held.iter().copied());
                inner.durable = last;
            }
            Err(error) => inner.failed = Some(error.to_string()),
        }
        // Kept for the next sync, unless a burst left them large.
        if bytes.capacity() <= SPARE_BYTES_MAX {
            bytes.clear();
            held.clear();
            inner.spare = bytes;
            inner.spare_partitions = held;
        }
        self.synced.notify_all();
        inner
    }

    /// Writes `bytes` (records from position `first` on) at the tail, rolling
    /// to a new segment first when they do not fit; syncs. Answers the
    /// segment they went to.
    fn write(&self, first: u64, bytes: &[u8]) -> Result<u64, LogError> {
        let mut tail = self
            .tail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let empty = tail.offset == SEGMENT_HEADER_BYTES as u64;
        if !empty && tail.offset + bytes.len() as u64 > self.segment_bytes {
            let prev = record::prev_of(bytes);
            *tail = Tail::create(&self.dir, first, &prev, self.segment_bytes)?;
        }
        tail.file
            .write_all_at(bytes, tail.offset)
            .map_err(|e| io("write", &self.dir, e))?;
        tail.file
            .sync_data()
            .map_err(|e| io("fdatasync", &self.dir, e))?;
        tail.offset += bytes.len() as u64;
        Ok(tail.first)
    }

    /// Deletes the oldest segments whose every record a trim covers. Only
    /// a prefix goes, so the kept records always form one chain; the
    /// newest registered segment (the tail, or the one before a roll the
    /// leader has not registered yet) always stays.
    fn drop_covered(&self, inner: &mut Inner) -> Result<(), LogError> {
        let newest = inner.segments.keys().next_back().copied();
        let covered: Vec<u64> = inner
            .segments
            .iter()
            .take_while(|(first, held)| {
                Some(**first) != newest
                    && held
                        .iter()
                        .all(|(p, last)| inner.trimmed.get(p).is_some_and(|t| t >= last))
            })
            .map(|(first, _)| *first)
            .collect();
        for first in covered {
            let path = segment_path(&self.dir, first);
            std::fs::remove_file(&path).map_err(|e| io("remove", &path, e))?;
            inner.segments.remove(&first);
        }
        Ok(())
    }
}

impl CommandLog for FileLog {
    fn append(
        &self,
        partition: Partition,
        fence: Fence,
        payload: &[u8],
    ) -> Result<Position, LogError> {
        let mut inner = self.lock();
        if let Some(failed) = &inner.failed {
            return Err(LogError::Io(failed.clone()));
        }
        let position = Self::stage(&mut inner, partition, fence, payload)?;
        loop {
            if let Some(failed) = &inner.failed {
                return Err(LogError::Io(failed.clone()));
            }
            if inner.durable >= position.0 {
                return Ok(position);
            }
            if inner.leader {
                inner = self
                    .synced
                    .wait(inner)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            } else {
                inner = self.lead(inner);
            }
        }
    }

    fn read(
        &self,
        partition: Partition,
        after: Option<Position>,
        visit: &mut VisitEntry<'_>,
    ) -> Result<(), LogError> {
        scan(&self.dir, &mut |_, entry, _| match entry {
            Some(entry) if entry.partition == partition && Some(entry.position) > after => {
                visit(entry)
            }
            _ => Ok(()),
        })
        .map(drop)
    }

    fn read_all(
        &self,
        after: &dyn Fn(Partition) -> Option<Position>,
        visit: &mut VisitEntry<'_>,
    ) -> Result<(), LogError> {
        scan(&self.dir, &mut |_, entry, _| match entry {
            Some(entry) if Some(entry.position) > after(entry.partition) => visit(entry),
            _ => Ok(()),
        })
        .map(drop)
    }

    fn trim(&self, partition: Partition, upto: Position) -> Result<(), LogError> {
        let mut inner = self.lock();
        let trimmed = inner.trimmed.entry(partition).or_insert(upto);
        *trimmed = (*trimmed).max(upto);
        self.drop_covered(&mut inner)
    }

    fn partitions(&self) -> Vec<PartitionState> {
        self.lock().partitions.values().copied().collect()
    }
}

impl Tail {
    /// A new, empty, preallocated segment whose first record will be at
    /// `first`; the directory entry is synced, so the file survives a
    /// power cut along with what is written to it.
    fn create(dir: &Path, first: u64, prev: &Hash, segment_bytes: u64) -> Result<Tail, LogError> {
        let path = segment_path(dir, first);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io("create", &path, e))?;
        preallocate(&file, segment_bytes).map_err(|e| io("preallocate", &path, e))?;
        file.write_all_at(&segment_header(first, prev), 0)
            .map_err(|e| io("write", &path, e))?;
        file.sync_all().map_err(|e| io("sync", &path, e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("sync the log dir", dir, e))?;
        Ok(Tail {
            file,
            first,
            offset: SEGMENT_HEADER_BYTES as u64,
        })
    }
}

/// Allocates the segment's blocks up front (zeros), so later syncs do not
/// change its size. Where the file system cannot, the file grows as
/// written instead: slower syncs, same contents.
fn preallocate(file: &File, bytes: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let length = libc::off_t::try_from(bytes).map_err(std::io::Error::other)?;
    // SAFETY: fallocate on a file descriptor we own; no memory is passed.
    let result = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, length) };
    if result == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EOPNOTSUPP) => Ok(()),
        _ => Err(error),
    }
}

fn segment_header(first: u64, prev: &Hash) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut header = [0; SEGMENT_HEADER_BYTES];
    header[..4].copy_from_slice(&SEGMENT_MAGIC);
    header[4] = record::VERSION;
    header[8..16].copy_from_slice(&first.to_le_bytes());
    header[16..48].copy_from_slice(prev);
    header
}

/// The previous hash a segment's header names, once it is checked to
/// be a header for `first`.
fn read_segment_header(path: &Path, data: &[u8], first: u64) -> Result<Hash, LogError> {
    let bad = |why: &str| LogError::Corrupt(format!("{}: {why}", path.display()));
    if data.len() < SEGMENT_HEADER_BYTES || data[..4] != SEGMENT_MAGIC {
        return Err(bad("no segment header"));
    }
    if data[4] != record::VERSION {
        return Err(bad("unknown segment version"));
    }
    if data[8..16] != first.to_le_bytes() {
        return Err(bad("the header names another first position"));
    }
    Ok(data[16..48].try_into().expect("32 bytes"))
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}{SEGMENT_SUFFIX}"))
}

fn io(what: &str, path: &Path, error: std::io::Error) -> LogError {
    LogError::Io(format!("{what} {}: {error}", path.display()))
}

/// Visits `(segment, record, its hash)`, or `(segment, None, the hash
/// before it)` for a segment without records.
pub type VisitSegment<'a> = dyn FnMut(u64, Option<&Entry>, Hash) -> Result<(), LogError> + 'a;

/// The segments in `dir`, by first position.
fn segments(dir: &Path) -> Result<Vec<u64>, LogError> {
    let mut firsts = Vec::new();
    for item in std::fs::read_dir(dir).map_err(|e| io("list", dir, e))? {
        let name = item.map_err(|e| io("list", dir, e))?.file_name();
        let name = name.to_string_lossy();
        if let Some(number) = name.strip_suffix(SEGMENT_SUFFIX) {
            let first = number
                .parse::<u64>()
                .map_err(|_| LogError::Corrupt(format!("a segment named {name}")))?;
            firsts.push(first);
        }
    }
    firsts.sort_unstable();
    Ok(firsts)
}

/// Reads every segment in order, checking each record and the chain, and
/// visits `(segment, record, its hash)` for each record, and `(segment,
/// None, _)` for a segment without records.
pub fn scan(dir: &Path, visit: &mut VisitSegment<'_>) -> Result<Scan, LogError> {
    let mut found = Scan::default();
    let mut expected: Option<u64> = None;
    let mut prev: Option<Hash> = None;
    for first in segments(dir)? {
        let path = segment_path(dir, first);
        let data = std::fs::read(&path).map_err(|e| io("read", &path, e))?;
        found.segments += 1;
        if let Some(expected) = expected
            && first != expected
        {
            return Err(LogError::Corrupt(format!(
                "{} starts at position {first}, but the log before it ends at {}",
                path.display(),
                expected - 1
            )));
        }
        let header_prev = read_segment_header(&path, &data, first)?;
        match prev {
            Some(prev) if prev != header_prev => {
                return Err(LogError::Corrupt(format!(
                    "{}: the segment does not continue the chain before it",
                    path.display()
                )));
            }
            Some(_) => {}
            None => {
                found.base = header_prev;
                found.head = header_prev;
                prev = Some(header_prev);
            }
        }
        let records = scan_records(
            &path,
            &data,
            first,
            Chain {
                expected: &mut expected,
                prev: &mut prev,
            },
            &mut found,
            visit,
        )?;
        if records == 0 {
            visit(first, None, header_prev)?;
        }
        expected.get_or_insert(first);
    }
    found.next = Position(expected.unwrap_or(1));
    Ok(found)
}

/// Where the chain stands while scanning: the position the next record
/// must have, and the hash it must name as its predecessor.
struct Chain<'a> {
    expected: &'a mut Option<u64>,
    prev: &'a mut Option<Hash>,
}

/// Checks and visits one segment's records (after its header), in order,
/// up to its end or a torn tail; how many there were.
fn scan_records(
    path: &Path,
    data: &[u8],
    first: u64,
    chain: Chain<'_>,
    found: &mut Scan,
    visit: &mut VisitSegment<'_>,
) -> Result<usize, LogError> {
    let mut at = SEGMENT_HEADER_BYTES;
    let mut records = 0;
    loop {
        let (entry, hash, bytes) = match record::decode(&data[at..]) {
            Decoded::Record { entry, hash, bytes } => (entry, hash, bytes),
            Decoded::End => return Ok(records),
            Decoded::Invalid(_) => {
                found.torn_tails += 1;
                return Ok(records);
            }
        };
        let want = chain.expected.unwrap_or(first);
        if entry.position.0 != want {
            return Err(LogError::Corrupt(format!(
                "{}: position {} where {want} belongs",
                path.display(),
                entry.position
            )));
        }
        if Some(record::prev_of(&data[at..])) != *chain.prev {
            return Err(LogError::Corrupt(format!(
                "{}: position {} names a previous hash that is not its \
                 predecessor's",
                path.display(),
                entry.position
            )));
        }
        *chain.prev = Some(hash);
        *chain.expected = Some(entry.position.0 + 1);
        found.records += 1;
        found.bytes += bytes as u64;
        found.head = hash;
        records += 1;
        visit(first, Some(&entry), hash)?;
        at += bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const SEGMENT: u64 = 1 << 20;

    fn fence(log: &FileLog, partition: u32) -> Fence {
        Fence {
            epoch: 1,
            expected_last: log
                .partitions()
                .into_iter()
                .find(|s| s.partition == Partition(partition))
                .and_then(|s| s.last),
        }
    }

    fn append(log: &FileLog, partition: u32, payload: &[u8]) -> Position {
        log.append(Partition(partition), fence(log, partition), payload)
            .expect("append")
    }

    fn payloads(log: &FileLog, partition: u32) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        log.read(Partition(partition), None, &mut |e| {
            out.push(e.payload.clone());
            Ok(())
        })
        .expect("read");
        out
    }

    #[test]
    fn records_survive_reopening_and_the_chain_continues() {
        let dir = tempfile::tempdir().expect("tempdir");
        let head = {
            let (log, _) = FileLog::open(dir.path(), SEGMENT).expect("open");
            assert_eq!(append(&log, 0, b"a"), Position(1));
            assert_eq!(append(&log, 1, b"b"), Position(2));
            assert_eq!(append(&log, 0, b"c"), Position(3));
            log.lock().prev
        };
        let (log, scan) = FileLog::open(dir.path(), SEGMENT).expect("reopen");
        assert_eq!((scan.records, scan.head, scan.base), (3, head, GENESIS));
        assert_eq!(payloads(&log, 0), vec![b"a".to_vec(), b"c".to_vec()]);
        assert_eq!(append(&log, 1, b"d"), Position(4));
        drop(log);
        let (_, scan) = FileLog::open(dir.path(), SEGMENT).expect("reopen");
        assert_eq!(
            (scan.records, scan.segments),
            (4, 2),
            "each run starts a segment"
        );
    }

    #[test]
    fn a_stale_writer_is_fenced_and_appends_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, _) = FileLog::open(dir.path(), SEGMENT).expect("open");
        let stale = fence(&log, 0);
        append(&log, 0, b"new owner");
        let refused = log.append(Partition(0), stale, b"stale");
        assert!(
            matches!(refused, Err(LogError::Fenced { .. })),
            "{refused:?}"
        );
        let next_epoch = Fence {
            epoch: 2,
            ..fence(&log, 0)
        };
        log.append(Partition(0), next_epoch, b"epoch 2")
            .expect("append");
        let old_epoch = fence(&log, 0);
        assert!(matches!(
            log.append(Partition(0), old_epoch, b"epoch 1 again"),
            Err(LogError::Fenced { epoch: 2, .. })
        ));
        assert_eq!(payloads(&log, 0).len(), 2);
    }

    #[test]
    fn appends_from_many_threads_share_syncs_and_keep_each_partitions_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, _) = FileLog::open(dir.path(), SEGMENT).expect("open");
        let log = Arc::new(log);
        let threads: Vec<_> = (0..8u32)
            .map(|partition| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..200u32 {
                        append(&log, partition, &i.to_le_bytes());
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("join");
        }
        for partition in 0..8 {
            let expected: Vec<Vec<u8>> = (0..200u32).map(|i| i.to_le_bytes().to_vec()).collect();
            assert_eq!(payloads(&log, partition), expected);
        }
        drop(log);
        let (_, scan) = FileLog::open(dir.path(), SEGMENT).expect("reopen");
        assert_eq!(scan.records, 1600);
    }

    #[test]
    fn a_torn_tail_is_skipped_and_the_next_run_continues_after_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (log, _) = FileLog::open(dir.path(), SEGMENT).expect("open");
            append(&log, 0, b"kept");
            append(&log, 0, &[7; 100]);
        }
        // Tear the last record: a crash mid-write, never acknowledged.
        let segment = segment_path(dir.path(), 1);
        let mut data = std::fs::read(&segment).expect("read");
        let second = SEGMENT_HEADER_BYTES + record::OVERHEAD_BYTES + 4;
        data[second + 70] ^= 0xff;
        std::fs::write(&segment, &data).expect("write");
        let (log, scan) = FileLog::open(dir.path(), SEGMENT).expect("reopen");
        assert_eq!((scan.records, scan.torn_tails), (1, 1));
        assert_eq!(append(&log, 0, b"after"), Position(2));
        drop(log);
        let (log, scan) = FileLog::open(dir.path(), SEGMENT).expect("reopen");
        assert_eq!((scan.records, scan.torn_tails), (2, 1));
        assert_eq!(payloads(&log, 0), vec![b"kept".to_vec(), b"after".to_vec()]);
    }

    #[test]
    fn a_gap_or_a_broken_link_is_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        for run in 0..3 {
            let (log, _) = FileLog::open(dir.path(), SEGMENT).expect("open");
            append(&log, 0, &[run; 10]);
        }
        // Segments 1, 2, 3 (and an empty 4). Dropping the middle one
        // leaves a gap.
        let middle = segment_path(dir.path(), 2);
        let saved = std::fs::read(&middle).expect("read");
        std::fs::remove_file(&middle).expect("remove");
        assert!(matches!(
            FileLog::open(dir.path(), SEGMENT),
            Err(LogError::Corrupt(_))
        ));
        // Back, with its record changed and rehashed: the next segment's
        // link to it breaks.
        let mut forged = saved.clone();
        let at = SEGMENT_HEADER_BYTES;
        let prev: Hash = forged[at + 32..at + 64].try_into().expect("32");
        let mut again = Vec::new();
        record::encode_into(&mut again, Partition(0), 1, Position(2), &prev, &[9; 10]);
        forged[at..at + again.len()].copy_from_slice(&again);
        std::fs::write(&middle, &forged).expect("write");
        assert!(matches!(
            FileLog::open(dir.path(), SEGMENT),
            Err(LogError::Corrupt(_))
        ));
        std::fs::write(&middle, &saved).expect("write");
        FileLog::open(dir.path(), SEGMENT).expect("whole again");
    }

    #[test]
    fn trims_delete_whole_covered_segments_only_and_keep_the_head() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, _) = FileLog::open(dir.path(), SEGMENT).expect("open");
        // Records of 300 KiB: three to a 1 MiB segment.
        let big = vec![1u8; 300 << 10];
        let mut last = Position(0);
        for i in 0..10 {
            last = append(&log, i % 2, &big);
        }
        let count = || segments(dir.path()).expect("list").len();
        let before = count();
        assert!(before >= 4, "{before} segments");
        log.trim(Partition(0), last).expect("trim");
        assert_eq!(count(), before, "partition 1 still needs every segment");
        log.trim(Partition(1), last).expect("trim");
        assert_eq!(count(), 1, "only the tail stays");
        let head = log.lock().prev;
        drop(log);
        let (log, scan) = FileLog::open(dir.path(), SEGMENT).expect("reopen");
        assert_eq!((scan.records, scan.head), (1, head), "the tail's record");
        log.trim(Partition(1), last).expect("trim");
        assert_eq!(count(), 1, "the tail of the earlier run went too");
        drop(log);
        // Nothing but an empty segment is left; its header keeps the head.
        let (log, scan) = FileLog::open(dir.path(), SEGMENT).expect("reopen");
        assert_eq!((scan.records, scan.base, scan.head), (0, head, head));
        assert_eq!(append(&log, 0, b"x"), Position(11));
        drop(log);
        let (_, scan) = FileLog::open(dir.path(), SEGMENT).expect("reopen");
        assert_eq!((scan.records, scan.base), (1, head));
    }
}
