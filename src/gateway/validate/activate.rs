//! Activate: a batch of PINs within its limit; a bad PIN fails only its own
//! slot, not the store's batch.

use super::{Action, reject};
use crate::config::Limits;
use crate::pin::{Pin, PinHasher};
use crate::protocol::{ActivateRequest, ErrorCode};
use crate::router::Command;

pub(super) fn validate(body: &ActivateRequest, limits: &Limits, hasher: &PinHasher) -> Action {
    let count = body.pins.len();
    if count == 0 || count > limits.max_activations_per_request {
        return reject(
            ErrorCode::LimitExceeded,
            format!(
                "an activation carries 1..={} PINs",
                limits.max_activations_per_request
            ),
        );
    }
    let cards = body
        .pins
        .iter()
        .map(|text| Pin::parse(text).ok().map(|pin| hasher.key(&pin)))
        .collect();
    Action::Route(Command::Activate {
        store_id: body.store_id,
        pos_ref: body.pos_ref,
        cards,
    })
}
