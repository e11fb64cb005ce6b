//! `--flood N`: a second merchant floods the engine while the measured
//! ("honest") load runs, to measure what one principal's flood costs
//! another (issue #19).
//!
//! The flooder has its own key and its own cards, so the two merchants
//! never meet on a card: what slows the honest one is what the engine
//! shares between principals (connection admission, shard mailboxes,
//! group commits), not a contended balance. It keeps N connections x M
//! single-card payments in flight, each lane sending its next payment as
//! soon as the previous one is answered, whatever the answer: it never
//! backs off on `busy`, as a broken or hostile client would not.
//!
//! The flood runs on a tokio runtime of its own. On the harness's runtime
//! its tens of thousands of ready lanes would queue in front of the honest
//! merchant's few, and the honest latency would measure the harness's run
//! queue instead of the engine.

use crate::fail;
use crate::record::Outcome;
use crate::report::FlooderReport;
use crate::workload::Workload;
use kessai::auth::Key;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The flood runs at least this long before the honest phase starts...
const LEAD_MIN: Duration = Duration::from_millis(500);
/// ...and until it has turned over one whole pipeline (connections x
/// pipeline answers, so every lane is past its first send and the engine's
/// queues are as full as the flood keeps them), or this long at most.
const LEAD_MAX: Duration = Duration::from_secs(10);
/// How often the lead checks the flood's answers.
const LEAD_POLL: Duration = Duration::from_millis(20);

/// The flood's shape, from `--flood`, `--flood-pipeline`, `--flood-gather`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FloodLoad {
    pub connections: usize,
    /// Payments in flight per connection.
    pub pipeline: usize,
    /// Payments gathered into PayBatch frames of up to this many.
    pub gather: Option<usize>,
}

/// The flood's answers, counted by its lanes. Atomics, not the honest
/// load's `Recorder`: tens of thousands of lanes would queue on its lock,
/// and the flood's own latency is not what is measured.
#[derive(Default)]
struct Tally {
    approved: AtomicU64,
    declined: AtomicU64,
    busy: AtomicU64,
    /// Errors other than `busy`: by reason, with the first message of each.
    errors: Mutex<BTreeMap<&'static str, (u64, String)>>,
}

impl Tally {
    fn count(&self, outcome: Outcome) {
        match outcome {
            Outcome::Approved | Outcome::Answered => {
                self.approved.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Declined(_) => {
                self.declined.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Failed { reason: "busy", .. } => {
                self.busy.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Failed { reason, message } => {
                let mut errors = self.errors.lock().unwrap_or_else(PoisonError::into_inner);
                errors.entry(reason).or_insert((0, message)).0 += 1;
            }
        }
    }

    /// Payments answered (approved or declined).
    fn answered(&self) -> u64 {
        self.approved.load(Ordering::Relaxed) + self.declined.load(Ordering::Relaxed)
    }
}

/// A point in the flood: when, and how many payments had been answered.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    at: Instant,
    answered: u64,
}

/// A running flood.
pub struct Flooder {
    /// Its own runtime (see the module comment); shut down in `stop`.
    runtime: tokio::runtime::Runtime,
    lanes: Vec<tokio::task::JoinHandle<()>>,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    started: Instant,
    in_flight: u64,
}

impl Flooder {
    /// Connects as `merchant` and starts every lane.
    pub async fn start(
        addr: SocketAddr,
        merchant: &Key,
        load: FloodLoad,
        workload: Arc<Workload>,
    ) -> Flooder {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("kessai-load-flood")
            .enable_all()
            .build()
            .unwrap_or_else(|e| fail(format!("the flood's tokio runtime: {e}")));
        // Connected from inside the flood's runtime, so each connection's
        // read and write tasks run there too.
        let key = merchant.clone();
        let clients = runtime
            .spawn(async move {
                crate::connect(
                    addr,
                    &key,
                    "the flooding merchant",
                    load.connections,
                    load.gather,
                )
                .await
            })
            .await
            .unwrap_or_else(|e| fail(format!("connect the flood: {e}")));
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let mut lanes = Vec::with_capacity(load.connections * load.pipeline);
        for client in &clients {
            for _ in 0..load.pipeline {
                let (client, workload, tally, stop) = (
                    client.clone(),
                    workload.clone(),
                    tally.clone(),
                    stop.clone(),
                );
                lanes.push(runtime.spawn(async move {
                    let mut chosen = Vec::with_capacity(1);
                    while !stop.load(Ordering::Relaxed) {
                        let (_, outcome) = workload.one(&client, &mut chosen).await;
                        let lost = outcome.connection_lost();
                        tally.count(outcome);
                        if lost {
                            break;
                        }
                    }
                }));
            }
        }
        Flooder {
            runtime,
            lanes,
            tally,
            stop,
            started,
            in_flight: (load.connections * load.pipeline) as u64,
        }
    }

    /// Waits until the flood is at full pipeline (see [`LEAD_MAX`]);
    /// returns how long it has been running.
    pub async fn until_full(&self) -> Duration {
        loop {
            let ran = self.started.elapsed();
            let full = self.tally.answered() >= self.in_flight;
            if ran >= LEAD_MAX || (ran >= LEAD_MIN && full) {
                return ran;
            }
            tokio::time::sleep(LEAD_POLL).await;
        }
    }

    pub fn mark(&self) -> Mark {
        Mark {
            at: Instant::now(),
            answered: self.tally.answered(),
        }
    }

    /// Stops the flood, waits for its last answers, and reports it; its
    /// payments/s is from `phase_start` to now, the honest phase.
    pub async fn stop(self, lead: Duration, phase_start: Mark) -> FlooderReport {
        let phase_end = self.mark();
        self.stop.store(true, Ordering::Relaxed);
        for lane in self.lanes {
            if let Err(error) = lane.await {
                eprintln!("kessai-load: a flood lane stopped early: {error}");
            }
        }
        let elapsed = self.started.elapsed();
        // Dropping a runtime blocks, which an async context may not do.
        self.runtime.shutdown_background();
        let phase_s = phase_end
            .at
            .saturating_duration_since(phase_start.at)
            .as_secs_f64()
            .max(f64::EPSILON);
        let errors = std::mem::take(
            &mut *self
                .tally
                .errors
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        FlooderReport {
            lead_s: lead.as_secs_f64(),
            elapsed_s: elapsed.as_secs_f64(),
            payments_per_s: phase_end.answered.saturating_sub(phase_start.answered) as f64
                / phase_s,
            approved: self.tally.approved.load(Ordering::Relaxed),
            declined: self.tally.declined.load(Ordering::Relaxed),
            busy: self.tally.busy.load(Ordering::Relaxed),
            errors: errors.values().map(|(count, _)| count).sum(),
            errors_by_reason: errors.iter().map(|(r, (count, _))| (*r, *count)).collect(),
            error_examples: errors
                .into_iter()
                .map(|(r, (_, example))| (r, example))
                .collect(),
        }
    }
}
