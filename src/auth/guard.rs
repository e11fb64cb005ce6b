//! The guard against PIN guessing: failures counted per principal in a
//! sliding window; past `pin_failures_max` within `pin_failure_window_ms`
//! the principal is refused with `locked_out` for `lockout_ms`.
//!
//! A failure is a PIN that names no sold card: an unknown PIN, a payment or
//! balance inquiry on an unsold card, an activation of an unknown PIN, or a
//! bad check digit; and a payment declined on a card that was already
//! declined since its balance last changed (`Card::note_decline`). The
//! count is exact: whoever checks a PIN first takes an [`Admission`] (a
//! failure slot reserved while the check runs, a few microseconds inside a
//! shard) and settles it with the outcome, so however many shards and
//! connections a guesser spreads its guesses over, the lock engages after
//! at most `pin_failures_max` failures. Near the limit a check that finds
//! every remaining slot reserved is refused too.
//!
//! **Durable.** A counted failure is written in the write-set of the shard
//! that counted it ([`Guard::settle`] takes the write-set), so it is on
//! disk before the decline that told the sender is: a restart, or a crash,
//! forgets nothing. Each failure is a record of its own (principal, time,
//! sequence), so shards never overwrite each other's; a lock is a record
//! too. Failures that leave the window and locks that lift are deleted in
//! a later write-set, so the records stay bounded by the limit. At start
//! [`Guard::load`] reads them back. Times are the engine's clock (ms since
//! the Unix epoch), so a window or a lock runs on across a restart.

use crate::config::Limits;
use crate::protocol::{ErrorCode, ErrorResponse};
use crate::storage::records::{self, GuardRecord};
use crate::storage::{Cf, Changes, StorageError, Store};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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

/// One counted failure: when, and its record's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Failure {
    at_ms: u64,
    seq: u64,
}

/// One principal's recent failures.
#[derive(Debug, Default)]
struct Window {
    failures: VecDeque<Failure>,
    reserved: u32,
    locked_until_ms: Option<u64>,
    /// Records to delete with the next write-set: failures that left the
    /// window, and a lock that lifted.
    stale: Vec<Failure>,
    lock_lifted: bool,
}

impl Window {
    fn is_empty(&self) -> bool {
        self.failures.is_empty()
            && self.reserved == 0
            && self.locked_until_ms.is_none()
            && self.stale.is_empty()
            && !self.lock_lifted
    }
}

pub struct Guard {
    failures_max: usize,
    window_ms: u64,
    lockout_ms: u64,
    windows: Mutex<HashMap<u32, Window>>,
    /// Makes each failure's record key unique.
    next_seq: AtomicU64,
}

impl Guard {
    /// A guard with nothing counted (tests, and a fresh data dir).
    pub fn new(limits: &Limits) -> Guard {
        Guard {
            failures_max: limits.pin_failures_max,
            window_ms: limits.pin_failure_window_ms,
            lockout_ms: limits.lockout_ms,
            windows: Mutex::new(HashMap::new()),
            next_seq: AtomicU64::new(0),
        }
    }

    /// The guard as the last run left it: every failure still inside its
    /// window at `now_ms`, and every lock not yet lifted. Records that
    /// have run out are deleted.
    pub fn load(limits: &Limits, store: &dyn Store, now_ms: u64) -> Result<Guard, StorageError> {
        let guard = Guard::new(limits);
        let mut changes = Changes::new();
        let mut seq_max = 0;
        {
            let mut windows = guard.lock();
            store.scan(Cf::PinFailures, &mut |key, value| {
                match records::decode_guard(key, value)? {
                    GuardRecord::Failure {
                        principal,
                        at_ms,
                        seq,
                    } => {
                        seq_max = seq_max.max(seq);
                        if now_ms.saturating_sub(at_ms) >= guard.window_ms {
                            changes.delete_pin_failure(principal, at_ms, seq);
                        } else {
                            let window = windows.entry(principal).or_default();
                            window.failures.push_back(Failure { at_ms, seq });
                        }
                    }
                    GuardRecord::Lock {
                        principal,
                        until_ms,
                    } => {
                        if until_ms <= now_ms {
                            changes.delete_lock(principal);
                        } else {
                            windows.entry(principal).or_default().locked_until_ms = Some(until_ms);
                        }
                    }
                }
                Ok(())
            })?;
            for window in windows.values_mut() {
                window.failures.make_contiguous().sort_by_key(|f| f.at_ms);
            }
        }
        guard.next_seq.store(seq_max + 1, Ordering::Relaxed);
        store.commit(&changes)?;
        Ok(guard)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Window>> {
        // Every update below leaves the map consistent, so a panic
        // elsewhere cannot poison it in a way that matters.
        self.windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `principal` is locked out at `now_ms` (an early, cheap
    /// refusal).
    pub fn check(&self, principal: u32, now_ms: u64) -> Result<(), LockedOut> {
        match self.lock().get_mut(&principal) {
            Some(window) => Self::locked(window, now_ms),
            None => Ok(()),
        }
    }

    /// Reserves a failure slot for one PIN check, or refuses.
    pub fn admit(&self, principal: u32, now_ms: u64) -> Result<Admission, LockedOut> {
        let mut windows = self.lock();
        let window = windows.entry(principal).or_default();
        Self::locked(window, now_ms)?;
        self.forget_old(window, now_ms);
        if window.failures.len() + window.reserved as usize >= self.failures_max {
            // Every slot left is held by checks still running.
            return Err(LockedOut {
                remaining: Duration::ZERO,
            });
        }
        window.reserved += 1;
        Ok(Admission { principal })
    }

    /// Records the outcome of an admitted check; a failure goes into
    /// `out`, the write-set whose durability the check's answer waits for.
    /// Returns true when this failure locked the principal out.
    pub fn settle(
        &self,
        admission: Admission,
        failed: bool,
        now_ms: u64,
        out: &mut Changes,
    ) -> bool {
        let mut windows = self.lock();
        let principal = admission.principal;
        let window = windows
            .get_mut(&principal)
            .expect("an admitted principal has a window");
        assert!(window.reserved > 0, "settled more than admitted");
        window.reserved -= 1;
        for old in window.stale.drain(..) {
            out.delete_pin_failure(principal, old.at_ms, old.seq);
        }
        if std::mem::take(&mut window.lock_lifted) {
            out.delete_lock(principal);
        }
        if !failed {
            if window.is_empty() {
                windows.remove(&principal);
            }
            return false;
        }
        crate::telemetry::pin_failure();
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        window.failures.push_back(Failure { at_ms: now_ms, seq });
        out.put_pin_failure(principal, now_ms, seq);
        if window.failures.len() < self.failures_max {
            return false;
        }
        for counted in window.failures.drain(..) {
            out.delete_pin_failure(principal, counted.at_ms, counted.seq);
        }
        let until_ms = now_ms.saturating_add(self.lockout_ms);
        window.locked_until_ms = Some(until_ms);
        out.put_lock(principal, until_ms);
        crate::telemetry::locked_out();
        tracing::warn!(
            principal,
            lockout_ms = self.lockout_ms,
            "PIN failures reached the limit; principal locked out"
        );
        true
    }

    /// Counts one failure of a check no shard made (a bad check digit),
    /// admitted and settled at once, into `out`.
    pub fn record_failure(
        &self,
        principal: u32,
        now_ms: u64,
        out: &mut Changes,
    ) -> Result<(), LockedOut> {
        let admission = self.admit(principal, now_ms)?;
        self.settle(admission, true, now_ms, out);
        Ok(())
    }

    fn locked(window: &mut Window, now_ms: u64) -> Result<(), LockedOut> {
        match window.locked_until_ms {
            Some(until_ms) if until_ms > now_ms => Err(LockedOut {
                remaining: Duration::from_millis(until_ms - now_ms),
            }),
            Some(_) => {
                window.locked_until_ms = None;
                window.lock_lifted = true;
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn forget_old(&self, window: &mut Window, now_ms: u64) {
        while let Some(&oldest) = window.failures.front() {
            if now_ms.saturating_sub(oldest.at_ms) < self.window_ms {
                break;
            }
            window.failures.pop_front();
            window.stale.push(oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStore;

    fn limits(max: usize) -> Limits {
        Limits {
            pin_failures_max: max,
            pin_failure_window_ms: 1_000,
            lockout_ms: 5_000,
            ..Limits::default()
        }
    }

    fn fail(guard: &Guard, principal: u32, at_ms: u64, store: &MemStore) -> bool {
        let mut out = Changes::new();
        let admission = guard.admit(principal, at_ms).expect("admitted");
        let locked = guard.settle(admission, true, at_ms, &mut out);
        store.commit(&out).expect("write");
        locked
    }

    #[test]
    fn the_lock_engages_at_the_limit_and_lifts_after_the_lockout() {
        let store = MemStore::new();
        let guard = Guard::new(&limits(3));
        let t0 = 1_000_000;
        assert!(!fail(&guard, 7, t0, &store));
        assert!(!fail(&guard, 7, t0, &store));
        assert!(fail(&guard, 7, t0, &store), "the third failure locks");
        assert!(guard.admit(7, t0).is_err());
        assert!(guard.check(7, t0 + 4_999).is_err());
        // Other principals are not affected.
        assert!(guard.check(8, t0).is_ok());
        let later = t0 + 5_000;
        assert!(guard.check(7, later).is_ok());
        let admission = guard.admit(7, later).expect("lifted");
        let mut out = Changes::new();
        assert!(!guard.settle(admission, false, later, &mut out));
        assert_eq!(out.len(), 1, "the lifted lock's record is deleted");
    }

    #[test]
    fn failures_older_than_the_window_are_forgotten_and_deleted() {
        let store = MemStore::new();
        let guard = Guard::new(&limits(2));
        let t0 = 1_000_000;
        assert!(!fail(&guard, 1, t0, &store));
        let later = t0 + 1_000;
        assert!(!fail(&guard, 1, later, &store), "the first fell out");
        assert!(guard.check(1, later).is_ok());
        let mut records = 0;
        store
            .scan(Cf::PinFailures, &mut |_, _| {
                records += 1;
                Ok(())
            })
            .expect("scan");
        assert_eq!(records, 1, "the forgotten failure's record is gone");
    }

    #[test]
    fn reserved_checks_count_against_the_limit() {
        let guard = Guard::new(&limits(2));
        let t0 = 1_000_000;
        let first = guard.admit(1, t0).expect("admitted");
        let second = guard.admit(1, t0).expect("admitted");
        assert!(guard.admit(1, t0).is_err(), "both slots are held");
        let mut out = Changes::new();
        guard.settle(first, false, t0, &mut out);
        guard.settle(second, false, t0, &mut out);
        assert!(out.is_empty(), "successes write nothing");
        assert!(guard.admit(1, t0).is_ok());
    }

    #[test]
    fn counts_and_locks_survive_a_reload() {
        let store = MemStore::new();
        let guard = Guard::new(&limits(3));
        let t0 = 1_000_000;
        fail(&guard, 1, t0, &store);
        fail(&guard, 1, t0 + 1, &store);
        for at in 0..3 {
            fail(&guard, 2, t0 + at, &store);
        }
        let again = Guard::load(&limits(3), &store, t0 + 10).expect("load");
        assert!(again.check(2, t0 + 10).is_err(), "the lock holds");
        assert!(
            fail(&again, 1, t0 + 10, &store),
            "two failures were kept: the third locks"
        );
        // Past the window and the lockout, nothing is left on disk.
        let much_later = t0 + 10_000;
        let clean = Guard::load(&limits(3), &store, much_later).expect("load");
        assert!(clean.check(1, much_later).is_ok() && clean.check(2, much_later).is_ok());
        let mut records = 0;
        store
            .scan(Cf::PinFailures, &mut |_, _| {
                records += 1;
                Ok(())
            })
            .expect("scan");
        assert_eq!(records, 0);
        // New failures do not reuse a sequence number.
        assert!(!fail(&clean, 1, much_later, &store));
    }
}
