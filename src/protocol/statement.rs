//! Statements: everything that moved a merchant's account in a period, in
//! pages, so no frame limit applies to a period.

use serde::{Deserialize, Serialize};

/// Merchant `merchant_id`'s payments, refunds and payouts with their time
/// in `(from_ms, to_ms]` (engine clock), after `after`, at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementRequest {
    pub merchant_id: u32,
    pub from_ms: u64,
    pub to_ms: u64,
    pub after: Option<StatementRef>,
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StatementKind {
    /// An approved payment (a captured authorization: what was captured).
    Payment,
    Refund,
    /// A payout: `amount_minor` paid, `fee_minor` kept by the center.
    Payout,
}

/// A line's place: payments, then refunds (each by request id), then
/// payouts (by number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StatementRef {
    pub kind: StatementKind,
    pub id: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementLine {
    pub line: StatementRef,
    pub amount_minor: u64,
    /// A payout's fee (0 for payments and refunds).
    pub fee_minor: u64,
    pub at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementResponse {
    pub lines: Vec<StatementLine>,
    /// Where the next page starts when more may follow.
    pub next: Option<StatementRef>,
}
