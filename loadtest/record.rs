//! What one run measured: per kind of operation, counts and latencies; a
//! per-second timeline of payments; errors and declines by reason; in
//! open-loop mode, how late requests went out.
//!
//! Every lane of a run records into one `Recorder` behind a mutex. One
//! lock per answered request costs far less than the client call it
//! measures (which already takes a lock and a channel hop), and it keeps a
//! single set of histograms: a set per lane, at 3 significant figures,
//! would take about 140 KiB per histogram times hundreds of lanes.

use crate::mix::OpKind;
use hdrhistogram::Histogram;
use kessai::client::ClientError;
use std::collections::BTreeMap;
use std::time::Instant;

/// Latencies above this (µs) are recorded as this: a minute is already a
/// stalled engine, and a bound keeps the histograms small.
pub const LATENCY_US_MAX: u64 = 60_000_000;

pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("static bounds")
}

/// The timeline's histograms: one per second of the run, so 2 significant
/// figures (1%, plenty for a chart) keep each to about 20 KiB.
fn second_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 2).expect("static bounds")
}

/// How one operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A payment the engine approved.
    Approved,
    /// A payment the engine declined, by reason.
    Declined(&'static str),
    /// A balance check the engine answered.
    Answered,
    /// No answer: an error frame (by code name) or a broken connection.
    Failed {
        reason: &'static str,
        message: String,
    },
}

impl Outcome {
    pub fn failed(error: &ClientError) -> Outcome {
        let reason = match error {
            ClientError::Server(_) => error.server_code().map_or("unknown_code", |c| c.name()),
            ClientError::Io(_) => "io",
            ClientError::Closed => "closed",
            ClientError::Unexpected(_) => "unexpected_answer",
        };
        Outcome::Failed {
            reason,
            message: error.to_string(),
        }
    }

    /// The connection is gone: the client does not reconnect, so every
    /// later request on it would fail at once. A lane stops there rather
    /// than spin through failures until the run ends.
    pub fn connection_lost(&self) -> bool {
        matches!(self, Outcome::Failed { reason, .. } if *reason == "closed" || *reason == "io")
    }
}

/// One kind's tally.
pub struct KindTally {
    /// Approved payments, or answered balance checks.
    pub ok: u64,
    pub declined: u64,
    pub errors: u64,
    /// From send (closed loop) or from when it was due (open loop) to the
    /// answer; answered operations only (a dead connection fails requests
    /// in microseconds, which says nothing of the engine's latency).
    pub latency_us: Histogram<u64>,
}

impl KindTally {
    fn new() -> KindTally {
        KindTally {
            ok: 0,
            declined: 0,
            errors: 0,
            latency_us: latency_histogram(),
        }
    }

    pub fn answered(&self) -> u64 {
        self.ok + self.declined
    }

    pub fn total(&self) -> u64 {
        self.ok + self.declined + self.errors
    }
}

/// Seconds of the timeline that keep a latency histogram: the current one
/// and the one before. A lane takes its answer's time before it takes the
/// recorder's lock, so an answer can land just after the next second has
/// begun; one second of grace covers that.
const OPEN_SECONDS: usize = 2;

/// One second of the run, by completion time.
pub struct SecondTally {
    /// Payments answered (approved or declined).
    pub payments: u64,
    /// Operations of every kind answered.
    pub ops: u64,
    pub errors: u64,
    /// The resident set of the process sampled (`--spawn`: this one,
    /// engine and load generator both; `--engine-pid`: the engine's), KiB,
    /// sampled once in this second; `None` when not sampled.
    pub rss_kib: Option<u64>,
    latency_us: SecondLatency,
}

/// A second's payment latency: a histogram while the second is recent,
/// only its percentiles once it is over. A histogram per second would be
/// about 20 KiB a second, 36 MiB over a half-hour soak, in the process
/// whose RSS the soak says must stay flat.
enum SecondLatency {
    Open(Histogram<u64>),
    Closed(SecondLatencyUs),
}

/// The percentiles of one second's payment latencies, µs (0 when none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SecondLatencyUs {
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl SecondLatencyUs {
    fn of(histogram: &Histogram<u64>) -> SecondLatencyUs {
        if histogram.is_empty() {
            return SecondLatencyUs::default();
        }
        SecondLatencyUs {
            p50: histogram.value_at_quantile(0.5),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        }
    }
}

impl SecondTally {
    pub fn latency_us(&self) -> SecondLatencyUs {
        match &self.latency_us {
            SecondLatency::Open(histogram) => SecondLatencyUs::of(histogram),
            SecondLatency::Closed(summary) => *summary,
        }
    }
}

/// Open-loop only: when requests went out against when they were due.
pub struct SendTally {
    pub sent: u64,
    /// Requests whose time came while every slot was busy: they went out
    /// late, and their latency counts from when they were due.
    pub late: u64,
    /// Sent time minus scheduled time, every request (timer slack too).
    pub lag_us: Histogram<u64>,
}

pub struct Recorder {
    started: Instant,
    /// Seconds of load; answers after that (the tail of a run draining)
    /// count in the totals but not in the timeline.
    window_s: u64,
    pub kinds: [KindTally; 3],
    /// Both kinds of payment together, answered ones: the headline
    /// percentiles.
    pub payments_latency_us: Histogram<u64>,
    pub errors: BTreeMap<&'static str, u64>,
    /// The first message seen for each error reason, to tell what it was.
    pub error_examples: BTreeMap<&'static str, String>,
    pub declines: BTreeMap<&'static str, u64>,
    /// One entry per second of the window, up to the latest touched;
    /// seconds before `timeline_open_from` keep only their percentiles.
    pub timeline: Vec<SecondTally>,
    timeline_open_from: usize,
    /// A closed second's histogram, emptied, for the next second to use
    /// (the timeline allocates three histograms per run, not one a second).
    spare_histogram: Option<Histogram<u64>>,
    pub send: SendTally,
}

impl Recorder {
    pub fn new(started: Instant, window_s: u64) -> Recorder {
        Recorder {
            started,
            window_s,
            kinds: [KindTally::new(), KindTally::new(), KindTally::new()],
            payments_latency_us: latency_histogram(),
            errors: BTreeMap::new(),
            error_examples: BTreeMap::new(),
            declines: BTreeMap::new(),
            timeline: Vec::new(),
            timeline_open_from: 0,
            spare_histogram: None,
            send: SendTally {
                sent: 0,
                late: 0,
                lag_us: latency_histogram(),
            },
        }
    }

    /// Records one answered (or failed) operation that ended at `done`.
    pub fn record(&mut self, kind: OpKind, outcome: Outcome, latency_us: u64, done: Instant) {
        let tally = &mut self.kinds[kind.index()];
        let failed = matches!(outcome, Outcome::Failed { .. });
        if !failed {
            tally.latency_us.saturating_record(latency_us.max(1));
        }
        match outcome {
            Outcome::Approved | Outcome::Answered => tally.ok += 1,
            Outcome::Declined(reason) => {
                tally.declined += 1;
                *self.declines.entry(reason).or_default() += 1;
            }
            Outcome::Failed { reason, message } => {
                tally.errors += 1;
                *self.errors.entry(reason).or_default() += 1;
                self.error_examples.entry(reason).or_insert(message);
            }
        }
        if kind.is_payment() && !failed {
            self.payments_latency_us
                .saturating_record(latency_us.max(1));
        }
        let second = done.saturating_duration_since(self.started).as_secs();
        let Some(slot) = self.second(second) else {
            return;
        };
        if failed {
            slot.errors += 1;
            return;
        }
        slot.ops += 1;
        if kind.is_payment() {
            slot.payments += 1;
            // An answer for a second already closed (its lane was held
            // off the lock for over a second) is counted, and timed in the
            // run's totals, not in that second's percentiles.
            if let SecondLatency::Open(histogram) = &mut slot.latency_us {
                histogram.saturating_record(latency_us.max(1));
            }
        }
    }

    /// Records the sampled process's RSS (KiB) in `second` of the window.
    pub fn record_rss(&mut self, second: u64, rss_kib: u64) {
        if let Some(slot) = self.second(second) {
            slot.rss_kib = Some(rss_kib);
        }
    }

    /// Seconds of load this recorder's timeline covers.
    pub fn window_s(&self) -> u64 {
        self.window_s
    }

    /// The timeline's entry for `second`, added (with those before it) if
    /// new; `None` past the window. Closes the seconds that fell out of the
    /// last [`OPEN_SECONDS`].
    fn second(&mut self, second: u64) -> Option<&mut SecondTally> {
        if second >= self.window_s {
            return None;
        }
        let second = second as usize;
        while self.timeline.len() <= second {
            let histogram = self.spare_histogram.take().unwrap_or_else(second_histogram);
            self.timeline.push(SecondTally {
                payments: 0,
                ops: 0,
                errors: 0,
                rss_kib: None,
                latency_us: SecondLatency::Open(histogram),
            });
        }
        while self.timeline_open_from + OPEN_SECONDS <= second {
            let slot = &mut self.timeline[self.timeline_open_from];
            let summary = SecondLatency::Closed(slot.latency_us());
            if let SecondLatency::Open(mut histogram) =
                std::mem::replace(&mut slot.latency_us, summary)
            {
                histogram.reset();
                self.spare_histogram = Some(histogram);
            }
            self.timeline_open_from += 1;
        }
        Some(&mut self.timeline[second])
    }

    /// Open loop: a request went out `lag_us` after it was due; `late` if
    /// no slot was free when it was due.
    pub fn record_send(&mut self, lag_us: u64, late: bool) {
        self.send.sent += 1;
        self.send.late += u64::from(late);
        self.send.lag_us.saturating_record(lag_us.max(1));
    }

    /// Payments answered so far (for the progress bar).
    pub fn payments_answered(&self) -> u64 {
        self.kind(OpKind::Pay).answered() + self.kind(OpKind::Pay2).answered()
    }

    pub fn kind(&self, kind: OpKind) -> &KindTally {
        &self.kinds[kind.index()]
    }

    pub fn approved(&self) -> u64 {
        self.kind(OpKind::Pay).ok + self.kind(OpKind::Pay2).ok
    }

    pub fn payment_errors(&self) -> u64 {
        self.kind(OpKind::Pay).errors + self.kind(OpKind::Pay2).errors
    }

    pub fn payments_declined(&self) -> u64 {
        self.kind(OpKind::Pay).declined + self.kind(OpKind::Pay2).declined
    }

    /// Operations of every kind answered (errors excluded).
    pub fn ops_answered(&self) -> u64 {
        self.kinds.iter().map(KindTally::answered).sum()
    }

    pub fn ops_failed(&self) -> u64 {
        self.kinds.iter().map(|k| k.errors).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_timeline_holds_the_window_and_the_totals_hold_everything() {
        let start = Instant::now();
        let mut recorder = Recorder::new(start, 2);
        let at = |ms| start + Duration::from_millis(ms);
        recorder.record(OpKind::Pay, Outcome::Approved, 900, at(100));
        recorder.record(OpKind::Pay2, Outcome::Declined("exhausted"), 1100, at(1500));
        recorder.record(OpKind::Balance, Outcome::Answered, 50, at(1600));
        // The tail, after the 2 s window: counted, not in the timeline.
        recorder.record(OpKind::Pay, Outcome::Approved, 3000, at(2100));
        let error = ClientError::Closed;
        recorder.record(OpKind::Pay, Outcome::failed(&error), 10, at(200));

        assert_eq!(recorder.payments_answered(), 3);
        assert_eq!(recorder.approved(), 2);
        assert_eq!(recorder.payments_declined(), 1);
        assert_eq!(recorder.payment_errors(), 1);
        assert_eq!(recorder.ops_answered(), 4);
        assert_eq!(recorder.errors.get("closed"), Some(&1));
        assert_eq!(recorder.declines.get("exhausted"), Some(&1));
        // Latency of answers only: the failure is counted, not timed.
        assert_eq!(recorder.payments_latency_us.len(), 3);
        assert!(Outcome::failed(&error).connection_lost());
        assert!(!Outcome::Declined("exhausted").connection_lost());
        assert_eq!(recorder.timeline.len(), 2);
        assert_eq!(
            (recorder.timeline[0].payments, recorder.timeline[0].errors),
            (1, 1)
        );
        assert_eq!(
            (recorder.timeline[1].payments, recorder.timeline[1].ops),
            (1, 2)
        );
    }

    #[test]
    fn past_seconds_keep_their_percentiles_and_drop_their_histograms() {
        let start = Instant::now();
        let mut recorder = Recorder::new(start, 10);
        let at = |ms| start + Duration::from_millis(ms);
        // Under 256 us, which a second's histogram (2 figures) keeps exactly.
        recorder.record(OpKind::Pay, Outcome::Approved, 100, at(100));
        recorder.record(OpKind::Pay, Outcome::Approved, 200, at(900));
        recorder.record_rss(0, 4096);
        recorder.record(OpKind::Pay, Outcome::Approved, 50, at(3500));
        assert!(matches!(
            recorder.timeline[0].latency_us,
            SecondLatency::Closed(_)
        ));
        assert!(matches!(
            recorder.timeline[2].latency_us,
            SecondLatency::Open(_)
        ));
        let first = recorder.timeline[0].latency_us();
        assert_eq!((first.p50, first.max), (100, 200));
        assert_eq!(recorder.timeline[0].rss_kib, Some(4096));
        assert_eq!(recorder.timeline[1].rss_kib, None);
        // Late for second 0 (closed): counted there, timed in the totals.
        recorder.record(OpKind::Pay, Outcome::Approved, 250, at(999));
        assert_eq!(recorder.timeline[0].payments, 3);
        assert_eq!(recorder.timeline[0].latency_us().max, 200);
        assert_eq!(recorder.payments_latency_us.max(), 250);
        // Past the window: neither counted in the timeline nor sampled.
        recorder.record_rss(10, 1);
        assert_eq!(recorder.timeline.len(), 4);
    }
}
