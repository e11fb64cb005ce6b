//! Activation reversal: a store's headquarters undoes a sale cancelled at
//! the till, or one whose activation reply never came back.

use crate::card::DeclineReason;
use serde::{Deserialize, Serialize};

/// Reverse the sale (`store_id`, `pos_ref`) of the card `pin`. The sale is
/// the request's identity: a retry gets the first outcome (`replayed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReverseActivationRequest {
    pub store_id: u32,
    pub pos_ref: u64,
    pub pin: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReversalStatus {
    /// The activation was undone: the card is unsold, and the store owes
    /// `amount_minor` (the face value) less.
    Reversed,
    /// No activation of this sale was seen: the card stays unsold, and
    /// that activation is refused (`activation_reversed`) if it arrives.
    Forestalled,
    /// Nothing changed; see `reason`.
    Declined,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReverseActivationResponse {
    pub status: ReversalStatus,
    /// Set when declined.
    pub reason: Option<DeclineReason>,
    /// What the store's debt went down by (0 unless `Reversed`).
    pub amount_minor: u64,
    /// True when this answer repeats an earlier reversal of the same sale.
    pub replayed: bool,
}

impl ReverseActivationResponse {
    pub fn declined(reason: DeclineReason) -> ReverseActivationResponse {
        ReverseActivationResponse {
            status: ReversalStatus::Declined,
            reason: Some(reason),
            amount_minor: 0,
            replayed: false,
        }
    }
}
