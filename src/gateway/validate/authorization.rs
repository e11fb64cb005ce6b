//! Authorize, capture, void. An authorization is checked like a payment
//! (it becomes one when captured); a capture's amount like a payment's.
//! The authorization is the merchant's own by construction: it is named
//! by the merchant's request id, under the authenticated merchant.

use super::pay::checked;
use super::{Action, Context, amount_refused, request_id_refused};
use crate::auth::Principal;
use crate::ids::{OperationId, PaymentId};
use crate::protocol::{AuthorizeRequest, CaptureRequest, VoidRequest};
use crate::router::Command;

pub(super) fn authorize(
    body: &AuthorizeRequest,
    principal: &Principal,
    context: &Context<'_>,
) -> Action {
    match checked(
        body.request_id,
        body.amount_minor,
        &body.pins,
        principal,
        context,
    ) {
        Ok(payment) => Action::Route(Command::Authorize {
            authorization: payment.id,
            amount_minor: payment.amount_minor,
            cards: payment.cards,
            order_id: None,
        }),
        Err(refusal) => *refusal,
    }
}

pub(super) fn capture(
    body: &CaptureRequest,
    principal: &Principal,
    context: &Context<'_>,
) -> Action {
    if let Some(refusal) = amount_refused(body.amount_minor, context.limits) {
        return refusal;
    }
    if let Some(refusal) = request_id_refused(body.request_id) {
        return refusal;
    }
    Action::Route(Command::Capture {
        operation: operation(principal, body.request_id),
        authorization: authorization(principal, body.authorization_request_id),
        amount_minor: Some(body.amount_minor),
    })
}

pub(super) fn void(body: &VoidRequest, principal: &Principal) -> Action {
    if let Some(refusal) = request_id_refused(body.request_id) {
        return refusal;
    }
    Action::Route(Command::Capture {
        operation: operation(principal, body.request_id),
        authorization: authorization(principal, body.authorization_request_id),
        amount_minor: None,
    })
}

fn operation(principal: &Principal, request_id: u64) -> OperationId {
    OperationId {
        merchant_id: principal.id,
        request_id,
    }
}

fn authorization(principal: &Principal, request_id: u64) -> PaymentId {
    PaymentId {
        merchant_id: principal.id,
        request_id,
    }
}
