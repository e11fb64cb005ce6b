//! Payments: a merchant takes an amount from one or more cards.

use super::ErrorResponse;
use crate::card::DeclineReason;
use crate::ids::{CARDS_INLINE, Position};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

/// A merchant debits `amount_minor` from one or more cards, taken in the
/// order given. The merchant is the authenticated principal; with it,
/// `request_id` makes the request idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayRequest {
    pub request_id: u64,
    pub amount_minor: u64,
    pub pins: Vec<String>,
}

/// A [`PayRequest`] read in place: the same wire layout, its PINs borrowed
/// from the frame rather than copied into a vector of strings, so the
/// gateway reads a payment of up to [`CARDS_INLINE`] PINs without a heap
/// allocation (issue #20). Any body that decodes as one decodes as the
/// other ([`PayRequestView::decode`] refuses what [`PayRequest`] would).
#[derive(Debug, Deserialize)]
pub struct PayRequestView<'a> {
    pub request_id: u64,
    pub amount_minor: u64,
    #[serde(borrow)]
    pub pins: PinsView<'a>,
}

impl<'a> PayRequestView<'a> {
    /// The body of a Pay frame, whole; `None` where [`PayRequest`]'s own
    /// decoding would refuse it (and then says why).
    pub fn decode(body: &'a [u8]) -> Option<PayRequestView<'a>> {
        match postcard::take_from_bytes::<PayRequestView<'a>>(body) {
            Ok((view, [])) => Some(view),
            _ => None,
        }
    }
}

/// The PINs of a [`PayRequestView`], borrowed, in request order.
#[derive(Debug)]
pub struct PinsView<'a>(pub SmallVec<[&'a str; CARDS_INLINE]>);

impl<'de: 'a, 'a> Deserialize<'de> for PinsView<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Pins<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Pins<'a> {
            type Value = PinsView<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sequence of PINs")
            }

            fn visit_seq<S: serde::de::SeqAccess<'de>>(
                self,
                mut seq: S,
            ) -> Result<PinsView<'a>, S::Error> {
                let mut pins = SmallVec::new();
                while let Some(pin) = seq.next_element::<&'de str>()? {
                    pins.push(pin);
                }
                Ok(PinsView(pins))
            }
        }
        deserializer.deserialize_seq(Pins(std::marker::PhantomData))
    }
}

/// An approved payment's parts, one per card: inline up to
/// [`CARDS_INLINE`] cards, so the common answer is not one more heap
/// allocation per payment (issue #20). On the wire, a sequence like a
/// `Vec`'s ([`parts_wire`]).
pub type PayParts = SmallVec<[PayPart; CARDS_INLINE]>;

/// [`PayParts`] serialised exactly as a `Vec<PayPart>` is.
mod parts_wire {
    use super::{PayPart, PayParts};
    use serde::de::{SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(parts: &PayParts, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(parts.iter())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PayParts, D::Error> {
        struct Parts;
        impl<'de> Visitor<'de> for Parts {
            type Value = PayParts;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sequence of payment parts")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PayParts, A::Error> {
                let mut parts = PayParts::new();
                while let Some(part) = seq.next_element::<PayPart>()? {
                    parts.push(part);
                }
                Ok(parts)
            }
        }
        deserializer.deserialize_seq(Parts)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayStatus {
    Approved,
    Declined,
}

/// What one card contributed to an approved payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayPart {
    /// Last four digits of the PIN, to tell the purchaser's cards apart.
    pub pin_last4: u16,
    pub taken_minor: u64,
    /// What the card holds after this payment.
    pub remaining_minor: u64,
}

/// The answer to a payment. What is kept on disk is the payment's record
/// (`storage::records::PaymentRecord`, a different type on purpose); a
/// retry with the same (merchant, request id) gets this answer rebuilt from
/// it, marked `replayed`.
///
/// Built only by [`PayResponse::approved`] and [`PayResponse::declined`],
/// and decoded only when it is one of them, so an approved payment never
/// carries a decline reason or a blamed card, and a decline never tells a
/// balance or parts. On the wire (and in its serde form) the fields are
/// as they read, in this order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PayResponseWire")]
pub struct PayResponse {
    status: PayStatus,
    /// Set when declined, and only then.
    reason: Option<DeclineReason>,
    /// Position (from 1, in the request's PIN list) of the card that caused
    /// the decline, when one card did.
    position: Option<Position>,
    pub amount_minor: u64,
    /// Total left on the payment's cards (when approved: after the debit;
    /// when declined: 0, but for declines recorded before that rule).
    remaining_minor: u64,
    /// One entry per card, in request order (empty when declined).
    #[serde(with = "parts_wire")]
    parts: PayParts,
    /// True when this answer is a replay of an earlier identical request.
    pub replayed: bool,
}

/// [`PayResponse`]'s fields as they arrive, before they are checked.
#[derive(Deserialize)]
struct PayResponseWire {
    status: PayStatus,
    reason: Option<DeclineReason>,
    position: Option<Position>,
    amount_minor: u64,
    remaining_minor: u64,
    #[serde(with = "parts_wire")]
    parts: PayParts,
    replayed: bool,
}

impl TryFrom<PayResponseWire> for PayResponse {
    type Error = &'static str;

    fn try_from(wire: PayResponseWire) -> Result<PayResponse, &'static str> {
        let consistent = match wire.status {
            PayStatus::Approved => wire.reason.is_none() && wire.position.is_none(),
            // A replay of a decline recorded before declines stopped
            // telling balances says what it first said
            // ([`PayResponse::declined_as_first_told`]).
            PayStatus::Declined => wire.reason.is_some() && wire.parts.is_empty(),
        };
        if !consistent {
            return Err("a payment answer is either approved or declined with a reason");
        }
        Ok(PayResponse {
            status: wire.status,
            reason: wire.reason,
            position: wire.position,
            amount_minor: wire.amount_minor,
            remaining_minor: wire.remaining_minor,
            parts: wire.parts,
            replayed: wire.replayed,
        })
    }
}

impl PayResponse {
    /// A decline: the reason, and the card that caused it when one did.
    /// A decline never tells the cards' balance (`remaining_minor` is 0).
    pub fn declined(
        reason: DeclineReason,
        position: Option<Position>,
        amount_minor: u64,
    ) -> PayResponse {
        PayResponse {
            status: PayStatus::Declined,
            reason: Some(reason),
            position,
            amount_minor,
            remaining_minor: 0,
            parts: PayParts::new(),
            replayed: false,
        }
    }

    /// A decline replayed from a record written before declines stopped
    /// telling the cards' balance: what it first said.
    pub fn declined_as_first_told(
        reason: DeclineReason,
        position: Option<Position>,
        amount_minor: u64,
        available_minor: u64,
    ) -> PayResponse {
        PayResponse {
            remaining_minor: available_minor,
            ..PayResponse::declined(reason, position, amount_minor)
        }
    }

    pub fn approved(amount_minor: u64, parts: Vec<PayPart>) -> PayResponse {
        PayResponse::approved_with(amount_minor, PayParts::from_vec(parts))
    }

    /// [`PayResponse::approved`], its parts already gathered inline.
    pub fn approved_with(amount_minor: u64, parts: PayParts) -> PayResponse {
        // Money invariant, kept in production: the parts pay the amount.
        assert_eq!(
            parts.iter().map(|p| p.taken_minor).sum::<u64>(),
            amount_minor,
            "an approved payment's parts add up to its amount"
        );
        PayResponse {
            status: PayStatus::Approved,
            reason: None,
            position: None,
            amount_minor,
            remaining_minor: parts.iter().map(|p| p.remaining_minor).sum(),
            parts,
            replayed: false,
        }
    }

    pub fn is_approved(&self) -> bool {
        self.status == PayStatus::Approved
    }

    pub fn status(&self) -> PayStatus {
        self.status
    }

    /// Why it was declined; `None` when approved.
    pub fn reason(&self) -> Option<DeclineReason> {
        self.reason
    }

    /// The card that caused the decline, when one did.
    pub fn position(&self) -> Option<Position> {
        self.position
    }

    /// What the payment's cards hold after it (0 when declined).
    pub fn remaining_minor(&self) -> u64 {
        self.remaining_minor
    }

    /// What each card gave, in request order (none when declined).
    pub fn parts(&self) -> &[PayPart] {
        &self.parts
    }
}

/// Many payments in one frame, for merchants that take payments in bulk:
/// one frame, one admission and one reply frame for up to
/// `max_payments_per_batch` payments. Each item is exactly a [`PayRequest`]
/// (the same idempotency by request id, the same checks) and gets its own
/// result, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayBatchRequest {
    pub payments: Vec<PayRequest>,
}

/// One result per payment of a [`PayBatchRequest`], in the same order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayBatchResponse {
    pub results: Vec<PayResult>,
}

/// What one payment of a batch got: exactly what the same payment sent
/// alone would have got, a [`PayResponse`] or an error (whose message is cut
/// to [`BATCH_ERROR_MESSAGE_BYTES_MAX`] so a batch's reply has a known
/// bound).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayResult {
    Paid(PayResponse),
    Error(ErrorResponse),
}

/// Longest error message in a batch result.
pub const BATCH_ERROR_MESSAGE_BYTES_MAX: usize = 64;

impl PayResult {
    /// An error result, its message cut at a character boundary.
    pub fn error(mut error: ErrorResponse) -> PayResult {
        if error.message.len() > BATCH_ERROR_MESSAGE_BYTES_MAX {
            let mut end = BATCH_ERROR_MESSAGE_BYTES_MAX;
            while !error.message.is_char_boundary(end) {
                end -= 1;
            }
            error.message.truncate(end);
        }
        PayResult::Error(error)
    }

    /// The most one result can take on the wire, for a payment naming
    /// `pins` cards: postcard's largest encodings (a u64 varint is at most
    /// 10 bytes, a u16 at most 3).
    pub fn encoded_bytes_max(pins: usize) -> usize {
        // variant, status, reason and position options, amount, remaining,
        // parts length (pins <= 16: one byte), replayed.
        const PAID_FIXED: usize = 1 + 1 + 2 + 2 + 10 + 10 + 1 + 1;
        // pin_last4, taken, remaining.
        const PART: usize = 3 + 10 + 10;
        // variant, code, message length (< 128: one byte), message.
        const ERROR: usize = 1 + 3 + 1 + BATCH_ERROR_MESSAGE_BYTES_MAX;
        (PAID_FIXED + PART * pins).max(ERROR)
    }
}

impl From<super::Response> for PayResult {
    /// A payment's reply as a batch result. Only payment replies and errors
    /// reach a batch; anything else would be an engine bug, reported to
    /// the client as `internal` rather than lost.
    fn from(response: super::Response) -> PayResult {
        match response {
            super::Response::Paid(paid) => PayResult::Paid(paid),
            super::Response::Error(error) => PayResult::error(error),
            other => {
                debug_assert!(false, "a batch got {other:?}");
                PayResult::error(ErrorResponse::new(
                    super::ErrorCode::Internal,
                    "unexpected reply to a payment",
                ))
            }
        }
    }
}

impl PayBatchResponse {
    /// The most a reply to `batch` can take on the wire, body only.
    pub fn encoded_bytes_max(batch: &PayBatchRequest) -> usize {
        // The results' length: a varint of at most 5 bytes.
        5 + batch
            .payments
            .iter()
            .map(|payment| PayResult::encoded_bytes_max(payment.pins.len()))
            .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorCode;
    use proptest::prelude::*;

    fn any_result() -> impl Strategy<Value = (usize, PayResult)> {
        let part = (any::<u16>(), any::<u64>(), any::<u64>()).prop_map(
            |(pin_last4, taken_minor, remaining_minor)| PayPart {
                pin_last4,
                taken_minor,
                remaining_minor,
            },
        );
        let paid = (
            any::<bool>(),
            proptest::option::of(any::<u8>()),
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(part, 1..=16),
            any::<bool>(),
        )
            .prop_map(|(approved, position, amount, remaining, parts, replayed)| {
                let pins = parts.len();
                let response = PayResponse {
                    status: if approved {
                        PayStatus::Approved
                    } else {
                        PayStatus::Declined
                    },
                    reason: (!approved).then_some(DeclineReason::InsufficientFunds),
                    position: position.and_then(Position::from_number),
                    amount_minor: amount,
                    remaining_minor: remaining,
                    parts: PayParts::from_vec(parts),
                    replayed,
                };
                (pins, PayResult::Paid(response))
            });
        let error = (1usize..=16, any::<u16>(), ".{0,200}").prop_map(|(pins, code, message)| {
            let error = ErrorResponse { code, message };
            (pins, PayResult::error(error))
        });
        prop_oneof![paid, error]
    }

    proptest! {
        /// The bound admission and validation rely on holds for every
        /// result, however extreme its numbers.
        #[test]
        fn a_result_never_exceeds_its_bound((pins, result) in any_result()) {
            let bytes = postcard::to_stdvec(&result).expect("encode");
            prop_assert!(bytes.len() <= PayResult::encoded_bytes_max(pins));
        }
    }

    #[test]
    fn error_messages_are_cut_at_a_character_boundary() {
        let long = "é".repeat(BATCH_ERROR_MESSAGE_BYTES_MAX);
        let PayResult::Error(error) = PayResult::error(ErrorResponse::new(ErrorCode::Busy, long))
        else {
            panic!("an error stays an error");
        };
        assert_eq!(error.message.len(), BATCH_ERROR_MESSAGE_BYTES_MAX);
        assert!(error.message.chars().all(|c| c == 'é'));
    }
}
