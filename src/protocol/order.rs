//! Payments and authorizations named by the merchant's own order id
//! (src/order.rs), and the lookup of one by its order id.

use crate::card::DeclineReason;
use serde::{Deserialize, Serialize};

/// A payment (kind [`super::KIND_ORDER_PAY`]) or an authorization (kind
/// [`super::KIND_ORDER_AUTHORIZE`]) named by `order_id` instead of a
/// request id: exactly a [`super::PayRequest`] or
/// [`super::AuthorizeRequest`] otherwise, answered by the same body under
/// the same kind. A retry with the same order id and the same content
/// replays the first answer; the same order id with different content is
/// refused `invalid_argument`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPayRequest {
    pub order_id: String,
    pub amount_minor: u64,
    pub pins: Vec<String>,
}

/// The payment or authorization named by `order_id`, if there is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLookupRequest {
    pub order_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLookupResponse {
    /// `None`: nothing was decided under this order id.
    pub order: Option<OrderInfo>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderStatus {
    /// A payment approved, or an authorization captured.
    Approved,
    Declined,
    /// An authorization whose hold stands.
    Authorized,
}

/// What a payment or authorization named by an order id is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderInfo {
    pub order_id: String,
    /// The request id the engine derived from it (top bit set); binary
    /// refunds, captures and voids name the payment by it.
    pub request_id: u64,
    /// True when it was asked as an authorization.
    pub authorization: bool,
    pub status: OrderStatus,
    /// Set when declined (for an authorization: also when voided or
    /// released).
    pub reason: Option<DeclineReason>,
    /// Asked (authorized, for an authorization), in minor units.
    pub amount_minor: u64,
    /// Taken from the cards (0 unless approved; for a captured
    /// authorization, what the capture took).
    pub taken_minor: u64,
    /// Given back by refunds so far.
    pub refunded_minor: u64,
    /// Last four digits of each card, in request order.
    pub pins_last4: Vec<u16>,
    /// When it was decided (engine clock, ms since the Unix epoch).
    pub at_ms: u64,
    /// When an open authorization's hold is released (0 otherwise).
    pub expires_at_ms: u64,
}
