//! Payments whose cards all live on one shard: decided and applied in one
//! step, no two-phase commit. And the one rule for splitting a payment over
//! its cards, which two-phase commit decides with too.

use super::ShardMachine;
use crate::card::{DeclineReason, take_in_order};
use crate::config::CARDS_PER_PAYMENT_MAX;
use crate::idempotency;
use crate::ids::{CardRef, MerchantId, PaymentId, Position};
use crate::pin::PinKey;
use crate::protocol::{ErrorResponse, PayPart, PayParts, PayResponse};
use crate::storage::Changes;
use crate::storage::records::{BookKind, PaymentRecord};

impl ShardMachine {
    /// A payment whose cards all live here. `prior` is the payment's
    /// recorded outcome, prefetched by the driver (which holds the
    /// payment's claim, so nobody else is deciding it meanwhile): a retry
    /// gets that outcome back. Otherwise the payment is decided, applied
    /// and recorded in this one call, with the merchant's `order_id` if the
    /// payment is named by one.
    #[allow(clippy::too_many_arguments)]
    pub fn pay(
        &mut self,
        payment: PaymentId,
        amount_minor: u64,
        cards: &[CardRef],
        order_id: Option<&str>,
        prior: Option<&PaymentRecord>,
        now_ms: u64,
        out: &mut Changes,
    ) -> Result<PayResponse, ErrorResponse> {
        if let Some(record) = prior {
            return idempotency::replay(record, amount_minor, cards);
        }
        let response = self.debit_in_order(payment.merchant_id, amount_minor, cards, now_ms, out);
        if is_recorded(&response) {
            let at_ms = self.stamp(now_ms);
            let record = &mut self.payment_record;
            idempotency::record_into(record, &response, cards, at_ms);
            out.put_payment(payment, record);
            if let Some(order_id) = order_id {
                out.put_order_id(payment, order_id);
            }
        }
        Ok(response)
    }

    /// Takes `amount_minor` from the cards in order, each up to its
    /// available balance, or declines without touching any card.
    fn debit_in_order(
        &mut self,
        merchant_id: MerchantId,
        amount_minor: u64,
        cards: &[CardRef],
        now_ms: u64,
        out: &mut Changes,
    ) -> PayResponse {
        let count = cards.len();
        assert!(count <= CARDS_PER_PAYMENT_MAX, "validated at the gateway");
        let mut available_minor = [0u64; CARDS_PER_PAYMENT_MAX];
        for (index, card_ref) in cards.iter().enumerate() {
            match self.payable(&card_ref.key, now_ms) {
                Ok(available) => available_minor[index] = available,
                Err(reason) => {
                    if reason == DeclineReason::Expired {
                        // Off the hot path: only a card found past its
                        // validity pays a second lookup, to expire it.
                        self.expire_if_due(&card_ref.key, now_ms, out);
                    }
                    let position = Some(Position::from_index(index));
                    return PayResponse::declined(reason, position, amount_minor);
                }
            }
        }
        let takes_minor = match split_payment(amount_minor, &available_minor[..count]) {
            Ok(takes) => takes,
            Err(declined) => return declined,
        };
        let mut parts = PayParts::with_capacity(count);
        for (card_ref, &take_minor) in cards.iter().zip(&takes_minor[..count]) {
            let card = self.update_card(&card_ref.key, |card| {
                if take_minor > 0 {
                    card.debit(take_minor).expect("available checked above");
                }
                *card
            });
            if take_minor > 0 {
                out.put_card(&card_ref.key, &card);
            }
            parts.push(PayPart {
                pin_last4: card_ref.last4,
                taken_minor: take_minor,
                remaining_minor: card.balance_minor,
            });
        }
        self.credit(BookKind::MerchantOwed, merchant_id, amount_minor);
        PayResponse::approved_with(amount_minor, parts)
    }
}

/// The cards a recorded decline is about: the one at its position, or all
/// of them when no one card caused it (a shortfall over several cards).
pub fn declined_cards<'a>(response: &PayResponse, cards: &'a [CardRef]) -> &'a [CardRef] {
    match response.position() {
        Some(position) if position.index() < cards.len() => {
            std::slice::from_ref(&cards[position.index()])
        }
        _ => cards,
    }
}

impl ShardMachine {
    /// Notes a decline on `keys` (cards of this shard; unknown ones are
    /// skipped): true when every one of them had already been declined
    /// since its balance last changed ([`crate::card::Card::note_decline`]),
    /// so this decline repeats one and counts against its sender.
    pub fn note_decline<'a>(&mut self, keys: impl IntoIterator<Item = &'a PinKey>) -> bool {
        let mut noted = 0usize;
        let mut repeated = true;
        for key in keys {
            if let Some(slot) = self.cards.slot(key) {
                repeated &= self.cards.update(slot, |card| card.note_decline());
                noted += 1;
            }
        }
        noted > 0 && repeated
    }
}

/// Whether a decided payment is recorded. A payment that names a card that
/// is unknown or unsold changed nothing and is not recorded, so a flood of
/// them cannot fill the disk: a retry is decided afresh (and declined the
/// same way, unless the card has been sold since). Every other outcome is
/// final for its request id.
pub fn is_recorded(response: &PayResponse) -> bool {
    response.reason() != Some(DeclineReason::InvalidCard)
}

/// Splits a payment over its cards in order ([`take_in_order`]), or gives
/// the `InsufficientFunds` decline when what the cards can give falls short
/// (without saying how short: the balance is not the merchant's to learn).
/// The local path and the two-phase coordinator both decide through here.
pub(crate) fn split_payment(
    amount_minor: u64,
    can_give_minor: &[u64],
) -> Result<[u64; CARDS_PER_PAYMENT_MAX], PayResponse> {
    let count = can_give_minor.len();
    let mut takes_minor = [0u64; CARDS_PER_PAYMENT_MAX];
    if take_in_order(amount_minor, can_give_minor, &mut takes_minor[..count]) {
        return Ok(takes_minor);
    }
    // A shortfall is not one card's fault, except when there is one card.
    Err(PayResponse::declined(
        DeclineReason::InsufficientFunds,
        (count == 1).then(|| Position::from_index(0)),
        amount_minor,
    ))
}

#[cfg(test)]
mod tests {
    use super::super::tests::machine_with;
    use super::*;
    use crate::card::{Card, CardState};
    use crate::pin::PinKey;
    use crate::protocol::ErrorCode;

    fn active(face: u64) -> Card {
        let mut card = Card::issued(face);
        card.activate(1, 0, 0, 0).expect("activates");
        card
    }

    fn card(byte: u8) -> CardRef {
        CardRef {
            key: PinKey([byte; 16]),
            last4: u16::from(byte),
        }
    }

    const PAYMENT: PaymentId = PaymentId {
        merchant_id: 5,
        request_id: 1,
    };

    #[test]
    fn a_payment_takes_in_order_and_records_its_outcome() {
        let mut machine = machine_with(&[(1, active(500)), (2, active(1000))]);
        let mut out = Changes::new();
        let paid = machine
            .pay(PAYMENT, 800, &[card(1), card(2)], None, None, 0, &mut out)
            .expect("decided");
        assert!(paid.is_approved());
        let taken: Vec<u64> = paid.parts().iter().map(|p| p.taken_minor).collect();
        assert_eq!(taken, [500, 300]);
        assert_eq!(paid.remaining_minor(), 700);
        // Two cards and the payment record; the merchant's row at batch end.
        assert_eq!(out.len(), 3);
        machine.end_batch(&mut out);
        assert_eq!(out.len(), 4);
        let page = machine.report_page(None, None, 10);
        let merchant = page.lines.last().expect("the merchant's line");
        assert_eq!(merchant.owed_minor, 800);
        assert_eq!(page.totals.cards_exhausted, 1);
    }

    #[test]
    fn a_decline_touches_no_card_and_only_a_real_one_is_recorded() {
        let mut machine = machine_with(&[(1, active(500)), (2, Card::issued(1000))]);
        let mut out = Changes::new();
        let declined = machine
            .pay(PAYMENT, 100, &[card(1), card(2)], None, None, 0, &mut out)
            .expect("decided");
        assert_eq!(declined.reason(), Some(DeclineReason::InvalidCard));
        assert_eq!(declined.position(), Some(Position::from_index(1)));
        assert!(out.is_empty(), "an invalid card leaves no record");
        let short = machine
            .pay(PAYMENT, 501, &[card(1)], None, None, 0, &mut out)
            .expect("decided");
        assert_eq!(out.len(), 1, "a shortfall is recorded");
        assert_eq!(short.reason(), Some(DeclineReason::InsufficientFunds));
        assert_eq!(short.remaining_minor(), 0, "a decline shows no balance");
        assert_eq!(
            machine
                .balance(&PinKey([1; 16]), 0)
                .expect("card")
                .balance_minor,
            500
        );
    }

    #[test]
    fn a_decline_repeated_on_an_unchanged_card_is_noted_as_a_repeat() {
        let mut machine = machine_with(&[(1, active(500)), (2, active(300))]);
        let mut out = Changes::new();
        let key = PinKey([1; 16]);
        assert!(!machine.note_decline([&key]), "the first decline is free");
        assert!(machine.note_decline([&key]), "a repeat counts");
        // A change to the balance makes the next decline free again.
        machine
            .pay(PAYMENT, 100, &[card(1)], None, None, 0, &mut out)
            .expect("decided");
        assert!(!machine.note_decline([&key]));
        // A shortfall over two cards repeats only when both were declined.
        let both = [PinKey([1; 16]), PinKey([2; 16])];
        assert!(!machine.note_decline(&both), "card 2 is new to it");
        assert!(machine.note_decline(&both));
        assert!(!machine.note_decline([&PinKey([9; 16])]), "no such card");
        let declined = PayResponse::declined(
            DeclineReason::InsufficientFunds,
            Some(Position::from_index(1)),
            900,
        );
        let cards = [card(1), card(2)];
        assert_eq!(declined_cards(&declined, &cards), &cards[1..]);
        let short = PayResponse::declined(DeclineReason::InsufficientFunds, None, 900);
        assert_eq!(declined_cards(&short, &cards), &cards[..]);
    }

    #[test]
    fn a_prior_outcome_is_replayed_for_the_same_payment_only() {
        let mut machine = machine_with(&[(1, active(500))]);
        let mut out = Changes::new();
        let first = machine
            .pay(PAYMENT, 200, &[card(1)], None, None, 0, &mut out)
            .expect("decided");
        let record = idempotency::record_of(&first, &[card(1)], 0);
        let mut replay_out = Changes::new();
        let again = machine
            .pay(
                PAYMENT,
                200,
                &[card(1)],
                None,
                Some(&record),
                0,
                &mut replay_out,
            )
            .expect("replayed");
        assert!(again.replayed);
        assert_eq!(again.parts(), first.parts());
        assert!(replay_out.is_empty(), "a replay writes nothing");
        let other = machine
            .pay(
                PAYMENT,
                201,
                &[card(1)],
                None,
                Some(&record),
                0,
                &mut replay_out,
            )
            .expect_err("a different payment under the same id");
        assert_eq!(other.error_code(), Some(ErrorCode::InvalidArgument));
        let card = machine.balance(&PinKey([1; 16]), 0).expect("card");
        assert_eq!((card.balance_minor, card.state), (300, CardState::Active));
    }
}
