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

/// One second of the run, by completion time.
pub struct SecondTally {
    /// Payments answered (approved or declined).
    pub payments: u64,
    /// Operations of every kind answered.
    pub ops: u64,
    pub errors: u64,
    /// Latency of the payments answered in this second.
    pub latency_us: Histogram<u64>,
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
    pub timeline: Vec<SecondTally>,
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
        if second >= self.window_s {
            return;
        }
        let second = second as usize;
        while self.timeline.len() <= second {
            self.timeline.push(SecondTally {
                payments: 0,
                ops: 0,
                errors: 0,
                latency_us: second_histogram(),
            });
        }
        let slot = &mut self.timeline[second];
        if failed {
            slot.errors += 1;
            return;
        }
        slot.ops += 1;
        if kind.is_payment() {
            slot.payments += 1;
            slot.latency_us.saturating_record(latency_us.max(1));
        }
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
}
