//! Refund: an amount within the payment limit. The payment is the
//! merchant's own by construction: it is named by the merchant's request
//! id, under the authenticated merchant.

use super::{Action, Context, amount_refused, request_id_refused};
use crate::auth::Principal;
use crate::ids::{PaymentId, RefundId};
use crate::protocol::RefundRequest;
use crate::router::Command;

pub(super) fn validate(
    body: &RefundRequest,
    principal: &Principal,
    context: &Context<'_>,
) -> Action {
    if let Some(refusal) = amount_refused(body.amount_minor, context.limits) {
        return refusal;
    }
    if let Some(refusal) = request_id_refused(body.request_id) {
        return refusal;
    }
    Action::Route(Command::Refund {
        refund: RefundId {
            merchant_id: principal.id,
            request_id: body.request_id,
        },
        payment: PaymentId {
            merchant_id: principal.id,
            request_id: body.payment_request_id,
        },
        amount_minor: body.amount_minor,
    })
}
