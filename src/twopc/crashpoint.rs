//! Fault injection: named crash points in the two-phase commit.
//!
//! Setting `KESSAI_CRASH_POINT=<name>` in the engine's environment arms one
//! point; the first payment that reaches it aborts the process on the spot
//! (`std::process::abort`: no destructors, no flushing, the moral
//! equivalent of `kill -9` at that line). Tests use this to prove that
//! recovery leaves every payment fully applied or fully absent.

use std::sync::OnceLock;

/// The environment variable that arms a crash point.
pub const ENV_VAR: &str = "KESSAI_CRASH_POINT";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// Every shard voted and holds are durable; no decision is recorded.
    AfterPrepare,
    /// The decision is durable; no shard has been told.
    AfterDecision,
    /// The first shard has durably committed (or aborted); the others may
    /// or may not have.
    MidCommit,
    /// A payout's period is read and its sums decided; nothing of it is
    /// written yet.
    PayoutScanned,
}

impl CrashPoint {
    pub const ALL: [CrashPoint; 4] = [
        CrashPoint::AfterPrepare,
        CrashPoint::AfterDecision,
        CrashPoint::MidCommit,
        CrashPoint::PayoutScanned,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CrashPoint::AfterPrepare => "after-prepare",
            CrashPoint::AfterDecision => "after-decision",
            CrashPoint::MidCommit => "mid-commit",
            CrashPoint::PayoutScanned => "payout-scanned",
        }
    }

    pub fn parse(name: &str) -> Option<CrashPoint> {
        CrashPoint::ALL.into_iter().find(|p| p.name() == name)
    }
}

static ARMED: OnceLock<Option<CrashPoint>> = OnceLock::new();

/// Reads the environment once. An unknown name is an error, so a typo in a
/// test cannot silently test nothing.
pub(crate) fn arm_from_env() -> Result<Option<CrashPoint>, String> {
    let wanted = match std::env::var(ENV_VAR) {
        Ok(name) if !name.is_empty() => Some(CrashPoint::parse(&name).ok_or_else(|| {
            let known: Vec<_> = CrashPoint::ALL.iter().map(|p| p.name()).collect();
            format!(
                "{ENV_VAR}={name} names no crash point (known: {})",
                known.join(", ")
            )
        })?),
        _ => None,
    };
    let armed = *ARMED.get_or_init(|| wanted);
    if let Some(point) = armed {
        tracing::warn!(
            point = point.name(),
            "crash point armed: the engine will abort there"
        );
    }
    Ok(armed)
}

/// Aborts the process if `point` is armed.
pub fn reached(point: CrashPoint) {
    if ARMED.get().copied().flatten() == Some(point) {
        eprintln!("kessai: crash point {} reached, aborting", point.name());
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for point in CrashPoint::ALL {
            assert_eq!(CrashPoint::parse(point.name()), Some(point));
        }
        assert_eq!(CrashPoint::parse("after-lunch"), None);
    }
}
