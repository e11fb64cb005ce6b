//! Merchant payouts: the operator closes what the center owes a merchant
//! up to a cut-off into one payout (payments less refunds, less the
//! merchant's fee), lists them, shows what one contains, and confirms it
//! paid.

use crate::card::DeclineReason;
use serde::{Deserialize, Serialize};

/// Bytes a payout's bank reference may take.
pub const PAYOUT_REFERENCE_BYTES_MAX: usize = 64;

/// Close everything owed to `merchant_id` up to `until_ms` (engine clock;
/// `None`: now) into one payout. The operator and `request_id` identify
/// the request: a retry gets the first answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutCreateRequest {
    pub request_id: u64,
    pub merchant_id: u32,
    pub until_ms: Option<u64>,
}

/// A payout: merchant `merchant_id`'s number `seq` (from 1), covering the
/// payments and refunds decided in `(from_ms, until_ms]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutInfo {
    pub merchant_id: u32,
    pub seq: u64,
    pub from_ms: u64,
    pub until_ms: u64,
    pub payments: u64,
    pub payments_minor: u64,
    pub refunds: u64,
    pub refunds_minor: u64,
    /// The merchant's fee rate when the payout was made, in basis points.
    pub fee_bps: u32,
    /// `(payments − refunds) × fee_bps / 10 000`, rounded down (0 when
    /// refunds exceed payments).
    pub fee_minor: u64,
    /// What earlier payouts carried in (refunds beyond payments).
    pub carried_in_minor: u64,
    /// What the center pays: payments − refunds − fee − carried in, when
    /// that is positive; else 0 and the rest is carried out.
    pub amount_minor: u64,
    pub carried_out_minor: u64,
    pub created_at_ms: u64,
    /// Set once the operator confirmed the bank transfer.
    pub confirmed_reference: Option<String>,
    pub confirmed_at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayoutStatus {
    Created,
    Declined,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutCreateResponse {
    pub status: PayoutStatus,
    /// Set when declined: `period_closed` (the cut-off is not after the
    /// merchant's last payout's) or `nothing_to_pay`.
    pub reason: Option<DeclineReason>,
    pub payout: Option<PayoutInfo>,
    pub replayed: bool,
}

/// Mark payout (`merchant_id`, `seq`) paid, with the bank's reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutConfirmRequest {
    pub merchant_id: u32,
    pub seq: u64,
    pub reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutConfirmResponse {
    pub payout: PayoutInfo,
    /// True when it was confirmed before with this reference.
    pub replayed: bool,
}

/// A merchant's payouts after `after_seq`, at most `limit` (paged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutListRequest {
    pub merchant_id: u32,
    pub after_seq: u64,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutListResponse {
    pub payouts: Vec<PayoutInfo>,
    /// The last `seq` on this page when more may follow.
    pub next: Option<u64>,
}

/// What payout (`merchant_id`, `seq`) contains: its payments and refunds,
/// by request id, after `after` (paged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutShowRequest {
    pub merchant_id: u32,
    pub seq: u64,
    pub after: Option<PayoutItemRef>,
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PayoutItemKind {
    Payment,
    Refund,
}

/// A place in a payout's items: payments first, then refunds, each by
/// request id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PayoutItemRef {
    pub kind: PayoutItemKind,
    pub request_id: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutItem {
    pub item: PayoutItemRef,
    pub amount_minor: u64,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutShowResponse {
    pub payout: PayoutInfo,
    pub items: Vec<PayoutItem>,
    /// Where the next page starts when more may follow.
    pub next: Option<PayoutItemRef>,
}

impl PayoutCreateResponse {
    pub fn declined(reason: DeclineReason) -> PayoutCreateResponse {
        PayoutCreateResponse {
            status: PayoutStatus::Declined,
            reason: Some(reason),
            payout: None,
            replayed: false,
        }
    }
}
