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
use dashmap::DashMap;
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

/// One principal's failures, times and pending deletes: what only the slow
/// path (a principal with failures, a lock, or records to delete) reads.
#[derive(Debug, Default)]
struct Detail {
    failures: VecDeque<Failure>,
    locked_until_ms: Option<u64>,
    /// Records to delete with the next write-set: failures that left the
    /// window, and a lock that lifted.
    stale: Vec<Failure>,
    lock_lifted: bool,
}

/// One principal's counts in one word, so that the common case (a
/// principal with no failure, no lock, nothing to delete) admits and
/// settles a PIN check with one compare-and-swap and no lock (issue #20:
/// no global mutex per payment). The word is the truth for the counts and
/// the lock bit; [`Detail`] holds the times behind them and changes only
/// under its mutex, together with the word.
///
/// Bits: 0..32 reserved checks, 32..61 counted failures, 61 dirty (records
/// to delete are pending), 62 locked.
#[derive(Debug, Default)]
struct Slot {
    word: AtomicU64,
    detail: Mutex<Detail>,
}

const RESERVED_MASK: u64 = 0xFFFF_FFFF;
const FAILURE_ONE: u64 = 1 << 32;
const FAILURES_MASK: u64 = ((1 << 29) - 1) << 32;
const DIRTY: u64 = 1 << 61;
const LOCKED: u64 = 1 << 62;

fn reserved(word: u64) -> u64 {
    word & RESERVED_MASK
}

fn failures(word: u64) -> u64 {
    (word & FAILURES_MASK) >> 32
}

/// Whether the word alone decides an admission or a success: no failure
/// to expire, no lock to lift, nothing to delete.
fn quiet(word: u64) -> bool {
    word & (FAILURES_MASK | DIRTY | LOCKED) == 0
}

impl Slot {
    fn detail(&self) -> std::sync::MutexGuard<'_, Detail> {
        // Every update below leaves the detail consistent with the word,
        // so a panic elsewhere cannot poison it in a way that matters.
        self.detail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies `change` to the word atomically; `None` leaves it as is.
    fn update(&self, change: impl FnMut(u64) -> Option<u64>) -> Result<u64, u64> {
        self.word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, change)
    }
}

pub struct Guard {
    failures_max: usize,
    window_ms: u64,
    lockout_ms: u64,
    /// Per principal; a slot stays once made (principals are registered
    /// by the operator, so their number is bounded by the registry).
    /// Sharded, so principals never contend with each other.
    slots: DashMap<u32, Slot>,
    /// Makes each failure's record key unique.
    next_seq: AtomicU64,
}

impl Guard {
    /// A guard with nothing counted (tests, and a fresh data dir).
    pub fn new(limits: &Limits) -> Guard {
        // The config's ceiling keeps the count far inside its 29 bits.
        assert!(
            (crate::config::PIN_FAILURES_MAX as u64) < (FAILURES_MASK >> 32)
                && limits.pin_failures_max <= crate::config::PIN_FAILURES_MAX,
            "pin_failures_max fits the guard's failure count"
        );
        Guard {
            failures_max: limits.pin_failures_max,
            window_ms: limits.pin_failure_window_ms,
            lockout_ms: limits.lockout_ms,
            slots: DashMap::new(),
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
        let mut details: HashMap<u32, Detail> = HashMap::new();
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
                        let detail = details.entry(principal).or_default();
                        detail.failures.push_back(Failure { at_ms, seq });
                    }
                }
                GuardRecord::Lock {
                    principal,
                    until_ms,
                } => {
                    if until_ms <= now_ms {
                        changes.delete_lock(principal);
                    } else {
                        details.entry(principal).or_default().locked_until_ms = Some(until_ms);
                    }
                }
            }
            Ok(())
        })?;
        for (principal, mut detail) in details {
            detail.failures.make_contiguous().sort_by_key(|f| f.at_ms);
            // A principal locked out with failures kept (a lock from an
            // older run) counts them again once the lock lifts.
            let counted = (detail.failures.len() as u64).min(FAILURES_MASK >> 32);
            let locked = if detail.locked_until_ms.is_some() {
                LOCKED
            } else {
                0
            };
            let slot = Slot {
                word: AtomicU64::new((counted << 32) | locked),
                detail: Mutex::new(detail),
            };
            guard.slots.insert(principal, slot);
        }
        guard.next_seq.store(seq_max + 1, Ordering::Relaxed);
        store.commit(&changes)?;
        Ok(guard)
    }

    fn slot(&self, principal: u32) -> dashmap::mapref::one::Ref<'_, u32, Slot> {
        if let Some(slot) = self.slots.get(&principal) {
            return slot;
        }
        self.slots.entry(principal).or_default().downgrade()
    }

    /// Whether `principal` is locked out at `now_ms` (an early, cheap
    /// refusal).
    pub fn check(&self, principal: u32, now_ms: u64) -> Result<(), LockedOut> {
        let Some(slot) = self.slots.get(&principal) else {
            return Ok(());
        };
        if slot.word.load(Ordering::Acquire) & LOCKED == 0 {
            return Ok(());
        }
        self.lift_if_due(&slot, &mut slot.detail(), now_ms)
    }

    /// Reserves a failure slot for one PIN check, or refuses.
    pub fn admit(&self, principal: u32, now_ms: u64) -> Result<Admission, LockedOut> {
        let slot = self.slot(principal);
        let max = self.failures_max as u64;
        // The common case: one compare-and-swap, no lock.
        let fast = slot.update(|word| {
            (quiet(word) && reserved(word) < max && reserved(word) < RESERVED_MASK)
                .then_some(word + 1)
        });
        if fast.is_ok() {
            return Ok(Admission { principal });
        }
        let mut detail = slot.detail();
        self.lift_if_due(&slot, &mut detail, now_ms)?;
        self.forget_old(&slot, &mut detail, now_ms);
        let reserved_one = slot.update(|word| {
            let taken = failures(word) + reserved(word);
            (word & LOCKED == 0 && taken < max && reserved(word) < RESERVED_MASK)
                .then_some(word + 1)
        });
        match reserved_one {
            Ok(_) => Ok(Admission { principal }),
            // Locked by a failure settled just now, or every slot left is
            // held by checks still running.
            Err(_) => Err(LockedOut {
                remaining: detail.locked_until_ms.map_or(Duration::ZERO, |until| {
                    Duration::from_millis(until.saturating_sub(now_ms))
                }),
            }),
        }
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
        let principal = admission.principal;
        let slot = self
            .slots
            .get(&principal)
            .expect("an admitted principal has a slot");
        if !failed {
            // The common case: give the reservation back, no lock.
            let released = slot.update(|word| {
                assert!(reserved(word) > 0, "settled more than admitted");
                (word & DIRTY == 0).then_some(word - 1)
            });
            if released.is_ok() {
                return false;
            }
        }
        let mut detail = slot.detail();
        for old in detail.stale.drain(..) {
            out.delete_pin_failure(principal, old.at_ms, old.seq);
        }
        if std::mem::take(&mut detail.lock_lifted) {
            out.delete_lock(principal);
        }
        // Under the detail's lock: the deletes are in `out`, so the word is
        // clean again; a failure is counted in the same swap that gives
        // its reservation back.
        let counted = if failed { FAILURE_ONE } else { 0 };
        let settled = |word: u64| ((word - 1) & !DIRTY) + counted;
        let previous = slot.update(|word| {
            assert!(reserved(word) > 0, "settled more than admitted");
            Some(settled(word))
        });
        let word = settled(previous.unwrap_or_else(|word| word));
        if !failed {
            return false;
        }
        crate::telemetry::pin_failure();
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        detail.failures.push_back(Failure { at_ms: now_ms, seq });
        out.put_pin_failure(principal, now_ms, seq);
        if failures(word) < self.failures_max as u64 {
            return false;
        }
        for counted in detail.failures.drain(..) {
            out.delete_pin_failure(principal, counted.at_ms, counted.seq);
        }
        let until_ms = now_ms.saturating_add(self.lockout_ms);
        detail.locked_until_ms = Some(until_ms);
        let _ = slot.update(|word| Some((word & !FAILURES_MASK) | LOCKED));
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

    /// Refuses while the lock holds; lifts it once it has run out (its
    /// record is deleted with the next write-set).
    fn lift_if_due(&self, slot: &Slot, detail: &mut Detail, now_ms: u64) -> Result<(), LockedOut> {
        match detail.locked_until_ms {
            Some(until_ms) if until_ms > now_ms => Err(LockedOut {
                remaining: Duration::from_millis(until_ms - now_ms),
            }),
            Some(_) => {
                detail.locked_until_ms = None;
                detail.lock_lifted = true;
                let _ = slot.update(|word| Some((word & !LOCKED) | DIRTY));
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn forget_old(&self, slot: &Slot, detail: &mut Detail, now_ms: u64) {
        let mut forgotten = 0;
        while let Some(&oldest) = detail.failures.front() {
            if now_ms.saturating_sub(oldest.at_ms) < self.window_ms {
                break;
            }
            detail.failures.pop_front();
            detail.stale.push(oldest);
            forgotten += 1;
        }
        if forgotten > 0 {
            let _ = slot.update(|word| {
                let left = failures(word).saturating_sub(forgotten);
                Some((word & !FAILURES_MASK) | (left << 32) | DIRTY)
            });
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

    /// How many failure and lock records are on disk.
    fn records(store: &MemStore) -> usize {
        let mut records = 0;
        store
            .scan(Cf::PinFailures, &mut |_, _| {
                records += 1;
                Ok(())
            })
            .expect("scan");
        records
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
        assert_eq!(records(&store), 1, "the forgotten failure's record is gone");
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
    fn concurrent_checks_count_exactly_to_the_limit() {
        // Four threads check PINs for one principal at once, one in three
        // failing: exactly `max` failures are counted, one lock engages,
        // and every reservation comes back.
        let max = 50;
        let guard = Guard::new(&limits(max));
        let t0 = 1_000_000;
        let (failures, locks) = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        let (mut failures, mut locks) = (0, 0);
                        for i in 0..2_000 {
                            let Ok(admission) = guard.admit(9, t0) else {
                                continue;
                            };
                            let failed = i % 3 == 0;
                            let mut out = Changes::new();
                            locks += usize::from(guard.settle(admission, failed, t0, &mut out));
                            failures += usize::from(failed);
                        }
                        (failures, locks)
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|worker| worker.join().expect("no panic"))
                .fold((0, 0), |(f, l), (wf, wl)| (f + wf, l + wl))
        });
        assert_eq!(failures, max);
        assert_eq!(locks, 1);
        let word = guard
            .slots
            .get(&9)
            .expect("slot")
            .word
            .load(Ordering::Acquire);
        assert_eq!(reserved(word), 0, "every reservation was settled");
        assert!(word & LOCKED != 0);
        assert!(guard.check(9, t0).is_err());
    }

    #[test]
    fn a_lifted_lock_and_expired_failures_leave_the_fast_path_clean() {
        let store = MemStore::new();
        let guard = Guard::new(&limits(2));
        let t0 = 1_000_000;
        fail(&guard, 4, t0, &store);
        fail(&guard, 4, t0, &store);
        let later = t0 + 5_000;
        let admission = guard.admit(4, later).expect("lifted");
        let mut out = Changes::new();
        assert!(!guard.settle(admission, false, later, &mut out));
        store.commit(&out).expect("write");
        let word = guard
            .slots
            .get(&4)
            .expect("slot")
            .word
            .load(Ordering::Acquire);
        assert!(quiet(word), "nothing left to expire, lift or delete");
        assert_eq!(
            records(&store),
            0,
            "the lock's and the failures' records are gone"
        );
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
        assert_eq!(records(&store), 0);
        // New failures do not reuse a sequence number.
        assert!(!fail(&clean, 1, much_later, &store));
    }
}
