//! Activation reversal on the card's shard: the card's own rules
//! ([`crate::card::Card::reverse`]) decide; an undone sale is taken off the
//! store's debt in the same write as the card.

use super::ShardMachine;
use crate::card::{DeclineReason, Reversal};
use crate::ids::StoreId;
use crate::pin::PinKey;
use crate::protocol::{ReversalStatus, ReverseActivationResponse};
use crate::storage::Changes;
use crate::storage::records::{BookKind, JournalEntry, JournalKind};

impl ShardMachine {
    /// Reverses the sale (`store_id`, `pos_ref`) of the card `key` at
    /// `now_ms`, within `window_ms` of its activation. A retry changes
    /// nothing and gets the first outcome again.
    pub fn reverse_activation(
        &mut self,
        key: PinKey,
        store_id: StoreId,
        pos_ref: u64,
        now_ms: u64,
        window_ms: u64,
        out: &mut Changes,
    ) -> ReverseActivationResponse {
        let Some(slot) = self.cards.slot(&key) else {
            return ReverseActivationResponse::declined(DeclineReason::UnknownPin);
        };
        let sale = (key, store_id, pos_ref);
        if let Some(&amount_minor) = self.reversals.get(&sale) {
            return reversed(amount_minor, true);
        }
        let reversal = self.cards.update(slot, |card| {
            card.reverse(store_id, pos_ref, now_ms, window_ms)
        });
        let amount_minor = match reversal {
            Ok(Reversal::Undone { face_value_minor }) => face_value_minor,
            Ok(Reversal::Forestalled) => 0,
            Err(reason) => return ReverseActivationResponse::declined(reason),
        };
        self.reversals.insert(sale, amount_minor);
        out.put_card(&key, self.cards.card(slot));
        out.put_reversal(&key, store_id, pos_ref, amount_minor);
        let at_ms = self.stamp(now_ms);
        let entry = JournalEntry::of_card(JournalKind::Reversal, &key, pos_ref, at_ms);
        out.put_journal(store_id, &entry, amount_minor);
        if amount_minor > 0 {
            self.credit(BookKind::StoreReversed, store_id, amount_minor);
        }
        reversed(amount_minor, false)
    }

    /// Start-up: a reversed sale found on disk.
    pub(crate) fn restore_reversal(
        &mut self,
        key: PinKey,
        store_id: StoreId,
        pos_ref: u64,
        amount_minor: u64,
    ) {
        self.reversals
            .insert((key, store_id, pos_ref), amount_minor);
    }
}

/// The answer to a reversal that took `amount_minor` off the store's debt
/// (0: the activation was never seen).
fn reversed(amount_minor: u64, replayed: bool) -> ReverseActivationResponse {
    let status = if amount_minor > 0 {
        ReversalStatus::Reversed
    } else {
        ReversalStatus::Forestalled
    };
    ReverseActivationResponse {
        status,
        reason: None,
        amount_minor,
        replayed,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::machine_with;
    use super::*;
    use crate::card::{Card, CardState};
    use crate::protocol::ActivationResult;

    const MINUTE_MS: u64 = 60_000;

    #[test]
    fn a_reversal_takes_the_sale_off_the_store_debt_once() {
        let mut machine = machine_with(&[(1, Card::issued(700))]);
        let mut out = Changes::new();
        let key = PinKey([1; 16]);
        machine.activate(key, 42, 9, 1_000, 0, &mut out);
        let first = machine.reverse_activation(key, 42, 9, 2_000, MINUTE_MS, &mut out);
        assert_eq!(first.status, ReversalStatus::Reversed);
        assert_eq!((first.amount_minor, first.replayed), (700, false));
        let again = machine.reverse_activation(key, 42, 9, 3_000, MINUTE_MS, &mut out);
        assert_eq!(
            (again.status, again.amount_minor),
            (ReversalStatus::Reversed, 700)
        );
        assert!(again.replayed);
        assert_eq!(
            out.len(),
            5,
            "the sale (card, journal), the reversal (card, record, journal); a retry writes nothing"
        );
        machine.end_batch(&mut out);
        let page = machine.report_page(None, None, 10);
        assert_eq!(page.lines[0].owed_minor, 700);
        assert_eq!(page.lines[0].offset_minor, 700, "reversed once");
        assert_eq!(page.lines[0].cards_activated, 0);
        assert_eq!(
            machine.card(&key).map(|c| c.state),
            Some(CardState::Reversed)
        );
    }

    #[test]
    fn a_blind_reversal_refuses_the_late_activation() {
        let mut machine = machine_with(&[(1, Card::issued(700))]);
        let mut out = Changes::new();
        let key = PinKey([1; 16]);
        let blind = machine.reverse_activation(key, 42, 9, 0, MINUTE_MS, &mut out);
        assert_eq!(
            (blind.status, blind.amount_minor),
            (ReversalStatus::Forestalled, 0)
        );
        assert_eq!(
            machine.activate(key, 42, 9, 5, 0, &mut out),
            ActivationResult::Declined {
                reason: DeclineReason::ActivationReversed
            }
        );
        // Another sale of the card, then its reversal: the first reversed
        // sale still cannot activate it.
        machine.activate(key, 42, 10, 6, 0, &mut out);
        machine.reverse_activation(key, 42, 10, 7, MINUTE_MS, &mut out);
        assert_eq!(
            machine.activate(key, 42, 9, 8, 0, &mut out),
            ActivationResult::Declined {
                reason: DeclineReason::ActivationReversed
            }
        );
        assert_eq!(
            machine.activate(key, 42, 11, 9, 0, &mut out),
            ActivationResult::Activated {
                face_value_minor: 700
            }
        );
        machine.end_batch(&mut out);
        let line = machine.report_page(None, None, 10).lines[0];
        assert_eq!((line.owed_minor, line.offset_minor), (1400, 700));
        let unknown = machine.reverse_activation(PinKey([2; 16]), 42, 9, 0, 0, &mut out);
        assert_eq!(unknown.reason, Some(DeclineReason::UnknownPin));
    }
}
