//! Activate: a batch of PINs within its limit, for a store the HQ is
//! registered for; a bad PIN fails only its own slot (and counts as a PIN
//! failure), not the store's batch.

use super::{Action, Context, foreign_store, reject};
use crate::auth::Principal;
use crate::pin::Pin;
use crate::protocol::{ActivateRequest, ErrorCode};
use crate::router::Command;

pub(super) fn validate(
    body: &ActivateRequest,
    principal: &Principal,
    context: &Context<'_>,
) -> Action {
    if let Some(refusal) = foreign_store(principal, body.store_id) {
        return refusal;
    }
    let count = body.pins.len();
    let limit = context.limits.max_activations_per_request;
    if count == 0 || count > limit {
        return reject(
            ErrorCode::LimitExceeded,
            format!("an activation carries 1..={limit} PINs"),
        );
    }
    let cards: Vec<_> = body
        .pins
        .iter()
        .map(|text| Pin::parse(text).ok().map(|pin| context.hasher.key(&pin)))
        .collect();
    Action::Route(Command::Activate {
        principal: principal.id,
        store_id: body.store_id,
        pos_ref: body.pos_ref,
        cards,
        face_value_minor: None,
    })
}
