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
//! * [`Watermarks`]: the look-up without a disk read. Per merchant, the
//!   highest client request id ever looked up (or, at start, recorded). A
//!   request id above it cannot have a record, so a new request from a
//!   client whose ids increase (a counter: the harness, most gateways)
//!   costs no read; any other id is read, so a retry of any age still gets
//!   its first answer. Rebuilt at start with two seeks per merchant, not a
//!   scan of the history.
//!
//! This module also translates between the wire's answer and the stored
//! record, which are different types on purpose: a protocol change must not
//! change what is on disk.

use crate::card::DeclineReason;
use crate::ids::{CardRef, PaymentId};
use crate::protocol::{ErrorCode, ErrorResponse, PayPart, PayResponse};
use crate::storage::Store;
use crate::storage::records::{PaymentRecord, RecordedOutcome, RecordedPart};
use crate::storage::{Cf, StorageError};
use dashmap::{DashMap, DashSet};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// Client request ids are below this; ids derived from a merchant's order
/// ids have the top bit set ([`crate::order`]), are not ordered, and are
/// always read.
const CLIENT_IDS_END: u64 = 1 << 63;

/// Per merchant, one more than the highest client request id looked up
/// or recorded: every id with a record in `payments` is below it.
#[derive(Default)]
pub struct Watermarks {
    by_merchant: DashMap<u32, AtomicU64>,
}

impl Watermarks {
    /// From the recorded payments: for each merchant that has any, the
    /// last client id among its keys (keys sort by merchant, then request
    /// id, big-endian). Two seeks per merchant, whatever the history.
    pub fn load(store: &dyn Store) -> Result<Watermarks, StorageError> {
        let marks = Watermarks::default();
        let mut cursor = 0u32;
        loop {
            let from = PaymentId {
                merchant_id: cursor,
                request_id: 0,
            };
            let mut first = None;
            store.scan_from(Cf::Payments, &from.to_bytes(), &mut |key, _| {
                first = Some(PaymentId::from_bytes(key).ok_or("a payment key of a bad size")?);
                Ok(false)
            })?;
            let Some(PaymentId { merchant_id, .. }) = first else {
                return Ok(marks);
            };
            let id = |request_id| PaymentId {
                merchant_id,
                request_id,
            };
            let (from, below) = (id(0).to_bytes(), id(CLIENT_IDS_END).to_bytes());
            if let Some(key) = store.last_in(Cf::Payments, &from, &below)? {
                let last = PaymentId::from_bytes(&key)
                    .ok_or_else(|| StorageError::Corrupt("a payment key of a bad size".into()))?;
                let mark = AtomicU64::new(last.request_id + 1);
                marks.by_merchant.insert(merchant_id, mark);
            }
            let Some(next) = merchant_id.checked_add(1) else {
                return Ok(marks);
            };
            cursor = next;
        }
    }

    /// True if `payment` cannot have a record: a client id above every
    /// one looked up before. Either way it counts as looked up from now
    /// on, so whoever asks about it next (a retry, once this claim is
    /// released) reads.
    pub fn first_sight(&self, payment: PaymentId) -> bool {
        let PaymentId {
            merchant_id,
            request_id,
        } = payment;
        if request_id >= CLIENT_IDS_END {
            return false;
        }
        let next = request_id + 1;
        if let Some(mark) = self.by_merchant.get(&merchant_id) {
            return mark.fetch_max(next, Ordering::AcqRel) <= request_id;
        }
        let mark = self.by_merchant.entry(merchant_id).or_default();
        mark.fetch_max(next, Ordering::AcqRel) <= request_id
    }
}

/// Step two, with the claim held: the payment's recorded outcome, if it
/// was decided before (the prefetch of the state machine's `pay`). No read
/// for an id the watermark shows is new.
pub fn prefetch(
    store: &dyn Store,
    watermarks: &Watermarks,
    payment: PaymentId,
) -> Result<Option<PaymentRecord>, ErrorResponse> {
    if watermarks.first_sight(payment) {
        return Ok(None);
    }
    store.get_payment(payment).map_err(read_failed)
}

/// A look-up that failed, as the client hears it (the cause is logged).
pub fn read_failed(error: StorageError) -> ErrorResponse {
    tracing::error!(%error, "payment lookup failed");
    ErrorResponse::new(ErrorCode::Internal, "storage read failed")
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
    let Some(reason) = response.reason() else {
        assert_eq!(response.parts().len(), cards.len(), "one part per card");
        let parts = response.parts().iter().map(|part| RecordedPart {
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
        position: response.position(),
        available_minor: response.remaining_minor(),
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
        } => {
            // Records written before declines stopped showing balances
            // replay what they first said.
            let amount_minor = record.amount_minor;
            PayResponse::declined_as_first_told(*reason, *position, amount_minor, *available_minor)
        }
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

    fn id(merchant_id: u32, request_id: u64) -> PaymentId {
        PaymentId {
            merchant_id,
            request_id,
        }
    }

    /// Rebuilt from the records alone, the watermarks let no recorded id
    /// pass as new, and let every id above them pass once.
    #[test]
    fn watermarks_never_call_a_recorded_id_new() {
        let store = crate::storage::MemStore::new();
        let mut changes = crate::storage::Changes::new();
        let recorded = [id(1, 5), id(1, 9), id(1, CLIENT_IDS_END + 3), id(3, 2)];
        for payment in recorded {
            changes.put(Cf::Payments, &payment.to_bytes(), b"a record");
        }
        store.commit(&changes).expect("commit");
        let marks = Watermarks::load(&store).expect("load");
        for payment in recorded {
            assert!(!marks.first_sight(payment), "{payment:?} is recorded");
        }
        // Below the last recorded id: read, recorded or not.
        assert!(!marks.first_sight(id(1, 7)));
        assert!(marks.first_sight(id(1, 10)));
        assert!(!marks.first_sight(id(1, 10)), "a second look reads");
        assert!(marks.first_sight(id(3, 3)));
        assert!(marks.first_sight(id(2, 0)), "a merchant with no payments");
        // Ids from order ids are not ordered: always read.
        assert!(!marks.first_sight(id(4, CLIENT_IDS_END)));
        assert!(!marks.first_sight(id(4, u64::MAX)));
        // A merchant whose only payments are from order ids.
        assert!(marks.first_sight(id(1, 11)));
    }

    /// Threads racing through the same ids: no id is new to two of them.
    #[test]
    fn one_first_sight_per_id_across_threads() {
        use std::sync::atomic::AtomicUsize;
        let marks = Watermarks::default();
        let firsts: Vec<AtomicUsize> = (0..2_000).map(|_| AtomicUsize::new(0)).collect();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for (request_id, count) in firsts.iter().enumerate() {
                        if marks.first_sight(id(1, request_id as u64)) {
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        let counts: Vec<usize> = firsts.into_iter().map(AtomicUsize::into_inner).collect();
        assert!(counts.iter().all(|&c| c <= 1), "an id new twice");
        assert!(counts.iter().sum::<usize>() >= 1);
        assert!(!marks.first_sight(id(1, 1_999)));
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
        assert_eq!(again.reason(), Some(DeclineReason::InsufficientFunds));
        for (amount, cards) in [(901, vec![card(1)]), (900, vec![card(2)]), (900, vec![])] {
            let refused = replay(&record, amount, &cards).expect_err("a different payment");
            assert_eq!(refused.error_code(), Some(ErrorCode::InvalidArgument));
        }
    }
}
