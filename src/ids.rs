//! Identifiers that cross module boundaries.

use serde::{Deserialize, Serialize};

/// A store (point of sale chain member) that sells cards.
pub type StoreId = u32;
/// An online merchant that takes payments.
pub type MerchantId = u32;

/// Bytes in an encoded [`PaymentId`].
pub const PAYMENT_ID_BYTES: usize = 12;

/// A payment is identified by the merchant and the merchant's own request
/// id. It is the idempotency key (a retry with the same id returns the first
/// outcome) and the two-phase-commit transaction id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PaymentId {
    pub merchant_id: MerchantId,
    pub request_id: u64,
}

impl PaymentId {
    /// Big-endian, so that RocksDB orders payments by merchant, then id.
    pub fn to_bytes(self) -> [u8; PAYMENT_ID_BYTES] {
        let mut out = [0u8; PAYMENT_ID_BYTES];
        out[..4].copy_from_slice(&self.merchant_id.to_be_bytes());
        out[4..].copy_from_slice(&self.request_id.to_be_bytes());
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<PaymentId> {
        if bytes.len() != PAYMENT_ID_BYTES {
            return None;
        }
        let merchant_id = u32::from_be_bytes(bytes[..4].try_into().ok()?);
        let request_id = u64::from_be_bytes(bytes[4..].try_into().ok()?);
        Some(PaymentId {
            merchant_id,
            request_id,
        })
    }

    /// The shard that records this payment's two-phase-commit decision.
    /// SplitMix64 finaliser: request ids are often sequential, and the
    /// decisions should still spread evenly.
    pub fn home_shard(self, shard_count: usize) -> usize {
        let mut z = (u64::from(self.merchant_id) << 32) ^ self.request_id;
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z % shard_count as u64) as usize
    }
}

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
            counts[id.home_shard(4)] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }
}
