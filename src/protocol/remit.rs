//! Remittances: the operator records that a store headquarters paid the
//! center toward its stores' debt for the cards they sold.

use crate::card::DeclineReason;
use serde::{Deserialize, Serialize};

/// Bytes a remittance's bank reference may take.
pub const REMIT_REFERENCE_BYTES_MAX: usize = 64;

/// Store HQ `store_hq_id` paid `amount_minor` (its bank reference:
/// `reference`). The operator and `request_id` identify the remittance: a
/// retry gets the first answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemitRequest {
    pub request_id: u64,
    pub store_hq_id: u32,
    pub amount_minor: u64,
    pub reference: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemitStatus {
    Remitted,
    Declined,
}

/// What a remittance paid off one store's debt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemitAllocation {
    pub store_id: u32,
    pub amount_minor: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemitResponse {
    pub status: RemitStatus,
    /// Set when declined (`exceeds_owed`).
    pub reason: Option<DeclineReason>,
    pub amount_minor: u64,
    /// The HQ's stores it paid off, ascending by store id, each up to its
    /// debt (empty when declined).
    pub allocations: Vec<RemitAllocation>,
    /// What the HQ's stores owed before it (when declined: now).
    pub owed_before_minor: u64,
    pub replayed: bool,
}

impl RemitResponse {
    pub fn is_remitted(&self) -> bool {
        self.status == RemitStatus::Remitted
    }
}
