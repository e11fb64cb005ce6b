//! `--audit-every-ms`: audits back to back during a run, as the operator,
//! to measure what an audit costs the payments running beside it.

use crate::report::AuditsDuringRun;
use hdrhistogram::Histogram;
use kessai::client::Client;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Audits back to back during a run, `every_ms` apart.
pub struct Auditor {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(u64, u64, Histogram<u64>)>,
}

impl Auditor {
    pub fn start(operator: Arc<Client>, every_ms: u64) -> Auditor {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let (mut done, mut not_ok) = (0, 0);
            let mut latency_us =
                Histogram::new_with_bounds(1, 600_000_000, 3).expect("static bounds");
            while !stopped.load(Ordering::Relaxed) {
                let sent = Instant::now();
                match operator.audit().await {
                    Ok(audit) if audit.ok => {}
                    Ok(audit) => {
                        not_ok += 1;
                        eprintln!("audit not ok: {:?}", audit.problems);
                    }
                    Err(error) => {
                        not_ok += 1;
                        eprintln!("audit failed: {error}");
                    }
                }
                done += 1;
                latency_us.saturating_record(sent.elapsed().as_micros() as u64);
                tokio::time::sleep(Duration::from_millis(every_ms)).await;
            }
            (done, not_ok, latency_us)
        });
        Auditor { stop, task }
    }

    pub async fn stop(self) -> AuditsDuringRun {
        self.stop.store(true, Ordering::Relaxed);
        match self.task.await {
            Ok((done, not_ok, latency_us)) => AuditsDuringRun {
                done,
                not_ok,
                latency_ms_p50: latency_us.value_at_quantile(0.5) / 1000,
                latency_ms_max: latency_us.max() / 1000,
            },
            // The auditor's task died: count that as an audit not ok.
            Err(error) => {
                eprintln!("kessai-load: the auditor stopped: {error}");
                AuditsDuringRun {
                    done: 0,
                    not_ok: 1,
                    latency_ms_p50: 0,
                    latency_ms_max: 0,
                }
            }
        }
    }
}
