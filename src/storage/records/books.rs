//! The `books` family: one shard's share of one account, by the kind of
//! book (fixed-width: a 7-byte key, an 8-byte amount).

use super::codec::decode_u64;
use crate::ids::ShardId;

/// Which book a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum BookKind {
    /// What a store owes the center for cards it activated.
    StoreOwed = 1,
    /// What the center owes a merchant for payments it approved.
    MerchantOwed = 2,
    /// What refunds took back from a merchant. Books only ever grow (a
    /// shard's share of an account can be smaller than a debit after the
    /// shares were merged at start), so a refund is a credit here and the
    /// merchant is owed `MerchantOwed - MerchantRefunded`.
    MerchantRefunded = 3,
    /// What reversed activations took off a store's debt: the store owes
    /// `StoreOwed - StoreReversed`.
    StoreReversed = 4,
    /// What expired cards still carried, by the store that sold them: the
    /// center keeps it (and a refund of a payment from an expired card
    /// lands here too, as the card can no longer hold it).
    Breakage = 5,
    /// What store HQs paid the center toward a store's debt: the store
    /// owes `StoreOwed - StoreReversed - StoreRemitted`.
    StoreRemitted = 6,
    /// What payouts paid a merchant: the center owes it
    /// `MerchantOwed - MerchantRefunded - MerchantPaidOut - Fees`.
    MerchantPaidOut = 7,
    /// The center's fees, by the merchant they were taken from.
    Fees = 8,
}

impl BookKind {
    pub const ALL: [BookKind; 8] = [
        BookKind::StoreOwed,
        BookKind::MerchantOwed,
        BookKind::MerchantRefunded,
        BookKind::StoreReversed,
        BookKind::Breakage,
        BookKind::StoreRemitted,
        BookKind::MerchantPaidOut,
        BookKind::Fees,
    ];

    fn from_u8(value: u8) -> Option<BookKind> {
        BookKind::ALL.into_iter().find(|kind| *kind as u8 == value)
    }
}

pub(crate) const BOOK_KEY_BYTES: usize = 1 + 4 + 2;

/// One shard's share of one account, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookRow {
    pub kind: BookKind,
    pub account_id: u32,
    pub shard: ShardId,
    pub amount_minor: u64,
}

/// A book row is one shard's share of one account. Each shard writes only
/// its own rows, in the same atomic batch as the card change that moves the
/// money, so books and cards can never disagree; a report sums the shares.
pub(crate) fn book_key(kind: BookKind, account_id: u32, shard: ShardId) -> [u8; BOOK_KEY_BYTES] {
    let mut out = [0u8; BOOK_KEY_BYTES];
    out[0] = kind as u8;
    out[1..5].copy_from_slice(&account_id.to_be_bytes());
    out[5..7].copy_from_slice(&shard.0.to_be_bytes());
    out
}

pub(crate) fn decode_book_row(key: &[u8], value: &[u8]) -> Result<BookRow, String> {
    if key.len() != BOOK_KEY_BYTES {
        return Err(format!("book key of {} bytes", key.len()));
    }
    let kind = BookKind::from_u8(key[0]).ok_or_else(|| format!("book kind {}", key[0]))?;
    Ok(BookRow {
        kind,
        account_id: u32::from_be_bytes([key[1], key[2], key[3], key[4]]),
        shard: ShardId(u16::from_be_bytes([key[5], key[6]])),
        amount_minor: decode_u64(value)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::records::golden::hex;

    #[test]
    fn a_book_row_has_pinned_bytes() {
        let key = book_key(BookKind::MerchantOwed, 9, ShardId(2));
        assert_eq!(hex(&key), "02 00 00 00 09 00 02");
        let value = 700u64.to_le_bytes();
        assert_eq!(hex(&value), "BC 02 00 00 00 00 00 00");
        assert_eq!(
            decode_book_row(&key, &value),
            Ok(BookRow {
                kind: BookKind::MerchantOwed,
                account_id: 9,
                shard: ShardId(2),
                amount_minor: 700,
            })
        );
        assert!(decode_book_row(&key[..6], &value).is_err());
        assert!(decode_book_row(&[9, 0, 0, 0, 9, 0, 2], &value).is_err());
    }
}
