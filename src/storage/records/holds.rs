//! What a prepared or authorized payment leaves standing: the `holds` of
//! a payment on its cards, the `authorizations` index of open
//! authorizations by deadline, and the `operations` (captures and voids)
//! that close them. A hold's key layout (an id, then a card) is shared with
//! a refund's credits (`refunds.rs`).

use super::codec::{decode_pin_key, decode_versioned, encode_versioned};
use crate::ids::{PAYMENT_ID_BYTES, PaymentId};
use crate::pin::{PIN_KEY_BYTES, PinKey};
use serde::{Deserialize, Serialize};

pub(crate) const HOLD_KEY_BYTES: usize = PAYMENT_ID_BYTES + PIN_KEY_BYTES;

pub(crate) fn hold_key(payment: PaymentId, card: &PinKey) -> [u8; HOLD_KEY_BYTES] {
    id_and_card_key(payment.to_bytes(), card)
}

pub fn decode_hold_key(bytes: &[u8]) -> Result<(PaymentId, PinKey), String> {
    let (id, card) = split_id_and_card_key(bytes, "hold")?;
    let payment = PaymentId::from_bytes(id).ok_or_else(|| "hold key payment id".to_string())?;
    Ok((payment, card))
}

/// A hold's or a credit's key: an encoded id (a payment's or a refund's),
/// then the card's key.
pub(super) fn id_and_card_key(id: [u8; PAYMENT_ID_BYTES], card: &PinKey) -> [u8; HOLD_KEY_BYTES] {
    let mut out = [0u8; HOLD_KEY_BYTES];
    out[..PAYMENT_ID_BYTES].copy_from_slice(&id);
    out[PAYMENT_ID_BYTES..].copy_from_slice(&card.0);
    out
}

pub(super) fn split_id_and_card_key<'a>(
    bytes: &'a [u8],
    what: &str,
) -> Result<(&'a [u8], PinKey), String> {
    if bytes.len() != HOLD_KEY_BYTES {
        return Err(format!("{what} key of {} bytes", bytes.len()));
    }
    let (id, card) = bytes.split_at(PAYMENT_ID_BYTES);
    Ok((id, decode_pin_key(card)?))
}

const HOLD_FORMAT: u8 = 1;

/// A durable hold: the amount reserved on one card for one prepared payment,
/// plus the payment's description (amount and every card, in order). The
/// description lets recovery write a complete abort record for a payment
/// whose coordinator died before deciding, so a retry is recognised as the
/// same payment and answered with that definitive outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldRecord {
    pub hold_minor: u64,
    pub amount_minor: u64,
    pub card_keys: Vec<[u8; PIN_KEY_BYTES]>,
}

impl HoldRecord {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        encode_versioned(HOLD_FORMAT, self, out);
    }

    pub fn decode(bytes: &[u8]) -> Result<HoldRecord, String> {
        decode_versioned(HOLD_FORMAT, bytes, "hold record")
    }
}

const OPERATION_FORMAT: u8 = 1;

/// A capture or void that closed an authorization, under its own id: the
/// idempotency record of the operation (its effect is the authorization's
/// payment record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationRecord {
    pub authorization_request_id: u64,
    /// What was captured; `None` for a void.
    pub captured_minor: Option<u64>,
}

impl OperationRecord {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        encode_versioned(OPERATION_FORMAT, self, out);
    }

    pub fn decode(bytes: &[u8]) -> Result<OperationRecord, String> {
        decode_versioned(OPERATION_FORMAT, bytes, "operation record")
    }
}

pub(crate) const AUTHORIZATION_KEY_BYTES: usize = 8 + PAYMENT_ID_BYTES;

/// An open authorization in the index of deadlines: ordered by when it is
/// to be released, so start-up finds them all without reading payments.
pub(crate) fn authorization_key(
    expires_at_ms: u64,
    authorization: PaymentId,
) -> [u8; AUTHORIZATION_KEY_BYTES] {
    let mut out = [0u8; AUTHORIZATION_KEY_BYTES];
    out[..8].copy_from_slice(&expires_at_ms.to_be_bytes());
    out[8..].copy_from_slice(&authorization.to_bytes());
    out
}

pub fn decode_authorization_key(bytes: &[u8]) -> Result<(u64, PaymentId), String> {
    if bytes.len() != AUTHORIZATION_KEY_BYTES {
        return Err(format!("authorization key of {} bytes", bytes.len()));
    }
    let authorization = PaymentId::from_bytes(&bytes[8..])
        .ok_or_else(|| "authorization key payment id".to_string())?;
    let mut at = [0u8; 8];
    at.copy_from_slice(&bytes[..8]);
    Ok((u64::from_be_bytes(at), authorization))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::records::golden::{hex, repeated};

    #[test]
    fn a_hold_record_has_pinned_bytes() {
        let payment = PaymentId {
            merchant_id: 3,
            request_id: 4,
        };
        let card = PinKey([7; 16]);
        let key = hold_key(payment, &card);
        assert_eq!(
            hex(&key),
            format!("00 00 00 03 00 00 00 00 00 00 00 04 {}", repeated("07", 16))
        );
        assert_eq!(decode_hold_key(&key), Ok((payment, card)));
        let hold = HoldRecord {
            hold_minor: 300,
            amount_minor: 800,
            card_keys: vec![[7; 16], [8; 16]],
        };
        let mut bytes = Vec::new();
        hold.encode_into(&mut bytes);
        assert_eq!(
            hex(&bytes),
            format!(
                "01 AC 02 A0 06 02 {} {}",
                repeated("07", 16),
                repeated("08", 16)
            )
        );
        assert_eq!(HoldRecord::decode(&bytes), Ok(hold));
        assert!(HoldRecord::decode(&[]).is_err());
    }
}
