//! The guard against PIN guessing: failures counted per principal in a
//! sliding window; past `pin_failures_max` within `pin_failure_window_ms`
//! the principal is refused with `locked_out` for `lockout_ms`.
//!
//! A failure is a PIN that names no sold card: an unknown PIN, a payment or
//! balance inquiry on an unsold card, an activation of an unknown PIN, or a
//! bad check digit. The count is exact: whoever checks a PIN first takes an
//! [`Admission`] (a failure slot reserved while the check runs, a few
//! microseconds inside a shard) and settles it with the outcome, so however
//! many shards and connections a guesser spreads its guesses over, the lock
//! engages after at most `pin_failures_max` failures. Near the limit a
//! check that finds every remaining slot reserved is refused too.

use crate::config::Limits;
use crate::protocol::{ErrorCode, ErrorResponse};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The principal is locked out until the window has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockedOut {
    /// How long until the lock lifts.
    pub remaining: Duration,
}

impl LockedOut {
    /// The error a locked-out principal is answered with.
    pub fn refusal(&self) -> ErrorResponse {
        ErrorResponse::new(
            ErrorCode::LockedOut,
            format!(
                "too many PIN failures; refused for another {} s",
                self.remaining.as_secs()
            ),
        )
    }
}

/// A reserved failure slot, to be settled with the check's outcome.
#[must_use = "an admission must be settled"]
#[derive(Debug)]
pub struct Admission {
    principal: u32,
}

/// One principal's recent failures.
#[derive(Debug, Default)]
struct Window {
    failures: VecDeque<Instant>,
    reserved: u32,
    locked_until: Option<Instant>,
}

pub struct Guard {
    failures_max: usize,
    window: Duration,
    lockout: Duration,
    windows: Mutex<HashMap<u32, Window>>,
}

impl Guard {
    pub fn new(limits: &Limits) -> Guard {
        Guard {
            failures_max: limits.pin_failures_max,
            window: Duration::from_millis(limits.pin_failure_window_ms),
            lockout: Duration::from_millis(limits.lockout_ms),
            windows: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Window>> {
        // Every update below leaves the map consistent, so a panic
        // elsewhere cannot poison it in a way that matters.
        self.windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `principal` is locked out now (an early, cheap refusal).
    pub fn check(&self, principal: u32, now: Instant) -> Result<(), LockedOut> {
        match self.lock().get_mut(&principal) {
            Some(window) => self.locked(window, now),
            None => Ok(()),
        }
    }

    /// Reserves a failure slot for one PIN check, or refuses.
    pub fn admit(&self, principal: u32, now: Instant) -> Result<Admission, LockedOut> {
        let mut windows = self.lock();
        let window = windows.entry(principal).or_default();
        self.locked(window, now)?;
        self.forget_old(window, now);
        if window.failures.len() + window.reserved as usize >= self.failures_max {
            // Every slot left is held by checks still running.
            return Err(LockedOut {
                remaining: Duration::ZERO,
            });
        }
        window.reserved += 1;
        Ok(Admission { principal })
    }

    /// Records the outcome of an admitted check. Returns true when this
    /// failure locked the principal out.
    pub fn settle(&self, admission: Admission, failed: bool, now: Instant) -> bool {
        let mut windows = self.lock();
        let window = windows
            .get_mut(&admission.principal)
            .expect("an admitted principal has a window");
        assert!(window.reserved > 0, "settled more than admitted");
        window.reserved -= 1;
        if !failed {
            if window.failures.is_empty() && window.reserved == 0 && window.locked_until.is_none() {
                windows.remove(&admission.principal);
            }
            return false;
        }
        crate::telemetry::pin_failure();
        window.failures.push_back(now);
        if window.failures.len() < self.failures_max {
            return false;
        }
        window.failures.clear();
        window.locked_until = Some(now + self.lockout);
        crate::telemetry::locked_out();
        tracing::warn!(
            principal = admission.principal,
            lockout_ms = self.lockout.as_millis() as u64,
            "PIN failures reached the limit; principal locked out"
        );
        true
    }

    /// Counts one failure of a check that needs no shard (a bad check
    /// digit): admitted and settled at once.
    pub fn record_failure(&self, principal: u32, now: Instant) -> Result<(), LockedOut> {
        let admission = self.admit(principal, now)?;
        self.settle(admission, true, now);
        Ok(())
    }

    fn locked(&self, window: &mut Window, now: Instant) -> Result<(), LockedOut> {
        match window.locked_until {
            Some(until) if until > now => Err(LockedOut {
                remaining: until - now,
            }),
            Some(_) => {
                window.locked_until = None;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn forget_old(&self, window: &mut Window, now: Instant) {
        while window
            .failures
            .front()
            .is_some_and(|at| now.duration_since(*at) >= self.window)
        {
            window.failures.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(max: usize) -> Guard {
        Guard::new(&Limits {
            pin_failures_max: max,
            pin_failure_window_ms: 1_000,
            lockout_ms: 5_000,
            ..Limits::default()
        })
    }

    #[test]
    fn the_lock_engages_at_the_limit_and_lifts_after_the_lockout() {
        let guard = guard(3);
        let t0 = Instant::now();
        for _ in 0..2 {
            let admission = guard.admit(7, t0).expect("admitted");
            assert!(!guard.settle(admission, true, t0));
        }
        let admission = guard.admit(7, t0).expect("admitted");
        assert!(guard.settle(admission, true, t0), "the third failure locks");
        assert!(guard.admit(7, t0).is_err());
        assert!(guard.check(7, t0 + Duration::from_millis(4_999)).is_err());
        // Other principals are not affected.
        assert!(guard.check(8, t0).is_ok());
        let later = t0 + Duration::from_millis(5_000);
        assert!(guard.check(7, later).is_ok());
        let admission = guard.admit(7, later).expect("lifted");
        assert!(!guard.settle(admission, false, later));
    }

    #[test]
    fn failures_older_than_the_window_are_forgotten() {
        let guard = guard(2);
        let t0 = Instant::now();
        guard.record_failure(1, t0).expect("admitted");
        let later = t0 + Duration::from_millis(1_000);
        guard.record_failure(1, later).expect("the first fell out");
        assert!(guard.check(1, later).is_ok());
    }

    #[test]
    fn reserved_checks_count_against_the_limit() {
        let guard = guard(2);
        let t0 = Instant::now();
        let first = guard.admit(1, t0).expect("admitted");
        let second = guard.admit(1, t0).expect("admitted");
        assert!(guard.admit(1, t0).is_err(), "both slots are held");
        guard.settle(first, false, t0);
        guard.settle(second, false, t0);
        assert!(guard.admit(1, t0).is_ok());
    }
}
