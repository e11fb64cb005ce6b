//! Cards: issuing them, activating them at the sale, asking a balance.

use crate::card::{CardState, DeclineReason};
use serde::{Deserialize, Serialize};

/// Create `count` new (issued, worthless) cards of one face value. The reply
/// is the only time the clear PINs ever leave the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueRequest {
    pub count: u32,
    pub face_value_minor: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueResponse {
    pub face_value_minor: u64,
    /// The clear PINs, shown exactly once.
    pub pins: Vec<String>,
}

/// A store's headquarters reports cards sold at a POS: each becomes valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivateRequest {
    pub store_id: u32,
    /// The POS transaction reference (0 when none).
    pub pos_ref: u64,
    pub pins: Vec<String>,
}

/// The outcome for one PIN of an activation request, in request order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActivationResult {
    Activated {
        face_value_minor: u64,
    },
    Declined {
        reason: DeclineReason,
    },
    /// The PIN failed the length, digit or check-digit test.
    InvalidPin,
    /// Not tried: the store HQ reached its limit of PIN failures during
    /// this request and is locked out.
    LockedOut,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivateResponse {
    pub results: Vec<ActivationResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceRequest {
    pub pin: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceResponse {
    pub state: CardState,
    pub face_value_minor: u64,
    pub balance_minor: u64,
    /// Balance less funds held by payments being committed.
    pub available_minor: u64,
}
