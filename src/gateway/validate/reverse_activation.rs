//! Reverse activation: a store the HQ is registered for, one well-formed
//! PIN (a bad check digit counts as a PIN failure).

use super::{Action, Context, foreign_store, pin_failure, reject};
use crate::auth::Principal;
use crate::pin::Pin;
use crate::protocol::{ErrorCode, ReverseActivationRequest};
use crate::router::Command;

pub(super) fn validate(
    body: &ReverseActivationRequest,
    principal: &Principal,
    context: &Context<'_>,
) -> Action {
    if let Some(refusal) = foreign_store(principal, body.store_id) {
        return refusal;
    }
    match Pin::parse(&body.pin) {
        Ok(pin) => Action::Route(Command::ReverseActivation {
            principal: principal.id,
            store_id: body.store_id,
            pos_ref: body.pos_ref,
            key: context.hasher.key(&pin),
            face_value_minor: None,
        }),
        Err(error) => pin_failure(
            principal,
            context,
            reject(ErrorCode::InvalidPin, error.to_string()),
        ),
    }
}
