//! Settlement records: `remittances` (a store HQ paid the center), and
//! `payouts` with the `payout_requests` that made them (the center paid a
//! merchant). The payout rules (`src/settlement.rs`) decide them; this is
//! how they are kept.

use super::codec::{decode_versioned, encode_versioned, u64_at};
use crate::ids::{PAYMENT_ID_BYTES, PaymentId};
use serde::{Deserialize, Serialize};

const PAYOUT_FORMAT: u8 = 1;

/// A payout, as stored (the wire's `PayoutInfo` is built from it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutRecord {
    pub from_ms: u64,
    pub until_ms: u64,
    pub payments: u64,
    pub payments_minor: u64,
    pub refunds: u64,
    pub refunds_minor: u64,
    pub fee_bps: u32,
    pub fee_minor: u64,
    pub carried_in_minor: u64,
    pub amount_minor: u64,
    pub carried_out_minor: u64,
    pub created_at_ms: u64,
    pub confirmed_reference: Option<String>,
    pub confirmed_at_ms: u64,
}

impl PayoutRecord {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        encode_versioned(PAYOUT_FORMAT, self, out);
    }

    pub fn decode(bytes: &[u8]) -> Result<PayoutRecord, String> {
        decode_versioned(PAYOUT_FORMAT, bytes, "payout record")
    }
}

/// A merchant's payout `seq`: keys sort by merchant, then seq.
pub fn payout_key(merchant_id: u32, seq: u64) -> [u8; PAYMENT_ID_BYTES] {
    PaymentId {
        merchant_id,
        request_id: seq,
    }
    .to_bytes()
}

pub fn decode_payout_key(bytes: &[u8]) -> Result<(u32, u64), String> {
    let id = PaymentId::from_bytes(bytes)
        .ok_or_else(|| format!("payout key of {} bytes", bytes.len()))?;
    Ok((id.merchant_id, id.request_id))
}

/// The payout a payout request made: merchant u32 LE, seq u64 LE.
pub fn encode_payout_ref(merchant_id: u32, seq: u64) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..4].copy_from_slice(&merchant_id.to_le_bytes());
    out[4..].copy_from_slice(&seq.to_le_bytes());
    out
}

pub fn decode_payout_ref(bytes: &[u8]) -> Result<(u32, u64), String> {
    if bytes.len() != 12 {
        return Err(format!("payout reference of {} bytes", bytes.len()));
    }
    let merchant = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    Ok((merchant, u64_at(bytes, 4)))
}

const REMITTANCE_FORMAT: u8 = 1;

/// A remittance: a store HQ paid the center, allocated to its stores. The
/// idempotency record; the allocations are credited to the stores'
/// `StoreRemitted` books in the same write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemittanceRecord {
    pub store_hq_id: u32,
    pub amount_minor: u64,
    pub reference: String,
    pub at_ms: u64,
    /// (store, amount), ascending by store.
    pub allocations: Vec<(u32, u64)>,
    /// What the HQ's stores owed just before it.
    pub owed_before_minor: u64,
}

impl RemittanceRecord {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        encode_versioned(REMITTANCE_FORMAT, self, out);
    }

    pub fn decode(bytes: &[u8]) -> Result<RemittanceRecord, String> {
        decode_versioned(REMITTANCE_FORMAT, bytes, "remittance record")
    }
}
