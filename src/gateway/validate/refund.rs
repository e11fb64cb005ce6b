//! Refund: an amount within the payment limit. The payment is the
//! merchant's own by construction: it is named by the merchant's request
//! id, under the authenticated merchant.

use super::{Action, Context, reject};
use crate::auth::Principal;
use crate::ids::{PaymentId, RefundId};
use crate::protocol::{ErrorCode, RefundRequest};
use crate::router::Command;

pub(super) fn validate(
    body: &RefundRequest,
    principal: &Principal,
    context: &Context<'_>,
) -> Action {
    let limits = context.limits;
    if body.amount_minor == 0 || body.amount_minor > limits.max_amount_minor {
        return reject(
            ErrorCode::InvalidAmount,
            format!("amount must be 1..={}", limits.max_amount_minor),
        );
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
