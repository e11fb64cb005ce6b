//! Payments: a merchant takes an amount from one or more cards.

use crate::card::DeclineReason;
use crate::ids::Position;
use serde::{Deserialize, Serialize};

/// A merchant debits `amount_minor` from one or more cards, taken in the
/// order given. The merchant is the authenticated principal; with it,
/// `request_id` makes the request idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayRequest {
    pub request_id: u64,
    pub amount_minor: u64,
    pub pins: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayStatus {
    Approved,
    Declined,
}

/// What one card contributed to an approved payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayPart {
    /// Last four digits of the PIN, to tell the purchaser's cards apart.
    pub pin_last4: u16,
    pub taken_minor: u64,
    /// What the card holds after this payment.
    pub remaining_minor: u64,
}

/// The answer to a payment, stored durably so that a retry with the same
/// (merchant, request id) gets exactly this answer back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayResponse {
    pub status: PayStatus,
    /// Set when declined.
    pub reason: Option<DeclineReason>,
    /// Position (from 1, in the request's PIN list) of the card that caused
    /// the decline, when one card did.
    pub position: Option<Position>,
    pub amount_minor: u64,
    /// Total left on the payment's cards (when approved: after the debit).
    pub remaining_minor: u64,
    /// One entry per card, in request order (empty when declined).
    pub parts: Vec<PayPart>,
    /// True when this answer is a replay of an earlier identical request.
    pub replayed: bool,
}

impl PayResponse {
    /// A decline: the reason, and the card that caused it when one did.
    /// A decline never tells the cards' balance (`remaining_minor` is 0).
    pub fn declined(
        reason: DeclineReason,
        position: Option<Position>,
        amount_minor: u64,
    ) -> PayResponse {
        PayResponse {
            status: PayStatus::Declined,
            reason: Some(reason),
            position,
            amount_minor,
            remaining_minor: 0,
            parts: Vec::new(),
            replayed: false,
        }
    }

    pub fn approved(amount_minor: u64, parts: Vec<PayPart>) -> PayResponse {
        // Money invariant, kept in production: the parts pay the amount.
        assert_eq!(
            parts.iter().map(|p| p.taken_minor).sum::<u64>(),
            amount_minor,
            "an approved payment's parts add up to its amount"
        );
        PayResponse {
            status: PayStatus::Approved,
            reason: None,
            position: None,
            amount_minor,
            remaining_minor: parts.iter().map(|p| p.remaining_minor).sum(),
            parts,
            replayed: false,
        }
    }

    pub fn is_approved(&self) -> bool {
        self.status == PayStatus::Approved
    }
}
