//! The merchant's own order ids, and the HTTP API's idempotency keys: short
//! strings mapped to the engine's numeric request ids.
//!
//! A payment is stored under (merchant, u64 request id) ([`PaymentId`]).
//! A merchant that keys its payments by its own order number
//! ("ORD-2026-000123") sends that string instead, and the engine derives
//! the request id from it:
//!
//! ```text
//! request_id = 2^63 | (first 8 bytes of SHA-256(domain || 0x00 || merchant_be32 || len_u8 || text), big-endian, top bit cleared)
//! ```
//!
//! * **Domain separation.** Request ids a client chooses (binary protocol)
//!   are below 2^63 ([`CLIENT_REQUEST_ID_MAX`]; the gateway refuses others
//!   for a new payment, authorization, capture, void or refund); derived
//!   ids always have the top bit set, so the two can never name the same
//!   record. Each use of a string has its own hash domain ([`Domain`]):
//!   an order id and an idempotency key with the same text derive
//!   different ids, though they also live in different namespaces.
//! * **Per merchant.** The merchant id is hashed in and also stays the
//!   record's owner, so two merchants' "ORD-1" never meet.
//! * **Collisions.** Two different order ids of one merchant share a
//!   request id with probability 2^-63 per pair: for n order ids,
//!   about n² / 2^64 (10^6 orders: 5 × 10^-8; 10^8: 5 × 10^-4). A collision
//!   cannot pay or replay the wrong order: the original string is written
//!   with the payment's record, in its write-set (`order_ids` column
//!   family), and a second order id landing on a recorded one is refused
//!   `invalid_argument` ("collides") before anything is routed; the
//!   merchant retries under another id. Two colliding order ids in flight
//!   at the same instant meet at the payment's claim instead: the second
//!   is answered as a reuse of the first's id (a replay when the payments
//!   are equal, else `invalid_argument`), never paid twice, and the first
//!   keeps its order id.
//!   Idempotency keys of the HTTP API (captures, voids, refunds) are not
//!   kept as strings; a collision between two of them (same odds) would
//!   make the second look like a reuse of the first (answered 422, or a
//!   replay when the requests are equal).
//! * **Why 63 bits, not 128.** The engine's ids are (u32 owner, u64
//!   request id) in every column family, the two-phase log and the books;
//!   widening them is a storage format change left to the core's id work.
//!   Detected collisions make 63 bits safe, if not free.

use crate::ids::{MerchantId, OperationId, PaymentId, RefundId};
use crate::protocol::{ErrorCode, ErrorResponse, OrderInfo, OrderStatus};
use crate::storage::records::{PaymentRecord, PaymentRefunds, RecordedOutcome};
use crate::storage::{Storage, Store};
use sha2::{Digest, Sha256};
use std::fmt;

/// The longest order id or idempotency key, in characters (= bytes).
pub const ORDER_ID_CHARS_MAX: usize = 50;
/// The largest request id a client may choose for a new operation: the
/// top bit marks ids derived from strings.
pub const CLIENT_REQUEST_ID_MAX: u64 = (1 << 63) - 1;
/// The bit every derived request id has.
const DERIVED_BIT: u64 = 1 << 63;

/// A merchant's order id or idempotency key: 1 to [`ORDER_ID_CHARS_MAX`]
/// characters from `A-Z a-z 0-9 . _ : -`, case-sensitive; it fits a URL
/// path segment as it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderId(String);

/// Why a string is not an order id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderIdError {
    #[error("an order id has 1..={ORDER_ID_CHARS_MAX} characters, not {0}")]
    Length(usize),
    #[error(
        "an order id's characters are A-Z a-z 0-9 . _ : - (character {position} is not one of them)"
    )]
    Character { position: usize },
}

impl OrderId {
    pub fn parse(text: &str) -> Result<OrderId, OrderIdError> {
        let length = text.len();
        if !(1..=ORDER_ID_CHARS_MAX).contains(&length) {
            // Count characters only for the message; never beyond a bound.
            return Err(OrderIdError::Length(length));
        }
        if let Some(index) = text.bytes().position(|byte| !allowed(byte)) {
            return Err(OrderIdError::Character {
                position: index + 1,
            });
        }
        Ok(OrderId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn allowed(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b':' | b'-')
}

/// What a string names: each has its own hash domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// A payment or authorization (the payment namespace).
    Order,
    /// An HTTP `Idempotency-Key` of a capture or void.
    Operation,
    /// An HTTP `Idempotency-Key` of a refund.
    Refund,
}

impl Domain {
    fn tag(self) -> &'static [u8] {
        match self {
            Domain::Order => b"kessai/order-id/v1",
            Domain::Operation => b"kessai/idempotency-key/operation/v1",
            Domain::Refund => b"kessai/idempotency-key/refund/v1",
        }
    }
}

/// The request id `text` derives for `merchant` in `domain`.
pub fn derived_request_id(domain: Domain, merchant: MerchantId, text: &OrderId) -> u64 {
    let mut hash = Sha256::new();
    hash.update(domain.tag());
    hash.update([0u8]);
    hash.update(merchant.to_be_bytes());
    let length = u8::try_from(text.0.len()).expect("at most ORDER_ID_CHARS_MAX");
    hash.update([length]);
    hash.update(text.0.as_bytes());
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) | DERIVED_BIT
}

/// The payment (or authorization) an order id names.
pub fn payment_id(merchant: MerchantId, order: &OrderId) -> PaymentId {
    PaymentId {
        merchant_id: merchant,
        request_id: derived_request_id(Domain::Order, merchant, order),
    }
}

/// The capture or void an idempotency key names.
pub fn operation_id(merchant: MerchantId, key: &OrderId) -> OperationId {
    OperationId {
        merchant_id: merchant,
        request_id: derived_request_id(Domain::Operation, merchant, key),
    }
}

/// The refund an idempotency key names.
pub fn refund_id(merchant: MerchantId, key: &OrderId) -> RefundId {
    RefundId {
        merchant_id: merchant,
        request_id: derived_request_id(Domain::Refund, merchant, key),
    }
}

/// Whether a client may choose `request_id` for a new operation.
pub fn is_client_request_id(request_id: u64) -> bool {
    request_id <= CLIENT_REQUEST_ID_MAX
}

/// Refuses `order` when another order id of the merchant already derived
/// the same payment id and was recorded (a collision: see the module's
/// comment). A read only: the order id is written with the payment.
pub fn check_not_colliding(
    storage: &Storage,
    payment: PaymentId,
    order: &OrderId,
) -> Result<(), ErrorResponse> {
    match storage.order_id_of(payment) {
        Ok(Some(recorded)) if recorded != order.as_str() => Err(ErrorResponse::new(
            ErrorCode::InvalidArgument,
            "this order id collides with another of yours; use a different order id",
        )),
        Ok(_) => Ok(()),
        Err(error) => {
            tracing::error!(%error, "order id read failed");
            Err(ErrorResponse::new(
                ErrorCode::Internal,
                "storage read failed",
            ))
        }
    }
}

/// What the payment or authorization named by `order` is now, if anything
/// was decided under it.
pub fn lookup(
    storage: &Storage,
    merchant: MerchantId,
    order: &OrderId,
) -> Result<Option<OrderInfo>, ErrorResponse> {
    let payment = payment_id(merchant, order);
    let failed = |error: crate::storage::StorageError| {
        tracing::error!(%error, "order lookup failed");
        ErrorResponse::new(ErrorCode::Internal, "storage read failed")
    };
    // Another order id's payment, should the two collide, is not this one.
    match storage.order_id_of(payment).map_err(failed)? {
        Some(recorded) if recorded != order.as_str() => return Ok(None),
        _ => {}
    }
    let Some(record) = storage.get_payment(payment).map_err(failed)? else {
        return Ok(None);
    };
    let refunds = storage.get_payment_refunds(payment).map_err(failed)?;
    Ok(Some(info(order, payment, &record, &refunds)))
}

fn info(
    order: &OrderId,
    payment: PaymentId,
    record: &PaymentRecord,
    refunds: &PaymentRefunds,
) -> OrderInfo {
    let (status, reason, taken_minor) = match &record.outcome {
        RecordedOutcome::Approved { parts } => (
            OrderStatus::Approved,
            None,
            parts.iter().map(|part| part.taken_minor).sum(),
        ),
        RecordedOutcome::Declined { reason, .. } => (OrderStatus::Declined, Some(*reason), 0),
        RecordedOutcome::Authorized => (OrderStatus::Authorized, None, 0),
    };
    let expires_at_ms = match (&record.authorization, status) {
        (Some(terms), OrderStatus::Authorized) => terms.expires_at_ms,
        _ => 0,
    };
    OrderInfo {
        order_id: order.as_str().to_owned(),
        request_id: payment.request_id,
        authorization: record.authorization.is_some(),
        status,
        reason,
        amount_minor: record.amount_minor,
        taken_minor,
        refunded_minor: refunds.refunded_minor.iter().sum(),
        pins_last4: record.cards.iter().map(|card| card.last4).collect(),
        at_ms: record.at_ms,
        expires_at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(text: &str) -> OrderId {
        OrderId::parse(text).expect("an order id")
    }

    #[test]
    fn the_alphabet_and_length_are_enforced() {
        for good in ["A", "ORD-2026-000123", "a.b_c:d-e", &"9".repeat(50)] {
            assert!(OrderId::parse(good).is_ok(), "{good}");
        }
        assert_eq!(OrderId::parse(""), Err(OrderIdError::Length(0)));
        assert_eq!(
            OrderId::parse(&"x".repeat(51)),
            Err(OrderIdError::Length(51))
        );
        for (bad, position) in [("a b", 2), ("a/b", 2), ("é", 1), ("x%2F", 2), ("?", 1)] {
            assert_eq!(
                OrderId::parse(bad),
                Err(OrderIdError::Character { position }),
                "{bad}"
            );
        }
    }

    /// The mapping is a stored format: these numbers must never change
    /// (docs/PROTOCOL.md quotes the first).
    #[test]
    fn the_mapping_is_pinned() {
        let id = payment_id(5, &order("ORD-2026-000123"));
        assert_eq!(id.merchant_id, 5);
        assert_eq!(id.request_id, 0x95F0_47FC_CFAB_9931);
    }

    #[test]
    fn derived_ids_never_meet_client_ids_nor_each_other() {
        let text = order("ORD-1");
        let ids = [
            derived_request_id(Domain::Order, 5, &text),
            derived_request_id(Domain::Operation, 5, &text),
            derived_request_id(Domain::Refund, 5, &text),
            derived_request_id(Domain::Order, 6, &text),
            derived_request_id(Domain::Order, 5, &order("ORD-2")),
            derived_request_id(Domain::Order, 5, &order("ord-1")),
        ];
        for (index, id) in ids.iter().enumerate() {
            assert!(!is_client_request_id(*id));
            assert!(!ids[index + 1..].contains(id), "{ids:x?}");
        }
        assert!(is_client_request_id(CLIENT_REQUEST_ID_MAX));
        assert!(!is_client_request_id(CLIENT_REQUEST_ID_MAX + 1));
    }

    /// A collision cannot be found by search (2^63), so it is made: the
    /// payment id of one order id is recorded under another's text.
    #[test]
    fn a_colliding_order_id_is_refused_and_never_looked_up_as_the_other() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::open(dir.path()).expect("open");
        let ours = order("ORD-1");
        let payment = payment_id(5, &ours);
        let mut other = crate::storage::Changes::new();
        other.put_order_id(payment, "ORD-OTHER");
        storage.commit(&other).expect("recorded");
        let refused = check_not_colliding(&storage, payment, &ours).expect_err("collides");
        assert_eq!(refused.error_code(), Some(ErrorCode::InvalidArgument));
        assert!(refused.message.contains("collides"));
        assert_eq!(lookup(&storage, 5, &ours), Ok(None));
        let fresh = order("ORD-2");
        let id = payment_id(5, &fresh);
        check_not_colliding(&storage, id, &fresh).expect("nothing recorded under it");
        let mut own = crate::storage::Changes::new();
        own.put_order_id(id, "ORD-2");
        storage.commit(&own).expect("recorded");
        check_not_colliding(&storage, id, &fresh).expect("its own record");
    }
}
