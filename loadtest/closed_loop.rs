//! Closed loop (the default): every connection keeps `pipeline` requests in
//! flight, each lane sending its next request as soon as the previous one
//! is answered. It finds the engine's peak throughput, but it hides
//! queueing: when the engine stalls, the lanes stop sending, so the stall
//! shows in one slow request per lane instead of in every request that a
//! real client would have sent meanwhile. `open_loop` measures that.

use crate::progress::{self, lock};
use crate::record::Recorder;
use crate::rss;
use crate::workload::Workload;
use indicatif::ProgressBar;
use kessai::client::Client;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs the load for `duration`; returns what it measured and how long it
/// took (the lanes' last answers included).
pub async fn run(
    clients: &[Arc<Client>],
    pipeline: usize,
    workload: &Arc<Workload>,
    duration: Duration,
    rss_pid: Option<u32>,
    bar: &ProgressBar,
) -> (Recorder, Duration) {
    let started = Instant::now();
    let end = started + duration;
    let recorder = Arc::new(Mutex::new(Recorder::new(started, duration.as_secs())));
    let mut lanes = Vec::with_capacity(clients.len() * pipeline + 1);
    // Awaited with the lanes, before the recorder is taken.
    lanes.extend(rss::spawn_sampler(
        rss_pid,
        &recorder,
        started,
        duration.as_secs(),
    ));
    for client in clients {
        for _ in 0..pipeline {
            let (client, workload, recorder) = (client.clone(), workload.clone(), recorder.clone());
            lanes.push(tokio::spawn(async move {
                let mut chosen = Vec::with_capacity(2);
                while Instant::now() < end {
                    let sent = Instant::now();
                    let (kind, outcome) = workload.one(&client, &mut chosen).await;
                    let done = Instant::now();
                    let latency_us = done.duration_since(sent).as_micros() as u64;
                    let lost = outcome.connection_lost();
                    lock(&recorder).record(kind, outcome, latency_us, done);
                    if lost {
                        break;
                    }
                }
            }));
        }
    }
    progress::watch(bar, &recorder, started, end, "").await;
    progress::collect(lanes, &recorder, started).await
}
