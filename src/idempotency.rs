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
//!
//! This module also translates between the wire's answer and the stored
//! record, which are different types on purpose: a protocol change must not
//! change what is on disk.

use crate::card::DeclineReason;
use crate::ids::{CardRef, PaymentId};
use crate::protocol::{ErrorCode, ErrorResponse, PayPart, PayResponse};
use crate::storage::Store;
use crate::storage::records::{PaymentRecord, RecordedOutcome, RecordedPart};
use dashmap::DashSet;
use std::hash::Hash;

/// The ids of one namespace being processed right now (payments by
/// default; refunds, captures and voids, remittances each have their own
/// id type and so their own set).
pub struct Claims<K = PaymentId> {
    in_flight: DashSet<K>,
}

impl<K: Eq + Hash> Default for Claims<K> {
    fn default() -> Claims<K> {
        Claims {
            in_flight: DashSet::new(),
        }
    }
}

impl<K: Eq + Hash + Copy> Claims<K> {
    pub fn new() -> Claims<K> {
        Claims::default()
    }

    /// Claims `payment`; false if someone else holds it.
    pub fn claim(&self, payment: K) -> bool {
        self.in_flight.insert(payment)
    }

    /// Releases a claim this caller holds. Releasing one nobody holds would
    /// mean two processors believed they owned the payment: a bug that could
    /// pay twice, so it stops the engine.
    pub fn release(&self, payment: K) {
        let was_claimed = self.in_flight.remove(&payment).is_some();
        assert!(was_claimed, "released a payment that was not claimed");
    }

    pub fn is_in_flight(&self, payment: K) -> bool {
        self.in_flight.contains(&payment)
    }

    pub fn len(&self) -> usize {
        self.in_flight.len()
    }

    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }
}

/// Releases a claim however its holder's work ends (a coordinator's future
/// may be dropped at any await).
pub(crate) struct ClaimGuard<'a, K: Eq + Hash + Copy = PaymentId> {
    claims: &'a Claims<K>,
    payment: K,
}

impl<'a, K: Eq + Hash + Copy> ClaimGuard<'a, K> {
    /// Guards a claim the caller has just taken.
    pub(crate) fn new(claims: &'a Claims<K>, payment: K) -> ClaimGuard<'a, K> {
        ClaimGuard { claims, payment }
    }
}

impl<K: Eq + Hash + Copy> Drop for ClaimGuard<'_, K> {
    fn drop(&mut self) {
        self.claims.release(self.payment);
    }
}

/// The prologue of whoever processes a payment (a shard, or a two-phase
/// coordinator), step one: claim its id, or answer that it is in progress.
pub fn claim<K: Eq + Hash + Copy>(claims: &Claims<K>, payment: K) -> Result<(), ErrorResponse> {
    if claims.claim(payment) {
        Ok(())
    } else {
        Err(ErrorResponse::new(
            ErrorCode::RequestInProgress,
            "this request id is being processed; retry when it has answered",
        ))
    }
}

/// Step two, with the claim held: the payment's recorded outcome, if it
/// was decided before (the prefetch of the state machine's `pay`).
pub fn prefetch(
    store: &dyn Store,
    payment: PaymentId,
) -> Result<Option<PaymentRecord>, ErrorResponse> {
    store.get_payment(payment).map_err(|error| {
        tracing::error!(%error, "payment lookup failed");
        ErrorResponse::new(ErrorCode::Internal, "storage read failed")
    })
}

/// The answer to a retry of an already-decided payment. The retry must be
/// the same payment (same amount, same cards in the same order); a merchant
/// reusing a request id for a different payment gets an error rather than
/// somebody else's approval.
pub fn replay(
    record: &PaymentRecord,
    amount_minor: u64,
    cards: &[CardRef],
) -> Result<PayResponse, ErrorResponse> {
    let same_cards = record.cards.len() == cards.len()
        && record.cards.iter().zip(cards).all(|(a, b)| a.key == b.key);
    if record.authorization.is_some() {
        return Err(ErrorResponse::new(
            ErrorCode::InvalidArgument,
            "this request id names an authorization: capture it, do not pay it",
        ));
    }
    if record.amount_minor != amount_minor || !same_cards {
        return Err(ErrorResponse::new(
            ErrorCode::InvalidArgument,
            "this request id was already used for a different payment",
        ));
    }
    let mut response = response_of(record);
    response.replayed = true;
    Ok(response)
}

/// The record of a decided payment, decided at `at_ms`.
pub(crate) fn record_of(response: &PayResponse, cards: &[CardRef], at_ms: u64) -> PaymentRecord {
    let mut record = PaymentRecord {
        at_ms,
        authorization: None,
        amount_minor: response.amount_minor,
        cards: Vec::with_capacity(cards.len()),
        outcome: RecordedOutcome::Authorized,
    };
    record_into(&mut record, response, cards, at_ms);
    record
}

/// [`record_of`] written over `record`, reusing its lists' buffers: a
/// shard keeps one record for the payments it decides, so a warm shard
/// allocates nothing to record one (issue #20).
pub(crate) fn record_into(
    record: &mut PaymentRecord,
    response: &PayResponse,
    cards: &[CardRef],
    at_ms: u64,
) {
    record.at_ms = at_ms;
    record.authorization = None;
    record.amount_minor = response.amount_minor;
    record.cards.clear();
    record.cards.extend_from_slice(cards);
    let Some(reason) = response.reason else {
        assert_eq!(response.parts.len(), cards.len(), "one part per card");
        let parts = response.parts.iter().map(|part| RecordedPart {
            taken_minor: part.taken_minor,
            remaining_minor: part.remaining_minor,
        });
        match &mut record.outcome {
            RecordedOutcome::Approved { parts: kept } => {
                kept.clear();
                kept.extend(parts);
            }
            other => {
                *other = RecordedOutcome::Approved {
                    parts: parts.collect(),
                }
            }
        }
        return;
    };
    record.outcome = RecordedOutcome::Declined {
        reason,
        position: response.position,
        available_minor: response.remaining_minor,
    };
}

/// The first answer, rebuilt from its record.
pub fn response_of(record: &PaymentRecord) -> PayResponse {
    match &record.outcome {
        RecordedOutcome::Approved { parts } => PayResponse::approved_with(
            record.amount_minor,
            record
                .cards
                .iter()
                .zip(parts)
                .map(|(card, part)| PayPart {
                    pin_last4: card.last4,
                    taken_minor: part.taken_minor,
                    remaining_minor: part.remaining_minor,
                })
                .collect(),
        ),
        RecordedOutcome::Declined {
            reason,
            position,
            available_minor,
        } => PayResponse {
            // Records written before declines stopped showing balances
            // replay what they first said.
            remaining_minor: *available_minor,
            ..PayResponse::declined(*reason, *position, record.amount_minor)
        },
        // An open authorization has no payment answer yet ([`replay`]
        // refuses a payment under its id before asking for one).
        RecordedOutcome::Authorized => {
            PayResponse::declined(DeclineReason::UnknownPayment, None, record.amount_minor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::DeclineReason;
    use crate::ids::Position;
    use crate::pin::PinKey;

    fn card(byte: u8) -> CardRef {
        CardRef {
            key: PinKey([byte; 16]),
            last4: u16::from(byte),
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
    #[should_panic(expected = "released a payment that was not claimed")]
    fn releasing_an_unclaimed_payment_is_a_bug() {
        Claims::new().release(PaymentId {
            merchant_id: 1,
            request_id: 2,
        });
    }

    #[test]
    fn records_and_answers_translate_both_ways() {
        let approved = PayResponse::approved(
            700,
            vec![
                PayPart {
                    pin_last4: 1,
                    taken_minor: 500,
                    remaining_minor: 0,
                },
                PayPart {
                    pin_last4: 2,
                    taken_minor: 200,
                    remaining_minor: 300,
                },
            ],
        );
        let declined = PayResponse::declined(
            DeclineReason::InsufficientFunds,
            Some(Position::from_index(0)),
            900,
        );
        for response in [approved, declined] {
            let record = record_of(&response, &[card(1), card(2)], 0);
            assert_eq!(response_of(&record), response);
        }
    }

    #[test]
    fn replay_returns_the_first_answer_only_for_the_same_payment() {
        let first = PayResponse::declined(
            DeclineReason::InsufficientFunds,
            Some(Position::from_index(0)),
            900,
        );
        let record = record_of(&first, &[card(1)], 0);
        let again = replay(&record, 900, &[card(1)]).expect("same payment");
        assert!(again.replayed);
        assert_eq!(again.reason, Some(DeclineReason::InsufficientFunds));
        for (amount, cards) in [(901, vec![card(1)]), (900, vec![card(2)]), (900, vec![])] {
            let refused = replay(&record, amount, &cards).expect_err("a different payment");
            assert_eq!(refused.error_code(), Some(ErrorCode::InvalidArgument));
        }
    }
}
