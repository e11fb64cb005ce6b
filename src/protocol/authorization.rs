//! Authorizations: a merchant holds an amount on cards now, and later
//! captures part or all of it (a payment) or voids it. An authorization
//! not captured within `authorization_ttl_ms` is released by the engine.

use crate::card::DeclineReason;
use crate::ids::Position;
use serde::{Deserialize, Serialize};

/// Hold `amount_minor` across the cards, taken in the order given. The
/// authorization is named by `request_id`, in the merchant's payment
/// namespace: once captured it is the payment `request_id` (refundable as
/// such); a retry gets the first answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeRequest {
    pub request_id: u64,
    pub amount_minor: u64,
    pub pins: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthorizationStatus {
    Authorized,
    Declined,
}

/// What one card holds for an authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldPart {
    pub pin_last4: u16,
    pub held_minor: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeResponse {
    pub status: AuthorizationStatus,
    /// Set when declined.
    pub reason: Option<DeclineReason>,
    /// The card that caused the decline, when one did.
    pub position: Option<Position>,
    pub amount_minor: u64,
    /// One entry per card, in request order (empty when declined).
    pub parts: Vec<HeldPart>,
    /// When the engine releases the hold unless it was captured (engine
    /// clock, ms since the Unix epoch; 0 when declined).
    pub expires_at_ms: u64,
    pub replayed: bool,
}

/// Take `amount_minor` (at most what was authorized) of the authorization
/// `authorization_request_id` and release the rest. `request_id` names
/// this capture (its own namespace, shared with voids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureRequest {
    pub request_id: u64,
    pub authorization_request_id: u64,
    pub amount_minor: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CaptureStatus {
    Captured,
    Declined,
}

/// What one card gave to a capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturePart {
    pub pin_last4: u16,
    pub taken_minor: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureResponse {
    pub status: CaptureStatus,
    /// Set when declined.
    pub reason: Option<DeclineReason>,
    pub amount_minor: u64,
    /// One entry per card of the authorization, in its order (empty when
    /// declined).
    pub parts: Vec<CapturePart>,
    /// What was held and is released (authorized less captured).
    pub released_minor: u64,
    pub replayed: bool,
}

/// Release the whole hold of the authorization `authorization_request_id`.
/// `request_id` names this void (the namespace of captures and voids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoidRequest {
    pub request_id: u64,
    pub authorization_request_id: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VoidStatus {
    Voided,
    Declined,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoidResponse {
    pub status: VoidStatus,
    /// Set when declined.
    pub reason: Option<DeclineReason>,
    /// What was held and is released.
    pub released_minor: u64,
    pub replayed: bool,
}

impl AuthorizeResponse {
    pub fn declined(
        reason: DeclineReason,
        position: Option<Position>,
        amount_minor: u64,
    ) -> AuthorizeResponse {
        AuthorizeResponse {
            status: AuthorizationStatus::Declined,
            reason: Some(reason),
            position,
            amount_minor,
            parts: Vec::new(),
            expires_at_ms: 0,
            replayed: false,
        }
    }

    pub fn is_authorized(&self) -> bool {
        self.status == AuthorizationStatus::Authorized
    }
}

impl CaptureResponse {
    pub fn declined(reason: DeclineReason, amount_minor: u64) -> CaptureResponse {
        CaptureResponse {
            status: CaptureStatus::Declined,
            reason: Some(reason),
            amount_minor,
            parts: Vec::new(),
            released_minor: 0,
            replayed: false,
        }
    }

    pub fn is_captured(&self) -> bool {
        self.status == CaptureStatus::Captured
    }
}

impl VoidResponse {
    pub fn declined(reason: DeclineReason) -> VoidResponse {
        VoidResponse {
            status: VoidStatus::Declined,
            reason: Some(reason),
            released_minor: 0,
            replayed: false,
        }
    }

    pub fn is_voided(&self) -> bool {
        self.status == VoidStatus::Voided
    }
}
