//! The PIN-failure lockout per (store HQ, terminal DE 41), under the store
//! HQ's own.
//!
//! A store HQ's network has many terminals; one faulty terminal (a broken
//! reader that garbles every PIN) would otherwise spend the HQ's whole
//! `pin_failures_max` and lock out every till of the chain. So the ISO 8583
//! listener also counts failures per terminal, and a terminal that reaches
//! `iso8583.pin_failures_per_terminal_max` within `pin_failure_window_ms`
//! is answered 75 for `lockout_ms`, alone. The HQ-wide count
//! ([`crate::auth::Guard`]) goes on underneath, with its higher ceiling: it
//! is exact and durable, so however many terminal ids a guesser invents,
//! the HQ as a whole is locked out at `pin_failures_max` as on the binary
//! gateway.
//!
//! Per-terminal counts live in memory only (a restart forgets them, never
//! the HQ's), for at most `iso8583.max_terminals_tracked` terminals: past
//! that, windows with nothing left in them are dropped first, and a
//! terminal that still finds no room is not tracked (the HQ-wide lock
//! still holds it).
//!
//! A failure is what the engine counts as one: an unknown PIN or a bad
//! check digit (DE 39 14), and a balance inquiry on another HQ's card (57).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// A terminal: the store HQ and its DE 41 (eight characters).
pub type TerminalId = (u32, [u8; 8]);

#[derive(Debug, Default)]
struct Window {
    /// When each failure within the window happened, oldest first.
    failures: VecDeque<u64>,
    locked_until_ms: Option<u64>,
}

impl Window {
    fn forget_before(&mut self, now_ms: u64, window_ms: u64) {
        while self
            .failures
            .front()
            .is_some_and(|at| now_ms.saturating_sub(*at) >= window_ms)
        {
            self.failures.pop_front();
        }
        if self.locked_until_ms.is_some_and(|until| until <= now_ms) {
            self.locked_until_ms = None;
        }
    }

    fn is_empty(&self) -> bool {
        self.failures.is_empty() && self.locked_until_ms.is_none()
    }
}

pub struct Terminals {
    failures_max: usize,
    window_ms: u64,
    lockout_ms: u64,
    tracked_max: usize,
    windows: Mutex<HashMap<TerminalId, Window>>,
}

impl Terminals {
    pub fn new(
        failures_max: usize,
        window_ms: u64,
        lockout_ms: u64,
        tracked_max: usize,
    ) -> Terminals {
        assert!(failures_max > 0 && tracked_max > 0);
        Terminals {
            failures_max,
            window_ms,
            lockout_ms,
            tracked_max,
            windows: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TerminalId, Window>> {
        // Every update leaves the map consistent: a poisoned lock is safe.
        self.windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// True while `terminal` is locked out at `now_ms`.
    pub fn is_locked(&self, terminal: &TerminalId, now_ms: u64) -> bool {
        let mut windows = self.lock();
        let Some(window) = windows.get_mut(terminal) else {
            return false;
        };
        window.forget_before(now_ms, self.window_ms);
        let locked = window.locked_until_ms.is_some();
        if window.is_empty() {
            windows.remove(terminal);
        }
        locked
    }

    /// Counts one failure of `terminal`; true when it locked the terminal.
    pub fn record_failure(&self, terminal: TerminalId, now_ms: u64) -> bool {
        let mut windows = self.lock();
        if !windows.contains_key(&terminal) && windows.len() >= self.tracked_max {
            let window_ms = self.window_ms;
            windows.retain(|_, window| {
                window.forget_before(now_ms, window_ms);
                !window.is_empty()
            });
            if windows.len() >= self.tracked_max {
                tracing::warn!(
                    tracked = windows.len(),
                    "iso8583.max_terminals_tracked reached: a terminal goes uncounted \
                     (its store HQ's own lockout still counts it)"
                );
                return false;
            }
        }
        let window = windows.entry(terminal).or_default();
        window.forget_before(now_ms, self.window_ms);
        if window.locked_until_ms.is_some() {
            return false;
        }
        window.failures.push_back(now_ms);
        if window.failures.len() < self.failures_max {
            return false;
        }
        window.failures.clear();
        window.locked_until_ms = Some(now_ms.saturating_add(self.lockout_ms));
        tracing::warn!(
            principal = terminal.0,
            terminal = %String::from_utf8_lossy(&terminal.1),
            lockout_ms = self.lockout_ms,
            "PIN failures of one terminal reached the limit; terminal locked out"
        );
        true
    }

    /// Terminals with a window in memory.
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }
}

/// The terminal of store HQ `principal` named by DE 41 (eight characters;
/// the codec checked the length).
pub fn terminal_id(principal: u32, de41: &str) -> TerminalId {
    let mut id = [b' '; 8];
    for (slot, byte) in id.iter_mut().zip(de41.bytes()) {
        *slot = byte;
    }
    (principal, id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_000_000;

    #[test]
    fn a_terminal_locks_alone_and_unlocks_after_the_lockout() {
        let terminals = Terminals::new(3, 1_000, 5_000, 16);
        let (bad, good) = (terminal_id(7, "TERM0001"), terminal_id(7, "TERM0002"));
        assert!(!terminals.record_failure(bad, T0));
        assert!(!terminals.record_failure(bad, T0));
        assert!(terminals.record_failure(bad, T0), "the third locks");
        assert!(terminals.is_locked(&bad, T0 + 4_999));
        assert!(!terminals.is_locked(&good, T0), "another terminal goes on");
        assert!(
            !terminals.is_locked(&terminal_id(8, "TERM0001"), T0),
            "another HQ's"
        );
        assert!(!terminals.is_locked(&bad, T0 + 5_000), "lifted");
        assert_eq!(terminals.tracked(), 0, "an empty window is dropped");
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let terminals = Terminals::new(2, 1_000, 5_000, 16);
        let one = terminal_id(7, "TERM0001");
        assert!(!terminals.record_failure(one, T0));
        assert!(
            !terminals.record_failure(one, T0 + 1_000),
            "the first fell out"
        );
        assert!(terminals.record_failure(one, T0 + 1_001));
    }

    #[test]
    fn the_tracked_terminals_are_bounded() {
        let terminals = Terminals::new(5, 1_000, 5_000, 2);
        assert!(!terminals.record_failure(terminal_id(7, "A"), T0));
        assert!(!terminals.record_failure(terminal_id(7, "B"), T0));
        assert!(
            !terminals.record_failure(terminal_id(7, "C"), T0),
            "untracked"
        );
        assert_eq!(terminals.tracked(), 2);
        // Once the others' windows have passed, there is room again.
        assert!(!terminals.record_failure(terminal_id(7, "C"), T0 + 1_000));
        assert_eq!(terminals.tracked(), 1);
    }
}
