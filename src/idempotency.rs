//! Idempotency: a payment is identified by (merchant, request id), and a
//! retry of it must return the first answer and never debit twice.
//!
//! Two pieces make that hold:
//!
//! * [`Claims`]: the set of payment ids being processed right now, shared by
//!   all shards and coordinators. Whoever processes a payment claims its id
//!   first; a second request with the same id while the first is in flight
//!   is answered `RequestInProgress` instead of racing it. The claim is
//!   released only after the outcome is durable, so the set is bounded by
//!   the number of requests in flight.
//! * The durable outcome in the `payments` column family: after the claim,
//!   the processor looks the id up; a hit is replayed as it was first
//!   answered (marked `replayed`).

use crate::ids::PaymentId;
use crate::protocol::{ErrorCode, PayResponse, Response};
use crate::shard::op::CardRef;
use crate::storage::records::StoredPayment;
use dashmap::DashSet;

#[derive(Default)]
pub struct Claims {
    in_flight: DashSet<PaymentId>,
}

impl Claims {
    pub fn new() -> Claims {
        Claims::default()
    }

    /// Claims `payment`; false if someone else holds it.
    pub fn claim(&self, payment: PaymentId) -> bool {
        self.in_flight.insert(payment)
    }

    pub fn release(&self, payment: PaymentId) {
        let was_claimed = self.in_flight.remove(&payment).is_some();
        debug_assert!(was_claimed, "released a payment that was not claimed");
    }

    pub fn is_in_flight(&self, payment: PaymentId) -> bool {
        self.in_flight.contains(&payment)
    }

    pub fn len(&self) -> usize {
        self.in_flight.len()
    }

    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }
}

/// The answer to a retry of an already-decided payment. The retry must be
/// the same payment (same amount, same cards in the same order); a merchant
/// reusing a request id for a different payment gets an error rather than
/// somebody else's approval.
pub fn replay(stored: &StoredPayment, amount_minor: u64, cards: &[CardRef]) -> Response {
    let same_cards = stored.card_keys.len() == cards.len()
        && stored
            .card_keys
            .iter()
            .zip(cards)
            .all(|(stored_key, card)| *stored_key == card.key.0);
    if stored.response.amount_minor != amount_minor || !same_cards {
        return Response::error(
            ErrorCode::InvalidArgument,
            "this request id was already used for a different payment",
        );
    }
    let mut response: PayResponse = stored.response.clone();
    response.replayed = true;
    Response::Paid(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::DeclineReason;
    use crate::pin::PinKey;

    fn card(byte: u8) -> CardRef {
        CardRef {
            key: PinKey([byte; 16]),
            last4: 0,
        }
    }

    #[test]
    fn a_claim_is_exclusive_until_released() {
        let claims = Claims::new();
        let id = PaymentId {
            merchant_id: 1,
            request_id: 2,
        };
        assert!(claims.claim(id));
        assert!(!claims.claim(id));
        assert!(claims.is_in_flight(id));
        claims.release(id);
        assert!(claims.claim(id));
    }

    #[test]
    fn replay_returns_the_first_answer_only_for_the_same_payment() {
        let stored = StoredPayment {
            response: PayResponse::declined(DeclineReason::InsufficientFunds, Some(1), 900, 500),
            card_keys: vec![[1; 16]],
        };
        match replay(&stored, 900, &[card(1)]) {
            Response::Paid(response) => {
                assert!(response.replayed);
                assert_eq!(response.reason, Some(DeclineReason::InsufficientFunds));
            }
            other => panic!("expected a replay, got {other:?}"),
        }
        assert!(matches!(
            replay(&stored, 901, &[card(1)]),
            Response::Error(_)
        ));
        assert!(matches!(
            replay(&stored, 900, &[card(2)]),
            Response::Error(_)
        ));
    }
}
