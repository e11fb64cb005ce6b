//! The report: what `--json FILE` writes and what the printed lines say.
//!
//! One `Report` per invocation: the configuration, then one `EngineReport`
//! per engine driven (one per shard count with `--spawn --shards 1,2,4`),
//! each with its runs, group-commit figures and audit. The top-level
//! `median_payments_per_s` is the headline: the median over the runs, of
//! the best shard count when several were compared.
//!
//! Throughputs are per second (f64); latencies are whole microseconds;
//! money stays in integer minor units, as the engine reports it.

use crate::mix::{Mix, OpKind};
use crate::open_loop::Schedule;
use crate::record::Recorder;
use hdrhistogram::Histogram;
use kessai::protocol::{AuditResponse, ShardStats, Totals};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    /// The headline: median payments/s over the runs (of the best engine
    /// when several shard counts were compared).
    pub median_payments_per_s: f64,
    /// The same engine's median over runs of each run's payment p99.
    pub median_p99_us: u64,
    /// Every audit was ok, and payments were approved.
    pub ok: bool,
    pub config: ConfigReport,
    pub host: HostReport,
    pub engines: Vec<EngineReport>,
}

#[derive(Debug, Serialize)]
pub struct ConfigReport {
    /// `spawn` (an engine in-process per shard count) or `addr`.
    pub target: &'static str,
    pub addr: Option<String>,
    /// Shard counts of the spawned engines (empty with `addr`).
    pub shards: Vec<usize>,
    /// `closed` (connections x pipeline in flight) or `open` (`rate_per_s`).
    pub mode: &'static str,
    pub rate_per_s: Option<u64>,
    pub connections: usize,
    pub pipeline: usize,
    pub duration_s: u64,
    pub runs: usize,
    pub cards: u32,
    pub face_value_minor: u64,
    pub amount_minor: u64,
    pub mix: Mix,
    pub audit_every_ms: Option<u64>,
    /// Payments gathered into PayBatch frames of up to this many.
    pub gather: Option<usize>,
}

#[derive(Debug, Serialize)]
pub struct HostReport {
    pub cores: usize,
    pub os: &'static str,
    pub arch: &'static str,
}

impl HostReport {
    pub fn here() -> HostReport {
        HostReport {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            os: std::env::consts::OS,
            arch: std::env::consts::ARCH,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct EngineReport {
    /// Shards of the spawned engine; `None` for an engine at `--addr`.
    pub shards: Option<usize>,
    pub addr: String,
    pub setup: SetupReport,
    pub runs: Vec<RunReport>,
    pub median_payments_per_s: f64,
    pub median_p99_us: u64,
    /// Payment latency over all runs together.
    pub latency_us: Percentiles,
    /// Per shard, since the engine started (setup included): group commits,
    /// the operations they carried, batch sizes and sync times.
    pub group_commit: Option<Vec<ShardStats>>,
    pub group_commit_error: Option<String>,
    pub audit: AuditReport,
    pub ok: bool,
}

#[derive(Debug, Serialize)]
pub struct SetupReport {
    pub cards: usize,
    pub seconds: f64,
}

/// The audit after the runs. `error` is set when the engine did not
/// answer it; then `ok` is false.
#[derive(Debug, Serialize)]
pub struct AuditReport {
    pub ok: bool,
    pub error: Option<String>,
    pub problems: Vec<String>,
    pub problems_omitted: u64,
    pub totals: Option<Totals>,
}

impl AuditReport {
    pub fn from_result<E: std::fmt::Display>(result: Result<AuditResponse, E>) -> AuditReport {
        match result {
            Ok(audit) => AuditReport {
                ok: audit.ok,
                error: None,
                problems: audit.problems,
                problems_omitted: audit.problems_omitted,
                totals: Some(audit.totals),
            },
            Err(error) => AuditReport {
                ok: false,
                error: Some(error.to_string()),
                problems: Vec::new(),
                problems_omitted: 0,
                totals: None,
            },
        }
    }

    pub fn print(&self) {
        match (&self.error, &self.totals) {
            (Some(error), _) => println!("audit: FAILED (no answer: {error})"),
            (None, Some(totals)) => println!(
                "audit: {} (activated {} = balances {} + merchant credits {})",
                if self.ok { "ok" } else { "FAILED" },
                totals.activated_minor,
                totals.balance_minor,
                totals.merchant_owed_minor
            ),
            (None, None) => println!("audit: FAILED"),
        }
        for problem in &self.problems {
            println!("  {problem}");
        }
        if self.problems_omitted > 0 {
            println!("  ... and {} more", self.problems_omitted);
        }
    }
}

/// Latency percentiles in microseconds; all 0 when nothing was recorded.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(histogram: &Histogram<u64>) -> Percentiles {
        if histogram.is_empty() {
            return Percentiles {
                count: 0,
                min: 0,
                p50: 0,
                p90: 0,
                p99: 0,
                p999: 0,
                max: 0,
                mean: 0.0,
            };
        }
        Percentiles {
            count: histogram.len(),
            min: histogram.min(),
            p50: histogram.value_at_quantile(0.5),
            p90: histogram.value_at_quantile(0.9),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: histogram.mean(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RunReport {
    pub run: usize,
    pub mode: &'static str,
    /// From the start of the load to the last answer (the in-flight tail
    /// included).
    pub elapsed_s: f64,
    /// Payments answered (approved or declined) per second of `elapsed_s`.
    pub payments_per_s: f64,
    /// Operations of every kind answered per second.
    pub ops_per_s: f64,
    pub payments: PaymentCounts,
    /// Payments of both kinds that were answered (errors are counted in
    /// `payments.errors` and `errors_by_reason`, not timed).
    pub latency_us: Percentiles,
    /// `pay`, `pay2`, `balance`: every kind, also those with share 0.
    pub by_kind: BTreeMap<&'static str, KindReport>,
    /// Operations that got no answer, by error code (`busy`, `timed_out`...)
    /// or by `io`, `closed`, `unexpected_answer`.
    pub errors_by_reason: BTreeMap<&'static str, u64>,
    /// The first message seen for each reason in `errors_by_reason`.
    pub error_examples: BTreeMap<&'static str, String>,
    pub declines_by_reason: BTreeMap<&'static str, u64>,
    pub open_loop: Option<OpenLoopReport>,
    /// Audits run during the load (`--audit-every-ms`).
    pub audits: Option<AuditsDuringRun>,
    /// One entry per second of load, by completion time.
    pub timeline: Vec<SecondReport>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct PaymentCounts {
    pub approved: u64,
    pub declined: u64,
    pub errors: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct KindReport {
    pub share_percent: u8,
    /// Sent and finished: `ok + declined + errors`.
    pub count: u64,
    /// Approved payments, or answered balance checks.
    pub ok: u64,
    pub declined: u64,
    pub errors: u64,
    pub latency_us: Percentiles,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct SecondReport {
    pub second: u64,
    /// Payments answered in this second.
    pub payments: u64,
    pub ops: u64,
    pub errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

/// Open loop: the rate asked for against what happened.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct OpenLoopReport {
    /// Operations (of every kind of the mix) due per second.
    pub offered_per_s: u64,
    /// Operations due during the run.
    pub scheduled: u64,
    pub sent: u64,
    /// Sent after they were due, because every slot was busy then.
    pub late: u64,
    /// Due during the run but never sent before it ended.
    pub unsent: u64,
    /// Operations answered per second (compare with `offered_per_s`).
    pub achieved_per_s: f64,
    /// How long after being due requests went out.
    pub send_lag_us: Percentiles,
    /// Nothing unsent, and at most 1% late and 1% errors.
    pub kept_up: bool,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct AuditsDuringRun {
    pub done: u64,
    pub not_ok: u64,
    pub latency_ms_p50: u64,
    pub latency_ms_max: u64,
}

impl RunReport {
    pub fn new(
        run: usize,
        recorder: &Recorder,
        elapsed: Duration,
        mix: &Mix,
        schedule: Option<Schedule>,
    ) -> RunReport {
        let seconds = elapsed.as_secs_f64().max(f64::EPSILON);
        let by_kind = OpKind::ALL
            .into_iter()
            .map(|kind| {
                let tally = recorder.kind(kind);
                let report = KindReport {
                    share_percent: mix.share(kind),
                    count: tally.total(),
                    ok: tally.ok,
                    declined: tally.declined,
                    errors: tally.errors,
                    latency_us: Percentiles::of(&tally.latency_us),
                };
                (kind.name(), report)
            })
            .collect();
        let timeline = recorder
            .timeline
            .iter()
            .enumerate()
            .map(|(second, tally)| {
                let p = Percentiles::of(&tally.latency_us);
                SecondReport {
                    second: second as u64,
                    payments: tally.payments,
                    ops: tally.ops,
                    errors: tally.errors,
                    p50_us: p.p50,
                    p99_us: p.p99,
                    p999_us: p.p999,
                    max_us: p.max,
                }
            })
            .collect();
        let open_loop = schedule.map(|schedule| {
            let send = &recorder.send;
            let unsent = schedule.scheduled.saturating_sub(send.sent);
            let one_percent = schedule.scheduled / 100;
            OpenLoopReport {
                offered_per_s: schedule.rate_per_s,
                scheduled: schedule.scheduled,
                sent: send.sent,
                late: send.late,
                unsent,
                achieved_per_s: recorder.ops_answered() as f64 / seconds,
                send_lag_us: Percentiles::of(&send.lag_us),
                kept_up: unsent == 0
                    && send.late <= one_percent
                    && recorder.ops_failed() <= one_percent,
            }
        });
        RunReport {
            run,
            mode: if schedule.is_some() { "open" } else { "closed" },
            elapsed_s: elapsed.as_secs_f64(),
            payments_per_s: recorder.payments_answered() as f64 / seconds,
            ops_per_s: recorder.ops_answered() as f64 / seconds,
            payments: PaymentCounts {
                approved: recorder.approved(),
                declined: recorder.payments_declined(),
                errors: recorder.payment_errors(),
            },
            latency_us: Percentiles::of(&recorder.payments_latency_us),
            by_kind,
            errors_by_reason: recorder.errors.clone(),
            error_examples: recorder.error_examples.clone(),
            declines_by_reason: recorder.declines.clone(),
            open_loop,
            audits: None,
            timeline,
        }
    }

    /// The run's lines on stdout. The first keeps the format the harness
    /// always printed (scripts read it).
    pub fn print(&self, mix: &Mix) {
        let run = self.run;
        let p = &self.latency_us;
        println!(
            "run {run}: {:.0} payments/s  ({} approved, {} declined, {} errors in {:.2}s)  latency us p50 {} p99 {} p99.9 {} max {}",
            self.payments_per_s,
            self.payments.approved,
            self.payments.declined,
            self.payments.errors,
            self.elapsed_s,
            p.p50,
            p.p99,
            p.p999,
            p.max,
        );
        if mix.share(OpKind::Pay) != 100 {
            let kinds: Vec<String> = OpKind::ALL
                .into_iter()
                .filter(|kind| mix.share(*kind) > 0)
                .map(|kind| {
                    let k = &self.by_kind[kind.name()];
                    format!(
                        "{} {} (ok {}, declined {}, errors {}; us p50 {} p99 {})",
                        kind.name(),
                        k.count,
                        k.ok,
                        k.declined,
                        k.errors,
                        k.latency_us.p50,
                        k.latency_us.p99
                    )
                })
                .collect();
            println!("run {run}: by kind: {}", kinds.join("; "));
        }
        if let Some(open) = &self.open_loop {
            println!(
                "run {run}: open loop: offered {}/s, achieved {:.0}/s; {} due, {} sent, {} late (no free slot when due), {} never sent; send lag us p50 {} p99 {} max {}",
                open.offered_per_s,
                open.achieved_per_s,
                open.scheduled,
                open.sent,
                open.late,
                open.unsent,
                open.send_lag_us.p50,
                open.send_lag_us.p99,
                open.send_lag_us.max,
            );
            if !open.kept_up {
                println!(
                    "run {run}: the engine did NOT keep up with {}/s: {} requests never sent, {} sent late, {} errors; latencies count from when each request was due",
                    open.offered_per_s,
                    open.unsent,
                    open.late,
                    self.errors_by_reason.values().sum::<u64>()
                );
            }
        }
        if !self.errors_by_reason.is_empty() {
            let errors: Vec<String> = self
                .errors_by_reason
                .iter()
                .map(|(reason, count)| {
                    let example = self.error_examples.get(reason).map_or("", String::as_str);
                    format!("{reason} {count} (first: {example})")
                })
                .collect();
            println!("run {run}: errors: {}", errors.join("; "));
        }
        if !self.declines_by_reason.is_empty() {
            let declines: Vec<String> = self
                .declines_by_reason
                .iter()
                .map(|(reason, count)| format!("{reason} {count}"))
                .collect();
            println!("run {run}: declines: {}", declines.join(", "));
        }
        if let Some(audits) = &self.audits {
            println!(
                "run {run}: {} audits during the run, {} not ok; audit took ms p50 {} max {}",
                audits.done, audits.not_ok, audits.latency_ms_p50, audits.latency_ms_max
            );
        }
    }
}

/// The median; the mean of the middle two for an even count; 0 for none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

pub fn print_group_commit(shards: &[ShardStats]) {
    for shard in shards {
        println!(
            "shard {}: {} cards in {} KiB, {} group commits, {} ops, batch ops p50 {} p99 {} max {}, sync us p50 {} p99 {}",
            shard.shard,
            shard.cards,
            shard.card_map_bytes / 1024,
            shard.batches,
            shard.ops,
            shard.batch_ops_p50,
            shard.batch_ops_p99,
            shard.batch_ops_max,
            shard.sync_us_p50,
            shard.sync_us_p99
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
