//! Giving memory back after a burst.
//!
//! Requests in flight are bounded by the byte budgets, but what they held
//! is freed into malloc's arenas, not to the kernel: after a flood of
//! large frames the engine's RSS would stay at its peak long after the
//! connections that caused it have closed. Once a burst is over (the bytes
//! in flight, or the connections open, fell well below the peak since the
//! last time), the engine asks glibc to return its free pages. Not on the
//! hot path: at most once a second, and only after a drop.

use super::slots::Slots;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// A burst smaller than this is not worth a trim.
const BURST_BYTES_MIN: usize = 16 << 20;
const BURST_CONNECTIONS_MIN: usize = 64;
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Runs for as long as the engine does.
pub async fn give_back(inflight: Arc<Semaphore>, inflight_max: usize, slots: Arc<Slots>) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    let (mut peak_bytes, mut peak_connections) = (0usize, 0usize);
    loop {
        tick.tick().await;
        let bytes = inflight_max.saturating_sub(inflight.available_permits());
        let connections = slots.open();
        peak_bytes = peak_bytes.max(bytes);
        peak_connections = peak_connections.max(connections);
        let burst_over = (peak_bytes >= BURST_BYTES_MIN && bytes <= peak_bytes / 4)
            || peak_connections >= connections + BURST_CONNECTIONS_MIN;
        if burst_over {
            trim();
            (peak_bytes, peak_connections) = (bytes, connections);
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks and trims glibc's own arenas; it is
    // thread-safe and takes no pointer of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
