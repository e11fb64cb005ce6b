//! Open loop (`--rate R`): requests are due at fixed times, R per second in
//! total, whatever the engine does. Request k (counting over the whole
//! run) is due at `k / R` seconds and goes out on connection `k mod C`, so
//! each connection carries R/C per second, evenly interleaved.
//!
//! Latency counts from when a request was *due*, not from when it went out:
//! a request that waited for a free slot because the engine was slow waited
//! just as a merchant's terminal would have, and a closed loop would have
//! hidden that wait (coordinated omission). (A request the timer let out
//! slightly early counts from when it went out: see `TIMER_TICK`.)
//!
//! Each connection has `pipeline` lanes (slots). A lane takes the
//! connection's next request, sleeps until it is due, sends it, waits for
//! the answer, and takes the next one. When every lane is busy at a
//! request's time, that request goes out late (counted as `late`); when the
//! run's time is up, requests not yet sent are never sent (`unsent`). Either
//! one means the engine (or the harness) did not keep up with the rate.

use crate::progress::{self, lock};
use crate::record::Recorder;
use crate::rss;
use crate::workload::Workload;
use indicatif::ProgressBar;
use kessai::client::Client;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// tokio's timer ticks in whole milliseconds and wakes a sleeper up to a
/// tick after its deadline. Aiming to wake a tick before the request is due
/// sends it within a millisecond before its time, and its latency then
/// counts from when it went out, so timer slack is neither added to nor
/// taken from the engine's latency.
const TIMER_TICK: Duration = Duration::from_millis(1);

/// Time given to spawning the lanes before the first request is due, so
/// the first ones do not all start late.
const LEAD: Duration = Duration::from_millis(20);

/// The schedule of one run.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub rate_per_s: u64,
    /// Requests due during the run: `rate_per_s * duration_s`.
    pub scheduled: u64,
}

impl Schedule {
    pub fn new(rate_per_s: u64, duration: Duration) -> Schedule {
        Schedule {
            rate_per_s,
            scheduled: rate_per_s.saturating_mul(duration.as_secs()),
        }
    }

    /// When request `k` is due, after the run's start.
    fn due(&self, k: u64) -> Duration {
        let nanos = u128::from(k) * 1_000_000_000 / u128::from(self.rate_per_s);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// Runs the schedule over `clients`; returns what it measured (with the
/// send tally filled in) and how long it took, from the first request's
/// due time to the last answer.
pub async fn run(
    clients: &[Arc<Client>],
    pipeline: usize,
    workload: &Arc<Workload>,
    schedule: Schedule,
    duration: Duration,
    rss_pid: Option<u32>,
    bar: &ProgressBar,
) -> (Recorder, Duration) {
    let started = Instant::now() + LEAD;
    let end = started + duration;
    let recorder = Arc::new(Mutex::new(Recorder::new(started, duration.as_secs())));
    let connections = clients.len() as u64;
    let mut lanes = Vec::with_capacity(clients.len() * pipeline + 1);
    // Awaited with the lanes, before the recorder is taken.
    lanes.extend(rss::spawn_sampler(
        rss_pid,
        &recorder,
        started,
        duration.as_secs(),
    ));
    for (index, client) in clients.iter().enumerate() {
        // The connection's requests are k = j * connections + index, for
        // j = 0, 1, 2...; its lanes take j from this counter.
        let next = Arc::new(AtomicU64::new(0));
        for _ in 0..pipeline {
            let lane = Lane {
                client: client.clone(),
                workload: workload.clone(),
                recorder: recorder.clone(),
                next: next.clone(),
                index: index as u64,
                connections,
                schedule,
                started,
                end,
            };
            lanes.push(tokio::spawn(lane.run()));
        }
    }
    let offered = format!(" (offered {}/s)", schedule.rate_per_s);
    progress::watch(bar, &recorder, started, end, &offered).await;
    progress::collect(lanes, &recorder, started).await
}

/// One lane (slot) of connection `index`.
struct Lane {
    client: Arc<Client>,
    workload: Arc<Workload>,
    recorder: Arc<Mutex<Recorder>>,
    /// The connection's counter of its requests, shared by its lanes.
    next: Arc<AtomicU64>,
    index: u64,
    connections: u64,
    schedule: Schedule,
    started: Instant,
    end: Instant,
}

impl Lane {
    /// Takes the connection's next request, sends it when it is due and
    /// waits for its answer, until the schedule or the run's time is up.
    async fn run(self) {
        let Lane {
            client,
            workload,
            recorder,
            next,
            index,
            connections,
            schedule,
            started,
            end,
        } = self;
        let mut chosen = Vec::with_capacity(2);
        loop {
            let j = next.fetch_add(1, Ordering::Relaxed);
            let k = j.saturating_mul(connections).saturating_add(index);
            let now = Instant::now();
            if k >= schedule.scheduled || now >= end {
                break;
            }
            let due = started + schedule.due(k);
            let late = now > due;
            if !late {
                let wake = due.checked_sub(TIMER_TICK).unwrap_or(due);
                tokio::time::sleep_until(wake.into()).await;
            }
            let sent = Instant::now();
            let (kind, outcome) = workload.one(&client, &mut chosen).await;
            let done = Instant::now();
            // Sent early: the wait is the engine's alone. Sent late:
            // the wait began when the request was due.
            let waited_from = sent.min(due);
            let lag_us = sent.saturating_duration_since(due).as_micros() as u64;
            let latency_us = done.saturating_duration_since(waited_from).as_micros() as u64;
            let lost = outcome.connection_lost();
            let mut recorder = lock(&recorder);
            recorder.record_send(lag_us, late);
            recorder.record(kind, outcome, latency_us, done);
            if lost {
                // The connection's later requests stay unsent.
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_due_evenly_over_the_run() {
        let schedule = Schedule::new(200, Duration::from_secs(2));
        assert_eq!(schedule.scheduled, 400);
        assert_eq!(schedule.due(0), Duration::ZERO);
        assert_eq!(schedule.due(1), Duration::from_millis(5));
        assert_eq!(schedule.due(399), Duration::from_millis(1995));
        // A rate that does not divide a second still lands on the nanosecond.
        assert_eq!(
            Schedule::new(3, Duration::from_secs(1)).due(1),
            Duration::from_nanos(333_333_333)
        );
    }
}
