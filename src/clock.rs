//! The engine's clock, read only by drivers (shard actors, coordinators):
//! the state machines take the time as an argument, so the simulation runs
//! them on a clock of its own.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, UTC. A clock set before 1970 reads
/// 0 (every window then counts as just opened or long closed, never a
/// panic).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}
