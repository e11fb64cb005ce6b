//! The engine's clock, read only by drivers (shard actors, coordinators):
//! the state machines take the time as an argument, so the simulation runs
//! them on a clock of its own.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Moves the engine's clock forward by this many milliseconds, read once
/// at start. For tests of what happens days later (card expiry,
/// authorizations released across a restart) against a real engine, the
/// way `faketime` would; the engine logs a warning when it is set.
pub const OFFSET_ENV_VAR: &str = "KESSAI_CLOCK_OFFSET_MS";

static OFFSET_MS: OnceLock<u64> = OnceLock::new();

/// Reads the offset from the environment (once); an unparsable value is
/// an error, so a typo cannot silently test nothing.
pub fn offset_from_env() -> Result<u64, String> {
    let wanted = match std::env::var(OFFSET_ENV_VAR) {
        Ok(text) if !text.is_empty() => text
            .parse::<u64>()
            .map_err(|_| format!("{OFFSET_ENV_VAR}={text} is not a number of milliseconds"))?,
        _ => 0,
    };
    Ok(*OFFSET_MS.get_or_init(|| wanted))
}

/// Milliseconds since the Unix epoch, UTC (plus the offset, if set). A
/// clock set before 1970 reads 0 (every window then counts as just opened
/// or long closed, never a panic).
pub fn now_ms() -> u64 {
    let system = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    system.saturating_add(OFFSET_MS.get().copied().unwrap_or(0))
}
