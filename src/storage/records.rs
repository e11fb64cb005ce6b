//! Byte layouts of everything kept in RocksDB.
//!
//! Fixed-width little-endian values for the hot records (cards, holds, book
//! rows): no allocation to encode, and a length check is the whole of
//! validation. Payment outcomes vary in length (one part per card) and use
//! postcard behind a version byte.
//!
//! | column family | key                                   | value                 |
//! |---------------|---------------------------------------|-----------------------|
//! | `cards`       | pin key (16)                          | [`CARD_VALUE_BYTES`]  |
//! | `payments`    | merchant u32 BE, request u64 BE (12)  | version, postcard     |
//! | `holds`       | payment id (12), pin key (16)         | version, postcard     |
//! | `books`       | kind u8, id u32 BE, shard u16 BE (7)  | amount u64 LE         |
//! | `meta`        | ascii name                            | bytes                 |

use crate::card::{Card, CardState};
use crate::ids::{PAYMENT_ID_BYTES, PaymentId};
use crate::pin::{PIN_KEY_BYTES, PinKey};
use crate::protocol::PayResponse;
use serde::{Deserialize, Serialize};

pub const CARD_VALUE_BYTES: usize = 1 + 1 + 4 + 8 + 8 + 8;
const CARD_FORMAT: u8 = 1;

pub fn encode_card(card: &Card) -> [u8; CARD_VALUE_BYTES] {
    // Holds are not part of the card record: they live in `holds` and are
    // resolved before shards start, so a stored card never carries one.
    let mut out = [0u8; CARD_VALUE_BYTES];
    out[0] = CARD_FORMAT;
    out[1] = card.state as u8;
    out[2..6].copy_from_slice(&card.store_id.to_le_bytes());
    out[6..14].copy_from_slice(&card.face_value_minor.to_le_bytes());
    out[14..22].copy_from_slice(&card.balance_minor.to_le_bytes());
    out[22..30].copy_from_slice(&card.pos_ref.to_le_bytes());
    out
}

pub fn decode_card(bytes: &[u8]) -> Result<Card, String> {
    if bytes.len() != CARD_VALUE_BYTES || bytes[0] != CARD_FORMAT {
        return Err(format!(
            "card record of {} bytes, format {:?}",
            bytes.len(),
            bytes.first()
        ));
    }
    let state = CardState::from_u8(bytes[1]).ok_or_else(|| format!("card state {}", bytes[1]))?;
    let u64_at = |at: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(word)
    };
    let card = Card {
        state,
        store_id: u32::from_le_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]),
        face_value_minor: u64_at(6),
        balance_minor: u64_at(14),
        held_minor: 0,
        pos_ref: u64_at(22),
    };
    card.check()
        .map_err(|broken| format!("stored card breaks an invariant: {broken}"))?;
    Ok(card)
}

pub fn decode_pin_key(bytes: &[u8]) -> Result<PinKey, String> {
    let key: [u8; PIN_KEY_BYTES] = bytes
        .try_into()
        .map_err(|_| format!("pin key of {} bytes", bytes.len()))?;
    Ok(PinKey(key))
}

pub const HOLD_KEY_BYTES: usize = PAYMENT_ID_BYTES + PIN_KEY_BYTES;

pub fn hold_key(payment: PaymentId, card: &PinKey) -> [u8; HOLD_KEY_BYTES] {
    let mut out = [0u8; HOLD_KEY_BYTES];
    out[..PAYMENT_ID_BYTES].copy_from_slice(&payment.to_bytes());
    out[PAYMENT_ID_BYTES..].copy_from_slice(&card.0);
    out
}

pub fn decode_hold_key(bytes: &[u8]) -> Result<(PaymentId, PinKey), String> {
    if bytes.len() != HOLD_KEY_BYTES {
        return Err(format!("hold key of {} bytes", bytes.len()));
    }
    let payment = PaymentId::from_bytes(&bytes[..PAYMENT_ID_BYTES])
        .ok_or_else(|| "hold key payment id".to_string())?;
    Ok((payment, decode_pin_key(&bytes[PAYMENT_ID_BYTES..])?))
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

/// Appends a format byte and the postcard encoding of `value`.
fn encode_versioned<T: Serialize>(format: u8, value: &T, out: &mut Vec<u8>) {
    out.push(format);
    crate::encoding::append(value, out).expect("records of plain data always serialize");
}

/// Checks the format byte and decodes the rest, all of it.
fn decode_versioned<'a, T: Deserialize<'a>>(
    format: u8,
    bytes: &'a [u8],
    what: &str,
) -> Result<T, String> {
    match bytes.split_first() {
        Some((&found, body)) if found == format => match postcard::take_from_bytes(body) {
            Ok((value, [])) => Ok(value),
            Ok(_) => Err(format!("{what}: trailing bytes")),
            Err(error) => Err(format!("{what}: {error}")),
        },
        _ => Err(format!("{what} with unknown format")),
    }
}

pub fn decode_u64(bytes: &[u8]) -> Result<u64, String> {
    let word: [u8; 8] = bytes
        .try_into()
        .map_err(|_| format!("u64 value of {} bytes", bytes.len()))?;
    Ok(u64::from_le_bytes(word))
}

/// Which book a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum BookKind {
    /// What a store owes the center for cards it activated.
    StoreOwed = 1,
    /// What the center owes a merchant for payments it approved.
    MerchantOwed = 2,
}

pub const BOOK_KEY_BYTES: usize = 1 + 4 + 2;

/// A book row is one shard's share of one account. Each shard writes only
/// its own rows, in the same atomic batch as the card change that moves the
/// money, so books and cards can never disagree; a report sums the shares.
pub fn book_key(kind: BookKind, account_id: u32, shard: u16) -> [u8; BOOK_KEY_BYTES] {
    let mut out = [0u8; BOOK_KEY_BYTES];
    out[0] = kind as u8;
    out[1..5].copy_from_slice(&account_id.to_be_bytes());
    out[5..7].copy_from_slice(&shard.to_be_bytes());
    out
}

pub fn decode_book_key(bytes: &[u8]) -> Result<(BookKind, u32, u16), String> {
    if bytes.len() != BOOK_KEY_BYTES {
        return Err(format!("book key of {} bytes", bytes.len()));
    }
    let kind = match bytes[0] {
        1 => BookKind::StoreOwed,
        2 => BookKind::MerchantOwed,
        other => return Err(format!("book kind {other}")),
    };
    let account = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    let shard = u16::from_be_bytes([bytes[5], bytes[6]]);
    Ok((kind, account, shard))
}

const PAYMENT_FORMAT: u8 = 1;

/// A payment's durable outcome: the idempotency record, and for combined
/// payments also the two-phase-commit decision. `card_keys[i]` is the card
/// behind `response.parts[i]`, which recovery needs to apply a committed
/// decision to the right card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPayment {
    pub response: PayResponse,
    pub card_keys: Vec<[u8; PIN_KEY_BYTES]>,
}

impl StoredPayment {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        encode_versioned(PAYMENT_FORMAT, self, out);
    }

    pub fn decode(bytes: &[u8]) -> Result<StoredPayment, String> {
        decode_versioned(PAYMENT_FORMAT, bytes, "payment record")
    }

    /// The take recorded for `card`, if the payment used it.
    pub fn take_for(&self, card: &PinKey) -> Option<u64> {
        let index = self.card_keys.iter().position(|k| *k == card.0)?;
        self.response.parts.get(index).map(|part| part.taken_minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::DeclineReason;
    use crate::protocol::PayPart;

    #[test]
    fn card_records_round_trip_and_reject_garbage() {
        let mut card = Card::issued(3000);
        card.activate(12, 345).expect("activate");
        card.debit(1000).expect("debit");
        assert_eq!(decode_card(&encode_card(&card)), Ok(card));
        assert!(decode_card(&[1, 2, 3]).is_err());
        let mut broken = encode_card(&card);
        broken[14..22].copy_from_slice(&9999u64.to_le_bytes());
        assert!(
            decode_card(&broken).is_err(),
            "balance above face is refused"
        );
    }

    #[test]
    fn keys_round_trip() {
        let payment = PaymentId {
            merchant_id: 3,
            request_id: 4,
        };
        let card = PinKey([7; 16]);
        assert_eq!(
            decode_hold_key(&hold_key(payment, &card)),
            Ok((payment, card))
        );
        let hold = HoldRecord {
            hold_minor: 300,
            amount_minor: 800,
            card_keys: vec![[7; 16], [8; 16]],
        };
        let mut bytes = Vec::new();
        hold.encode_into(&mut bytes);
        assert_eq!(HoldRecord::decode(&bytes), Ok(hold));
        assert!(HoldRecord::decode(&[]).is_err());
        assert_eq!(
            decode_book_key(&book_key(BookKind::MerchantOwed, 9, 2)),
            Ok((BookKind::MerchantOwed, 9, 2))
        );
    }

    #[test]
    fn payment_records_round_trip() {
        let stored = StoredPayment {
            response: PayResponse::approved(
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
            ),
            card_keys: vec![[1; 16], [2; 16]],
        };
        let mut bytes = Vec::new();
        stored.encode_into(&mut bytes);
        let decoded = StoredPayment::decode(&bytes).expect("decode");
        assert_eq!(decoded, stored);
        assert_eq!(decoded.take_for(&PinKey([2; 16])), Some(200));
        assert_eq!(decoded.take_for(&PinKey([3; 16])), None);
        let declined = StoredPayment {
            response: PayResponse::declined(DeclineReason::Aborted, None, 5, 0),
            card_keys: vec![],
        };
        let mut bytes = Vec::new();
        declined.encode_into(&mut bytes);
        assert_eq!(StoredPayment::decode(&bytes), Ok(declined));
        bytes.push(0);
        assert!(
            StoredPayment::decode(&bytes).is_err(),
            "trailing bytes are refused"
        );
        assert!(StoredPayment::decode(&[9, 9]).is_err());
    }
}
