//! The resident set size (RSS) of a process, sampled once a second during
//! a run into the run's timeline (`rss_kib` of each second), for the plot
//! and for `--soak`'s "RSS flat after warm-up".
//!
//! With `--spawn` the engine runs in the harness's own process, so the
//! figure is engine and load generator together; the generator's share is
//! kept flat (its per-second timeline keeps no histogram once a second is
//! over, record.rs), so a rise is the engine's. With `--addr`,
//! `--engine-pid` names the engine's process. Linux only (`/proc`);
//! elsewhere nothing is sampled.

use crate::progress::lock;
use crate::record::Recorder;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// `pid`'s resident set, KiB, from `/proc/<pid>/status`; `None` if the
/// process is gone or this is not Linux.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    vm_rss_kib(&status)
}

/// The `VmRSS:` line of a `/proc/<pid>/status` text, KiB.
fn vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

/// Samples `pid`'s RSS into `recorder` in each second of a run that
/// started at `started` and lasts `window_s` seconds, half-way through the
/// second (where the plot draws it). The task ends after the window's last
/// sample, or at the first failed read (the process is gone); the caller
/// awaits it before it takes the recorder. `None` without a pid.
pub fn spawn_sampler(
    pid: Option<u32>,
    recorder: &Arc<Mutex<Recorder>>,
    started: Instant,
    window_s: u64,
) -> Option<JoinHandle<()>> {
    let (pid, recorder) = (pid?, recorder.clone());
    Some(tokio::spawn(async move {
        for second in 0..window_s {
            let at = started + Duration::from_secs(second) + Duration::from_millis(500);
            tokio::time::sleep_until(at.into()).await;
            let Some(kib) = rss_kib(pid) else {
                return;
            };
            lock(&recorder).record_rss(second, kib);
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_kib() {
        let status = "Name:\tkessai\nVmPeak:\t  900000 kB\nVmRSS:\t  123456 kB\nThreads:\t9\n";
        assert_eq!(vm_rss_kib(status), Some(123_456));
        assert_eq!(
            vm_rss_kib("Name:\tkthreadd\n"),
            None,
            "kernel threads have none"
        );
        assert_eq!(vm_rss_kib("VmRSS:\t12 MB\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_a_resident_set() {
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
    }
}
