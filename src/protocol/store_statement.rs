//! A store's statement: every activation, reversal and remittance that
//! moved its debt in a period, in pages.

use serde::{Deserialize, Serialize};

/// Store `store_id`'s journal with its time in `(from_ms, to_ms]` (engine
/// clock), after `after`, at most `limit` lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStatementRequest {
    pub store_id: u32,
    pub from_ms: u64,
    pub to_ms: u64,
    pub after: Option<StoreStatementRef>,
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum StoreEntryKind {
    /// A card sold: the store owes its face value.
    Activation,
    /// A sale reversed: the store owes that much less (0 when the
    /// activation was never seen).
    Reversal,
    /// What a remittance of the store's HQ paid off this store's debt.
    Remittance,
}

/// A line's place in the store's journal, which is ordered by time, then
/// kind, subject and reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StoreStatementRef {
    pub at_ms: u64,
    pub kind: StoreEntryKind,
    /// The card (the first 8 bytes of its PIN's keyed hash, big-endian:
    /// never the PIN) for an activation or reversal; the operator who
    /// recorded it for a remittance.
    pub subject: u64,
    /// The sale's POS reference for an activation or reversal; the
    /// remittance's request id.
    pub request_id: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStatementLine {
    pub line: StoreStatementRef,
    pub amount_minor: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStatementResponse {
    pub lines: Vec<StoreStatementLine>,
    pub next: Option<StoreStatementRef>,
}
