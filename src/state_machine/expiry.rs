//! Card expiry: a card past its validity cannot pay, and its balance moves
//! to its store's breakage book, in the same write as the card, so the
//! money is still accounted for.
//!
//! The move happens at the first touch of a due card (a payment naming
//! it), or when the sweep reaches it: the shard's driver calls
//! [`ShardMachine::expiry_sweep`] now and then, a slice of slots at a time,
//! going round the cards, so a card nobody touches still expires within
//! one round. A due card whose money is held waits for its holds to end.

use super::ShardMachine;
use crate::pin::PinKey;
use crate::state_machine::cards::Slot;
use crate::storage::Changes;
use crate::storage::records::BookKind;

impl ShardMachine {
    /// Expires the card `key` if it is due at `now_ms` and holds nothing.
    pub(crate) fn expire_if_due(&mut self, key: &PinKey, now_ms: u64, out: &mut Changes) {
        if let Some(slot) = self.cards.slot(key) {
            self.expire_slot(slot, now_ms, out);
        }
    }

    fn expire_slot(&mut self, slot: Slot, now_ms: u64, out: &mut Changes) -> bool {
        if !self.cards.card(slot).is_due(now_ms) {
            return false;
        }
        let Some(moved_minor) = self.cards.update(slot, |card| card.expire(now_ms)) else {
            return false;
        };
        let (key, card) = (self.cards.key(slot), *self.cards.card(slot));
        out.put_card(&key, &card);
        if moved_minor > 0 {
            self.credit(BookKind::Breakage, card.store_id, moved_minor);
        }
        true
    }

    /// Looks at the next `count` cards (going round), expiring those due at
    /// `now_ms`; returns how many it expired.
    pub fn expiry_sweep(&mut self, now_ms: u64, count: usize, out: &mut Changes) -> usize {
        let total = self.cards.len();
        let mut expired = 0;
        for _ in 0..count.min(total) {
            if self.sweep_next >= total {
                self.sweep_next = 0;
            }
            let slot = Slot::from_index(self.sweep_next);
            self.sweep_next += 1;
            if self.expire_slot(slot, now_ms, out) {
                expired += 1;
            }
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::machine_with;
    use super::*;
    use crate::card::{Card, CardState, DAY_MS, DeclineReason};
    use crate::ids::{CardRef, PaymentId};

    fn sold(face: u64, validity_days: u16) -> Card {
        let mut card = Card::issued(face);
        card.activate(3, 1, DAY_MS, validity_days).expect("sold");
        card
    }

    #[test]
    fn a_due_card_declines_and_its_balance_goes_to_breakage_once() {
        let mut machine = machine_with(&[(1, sold(1000, 10)), (2, sold(500, 0))]);
        let mut out = Changes::new();
        let late = 11 * DAY_MS;
        let card = CardRef {
            key: PinKey([1; 16]),
            last4: 1,
        };
        let payment = PaymentId {
            merchant_id: 9,
            request_id: 1,
        };
        let paid = machine
            .pay(payment, 100, &[card], None, None, late, &mut out)
            .expect("decided");
        assert_eq!(paid.reason(), Some(DeclineReason::Expired));
        let shown = machine.balance(&card.key, late).expect("sold");
        assert_eq!((shown.state, shown.balance_minor), (CardState::Expired, 0));
        assert_eq!(
            machine.expiry_sweep(late, 10, &mut out),
            0,
            "moved at the touch"
        );
        machine.end_batch(&mut out);
        let page = machine.report_page(None, None, 10);
        assert_eq!(page.book_totals[BookKind::Breakage as usize - 1], 1000);
        assert_eq!(page.totals.cards_expired, 1);
        // The card without a validity never expires.
        assert_eq!(machine.expiry_sweep(u64::MAX, 10, &mut out), 0);
    }

    #[test]
    fn the_sweep_goes_round_every_card() {
        let cards: Vec<(u8, Card)> = (1..=5).map(|b| (b, sold(100, 1))).collect();
        let mut machine = machine_with(&cards);
        let mut out = Changes::new();
        assert_eq!(machine.expiry_sweep(DAY_MS, 5, &mut out), 0, "not yet");
        assert_eq!(machine.expiry_sweep(2 * DAY_MS, 2, &mut out), 2);
        assert_eq!(machine.expiry_sweep(2 * DAY_MS, 2, &mut out), 2);
        assert_eq!(
            machine.expiry_sweep(2 * DAY_MS, 2, &mut out),
            1,
            "round again"
        );
        assert_eq!(machine.expiry_sweep(2 * DAY_MS, 9, &mut out), 0);
    }
}
