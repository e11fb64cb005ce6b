//! Refunds: the approved `refunds` (the idempotency record and the
//! decision its credits are applied from), what each payment has had
//! `refunded` so far, and the `credits` a decided refund still owes a card
//! (keyed as a hold is, with the refund's id in the payment's place).

use super::codec::{decode_versioned, encode_versioned};
use super::holds::{HOLD_KEY_BYTES, id_and_card_key, split_id_and_card_key};
use crate::ids::RefundId;
use crate::pin::PinKey;
use serde::{Deserialize, Serialize};

const REFUND_FORMAT: u8 = 1;

/// An approved refund, under its own id (the merchant and the refund's
/// request id): the idempotency record, and the two-phase decision its
/// credits are applied from. Declined refunds change nothing and are not
/// recorded (a retry is declined again: what a payment has left to refund
/// only ever shrinks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRecord {
    /// The refunded payment's request id (same merchant).
    pub payment_request_id: u64,
    pub amount_minor: u64,
    pub at_ms: u64,
    /// Per card of the payment, in the payment's order: its last digits
    /// and what this refund gave back to it.
    pub parts: Vec<RefundPart>,
    /// Everything refunded from the payment, this refund included.
    pub payment_refunded_minor: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundPart {
    pub pin_last4: u16,
    pub refunded_minor: u64,
}

impl RefundRecord {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        encode_versioned(REFUND_FORMAT, self, out);
    }

    pub fn decode(bytes: &[u8]) -> Result<RefundRecord, String> {
        decode_versioned(REFUND_FORMAT, bytes, "refund record")
    }
}

const REFUNDED_FORMAT: u8 = 1;

/// What a payment's refunds have given back so far, per card in the
/// payment's order. Kept beside the payment (never in its record, which is
/// the payment's first answer, replayed as it was).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRefunds {
    pub refunded_minor: Vec<u64>,
}

impl PaymentRefunds {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        encode_versioned(REFUNDED_FORMAT, self, out);
    }

    pub fn decode(bytes: &[u8]) -> Result<PaymentRefunds, String> {
        decode_versioned(REFUNDED_FORMAT, bytes, "payment refunds")
    }
}

/// A credit a decided refund owes one card, until its shard applies it
/// (deleting this in the same write). Key: refund id, card.
/// A refund credit's key: laid out as a hold's, with the refund's id in
/// the payment's place.
pub(crate) fn credit_key(refund: RefundId, card: &PinKey) -> [u8; HOLD_KEY_BYTES] {
    id_and_card_key(refund.to_bytes(), card)
}

pub(crate) fn decode_credit_key(bytes: &[u8]) -> Result<(RefundId, PinKey), String> {
    let (id, card) = split_id_and_card_key(bytes, "credit")?;
    let refund = RefundId::from_bytes(id).ok_or_else(|| "credit key refund id".to_string())?;
    Ok((refund, card))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::PaymentId;
    use crate::storage::records::golden::hex;
    use crate::storage::records::hold_key;

    #[test]
    fn refund_records_have_pinned_bytes() {
        let record = RefundRecord {
            payment_request_id: 7,
            amount_minor: 300,
            at_ms: 1_700_000_000_000,
            parts: vec![
                RefundPart {
                    pin_last4: 1,
                    refunded_minor: 0,
                },
                RefundPart {
                    pin_last4: 2,
                    refunded_minor: 300,
                },
            ],
            payment_refunded_minor: 300,
        };
        let mut bytes = Vec::new();
        record.encode_into(&mut bytes);
        assert_eq!(
            hex(&bytes),
            "01 07 AC 02 80 D0 95 FF BC 31 02 01 00 02 AC 02 AC 02"
        );
        assert_eq!(RefundRecord::decode(&bytes), Ok(record));
        let refunded = PaymentRefunds {
            refunded_minor: vec![0, 300],
        };
        let mut bytes = Vec::new();
        refunded.encode_into(&mut bytes);
        assert_eq!(hex(&bytes), "01 02 00 AC 02");
        assert_eq!(PaymentRefunds::decode(&bytes), Ok(refunded));
        let refund = RefundId {
            merchant_id: 3,
            request_id: 9,
        };
        let key = credit_key(refund, &PinKey([7; 16]));
        // Laid out as a hold of the payment with the same numbers: the
        // on-disk format did not change when the id became its own type.
        let payment = PaymentId {
            merchant_id: 3,
            request_id: 9,
        };
        assert_eq!(key, hold_key(payment, &PinKey([7; 16])));
        assert_eq!(decode_credit_key(&key), Ok((refund, PinKey([7; 16]))));
        assert!(RefundRecord::decode(&[2]).is_err());
    }
}
