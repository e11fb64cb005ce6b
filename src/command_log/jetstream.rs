//! The command log on a NATS JetStream stream (issue #21, step 1): the
//! same contract as [`super::FileLog`], replicated by the stream's own
//! Raft group instead of one disk.
//!
//! * **Layout.** One stream (`[log.jetstream] stream`, "KESSAI" by
//!   default), one subject per partition: `<stream>.p.<n>`. JetStream
//!   numbers every subject's messages in one sequence, and that sequence is
//!   the [`Position`]: so [`CommandLog::read_all`] reads in log order by
//!   reading the stream in order.
//! * **Fence.** An append carries `Nats-Expected-Last-Subject-Sequence`
//!   (the fence's expected last position, 0 for none): the server refuses
//!   it (error 10071) if anyone appended to the partition since, which is
//!   [`LogError::Fenced`]. The epoch travels in a `Kessai-Epoch` header and
//!   is checked here against the partition's last record by the rule every
//!   log shares ([`super::check_fence`]).
//! * **Dedup and ambiguity.** `Nats-Msg-Id` is
//!   `p<partition>.<epoch>.<expected last>.<8 bytes of the payload's
//!   SHA-256, hex>`: one id per (writer, place, content). An append whose
//!   outcome is unknown (a timeout, a lost connection, an error the client
//!   reports as `Other`, such as 10164) is resolved, never guessed: read
//!   back the partition's first record after the fence's position; if it
//!   is ours (same id), its position is the answer; if another record
//!   took the place, the writer is fenced; if the place is still free,
//!   publish the same message again (a copy still in flight then lands
//!   first and the retry is refused, or dedup drops the retry: either
//!   way the next read-back finds ours). A plain refusal (10071) is
//!   checked the same way, since the server checks the expected sequence
//!   before the message id. After `ack_timeout_ms * AMBIGUITY_ROUNDS`
//!   without an answer the append fails with [`LogError::Io`] and the
//!   engine stops (a restart replays the stream).
//! * **Durability.** An append returns on the stream's acknowledgement.
//!   With the server's `sync_interval: always` (as `scripts/setup`'s
//!   tests and docs/CLUSTER.md run it) that means fsynced on every replica
//!   that acknowledged: a quorum of `replicas`.
//! * **Trim.** Purges a subject up to a position but always keeps the
//!   subject's last message, so a partition's last position and epoch
//!   (what the next fence is built from) survive every checkpoint.
//! * **Large records.** A record larger than one message (the server's
//!   `max_payload` less [`MESSAGE_OVERHEAD_BYTES`]) goes as consecutive
//!   parts on its subject, each fenced on the one before and marked
//!   `Kessai-Part: i/n`; its position is its last part's. Readers put the
//!   parts back together and drop a group that lacks parts (the tail of an
//!   append a crash interrupted, never acknowledged, or the head of one a
//!   trim cut, already in the checkpoint). A record above
//!   `max_record_bytes` is refused with [`LogError::TooLarge`]; the shards
//!   cut their group commits at half of it (the shard module's batch cut).
//!
//! The trait is synchronous and called from plain threads (the shards'
//! writers, the checkpoint thread, start-up on a thread of its own), so
//! the log owns a small tokio runtime and blocks on it. It must never be
//! called from inside another runtime.

use super::{
    CommandLog, Entry, Fence, LogError, Partition, PartitionState, Position, VisitEntry,
    check_fence,
};
use crate::config::LogJetStream;
use async_nats::HeaderMap;
use async_nats::header::{NATS_EXPECTED_LAST_SUBJECT_SEQUENCE, NATS_MESSAGE_ID};
use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The header carrying the writer's epoch.
pub const EPOCH_HEADER: &str = "Kessai-Epoch";
/// The header marking a part of a record of several messages: `i/n`.
pub const PART_HEADER: &str = "Kessai-Part";
/// The smallest message the server must take for the log to use it.
pub const MESSAGE_BYTES_MIN: usize = 4096;
/// Bytes a record's message takes besides its payload: the headers (ids,
/// epoch, expected sequence) and the protocol line, with room.
pub const MESSAGE_OVERHEAD_BYTES: usize = 512;
/// How many ack timeouts an ambiguous append may take to resolve: a
/// stream leader's election took 4.5–8.7 s on these machines (issue #21).
pub const AMBIGUITY_ROUNDS: u32 = 6;
/// The longest wait between two reconnect attempts.
const RECONNECT_DELAY_MAX: Duration = Duration::from_millis(250);
/// How long the server keeps message ids for dedup: longer than any
/// append may take to resolve.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

pub struct JetStreamLog {
    /// Taken by `Drop` (a runtime may not be dropped inside another).
    runtime: Option<tokio::runtime::Runtime>,
    stream: stream::Stream,
    context: jetstream::Context,
    name: String,
    ack_timeout: Duration,
    max_record_bytes: usize,
    /// The largest payload of one message: a larger record goes in parts.
    message_bytes: usize,
    state: Mutex<State>,
}

/// What appends share.
struct State {
    partitions: BTreeMap<Partition, PartitionState>,
    /// Per partition, the position a purge already covers (purged below).
    purged_below: BTreeMap<Partition, u64>,
}

/// What opening found, for the start-up log line.
#[derive(Debug, Clone, Default)]
pub struct Opened {
    pub messages: u64,
    pub bytes: u64,
    /// The position the next record takes (at least).
    pub next: Position,
    pub partitions: usize,
}

/// How one publish ended.
enum Published {
    Stored(u64),
    WrongLast,
    TooLarge(String),
    /// Unknown: it may have been stored.
    Ambiguous(String),
}

impl JetStreamLog {
    /// Connects, creates the stream if it is missing (or checks the one
    /// there), and reads each partition's last record.
    pub fn open(settings: &LogJetStream) -> Result<(JetStreamLog, Opened), LogError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kessai-jetstream")
            .enable_all()
            .build()
            .map_err(|e| LogError::Io(format!("jetstream: cannot start a runtime: {e}")))?;
        let ack_timeout = Duration::from_millis(settings.ack_timeout_ms);
        let connected = runtime.block_on(connect(settings, ack_timeout))?;
        Ok((
            JetStreamLog {
                runtime: Some(runtime),
                stream: connected.stream,
                context: connected.context,
                name: settings.stream.clone(),
                ack_timeout,
                max_record_bytes: settings.max_record_bytes,
                message_bytes: connected.message_bytes,
                state: Mutex::new(State {
                    partitions: connected.partitions,
                    purged_below: BTreeMap::new(),
                }),
            },
            connected.opened,
        ))
    }

    /// The largest record an append takes.
    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }

    fn block_on<T>(&self, future: impl Future<Output = T>) -> T {
        self.runtime
            .as_ref()
            .expect("the runtime lives until drop")
            .block_on(future)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Updates are single assignments: poison carries no news.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn subject(&self, partition: Partition) -> String {
        subject_of(&self.name, partition)
    }

    /// Records a stored append (or a record read back) as the partition's
    /// last, unless a later one is already known.
    /// The partition's last record as known here.
    fn known(&self, partition: Partition) -> PartitionState {
        self.lock()
            .partitions
            .get(&partition)
            .copied()
            .unwrap_or(PartitionState::empty(partition))
    }

    fn advance(&self, partition: Partition, position: Position, epoch: u64) {
        let mut state = self.lock();
        let known = state
            .partitions
            .entry(partition)
            .or_insert(PartitionState::empty(partition));
        if known.last < Some(position) {
            known.last = Some(position);
            known.epoch = epoch;
        }
    }

    /// Publishes once and waits for the acknowledgement.
    async fn publish(&self, subject: &str, headers: &HeaderMap, payload: &[u8]) -> Published {
        let sent = self
            .context
            .publish_with_headers(
                subject.to_string(),
                headers.clone(),
                payload.to_vec().into(),
            )
            .await;
        let ack = match sent {
            Ok(ack) => ack.await,
            Err(error) => Err(error),
        };
        match ack {
            Ok(ack) => Published::Stored(ack.sequence),
            Err(error) => match error.kind() {
                PublishErrorKind::WrongLastSequence => Published::WrongLast,
                PublishErrorKind::MaxPayloadExceeded => Published::TooLarge(error.to_string()),
                // No responders: nothing stored it, but a server just
                // back (or a stream between leaders) answers so for a
                // moment; retried within the same budget as the rest.
                PublishErrorKind::StreamNotFound => {
                    Published::Ambiguous(format!("no stream takes {subject} (yet?): {error}"))
                }
                // Timeouts, a lost connection, and errors the client
                // reports as Other (10164 among them): maybe stored.
                _ => Published::Ambiguous(error.to_string()),
            },
        }
    }

    /// The partition's last record as the server has it now.
    async fn last_record(&self, partition: Partition) -> Result<Option<Entry>, String> {
        let subject = self.subject(partition);
        match self.stream.get_last_raw_message_by_subject(&subject).await {
            Ok(message) => decode(partition, &message)
                .map(Some)
                .map_err(|e| e.to_string()),
            Err(error) if error.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                Ok(None)
            }
            Err(error) => Err(error.to_string()),
        }
    }

    /// The record that took the place after the fence's position, if
    /// any: its position, and whether it is the one with message `id`.
    async fn placed_after(
        &self,
        partition: Partition,
        fence: Fence,
        id: &str,
    ) -> Result<Option<(Position, bool)>, String> {
        let subject = self.subject(partition);
        let from = fence.expected_last.map_or(1, |p| p.0 + 1);
        match self
            .stream
            .get_first_raw_message_by_subject(&subject, from)
            .await
        {
            Ok(message) => {
                let ours = message
                    .headers
                    .get(NATS_MESSAGE_ID)
                    .is_some_and(|v| v.as_str() == id);
                Ok(Some((Position(message.sequence), ours)))
            }
            Err(error) if error.kind() == stream::LastRawMessageErrorKind::NoMessageFound => {
                Ok(None)
            }
            Err(error) => Err(error.to_string()),
        }
    }

    /// Appends once the fence holds here; see the module's comment for how
    /// an unknown outcome is resolved.
    async fn append_async(
        &self,
        partition: Partition,
        fence: Fence,
        payload: &[u8],
        part: Option<(usize, usize)>,
    ) -> Result<Position, LogError> {
        let subject = self.subject(partition);
        let id = message_id(partition, fence, payload);
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, id.as_str());
        headers.insert(
            NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            fence.expected_last.map_or(0, |p| p.0).to_string(),
        );
        headers.insert(EPOCH_HEADER, fence.epoch.to_string());
        if let Some((index, count)) = part {
            headers.insert(PART_HEADER, format!("{index}/{count}"));
        }
        let budget = self.ack_timeout * AMBIGUITY_ROUNDS;
        let deadline = Instant::now() + budget;
        let mut why = String::new();
        loop {
            if Instant::now() > deadline {
                return Err(LogError::Io(format!(
                    "jetstream: the append to {subject} stayed unresolved for {budget:?}: {why}"
                )));
            }
            let refused = match self.publish(&subject, &headers, payload).await {
                Published::Stored(sequence) => return Ok(Position(sequence)),
                Published::TooLarge(error) => return Err(LogError::TooLarge(error)),
                Published::WrongLast => true,
                Published::Ambiguous(error) => {
                    why = error;
                    false
                }
            };
            // The server checks the expected sequence before the message
            // id, so a copy of ours stored by an earlier try is refused
            // like another writer's record: look at who took the place.
            match self.placed_after(partition, fence, &id).await {
                Ok(Some((position, true))) => return Ok(position),
                Ok(Some(_)) => return Err(self.fenced(partition).await),
                Ok(None) if refused => {
                    // Refused, yet nothing after the fence: the partition
                    // moved on and was purged, or the fence is from
                    // another stream. Either way, not ours to write.
                    return Err(self.fenced(partition).await);
                }
                Ok(None) => {
                    tracing::warn!(%partition, %why, "ambiguous append: not stored; publishing it again");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(error) => {
                    why = format!("{why}; reading back: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// The error for a refused append, with the partition's state as read
    /// back (falling back on what is known here).
    async fn fenced(&self, partition: Partition) -> LogError {
        if let Ok(Some(last)) = self.last_record(partition).await {
            self.advance(partition, last.position, last.epoch);
        }
        let state = self.known(partition);
        LogError::Fenced {
            partition,
            epoch: state.epoch,
            last: state.last,
        }
    }

    /// Visits, in stream order, the records on `filter` from `start` on
    /// that `keep` keeps, up to the end of the stream as it was when the
    /// read began.
    async fn visit_from(
        &self,
        filter: String,
        start: u64,
        keep: &dyn Fn(&Entry) -> bool,
        visit: &mut VisitEntry<'_>,
    ) -> Result<(), LogError> {
        let io = |what: &str, e: &dyn std::fmt::Display| {
            LogError::Io(format!("jetstream: {what} {filter}: {e}"))
        };
        // Where the stream ends now: a read never waits for appends made
        // after it began.
        let end = self
            .stream
            .get_info()
            .await
            .map_err(|e| io("cannot read the stream's end for", &e))?
            .state
            .last_sequence;
        if start > end {
            return Ok(());
        }
        let consumer = self
            .stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                filter_subject: filter.clone(),
                deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: start.max(1),
                },
                ..Default::default()
            })
            .await
            .map_err(|e| io("cannot read", &e))?;
        if consumer.cached_info().num_pending == 0 {
            return Ok(());
        }
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| io("cannot read", &e))?;
        let mut groups: BTreeMap<Partition, Group> = BTreeMap::new();
        while let Some(message) = tokio::time::timeout(self.ack_timeout, messages.next())
            .await
            .map_err(|e| io("reading", &e))?
        {
            let message = message.map_err(|e| io("reading", &e))?;
            let info = message.info().map_err(|e| io("reading", &e))?;
            let (sequence, pending) = (info.stream_sequence, info.pending);
            let partition = partition_of(&self.name, message.subject.as_str())?;
            let headers = message.headers.as_ref().ok_or_else(|| {
                LogError::Corrupt(format!("jetstream: {partition} at {sequence}: no headers"))
            })?;
            let (entry, part) = decode_parts(partition, sequence, headers, &message.payload)?;
            if let Some(entry) = reassemble(&mut groups, entry, part)
                && keep(&entry)
            {
                visit(&entry)?;
            }
            if pending == 0 || sequence >= end {
                break;
            }
        }
        Ok(())
    }
}

impl Drop for JetStreamLog {
    fn drop(&mut self) {
        // The last handle may go on a thread inside another runtime (an
        // actor's arbiter), where a blocking shutdown would panic.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl CommandLog for JetStreamLog {
    fn append(
        &self,
        partition: Partition,
        fence: Fence,
        payload: &[u8],
    ) -> Result<Position, LogError> {
        if payload.len() > self.max_record_bytes {
            return Err(LogError::TooLarge(format!(
                "a record of {} bytes, above log.jetstream.max_record_bytes {}",
                payload.len(),
                self.max_record_bytes
            )));
        }
        check_fence(&self.known(partition), fence)?;
        let parts: Vec<&[u8]> = if payload.is_empty() {
            vec![payload]
        } else {
            payload.chunks(self.message_bytes).collect()
        };
        let count = parts.len();
        let position = self.block_on(async {
            let mut part_fence = fence;
            for (index, part) in parts.into_iter().enumerate() {
                let marked = (count > 1).then_some((index + 1, count));
                let position = self
                    .append_async(partition, part_fence, part, marked)
                    .await?;
                part_fence.expected_last = Some(position);
            }
            Ok::<_, LogError>(part_fence.expected_last.expect("one part at least"))
        })?;
        self.advance(partition, position, fence.epoch);
        Ok(position)
    }

    fn read(
        &self,
        partition: Partition,
        after: Option<Position>,
        visit: &mut VisitEntry<'_>,
    ) -> Result<(), LogError> {
        let start = after.map_or(1, |p| p.0 + 1);
        self.block_on(self.visit_from(self.subject(partition), start, &|_| true, visit))
    }

    fn read_all(
        &self,
        after: &dyn Fn(Partition) -> Option<Position>,
        visit: &mut VisitEntry<'_>,
    ) -> Result<(), LogError> {
        let known: Vec<Partition> = self.lock().partitions.keys().copied().collect();
        let Some(start) = known.iter().map(|p| after(*p).map_or(1, |a| a.0 + 1)).min() else {
            return Ok(());
        };
        let keep = |e: &Entry| Some(e.position) > after(e.partition);
        self.block_on(self.visit_from(format!("{}.p.>", self.name), start, &keep, visit))
    }

    fn trim(&self, partition: Partition, upto: Position) -> Result<(), LogError> {
        // Purge below `upto + 1`, but never the partition's last record.
        let below = {
            let state = self.lock();
            let Some(last) = state.partitions.get(&partition).and_then(|s| s.last) else {
                return Ok(());
            };
            let below = (upto.0 + 1).min(last.0);
            if state.purged_below.get(&partition).copied().unwrap_or(0) >= below {
                return Ok(());
            }
            below
        };
        let subject = self.subject(partition);
        self.block_on(async {
            self.stream
                .purge()
                .filter(subject.clone())
                .sequence(below)
                .await
        })
        .map_err(|e| LogError::Io(format!("jetstream: cannot purge {subject}: {e}")))?;
        let mut state = self.lock();
        let purged = state.purged_below.entry(partition).or_insert(0);
        *purged = (*purged).max(below);
        Ok(())
    }

    fn partitions(&self) -> Vec<PartitionState> {
        self.lock().partitions.values().copied().collect()
    }
}

/// What opening connects to and finds.
struct Connected {
    context: jetstream::Context,
    stream: stream::Stream,
    opened: Opened,
    partitions: BTreeMap<Partition, PartitionState>,
    /// The largest payload of one message.
    message_bytes: usize,
}

fn io_error(url: &str, what: &str, error: &dyn std::fmt::Display) -> LogError {
    LogError::Io(format!("jetstream {url}: {what}: {error}"))
}

/// Connects, opens (or creates) the stream, reads every partition's last
/// record.
async fn connect(settings: &LogJetStream, ack_timeout: Duration) -> Result<Connected, LogError> {
    let (context, message_bytes) = connect_client(settings, ack_timeout).await?;
    let (stream, info) = open_stream(&context, settings).await?;
    let partitions = last_records(&stream, settings).await?;
    let opened = Opened {
        messages: info.state.messages,
        bytes: info.state.bytes,
        next: Position(info.state.last_sequence + 1),
        partitions: partitions.len(),
    };
    Ok(Connected {
        context,
        stream,
        opened,
        partitions,
        message_bytes,
    })
}

/// The client and its JetStream context; the largest payload a message
/// may carry on this server.
async fn connect_client(
    settings: &LogJetStream,
    ack_timeout: Duration,
) -> Result<(jetstream::Context, usize), LogError> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_millis(settings.connect_timeout_ms))
        .request_timeout(Some(ack_timeout))
        // Reconnect for ever: an append waits (up to its ambiguity
        // budget) rather than failing on a server restart.
        .max_reconnects(None)
        // Appends wait on the reconnect: retry soon (the default backs
        // off to 4 s, most of an append's budget).
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis(1 << attempts.min(8)).min(RECONNECT_DELAY_MAX)
        })
        .connect(settings.url.as_str())
        .await
        .map_err(|e| io_error(&settings.url, "cannot connect", &e))?;
    let max_payload = client.server_info().max_payload;
    let message_bytes = max_payload.saturating_sub(MESSAGE_OVERHEAD_BYTES);
    if message_bytes < MESSAGE_BYTES_MIN {
        return Err(LogError::TooLarge(format!(
            "the server's max_payload {max_payload} leaves less than {MESSAGE_BYTES_MIN} bytes \
             a message after {MESSAGE_OVERHEAD_BYTES} of headers"
        )));
    }
    let context = jetstream::ContextBuilder::new()
        .timeout(ack_timeout)
        .ack_timeout(ack_timeout)
        .max_ack_inflight(settings.max_inflight_appends)
        .backpressure_on_inflight(true)
        .build(client);
    Ok((context, message_bytes))
}

/// The stream, created if missing; one that takes other subjects is
/// refused (another application's).
async fn open_stream(
    context: &jetstream::Context,
    settings: &LogJetStream,
) -> Result<(stream::Stream, stream::Info), LogError> {
    let io = |what: &str, e: &dyn std::fmt::Display| io_error(&settings.url, what, e);
    let subjects = format!("{}.p.>", settings.stream);
    let mut stream = context
        .get_or_create_stream(stream::Config {
            name: settings.stream.clone(),
            subjects: vec![subjects.clone()],
            storage: stream::StorageType::File,
            num_replicas: settings.replicas,
            duplicate_window: DUPLICATE_WINDOW,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .map_err(|e| io("cannot open the stream", &e))?;
    let info = stream
        .info()
        .await
        .map_err(|e| io("cannot read the stream's info", &e))?
        .clone();
    if info.config.subjects != vec![subjects.clone()] {
        return Err(LogError::Corrupt(format!(
            "jetstream stream {} takes {:?}, not {subjects}: another application's stream?",
            settings.stream, info.config.subjects
        )));
    }
    if info.config.num_replicas != settings.replicas {
        tracing::warn!(
            stream = %settings.stream,
            configured = settings.replicas,
            actual = info.config.num_replicas,
            "the stream keeps the replica count it was created with"
        );
    }
    Ok((stream, info))
}

/// Every partition's last record: where its next fence starts.
async fn last_records(
    stream: &stream::Stream,
    settings: &LogJetStream,
) -> Result<BTreeMap<Partition, PartitionState>, LogError> {
    let io = |what: &str, e: &dyn std::fmt::Display| io_error(&settings.url, what, e);
    let mut listed = stream
        .info_builder()
        .subjects(format!("{}.p.>", settings.stream))
        .fetch()
        .await
        .map_err(|e| io("cannot list the partitions", &e))?;
    let mut names = Vec::new();
    while let Some(subject) = listed.next().await {
        let (subject, _count) = subject.map_err(|e| io("cannot list the partitions", &e))?;
        names.push(subject);
    }
    let mut partitions = BTreeMap::new();
    for subject in names {
        let partition = partition_of(&settings.stream, &subject)?;
        let last = stream
            .get_last_raw_message_by_subject(&subject)
            .await
            .map_err(|e| io("cannot read a partition's last record", &e))?;
        let entry = decode(partition, &last)?;
        partitions.insert(
            partition,
            PartitionState {
                partition,
                last: Some(entry.position),
                epoch: entry.epoch,
            },
        );
    }
    Ok(partitions)
}

/// `<stream>.p.<n>`.
pub fn subject_of(stream: &str, partition: Partition) -> String {
    format!("{stream}.p.{}", partition.0)
}

fn partition_of(stream: &str, subject: &str) -> Result<Partition, LogError> {
    subject
        .strip_prefix(stream)
        .and_then(|rest| rest.strip_prefix(".p."))
        .and_then(|n| n.parse::<u32>().ok())
        .map(Partition)
        .ok_or_else(|| LogError::Corrupt(format!("jetstream: a message on {subject}")))
}

/// The dedup id of `payload` appended to `partition` under `fence`.
pub fn message_id(partition: Partition, fence: Fence, payload: &[u8]) -> String {
    let hash = Sha256::digest(payload);
    format!(
        "p{}.{}.{}.{}",
        partition.0,
        fence.epoch,
        fence.expected_last.map_or(0, |p| p.0),
        hex::encode(&hash[..8])
    )
}

fn decode(
    partition: Partition,
    message: &jetstream::message::StreamMessage,
) -> Result<Entry, LogError> {
    decode_parts(
        partition,
        message.sequence,
        &message.headers,
        &message.payload,
    )
    .map(|(e, _)| e)
}

/// A record of several messages being put back together.
struct Group {
    next: usize,
    count: usize,
    bytes: Vec<u8>,
}

/// Takes one message of a partition, in order: a whole record comes out
/// at once; a part joins its group, and the group comes out with its last
/// part (at that part's position). A part out of turn ends its group,
/// which lacked parts: a crash cut it short (never acknowledged) or a trim
/// took its head (already in the checkpoint).
fn reassemble(
    groups: &mut BTreeMap<Partition, Group>,
    entry: Entry,
    part: Option<(usize, usize)>,
) -> Option<Entry> {
    let Some((index, count)) = part else {
        groups.remove(&entry.partition);
        return Some(entry);
    };
    let mut group = match groups.remove(&entry.partition) {
        Some(group) if group.next == index && group.count == count => group,
        _ if index == 1 => Group {
            next: 1,
            count,
            bytes: Vec::new(),
        },
        _ => return None,
    };
    group.bytes.extend_from_slice(&entry.payload);
    if index == count {
        return Some(Entry {
            payload: group.bytes,
            ..entry
        });
    }
    group.next += 1;
    groups.insert(entry.partition, group);
    None
}

/// A record from its message: the epoch header must be there, and the
/// payload must match the hash its id names.
fn decode_parts(
    partition: Partition,
    sequence: u64,
    headers: &HeaderMap,
    payload: &[u8],
) -> Result<(Entry, Option<(usize, usize)>), LogError> {
    let bad = |why: &str| LogError::Corrupt(format!("jetstream: {partition} at {sequence}: {why}"));
    let epoch = headers
        .get(EPOCH_HEADER)
        .and_then(|v| v.as_str().parse::<u64>().ok())
        .ok_or_else(|| bad("no epoch header"))?;
    let id = headers
        .get(NATS_MESSAGE_ID)
        .map(|v| v.as_str().to_string())
        .ok_or_else(|| bad("no message id"))?;
    let hash = Sha256::digest(payload);
    if !id.ends_with(&format!(".{}", hex::encode(&hash[..8]))) {
        return Err(bad("the payload does not match its id's hash"));
    }
    let part = match headers.get(PART_HEADER) {
        None => None,
        Some(value) => {
            let parsed = value.as_str().split_once('/').and_then(|(i, n)| {
                let (i, n) = (i.parse::<usize>().ok()?, n.parse::<usize>().ok()?);
                (1..=n).contains(&i).then_some((i, n))
            });
            Some(parsed.ok_or_else(|| bad("a bad part header"))?)
        }
    };
    let entry = Entry {
        position: Position(sequence),
        partition,
        epoch,
        payload: payload.to_vec(),
    };
    Ok((entry, part))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(position: u64, partition: u32, payload: &[u8]) -> Entry {
        Entry {
            position: Position(position),
            partition: Partition(partition),
            epoch: 1,
            payload: payload.to_vec(),
        }
    }

    /// A message: position, partition, payload, part.
    type Message<'a> = (u64, u32, &'a [u8], Option<(usize, usize)>);

    /// Feeds messages in stream order; answers the records that come out
    /// as (position, payload).
    fn feed(messages: &[Message<'_>]) -> Vec<(u64, Vec<u8>)> {
        let mut groups = BTreeMap::new();
        messages
            .iter()
            .filter_map(|(position, partition, payload, part)| {
                reassemble(&mut groups, message(*position, *partition, payload), *part)
            })
            .map(|e| (e.position.0, e.payload))
            .collect()
    }

    #[test]
    fn parts_come_out_as_one_record_at_the_last_parts_position() {
        let out = feed(&[
            (1, 0, b"whole", None),
            (2, 0, b"ab", Some((1, 3))),
            (3, 1, b"other", None),
            (4, 0, b"cd", Some((2, 3))),
            (5, 0, b"e", Some((3, 3))),
        ]);
        assert_eq!(
            out,
            vec![
                (1, b"whole".to_vec()),
                (3, b"other".to_vec()),
                (5, b"abcde".to_vec())
            ]
        );
    }

    #[test]
    fn a_group_that_lacks_parts_is_dropped() {
        // Cut short by a crash, then the next writer's records.
        let torn = feed(&[
            (1, 0, b"ab", Some((1, 3))),
            (2, 0, b"cd", Some((2, 3))),
            (3, 0, b"next", None),
            (4, 0, b"x", Some((1, 2))),
            (5, 0, b"y", Some((1, 2))),
            (6, 0, b"z", Some((2, 2))),
        ]);
        assert_eq!(torn, vec![(3, b"next".to_vec()), (6, b"yz".to_vec())]);
        // Its head trimmed away: the kept last part alone.
        assert_eq!(feed(&[(9, 0, b"e", Some((3, 3)))]), vec![]);
    }

    #[test]
    fn a_record_decodes_only_with_its_epoch_and_the_hash_its_id_names() {
        let fence = Fence {
            epoch: 3,
            expected_last: Some(Position(7)),
        };
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, message_id(Partition(2), fence, b"payload"));
        headers.insert(EPOCH_HEADER, "3");
        headers.insert(PART_HEADER, "2/4");
        let (entry, part) = decode_parts(Partition(2), 9, &headers, b"payload").expect("decodes");
        assert_eq!(
            (entry.epoch, entry.position, part),
            (3, Position(9), Some((2, 4)))
        );
        assert!(matches!(
            decode_parts(Partition(2), 9, &headers, b"changed"),
            Err(LogError::Corrupt(_))
        ));
        headers.insert(PART_HEADER, "5/4");
        assert!(decode_parts(Partition(2), 9, &headers, b"payload").is_err());
        let mut no_epoch = HeaderMap::new();
        no_epoch.insert(NATS_MESSAGE_ID, message_id(Partition(2), fence, b"payload"));
        assert!(decode_parts(Partition(2), 9, &no_epoch, b"payload").is_err());
        assert_eq!(
            message_id(Partition(2), fence, b"payload"),
            format!("p2.3.7.{}", hex::encode(&Sha256::digest(b"payload")[..8]))
        );
    }

    #[test]
    fn subjects_name_their_partition() {
        assert_eq!(subject_of("KESSAI", Partition(12)), "KESSAI.p.12");
        assert_eq!(
            partition_of("KESSAI", "KESSAI.p.12").expect("ok"),
            Partition(12)
        );
        assert!(partition_of("KESSAI", "KESSAI.q.12").is_err());
        assert!(partition_of("KESSAI", "OTHER.p.12").is_err());
    }
}
