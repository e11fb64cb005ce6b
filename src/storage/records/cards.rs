//! The `cards` family: one card's state, fixed-width and little-endian
//! (the hottest record: no allocation to encode, and a length check is the
//! whole of validation), in format 3, with formats 2 and 1 still read.

use super::codec::u64_at;
use crate::card::{Card, CardState};

/// format, state, store u32, face u64, balance u64, POS reference u64,
/// activated-at ms u64, validity days u16.
pub(crate) const CARD_VALUE_BYTES: usize = 1 + 1 + 4 + 8 + 8 + 8 + 8 + 2;
const CARD_FORMAT: u8 = 3;
const _: () = assert!(CARD_VALUE_BYTES == 40);
/// Format 2, before the validity was kept: the first 38 bytes.
const CARD_FORMAT_V2: u8 = 2;
const CARD_VALUE_BYTES_V2: usize = 38;
/// Format 1, before the activation time was kept: the first 30 bytes.
const CARD_FORMAT_V1: u8 = 1;
const CARD_VALUE_BYTES_V1: usize = 30;

pub(crate) fn encode_card(card: &Card) -> [u8; CARD_VALUE_BYTES] {
    // Holds are not part of the card record: they live in `holds` and are
    // resolved before shards start, so a stored card never carries one.
    let mut out = [0u8; CARD_VALUE_BYTES];
    out[0] = CARD_FORMAT;
    out[1] = card.state as u8;
    out[2..6].copy_from_slice(&card.store_id.to_le_bytes());
    out[6..14].copy_from_slice(&card.face_value_minor.to_le_bytes());
    out[14..22].copy_from_slice(&card.balance_minor.to_le_bytes());
    out[22..30].copy_from_slice(&card.pos_ref.to_le_bytes());
    out[30..38].copy_from_slice(&card.activated_at_ms.to_le_bytes());
    out[38..40].copy_from_slice(&card.validity_days.to_le_bytes());
    out
}

/// Reads format 3, and formats 2 and 1 (their cards never expire, and
/// format 1's carry activation time 0: they are outside every window that
/// counts from the sale).
pub(crate) fn decode_card(bytes: &[u8]) -> Result<Card, String> {
    let (activated_at_ms, validity_days) = match (bytes.first(), bytes.len()) {
        (Some(&CARD_FORMAT), CARD_VALUE_BYTES) => (
            u64_at(bytes, 30),
            u16::from_le_bytes([bytes[38], bytes[39]]),
        ),
        (Some(&CARD_FORMAT_V2), CARD_VALUE_BYTES_V2) => (u64_at(bytes, 30), 0),
        (Some(&CARD_FORMAT_V1), CARD_VALUE_BYTES_V1) => (0, 0),
        _ => {
            return Err(format!(
                "card record of {} bytes, format {:?}",
                bytes.len(),
                bytes.first()
            ));
        }
    };
    let state = CardState::from_u8(bytes[1]).ok_or_else(|| format!("card state {}", bytes[1]))?;
    let card = Card {
        state,
        store_id: u32::from_le_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]),
        face_value_minor: u64_at(bytes, 6),
        balance_minor: u64_at(bytes, 14),
        held_minor: 0,
        pos_ref: u64_at(bytes, 22),
        activated_at_ms,
        validity_days,
        declined: false,
    };
    card.check()
        .map_err(|broken| format!("stored card breaks an invariant: {broken}"))?;
    Ok(card)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::records::golden::hex;

    #[test]
    fn a_card_record_has_pinned_bytes() {
        let mut card = Card::issued(3000);
        card.activate(12, 345, 1_700_000_000_000, 365)
            .expect("activate");
        card.debit(1000).expect("debit");
        let bytes = encode_card(&card);
        assert_eq!(
            hex(&bytes),
            "03 02 0C 00 00 00 B8 0B 00 00 00 00 00 00 D0 07 00 00 00 00 00 00 59 01 00 00 00 00 00 00 \
             00 68 E5 CF 8B 01 00 00 6D 01"
        );
        assert_eq!(decode_card(&bytes), Ok(card));
        assert!(decode_card(&[1, 2, 3]).is_err());
        // Format 2, before the validity was kept: such cards never expire.
        let mut v2 = bytes[..38].to_vec();
        v2[0] = 2;
        let old = decode_card(&v2).expect("format 2 is still read");
        assert_eq!(
            old,
            Card {
                validity_days: 0,
                ..card
            }
        );
        // Format 1, as written before the activation time was kept.
        let mut v1 = bytes[..30].to_vec();
        v1[0] = 1;
        let old = decode_card(&v1).expect("format 1 is still read");
        let expected = Card {
            activated_at_ms: 0,
            validity_days: 0,
            ..card
        };
        assert_eq!(old, expected);
        v1.push(0);
        assert!(decode_card(&v1).is_err(), "format 1 is 30 bytes");
        let mut broken = bytes;
        broken[14..22].copy_from_slice(&9999u64.to_le_bytes());
        assert!(
            decode_card(&broken).is_err(),
            "balance above face is refused"
        );
    }
}
