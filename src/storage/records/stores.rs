//! What moves a store's debt besides the card itself: the `reversals` of
//! sales, kept for good, and the `store_journal`, one entry per activation,
//! reversal and remittance allocation, keyed so a store's period is one key
//! range.

use super::codec::decode_pin_key;
use crate::pin::{PIN_KEY_BYTES, PinKey};

pub(crate) const REVERSAL_KEY_BYTES: usize = PIN_KEY_BYTES + 4 + 8;

/// A reversed sale of a card, kept for good: that sale can never activate
/// the card (its activation may arrive after the reversal), and a retried
/// reversal is answered from it. The value is what the reversal took off
/// the store's debt (the face value, or 0 when the activation was never
/// seen).
pub(crate) fn reversal_key(card: &PinKey, store_id: u32, pos_ref: u64) -> [u8; REVERSAL_KEY_BYTES] {
    let mut out = [0u8; REVERSAL_KEY_BYTES];
    out[..PIN_KEY_BYTES].copy_from_slice(&card.0);
    out[PIN_KEY_BYTES..PIN_KEY_BYTES + 4].copy_from_slice(&store_id.to_be_bytes());
    out[PIN_KEY_BYTES + 4..].copy_from_slice(&pos_ref.to_be_bytes());
    out
}

pub(crate) fn decode_reversal_key(bytes: &[u8]) -> Result<(PinKey, u32, u64), String> {
    if bytes.len() != REVERSAL_KEY_BYTES {
        return Err(format!("reversal key of {} bytes", bytes.len()));
    }
    let card = decode_pin_key(&bytes[..PIN_KEY_BYTES])?;
    let mut store = [0u8; 4];
    store.copy_from_slice(&bytes[PIN_KEY_BYTES..PIN_KEY_BYTES + 4]);
    let mut pos = [0u8; 8];
    pos.copy_from_slice(&bytes[PIN_KEY_BYTES + 4..]);
    Ok((card, u32::from_be_bytes(store), u64::from_be_bytes(pos)))
}

pub(crate) const JOURNAL_KEY_BYTES: usize = 4 + 8 + 1 + 8 + 8;

/// What moved a store's debt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum JournalKind {
    Activation = 1,
    Reversal = 2,
    Remittance = 3,
}

/// One entry of a store's journal: when, what, about what (a card's key
/// prefix, or the operator of a remittance) and its reference (the sale's
/// POS reference, or the remittance's request id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct JournalEntry {
    pub at_ms: u64,
    pub kind: JournalKind,
    pub subject: u64,
    pub reference: u64,
}

/// A store journal entry's key: the store, then the entry, all big-endian
/// so a store's entries sort by time and a period is one key range.
pub fn journal_key(store_id: u32, entry: &JournalEntry) -> [u8; JOURNAL_KEY_BYTES] {
    let mut out = [0u8; JOURNAL_KEY_BYTES];
    out[..4].copy_from_slice(&store_id.to_be_bytes());
    out[4..12].copy_from_slice(&entry.at_ms.to_be_bytes());
    out[12] = entry.kind as u8;
    out[13..21].copy_from_slice(&entry.subject.to_be_bytes());
    out[21..].copy_from_slice(&entry.reference.to_be_bytes());
    out
}

pub fn decode_journal_key(bytes: &[u8]) -> Result<(u32, JournalEntry), String> {
    if bytes.len() != JOURNAL_KEY_BYTES {
        return Err(format!("journal key of {} bytes", bytes.len()));
    }
    let be = |at: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        u64::from_be_bytes(word)
    };
    let kind = match bytes[12] {
        1 => JournalKind::Activation,
        2 => JournalKind::Reversal,
        3 => JournalKind::Remittance,
        other => return Err(format!("journal entry kind {other}")),
    };
    let store = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let entry = JournalEntry {
        at_ms: be(4),
        kind,
        subject: be(13),
        reference: be(21),
    };
    Ok((store, entry))
}

impl JournalEntry {
    /// A card's entry (an activation or a reversal of the sale `pos_ref`).
    pub fn of_card(kind: JournalKind, card: &PinKey, pos_ref: u64, at_ms: u64) -> JournalEntry {
        JournalEntry {
            at_ms,
            kind,
            subject: card_subject(card),
            reference: pos_ref,
        }
    }
}

/// The subject of a card's journal entries: its key's first 8 bytes.
pub fn card_subject(card: &PinKey) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&card.0[..8]);
    u64::from_be_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::records::golden::{hex, repeated};

    #[test]
    fn a_reversal_key_has_pinned_bytes() {
        let key = reversal_key(&PinKey([7; 16]), 42, 9);
        assert_eq!(
            hex(&key),
            format!("{} 00 00 00 2A 00 00 00 00 00 00 00 09", repeated("07", 16))
        );
        assert_eq!(decode_reversal_key(&key), Ok((PinKey([7; 16]), 42, 9)));
        assert!(decode_reversal_key(&key[1..]).is_err());
    }
}
