//! The operator's views: report pages, the audit, stats; and the admin
//! lane they run in.
//!
//! Operator requests can be heavy (an audit walks every card; an issue
//! hashes ten thousand PINs), so they run on an arbiter (a thread) of their
//! own, at most `admin_requests_max` at a time engine-wide; more are
//! answered `busy`. Payments never wait behind them.

use crate::ledger;
use crate::protocol::{ReportRequest, Response, StatsResponse};
use crate::shard::{ShardGone, Shards};
use actix_rt::{Arbiter, ArbiterHandle};
use std::sync::Arc;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

/// Where operator requests run.
pub struct AdminLane {
    arbiter: ArbiterHandle,
    slots: Arc<Semaphore>,
    /// One audit walks the shards at a time.
    audits: Arc<Mutex<()>>,
}

impl AdminLane {
    /// Starts the lane's arbiter. The arbiter stops with the actix system.
    pub fn start(slots: usize) -> AdminLane {
        let arbiter = Arbiter::new();
        let handle = arbiter.handle();
        // The arbiter runs until the system stops; its handle is enough.
        std::mem::forget(arbiter);
        AdminLane {
            arbiter: handle,
            slots: Arc::new(Semaphore::new(slots)),
            audits: Arc::new(Mutex::new(())),
        }
    }

    /// A place in the lane, if one is free.
    pub(super) fn try_enter(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    pub(super) fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.arbiter.spawn(work);
    }

    pub(super) fn audits(&self) -> Arc<Mutex<()>> {
        self.audits.clone()
    }
}

/// One report page: each shard's first lines after the cursor, merged.
pub(super) async fn report(shards: &Shards, request: ReportRequest) -> Result<Response, ShardGone> {
    let limit = request.limit as usize;
    let pages = shards
        .report_pages(request.after, request.only, limit)
        .await?;
    Ok(Response::Report(ledger::report_page(&pages, limit)))
}

/// The audit: every shard walks its cards in slices of `slice_cards`,
/// all shards at once, one slice per turn of each shard, so no shard stops
/// its payments for longer than one slice.
pub(super) async fn audit(
    shards: &Shards,
    audits: &Mutex<()>,
    slice_cards: usize,
) -> Result<Response, ShardGone> {
    let _one_at_a_time = audits.lock().await;
    shards.audit_begin().await?;
    let mut walking: Vec<_> = shards.all().collect();
    while !walking.is_empty() {
        let mut answers = Vec::with_capacity(walking.len());
        for &shard in &walking {
            answers.push((shard, shards.audit_slice(shard, slice_cards).await?));
        }
        walking.clear();
        for (shard, answer) in answers {
            if !answer.get().await? {
                walking.push(shard);
            }
        }
    }
    let audits = shards.audit_end().await?;
    Ok(Response::Audit(ledger::audit(&audits)))
}

pub(super) async fn stats(shards: &Shards) -> Result<Response, ShardGone> {
    Ok(Response::Stats(StatsResponse {
        shards: shards.stats().await?,
    }))
}
