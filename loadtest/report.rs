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

use crate::flood::FloodLoad;
use crate::mix::{Mix, OpKind};
use crate::open_loop::Schedule;
use crate::record::{Recorder, SecondTally};
use crate::soak::SoakVerdict;
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
    /// `--soak`: the verdict on the run (soak.rs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soak: Option<SoakVerdict>,
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
    /// `--flood`: the second merchant's load.
    pub flood: Option<FloodLoad>,
    /// `--jetstream-url`: the spawned engine's log on NATS JetStream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jetstream_url: Option<String>,
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
    /// With `--flood`: each run's quiet and flooded phases, and the ratio.
    pub flood: Option<FloodReport>,
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

#[derive(Debug, Clone, Serialize)]
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
    /// The sampled process's resident set, KiB, sampled once in this
    /// second (rss.rs); `None` when nothing was sampled.
    pub rss_kib: Option<u64>,
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
        let open_loop = schedule.map(|schedule| OpenLoopReport::new(schedule, recorder, seconds));
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
            by_kind: KindReport::each(recorder, mix),
            errors_by_reason: recorder.errors.clone(),
            error_examples: recorder.error_examples.clone(),
            declines_by_reason: recorder.declines.clone(),
            open_loop,
            audits: None,
            timeline: SecondReport::timeline(recorder),
        }
    }

    /// The run's lines on stdout. The first keeps the format the harness
    /// always printed (scripts read it).
    pub fn print(&self, mix: &Mix) {
        self.print_as(&format!("run {}", self.run), mix);
    }

    /// The same lines, each starting `label:` instead of `run N:` (a phase
    /// of a `--flood` run says which).
    pub fn print_as(&self, run: &str, mix: &Mix) {
        let p = &self.latency_us;
        println!(
            "{run}: {:.0} payments/s  ({} approved, {} declined, {} errors in {:.2}s)  latency us p50 {} p99 {} p99.9 {} max {}",
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
            self.print_kinds(run, mix);
        }
        if let Some(open) = &self.open_loop {
            self.print_open_loop(run, open);
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
            println!("{run}: errors: {}", errors.join("; "));
        }
        if !self.declines_by_reason.is_empty() {
            let declines: Vec<String> = self
                .declines_by_reason
                .iter()
                .map(|(reason, count)| format!("{reason} {count}"))
                .collect();
            println!("{run}: declines: {}", declines.join(", "));
        }
        if let Some(audits) = &self.audits {
            println!(
                "{run}: {} audits during the run, {} not ok; audit took ms p50 {} max {}",
                audits.done, audits.not_ok, audits.latency_ms_p50, audits.latency_ms_max
            );
        }
    }

    /// The `by kind:` line: each kind of the mix.
    fn print_kinds(&self, run: &str, mix: &Mix) {
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
        println!("{run}: by kind: {}", kinds.join("; "));
    }

    /// The `open loop:` line, and a warning if the engine did not keep up.
    fn print_open_loop(&self, run: &str, open: &OpenLoopReport) {
        println!(
            "{run}: open loop: offered {}/s, achieved {:.0}/s; {} due, {} sent, {} late (no free slot when due), {} never sent; send lag us p50 {} p99 {} max {}",
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
                "{run}: the engine did NOT keep up with {}/s: {} requests never sent, {} sent late, {} errors; latencies count from when each request was due",
                open.offered_per_s,
                open.unsent,
                open.late,
                self.errors_by_reason.values().sum::<u64>()
            );
        }
    }
}

impl KindReport {
    /// Every kind's, by name, also those with share 0.
    fn each(recorder: &Recorder, mix: &Mix) -> BTreeMap<&'static str, KindReport> {
        OpKind::ALL
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
            .collect()
    }
}

impl SecondReport {
    /// The run's seconds, in order.
    fn timeline(recorder: &Recorder) -> Vec<SecondReport> {
        // Every second of the window, answered in or not: a stall at the
        // end shows as seconds of nothing, not as a shorter run.
        let whole_window = recorder.timeline.len().max(recorder.window_s() as usize);
        (0..whole_window)
            .map(|second| {
                let tally = recorder.timeline.get(second);
                let p = tally.map(SecondTally::latency_us).unwrap_or_default();
                SecondReport {
                    second: second as u64,
                    payments: tally.map_or(0, |t| t.payments),
                    ops: tally.map_or(0, |t| t.ops),
                    errors: tally.map_or(0, |t| t.errors),
                    p50_us: p.p50,
                    p99_us: p.p99,
                    p999_us: p.p999,
                    max_us: p.max,
                    rss_kib: tally.and_then(|t| t.rss_kib),
                }
            })
            .collect()
    }
}

impl OpenLoopReport {
    /// `schedule` against what `recorder` saw in `seconds` of load.
    fn new(schedule: Schedule, recorder: &Recorder, seconds: f64) -> OpenLoopReport {
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
    }
}

/// `--flood`: the honest load alone and beside a flooding merchant, run
/// by run. The quiet phases' whole run reports are the engine's `runs` (as
/// without `--flood`, so the headline medians are the honest load alone);
/// the flooded phases' are `runs_under_flood`, in the same order.
#[derive(Debug, Serialize)]
pub struct FloodReport {
    /// The flooding merchant's own cards (as many as the honest one's).
    pub cards: usize,
    pub runs: Vec<FloodRunReport>,
    pub runs_under_flood: Vec<RunReport>,
    pub median: FloodMedians,
}

/// One run: the honest load alone, then the same load beside the flood.
#[derive(Debug, Serialize)]
pub struct FloodRunReport {
    pub run: usize,
    pub quiet: PhaseReport,
    pub flood: PhaseReport,
    pub flooder: FlooderReport,
    /// `flood.latency_us.p99 / quiet.latency_us.p99`: what the flood did to
    /// the honest merchant's p99 (the goal of issue #19: at most 2). None
    /// when a phase had no payment answered.
    pub p99_ratio: Option<f64>,
}

/// The honest merchant's figures in one phase.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PhaseReport {
    /// Payments answered (approved or declined) per second.
    pub payments_per_s: f64,
    pub approved: u64,
    pub declined: u64,
    /// Requests answered `busy`.
    pub busy: u64,
    /// Requests that failed otherwise (by reason in the phase's run report).
    pub errors: u64,
    /// Answered payments.
    pub latency_us: Percentiles,
}

impl PhaseReport {
    pub fn of(run: &RunReport) -> PhaseReport {
        let busy = run.errors_by_reason.get("busy").copied().unwrap_or(0);
        let failed: u64 = run.errors_by_reason.values().sum();
        PhaseReport {
            payments_per_s: run.payments_per_s,
            approved: run.payments.approved,
            declined: run.payments.declined,
            busy,
            errors: failed - busy,
            latency_us: run.latency_us,
        }
    }
}

/// The flooding merchant in one flooded phase. Its counts run from its
/// start (`lead_s` before the honest phase) to its last answer.
#[derive(Debug, Serialize)]
pub struct FlooderReport {
    /// How long it ran before the honest phase started: until it had turned
    /// over one whole pipeline, so it was at full pipeline.
    pub lead_s: f64,
    /// From its start to its last answer.
    pub elapsed_s: f64,
    /// Payments answered (approved or declined) per second during the
    /// honest phase.
    pub payments_per_s: f64,
    pub approved: u64,
    pub declined: u64,
    /// Payments answered `busy` (each sent again at once: it never backs
    /// off).
    pub busy: u64,
    /// Payments that failed otherwise.
    pub errors: u64,
    pub errors_by_reason: BTreeMap<&'static str, u64>,
    pub error_examples: BTreeMap<&'static str, String>,
}

/// Medians over the runs, each figure on its own.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FloodMedians {
    pub quiet: PhaseMedians,
    pub flood: PhaseMedians,
    pub flooder_payments_per_s: f64,
    pub flooder_busy: u64,
    /// The median of the runs' ratios (not the ratio of the medians).
    pub p99_ratio: Option<f64>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct PhaseMedians {
    pub payments_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub busy: u64,
    pub errors: u64,
}

impl PhaseMedians {
    fn of<'a>(phases: impl Iterator<Item = &'a PhaseReport> + Clone) -> PhaseMedians {
        let of = |figure: fn(&PhaseReport) -> f64| {
            median(&phases.clone().map(figure).collect::<Vec<_>>())
        };
        let whole = |figure: fn(&PhaseReport) -> f64| of(figure).round() as u64;
        PhaseMedians {
            payments_per_s: of(|p| p.payments_per_s),
            p50_us: whole(|p| p.latency_us.p50 as f64),
            p99_us: whole(|p| p.latency_us.p99 as f64),
            p999_us: whole(|p| p.latency_us.p999 as f64),
            max_us: whole(|p| p.latency_us.max as f64),
            busy: whole(|p| p.busy as f64),
            errors: whole(|p| p.errors as f64),
        }
    }
}

impl FloodRunReport {
    pub fn new(run: usize, quiet: &RunReport, flood: &RunReport, flooder: FlooderReport) -> Self {
        let (quiet, flood) = (PhaseReport::of(quiet), PhaseReport::of(flood));
        let answered = quiet.latency_us.count > 0 && flood.latency_us.count > 0;
        FloodRunReport {
            run,
            quiet,
            flood,
            flooder,
            p99_ratio: answered.then(|| flood.latency_us.p99 as f64 / quiet.latency_us.p99 as f64),
        }
    }

    /// The run's flooder and ratio lines, after its two phases' lines.
    pub fn print(&self) {
        let (run, f) = (self.run, &self.flooder);
        println!(
            "run {run} flood: flooder {:.0} payments/s during the phase ({} approved, {} declined, {} busy, {} errors in {:.2}s, {:.2}s of it before the phase)",
            f.payments_per_s, f.approved, f.declined, f.busy, f.errors, f.elapsed_s, f.lead_s
        );
        if !f.errors_by_reason.is_empty() {
            let errors: Vec<String> = f
                .errors_by_reason
                .iter()
                .map(|(reason, count)| {
                    let example = f.error_examples.get(reason).map_or("", String::as_str);
                    format!("{reason} {count} (first: {example})")
                })
                .collect();
            println!("run {run} flood: flooder errors: {}", errors.join("; "));
        }
        println!(
            "run {run}: honest p99 beside the flood / alone: {} us / {} us = {}",
            self.flood.latency_us.p99,
            self.quiet.latency_us.p99,
            ratio(self.p99_ratio)
        );
    }
}

impl FloodReport {
    pub fn new(cards: usize, runs: Vec<FloodRunReport>, runs_under_flood: Vec<RunReport>) -> Self {
        let ratios: Vec<f64> = runs.iter().filter_map(|r| r.p99_ratio).collect();
        let median = FloodMedians {
            quiet: PhaseMedians::of(runs.iter().map(|r| &r.quiet)),
            flood: PhaseMedians::of(runs.iter().map(|r| &r.flood)),
            flooder_payments_per_s: median(
                &runs
                    .iter()
                    .map(|r| r.flooder.payments_per_s)
                    .collect::<Vec<_>>(),
            ),
            flooder_busy: median(
                &runs
                    .iter()
                    .map(|r| r.flooder.busy as f64)
                    .collect::<Vec<_>>(),
            )
            .round() as u64,
            p99_ratio: (!ratios.is_empty()).then(|| median(&ratios)),
        };
        FloodReport {
            cards,
            runs,
            runs_under_flood,
            median,
        }
    }

    /// The closing block: both phases of every run, the medians, the ratio.
    /// `honest` and `flood` describe the two loads.
    pub fn print(&self, honest: &str, flood: &str) {
        println!(
            "fairness: honest merchant {honest}, alone (quiet) and beside a second merchant flooding with {flood} (flood)"
        );
        println!(
            "{:<6}  {:<5}  {:>10}  {:>8}  {:>8}  {:>8}  {:>8}  {:>6}  {:>6}  {:>10}  {:>9}  {:>9}",
            "run",
            "phase",
            "payments/s",
            "p50 us",
            "p99 us",
            "p99.9 us",
            "max us",
            "busy",
            "errors",
            "flooder/s",
            "fl. busy",
            "p99 ratio"
        );
        let row = |run: &str,
                   phase: &str,
                   p: &PhaseMedians,
                   flooder: Option<(f64, u64, String)>| {
            let (rate, busy, ratio) = flooder.map_or(
                (String::new(), String::new(), String::new()),
                |(rate, busy, ratio)| (format!("{rate:.0}"), busy.to_string(), ratio),
            );
            let line = format!(
                "{run:<6}  {phase:<5}  {:>10.0}  {:>8}  {:>8}  {:>8}  {:>8}  {:>6}  {:>6}  {rate:>10}  {busy:>9}  {ratio:>9}",
                p.payments_per_s, p.p50_us, p.p99_us, p.p999_us, p.max_us, p.busy, p.errors
            );
            println!("{}", line.trim_end());
        };
        for r in &self.runs {
            let run = r.run.to_string();
            row(
                &run,
                "quiet",
                &PhaseMedians::of(std::iter::once(&r.quiet)),
                None,
            );
            let flooder = (r.flooder.payments_per_s, r.flooder.busy, ratio(r.p99_ratio));
            row(
                &run,
                "flood",
                &PhaseMedians::of(std::iter::once(&r.flood)),
                Some(flooder),
            );
        }
        let m = &self.median;
        row("median", "quiet", &m.quiet, None);
        let flooder = (m.flooder_payments_per_s, m.flooder_busy, ratio(m.p99_ratio));
        row("median", "flood", &m.flood, Some(flooder));
        println!(
            "flood p99 / quiet p99: {} (median of {} run(s); the goal is at most 2)",
            ratio(m.p99_ratio),
            self.runs.len()
        );
    }
}

fn ratio(value: Option<f64>) -> String {
    value.map_or("n/a".to_string(), |r| format!("{r:.2}"))
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

    use crate::record::Outcome;
    use kessai::client::ClientError;
    use kessai::protocol::{ErrorCode, ErrorResponse};
    use std::time::Instant;

    /// A run of `approved` payments answered in `latency_us` each, and
    /// `busy` and `closed` failures.
    fn run(approved: u64, latency_us: u64, busy: u64, closed: u64) -> RunReport {
        let start = Instant::now();
        let mut recorder = Recorder::new(start, 1);
        for _ in 0..approved {
            recorder.record(OpKind::Pay, Outcome::Approved, latency_us, start);
        }
        let full = ClientError::Server(ErrorResponse::new(ErrorCode::Busy, "full"));
        for (count, error) in [(busy, full), (closed, ClientError::Closed)] {
            for _ in 0..count {
                recorder.record(OpKind::Pay, Outcome::failed(&error), 5, start);
            }
        }
        RunReport::new(1, &recorder, Duration::from_secs(1), &Mix::default(), None)
    }

    fn flooder(payments_per_s: f64, busy: u64) -> FlooderReport {
        FlooderReport {
            lead_s: 0.5,
            elapsed_s: 1.5,
            payments_per_s,
            approved: 0,
            declined: 0,
            busy,
            errors: 0,
            errors_by_reason: BTreeMap::new(),
            error_examples: BTreeMap::new(),
        }
    }

    #[test]
    fn a_flood_report_has_each_runs_ratio_and_the_median_of_them() {
        // Latencies under 2048 us, which the histograms keep exactly.
        let quiet = run(10, 500, 0, 0);
        let floods = [run(5, 1500, 2, 1), run(5, 1000, 0, 0), run(0, 0, 4, 0)];
        let runs: Vec<FloodRunReport> = floods
            .iter()
            .enumerate()
            .map(|(i, flood)| FloodRunReport::new(i + 1, &quiet, flood, flooder(100.0, 7)))
            .collect();
        // `busy` apart from the other errors, so the two add up.
        assert_eq!((runs[0].flood.busy, runs[0].flood.errors), (2, 1));
        assert_eq!(runs[0].flood.approved, 5);
        assert_eq!(runs[0].p99_ratio, Some(3.0));
        assert_eq!(runs[1].p99_ratio, Some(2.0));
        // Nothing answered beside the flood: no ratio to give.
        assert_eq!(runs[2].p99_ratio, None);

        let report = FloodReport::new(200, runs, floods.into());
        let median = report.median;
        assert_eq!(median.p99_ratio, Some(2.5), "of the runs that have one");
        assert_eq!((median.quiet.p99_us, median.flood.p99_us), (500, 1000));
        assert_eq!((median.flood.busy, median.flooder_busy), (2, 7));
        assert_eq!(median.flooder_payments_per_s, 100.0);
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
