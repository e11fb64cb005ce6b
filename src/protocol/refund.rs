//! Refunds: a merchant gives back part or all of one of its own payments.

use crate::card::DeclineReason;
use serde::{Deserialize, Serialize};

/// Refund `amount_minor` of the merchant's payment `payment_request_id`.
/// `request_id` identifies the refund (its own namespace: it may equal a
/// payment's request id); a retry gets the first answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequest {
    pub request_id: u64,
    pub payment_request_id: u64,
    pub amount_minor: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefundStatus {
    Refunded,
    Declined,
}

/// What one card of the payment got back, in the payment's card order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundPart {
    pub pin_last4: u16,
    pub refunded_minor: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundResponse {
    pub status: RefundStatus,
    /// Set when declined.
    pub reason: Option<DeclineReason>,
    pub amount_minor: u64,
    /// One entry per card of the payment (empty when declined). Cards are
    /// refunded in the reverse order of taking, each up to what was taken
    /// from it.
    pub parts: Vec<RefundPart>,
    /// Everything refunded from the payment so far, this refund included
    /// (0 when declined).
    pub payment_refunded_minor: u64,
    /// True when this answer is a replay of an earlier identical request.
    pub replayed: bool,
}

impl RefundResponse {
    pub fn declined(reason: DeclineReason, amount_minor: u64) -> RefundResponse {
        RefundResponse {
            status: RefundStatus::Declined,
            reason: Some(reason),
            amount_minor,
            parts: Vec::new(),
            payment_refunded_minor: 0,
            replayed: false,
        }
    }

    pub fn is_refunded(&self) -> bool {
        self.status == RefundStatus::Refunded
    }
}
