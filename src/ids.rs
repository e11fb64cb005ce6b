//! Identifiers that cross module boundaries: who (stores, merchants), which
//! payment, which card, which shard, which place in a payment.
//!
//! A leaf: it depends only on [`crate::pin`] for the card key.

use crate::pin::PinKey;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A store (point of sale chain member) that sells cards.
pub type StoreId = u32;
/// An online merchant that takes payments.
pub type MerchantId = u32;

/// Bytes in an encoded [`PaymentId`].
pub(crate) const PAYMENT_ID_BYTES: usize = 12;

/// A payment is identified by the merchant and the merchant's own request
/// id. It is the idempotency key (a retry with the same id returns the first
/// outcome) and the two-phase-commit transaction id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PaymentId {
    pub merchant_id: MerchantId,
    pub request_id: u64,
}

impl PaymentId {
    /// Big-endian, so that RocksDB orders payments by merchant, then id.
    pub(crate) fn to_bytes(self) -> [u8; PAYMENT_ID_BYTES] {
        let mut out = [0u8; PAYMENT_ID_BYTES];
        out[..4].copy_from_slice(&self.merchant_id.to_be_bytes());
        out[4..].copy_from_slice(&self.request_id.to_be_bytes());
        out
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<PaymentId> {
        let bytes: &[u8; PAYMENT_ID_BYTES] = bytes.try_into().ok()?;
        let mut merchant = [0u8; 4];
        merchant.copy_from_slice(&bytes[..4]);
        let mut request = [0u8; 8];
        request.copy_from_slice(&bytes[4..]);
        Some(PaymentId {
            merchant_id: u32::from_be_bytes(merchant),
            request_id: u64::from_be_bytes(request),
        })
    }

    /// The shard that records this payment's two-phase-commit decision.
    /// SplitMix64 finaliser: request ids are often sequential, and the
    /// decisions should still spread evenly.
    pub fn home_shard(self, shard_count: usize) -> ShardId {
        let mut z = (u64::from(self.merchant_id) << 32) ^ self.request_id;
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ShardId::from_index((z % shard_count as u64) as usize)
    }
}

/// Ids that are (the principal who asked, that principal's request id),
/// each in a namespace of its own. They are distinct types so that one can
/// never be passed where another is meant (a refund's id where its
/// payment's is, an operator where a merchant is); on disk each is encoded
/// like a [`PaymentId`], in its own column family.
macro_rules! request_id_type {
    ($(#[$doc:meta])* $name:ident, $owner:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name {
            pub $owner: u32,
            pub request_id: u64,
        }

        impl $name {
            /// Big-endian, owner then request id, as a [`PaymentId`].
            pub(crate) fn to_bytes(self) -> [u8; PAYMENT_ID_BYTES] {
                self.as_payment_id().to_bytes()
            }

            /// The shard that records its decision: placed as a payment
            /// with the same owner and request id would be.
            pub fn home_shard(self, shard_count: usize) -> ShardId {
                self.as_payment_id().home_shard(shard_count)
            }

            fn as_payment_id(self) -> PaymentId {
                PaymentId {
                    merchant_id: self.$owner,
                    request_id: self.request_id,
                }
            }
        }
    };
}

request_id_type!(
    /// A refund: the merchant and the merchant's own request id for the
    /// refund. Refund ids are their own namespace (a refund and a payment
    /// may share a request id).
    RefundId,
    merchant_id
);

impl RefundId {
    /// Read back from a refund credit's key.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<RefundId> {
        let id = PaymentId::from_bytes(bytes)?;
        Some(RefundId {
            merchant_id: id.merchant_id,
            request_id: id.request_id,
        })
    }
}

request_id_type!(
    /// A capture or a void of an authorization: the merchant and its request
    /// id for the operation (a namespace of its own, shared by captures and
    /// voids). The authorization itself is named like a payment, which it
    /// becomes when captured.
    OperationId,
    merchant_id
);

request_id_type!(
    /// A remittance: the operator who recorded it and the operator's
    /// request id for it.
    RemittanceId,
    operator_id
);

/// A card shard, `0..shard_count`. Stored as a u16 in book rows, so the
/// shard count is capped at [`crate::config::SHARDS_MAX`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub u16);

impl ShardId {
    pub fn from_index(index: usize) -> ShardId {
        ShardId(u16::try_from(index).expect("shard counts are capped below u16::MAX"))
    }

    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The shard that owns `key` when the engine runs `shard_count` shards.
    pub fn of(key: &PinKey, shard_count: usize) -> ShardId {
        ShardId::from_index(key.shard(shard_count))
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A card's place in a payment's list of PINs, counted from 1 as the
/// protocol and every message to a merchant count it. On the wire it is
/// that number as one `u8`; 0 does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Position(u8);

impl Position {
    /// The position of the card at 0-based `index`. Payments name at most
    /// [`crate::config::CARDS_PER_PAYMENT_MAX`] cards, far below 255.
    pub fn from_index(index: usize) -> Position {
        let one_based = index.checked_add(1).expect("small index");
        Position(u8::try_from(one_based).expect("payments name few cards"))
    }

    /// From the 1-based number on the wire or on disk; 0 is not a position.
    pub fn from_number(number: u8) -> Option<Position> {
        (number >= 1).then_some(Position(number))
    }

    pub fn number(self) -> u8 {
        self.0
    }

    /// The 0-based index into the payment's card list.
    pub fn index(self) -> usize {
        usize::from(self.0) - 1
    }
}

impl From<Position> for u8 {
    fn from(position: Position) -> u8 {
        position.0
    }
}

impl TryFrom<u8> for Position {
    type Error = String;

    fn try_from(number: u8) -> Result<Position, String> {
        Position::from_number(number).ok_or_else(|| "positions count from 1".to_string())
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A card as a payment names it: its key, and its last four digits for the
/// reply (past the gateway nothing sees the PIN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardRef {
    pub key: PinKey,
    pub last4: u16,
}

/// Cards a payment's list holds without a heap allocation; a longer list
/// (up to `CARDS_PER_PAYMENT_MAX`) spills to the heap.
pub const CARDS_INLINE: usize = 2;

/// A payment's cards, in request order, from the gateway to the shard: most
/// payments name one or two cards, and those travel inline, not as one
/// more allocation per payment (issue #20).
pub type CardList = smallvec::SmallVec<[CardRef; CARDS_INLINE]>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_id_round_trips_and_orders_by_merchant() {
        let a = PaymentId {
            merchant_id: 1,
            request_id: u64::MAX,
        };
        let b = PaymentId {
            merchant_id: 2,
            request_id: 0,
        };
        assert_eq!(PaymentId::from_bytes(&a.to_bytes()), Some(a));
        assert!(a.to_bytes() < b.to_bytes());
        assert_eq!(PaymentId::from_bytes(&[0u8; 3]), None);
    }

    #[test]
    fn home_shards_spread_sequential_ids() {
        let mut counts = [0u32; 4];
        for request_id in 0..4000 {
            let id = PaymentId {
                merchant_id: 9,
                request_id,
            };
            counts[id.home_shard(4).index()] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }

    #[test]
    fn positions_count_from_one() {
        assert_eq!(Position::from_index(0).number(), 1);
        assert_eq!(Position::from_index(9).index(), 9);
        assert_eq!(Position::from_number(0), None);
        assert_eq!(Position::from_number(3).map(Position::index), Some(2));
    }
}
