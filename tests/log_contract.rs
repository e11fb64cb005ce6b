//! One contract for every command log: `MemLog`, `FileLog` and
//! `JetStreamLog` (on a real nats-server, tests/common/nats.rs) run the
//! same cases: appends and reads, log order across partitions, fences by
//! epoch and by expected last position, trims that keep what a fence
//! needs, partitions after a reopen, records too large.

mod common;

use common::nats::{self, Nats};
use common::runtime;
use kessai::command_log::{
    CommandLog, Fence, FileLog, JetStreamLog, LogError, MemLog, Partition, Position,
};
use kessai::config::LogJetStream;
use std::path::Path;

/// (partition, position, epoch, payload) of every record a read visits.
type Seen = Vec<(u32, u64, u64, Vec<u8>)>;

fn read(log: &dyn CommandLog, partition: u32, after: Option<Position>) -> Seen {
    let mut seen = Vec::new();
    log.read(Partition(partition), after, &mut |e| {
        seen.push((e.partition.0, e.position.0, e.epoch, e.payload.clone()));
        Ok(())
    })
    .expect("read");
    seen
}

fn read_all(log: &dyn CommandLog, after: &dyn Fn(Partition) -> Option<Position>) -> Seen {
    let mut seen = Vec::new();
    log.read_all(after, &mut |e| {
        seen.push((e.partition.0, e.position.0, e.epoch, e.payload.clone()));
        Ok(())
    })
    .expect("read_all");
    seen
}

fn append(log: &dyn CommandLog, partition: u32, epoch: u64, payload: &[u8]) -> Position {
    let fence = Fence::resume(log, Partition(partition), epoch);
    log.append(Partition(partition), fence, payload)
        .expect("append")
}

fn last_of(log: &dyn CommandLog, partition: u32) -> Option<(Position, u64)> {
    log.partitions()
        .into_iter()
        .find(|s| s.partition == Partition(partition))
        .and_then(|s| s.last.map(|last| (last, s.epoch)))
}

/// Appends, reads by partition and after a position, reads all in log
/// order, skipping per partition.
fn appends_and_reads(log: &dyn CommandLog) {
    let a = append(log, 0, 1, b"a");
    let b = append(log, 1, 1, b"b");
    let c = append(log, 0, 1, b"c");
    assert!(a < b && b < c, "positions grow over the whole log");
    assert_eq!(
        read(log, 0, None),
        vec![(0, a.0, 1, b"a".to_vec()), (0, c.0, 1, b"c".to_vec())]
    );
    assert_eq!(read(log, 0, Some(a)), vec![(0, c.0, 1, b"c".to_vec())]);
    assert_eq!(read(log, 0, Some(c)), vec![]);
    assert_eq!(read(log, 7, None), vec![], "a partition without records");
    let all = read_all(log, &|_| None);
    let positions: Vec<u64> = all.iter().map(|e| e.1).collect();
    assert_eq!(positions, vec![a.0, b.0, c.0], "log order");
    let skipped = read_all(log, &|p| (p == Partition(0)).then_some(a));
    assert_eq!(
        skipped.iter().map(|e| e.1).collect::<Vec<_>>(),
        vec![b.0, c.0]
    );
    assert_eq!(last_of(log, 0), Some((c, 1)));
    assert_eq!(last_of(log, 1), Some((b, 1)));
}

/// A stale expected last position, no expected position where records
/// are, and an older epoch are each refused, and append nothing.
fn fences(log: &dyn CommandLog) {
    let stale = Fence::resume(log, Partition(0), 1);
    let first = append(log, 0, 1, b"first");
    let refused = log.append(Partition(0), stale, b"stale");
    assert!(
        matches!(refused, Err(LogError::Fenced { last: Some(last), .. }) if last == first),
        "{refused:?}"
    );
    let none = Fence {
        epoch: 1,
        expected_last: None,
    };
    assert!(matches!(
        log.append(Partition(0), none, b"none"),
        Err(LogError::Fenced { .. })
    ));
    let second = append(log, 0, 2, b"epoch 2");
    let old_epoch = Fence {
        epoch: 1,
        expected_last: Some(second),
    };
    assert!(matches!(
        log.append(Partition(0), old_epoch, b"epoch 1 again"),
        Err(LogError::Fenced { epoch: 2, .. })
    ));
    let payloads: Vec<Vec<u8>> = read(log, 0, None).into_iter().map(|e| e.3).collect();
    assert_eq!(payloads, vec![b"first".to_vec(), b"epoch 2".to_vec()]);
    assert_eq!(last_of(log, 0), Some((second, 2)));
}

/// A trim of everything still leaves the partition's last position and
/// epoch, so the next fence is right; records after a trim stay.
fn trims(log: &dyn CommandLog) {
    let mut last = Position(0);
    for i in 0..5u8 {
        last = append(log, 3, 4, &[i]);
        append(log, 4, 1, &[i]);
    }
    let middle = read(log, 3, None)[2].1;
    log.trim(Partition(3), Position(middle)).expect("trim");
    let kept: Vec<Vec<u8>> = read(log, 3, Some(Position(middle)))
        .into_iter()
        .map(|e| e.3)
        .collect();
    assert_eq!(kept, vec![vec![3], vec![4]], "what follows the trim stays");
    log.trim(Partition(3), last).expect("trim all");
    assert_eq!(read(log, 3, Some(last)), vec![]);
    assert_eq!(last_of(log, 3), Some((last, 4)), "the fence survives");
    assert_eq!(read(log, 4, None).len(), 5, "other partitions untouched");
    let after = append(log, 3, 4, b"after");
    assert!(after > last);
    assert_eq!(read(log, 3, Some(last)).len(), 1);
}

/// Records above the log's limit are refused, and nothing is appended.
fn too_large(log: &dyn CommandLog, max_record_bytes: usize) {
    let fence = Fence::resume(log, Partition(5), 1);
    let refused = log.append(Partition(5), fence, &vec![7; max_record_bytes + 1]);
    assert!(matches!(refused, Err(LogError::TooLarge(_))), "{refused:?}");
    append(log, 5, 1, &vec![7; max_record_bytes]);
    assert_eq!(read(log, 5, None).len(), 1);
}

/// A record far larger than one NATS message (1 MiB by default): it goes
/// as several, interleaved in the stream with another partition's, and
/// reads back whole, at one position, in log order.
fn large_records(log: &dyn CommandLog) {
    let large: Vec<u8> = (0..(3 << 20) + 12345u32).map(|i| (i % 251) as u8).collect();
    let before = append(log, 6, 1, b"small");
    let position = append(log, 6, 1, &large);
    let other = append(log, 7, 1, b"other");
    let after = append(log, 6, 1, b"after");
    assert!(before < position && position < other && other < after);
    let seen = read(log, 6, None);
    let payloads: Vec<&[u8]> = seen.iter().map(|e| e.3.as_slice()).collect();
    assert_eq!(payloads, vec![&b"small"[..], &large[..], &b"after"[..]]);
    assert_eq!(seen[1].1, position.0);
    let all = read_all(log, &|_| None);
    let order: Vec<u64> = all.iter().map(|e| e.1).collect();
    assert_eq!(order, vec![before.0, position.0, other.0, after.0]);
    assert_eq!(read(log, 6, Some(before))[0].3, large);
    // Trimmed up to the large one, and then everything: what follows
    // stays, the fence survives.
    log.trim(Partition(6), position).expect("trim");
    assert_eq!(read(log, 6, Some(position)).len(), 1);
    log.trim(Partition(6), after).expect("trim");
    assert_eq!(last_of(log, 6), Some((after, 1)));
    let last = append(log, 6, 1, &large);
    log.trim(Partition(6), last)
        .expect("trim all but the large last");
    assert_eq!(last_of(log, 6), Some((last, 1)));
    assert!(append(log, 6, 1, b"next") > last);
}

const SMALL_RECORD_BYTES: usize = 64 << 10;

#[test]
fn the_memory_log_keeps_the_contract() {
    appends_and_reads(&MemLog::new());
    fences(&MemLog::new());
    trims(&MemLog::new());
    large_records(&MemLog::new());
    too_large(
        &MemLog::with_max_record_bytes(SMALL_RECORD_BYTES),
        SMALL_RECORD_BYTES,
    );
}

fn open_file(dir: &Path) -> FileLog {
    FileLog::open(dir, 1 << 20).expect("open").0
}

#[test]
fn the_file_log_keeps_the_contract() {
    // (Its limit, 1 GiB, is too large to try here: record.rs's own.)
    for case in [appends_and_reads, fences, trims, large_records] {
        let dir = tempfile::tempdir().expect("tempdir");
        case(&open_file(dir.path()));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let positions = {
        let log = open_file(dir.path());
        appends_and_reads(&log);
        log.partitions()
    };
    assert_eq!(open_file(dir.path()).partitions(), positions, "reopened");
}

fn settings(nats: &Nats, stream: &str) -> LogJetStream {
    LogJetStream {
        url: nats.url(),
        stream: stream.to_string(),
        ack_timeout_ms: 2000,
        ..LogJetStream::default()
    }
}

fn open_jetstream(nats: &Nats, stream: &str) -> JetStreamLog {
    JetStreamLog::open(&settings(nats, stream))
        .expect("open the stream")
        .0
}

#[test]
fn the_jetstream_log_keeps_the_contract() {
    if !nats::available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = Nats::start(dir.path());
    appends_and_reads(&open_jetstream(&nats, "READS"));
    fences(&open_jetstream(&nats, "FENCES"));
    trims(&open_jetstream(&nats, "TRIMS"));
    large_records(&open_jetstream(&nats, "LARGE_RECORDS"));
    let small = JetStreamLog::open(&LogJetStream {
        max_record_bytes: SMALL_RECORD_BYTES,
        ..settings(&nats, "LARGE")
    })
    .expect("open")
    .0;
    too_large(&small, SMALL_RECORD_BYTES);

    // Reopened: every partition's last position and epoch, read from the
    // stream, even where a trim took everything else.
    for stream in ["READS", "FENCES", "TRIMS", "LARGE_RECORDS"] {
        let before = open_jetstream(&nats, stream).partitions();
        assert!(!before.is_empty());
        let log = open_jetstream(&nats, stream);
        assert_eq!(log.partitions(), before, "{stream} reopened");
    }
    let trimmed = open_jetstream(&nats, "TRIMS");
    let (last, epoch) = last_of(&trimmed, 3).expect("partition 3");
    assert_eq!(epoch, 4);
    trimmed.trim(Partition(3), last).expect("trim");
    drop(trimmed);
    let reopened = open_jetstream(&nats, "TRIMS");
    assert_eq!(
        last_of(&reopened, 3),
        Some((last, 4)),
        "after trim and reopen"
    );
    append(&reopened, 3, 4, b"resumed");
}

/// The server holds the fence too: a second writer whose view is stale
/// (it opened before the other appended) is refused by the server, and
/// learns the partition's state from the refusal.
#[test]
fn jetstream_refuses_a_stale_writer_on_the_server() {
    if !nats::available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = Nats::start(dir.path());
    let first = open_jetstream(&nats, "TWO");
    append(&first, 0, 1, b"one");
    let stale = open_jetstream(&nats, "TWO");
    let won = append(&first, 0, 1, b"two");
    let fence = Fence::resume(&stale, Partition(0), 1);
    let refused = stale.append(Partition(0), fence, b"stale");
    assert!(
        matches!(refused, Err(LogError::Fenced { last: Some(last), epoch: 1, .. }) if last == won),
        "{refused:?}"
    );
    assert_eq!(
        last_of(&stale, 0),
        Some((won, 1)),
        "it learned the new last"
    );
    let payloads: Vec<Vec<u8>> = read(&first, 0, None).into_iter().map(|e| e.3).collect();
    assert_eq!(payloads, vec![b"one".to_vec(), b"two".to_vec()]);
}

/// An append retried with the same fence and payload (as after an
/// unknown outcome) is the same record: the retry is refused by the
/// server's fence, and the read-back finds the first copy (same message
/// id) in the place, whose position it answers, instead of appending
/// twice or calling itself fenced.
#[test]
fn jetstream_dedups_a_retried_append() {
    if !nats::available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = Nats::start(dir.path());
    let first = open_jetstream(&nats, "DEDUP");
    let stale = open_jetstream(&nats, "DEDUP");
    let fence = Fence::resume(&first, Partition(0), 1);
    let position = first
        .append(Partition(0), fence, b"payment")
        .expect("append");
    // The second handle has not seen it: the same message again is the
    // same record, answered with the same position.
    let again = stale
        .append(Partition(0), fence, b"payment")
        .expect("a duplicate, not a refusal");
    assert_eq!(again, position);
    assert_eq!(read(&first, 0, None).len(), 1);
}

/// A record of several messages that a crash cut short (its first part
/// only, never acknowledged) is skipped by readers, and the next writer's
/// fence starts after it.
#[test]
fn jetstream_skips_a_record_a_crash_cut_short() {
    use async_nats::HeaderMap;
    use kessai::command_log::jetstream::{EPOCH_HEADER, PART_HEADER, message_id, subject_of};
    if !nats::available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = Nats::start(dir.path());
    let first = append(&open_jetstream(&nats, "TORN"), 0, 1, b"whole");
    // What a writer that died after its first part left behind.
    runtime().block_on(async {
        let client = async_nats::connect(nats.url()).await.expect("connect");
        let fence = Fence {
            epoch: 1,
            expected_last: Some(first),
        };
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", message_id(Partition(0), fence, b"part one"));
        headers.insert(EPOCH_HEADER, "1");
        headers.insert(PART_HEADER, "1/3");
        async_nats::jetstream::new(client)
            .publish_with_headers(
                subject_of("TORN", Partition(0)),
                headers,
                b"part one".as_ref().into(),
            )
            .await
            .expect("publish")
            .await
            .expect("ack");
    });
    let log = open_jetstream(&nats, "TORN");
    let (torn, _) = last_of(&log, 0).expect("partition 0");
    assert!(torn > first, "the fence starts after the torn part");
    let next = append(&log, 0, 1, b"next");
    let payloads: Vec<Vec<u8>> = read(&log, 0, None).into_iter().map(|e| e.3).collect();
    assert_eq!(payloads, vec![b"whole".to_vec(), b"next".to_vec()]);
    assert_eq!(read_all(&log, &|_| Some(first)).len(), 1);
    assert!(next > torn);
}
