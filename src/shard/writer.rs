//! The shard's writer thread: group commit.
//!
//! The shard actor applies requests to memory and gathers their changes and
//! replies in a [`Pending`] batch. While the writer syncs batch k, the actor
//! keeps applying into batch k+1; when the writer finishes it hands the
//! (emptied) buffers back and the actor ships whatever gathered meanwhile.
//! So one fsync serves everything that arrived during the previous one, and
//! the batch size grows with load by itself.
//!
//! Durable means in the command log ([`crate::command_log`]): the writer
//! appends the batch's changes to its shard's partition (one `fdatasync`
//! shared with every other shard's writer, or a JetStream ack), then
//! applies them to RocksDB without a sync, with the record's position
//! beside them. Batches the shard cut while this thread was busy arrive
//! one by one, in order.
//!
//! Nothing leaves before its batch is durable: replies (including reads,
//! which may have observed batch k's not-yet-synced state) are sent by this
//! thread after the sync. A failed write aborts the process: memory is
//! ahead of the disk, and only a restart, which replays the log, is safe.

use crate::command_log::replay::{self, Checkpoints};
use crate::command_log::{CommandLog, Fence, Partition};
use crate::idempotency::Claims;
use crate::ids::{PaymentId, ShardId};
use crate::protocol::{Response, ShardStats};
use crate::reply::{self, Reply, ReplyTx, Tag};
use crate::state_machine::ShardAnswer;
use crate::storage::{Changes, Storage};
use crate::telemetry;
use hdrhistogram::Histogram;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::oneshot;

/// An answer waiting for its batch to be durable.
pub enum Delivery {
    /// Wire responses for a connection, by request tag.
    Client(ReplyTx, Vec<(Tag, Response)>),
    /// The answer to a [`crate::state_machine::ShardOp`].
    Answer(oneshot::Sender<ShardAnswer>, ShardAnswer),
}

impl Delivery {
    /// A receiver that has gone away just drops its answer: the change is
    /// durable either way, and a client that retries gets the outcome.
    fn deliver(self) {
        match self {
            Delivery::Client(tx, replies) => reply::send(&tx, Reply::Many(replies)),
            Delivery::Answer(tx, answer) => drop(tx.send(answer)),
        }
    }
}

/// Everything one group commit carries.
#[derive(Default)]
pub struct Pending {
    pub changes: Changes,
    /// Answers to send once the changes are durable, one entry per incoming
    /// message (so one channel send per connection per batch).
    pub deliveries: Vec<Delivery>,
    /// Payment claims to release once their outcome is durable.
    pub claims: Vec<PaymentId>,
    /// Operations in this batch (for the batch-size metric).
    pub ops: usize,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.ops == 0 && self.changes.is_empty() && self.deliveries.is_empty()
    }
}

/// Group-commit measurements, shared with the shard for `stats`.
pub struct WriterStats {
    batches: u64,
    ops: u64,
    batch_ops: Histogram<u64>,
    sync_us: Histogram<u64>,
}

impl WriterStats {
    pub fn new() -> WriterStats {
        WriterStats {
            batches: 0,
            ops: 0,
            batch_ops: Histogram::new_with_bounds(1, 1 << 24, 2).expect("static bounds"),
            sync_us: Histogram::new_with_bounds(1, 60_000_000, 2).expect("static bounds"),
        }
    }

    fn record(&mut self, ops: usize, sync_us: u64) {
        self.batches += 1;
        self.ops += ops as u64;
        self.batch_ops.saturating_record(ops.max(1) as u64);
        self.sync_us.saturating_record(sync_us.max(1));
    }

    pub fn snapshot(&self, shard: ShardId, cards: u64, card_bytes: u64) -> ShardStats {
        ShardStats {
            shard: shard.0,
            cards,
            card_map_bytes: card_bytes,
            batches: self.batches,
            ops: self.ops,
            batch_ops_p50: self.batch_ops.value_at_quantile(0.5),
            batch_ops_p99: self.batch_ops.value_at_quantile(0.99),
            batch_ops_max: self.batch_ops.max(),
            sync_us_p50: self.sync_us.value_at_quantile(0.5),
            sync_us_p99: self.sync_us.value_at_quantile(0.99),
        }
    }
}

/// The epoch of a single node's writers: one owner per partition, ever.
/// (A cluster's owners take higher epochs from their leases, issue #21.)
pub const LOCAL_EPOCH: u64 = 1;

/// Where a writer makes its batches durable.
pub struct Durability {
    pub storage: Arc<Storage>,
    pub log: Arc<dyn CommandLog>,
    pub checkpoints: Arc<Checkpoints>,
}

impl Durability {
    /// Appends `changes` to `partition` under `fence`, then applies them
    /// (and the position) to RocksDB. Any failure stops the process.
    fn write(&self, shard: ShardId, fence: &mut Fence, changes: &mut Changes) {
        if changes.is_empty() {
            return;
        }
        let partition = Partition(u32::from(shard.0));
        let result = replay::append_then_apply(
            self.log.as_ref(),
            self.storage.as_ref(),
            partition,
            fence,
            changes,
        )
        .map(|position| self.checkpoints.applied(partition, position));
        if let Err(error) = result {
            tracing::error!(%shard, %error, "durable write failed; stopping so a restart replays the log");
            eprintln!("kessai: shard {shard}: durable write failed: {error}");
            std::process::abort();
        }
    }
}

/// Runs until the shard drops its sender. `done` is called with each
/// emptied batch so the shard can reuse its buffers and ship the next one.
pub fn run(
    shard: ShardId,
    durability: Durability,
    claims: Arc<Claims>,
    stats: Arc<Mutex<WriterStats>>,
    batches: crossbeam_channel::Receiver<Pending>,
    done: impl Fn(Pending),
) {
    let partition = Partition(u32::from(shard.0));
    let mut fence = Fence::resume(durability.log.as_ref(), partition, LOCAL_EPOCH);
    let shard_label = shard.to_string();
    let ops_histogram =
        metrics::histogram!(telemetry::GROUP_COMMIT_OPS, "shard" => shard_label.clone());
    let sync_histogram =
        metrics::histogram!(telemetry::GROUP_COMMIT_SYNC_US, "shard" => shard_label);
    while let Ok(mut pending) = batches.recv() {
        let started = Instant::now();
        durability.write(shard, &mut fence, &mut pending.changes);
        let sync_us = started.elapsed().as_micros() as u64;
        let ops = pending.ops;
        if let Ok(mut stats) = stats.lock() {
            stats.record(ops, sync_us);
        }
        ops_histogram.record(ops as f64);
        sync_histogram.record(sync_us as f64);
        // Release claims before replying: a client that retries the moment
        // it hears back must find the outcome, not "in progress".
        for payment in pending.claims.drain(..) {
            claims.release(payment);
        }
        for delivery in pending.deliveries.drain(..) {
            delivery.deliver();
        }
        pending.changes.clear();
        pending.ops = 0;
        done(pending);
    }
}
