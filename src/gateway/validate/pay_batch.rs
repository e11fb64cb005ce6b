//! Pay batch: a count within `max_payments_per_batch`, a worst-case reply
//! that fits in a frame (so every result can be sent, whatever the
//! payments' outcomes), then each payment checked exactly as if sent alone,
//! and no request id twice. A bad payment gets its own error result; the
//! others go ahead.

use super::{Action, Context, pay, reject};
use crate::auth::Principal;
use crate::protocol::frame::FRAME_BYTES_MIN;
use crate::protocol::{ErrorCode, ErrorResponse, PayBatchRequest, PayBatchResponse, Response};
use std::collections::HashMap;

pub(super) fn validate(
    body: &PayBatchRequest,
    principal: &Principal,
    context: &Context<'_>,
) -> Action {
    let limits = context.limits;
    let count = body.payments.len();
    if count == 0 || count > limits.max_payments_per_batch {
        return reject(
            ErrorCode::LimitExceeded,
            format!(
                "a batch holds 1..={} payments",
                limits.max_payments_per_batch
            ),
        );
    }
    let reply_bytes = reply_frame_bytes_max(body);
    if reply_bytes > limits.max_frame_bytes {
        return reject(
            ErrorCode::LimitExceeded,
            format!(
                "split the batch: its reply could take {reply_bytes} bytes, over the {}-byte frame limit",
                limits.max_frame_bytes
            ),
        );
    }
    let mut first_at: HashMap<u64, usize> = HashMap::with_capacity(count);
    let items = body
        .payments
        .iter()
        .enumerate()
        .map(|(index, payment)| {
            if let Some(first) = first_at.get(&payment.request_id) {
                return Action::Reply(Response::Error(ErrorResponse::new(
                    ErrorCode::InvalidArgument,
                    format!("request id repeats payment {} of the batch", first + 1),
                )));
            }
            first_at.insert(payment.request_id, index);
            // A lock that engages partway stops the rest of the batch.
            if let Err(locked) = context.guard.check(principal.id, context.now_ms) {
                return Action::Reply(Response::Error(locked.refusal()));
            }
            pay::validate(payment, principal, context)
        })
        .collect();
    Action::Batch(items)
}

/// The most the reply to `body` can take on the wire, frame header
/// included.
fn reply_frame_bytes_max(body: &PayBatchRequest) -> usize {
    FRAME_BYTES_MIN + PayBatchResponse::encoded_bytes_max(body)
}

/// The most a batch's reply weighs in its connection's budget (never more
/// than a frame: validation refuses a batch whose reply could not fit).
pub(in crate::gateway) fn reply_bound(
    body: &PayBatchRequest,
    limits: &crate::config::Limits,
) -> usize {
    reply_frame_bytes_max(body).min(limits.max_frame_bytes)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{code_of, principals, with_context};
    use super::super::validate as validate_request;
    use super::*;
    use crate::config::Limits;
    use crate::protocol::{PayRequest, Request};
    use crate::router::Command;

    fn payment(request_id: u64, pin: &str) -> PayRequest {
        PayRequest {
            request_id,
            amount_minor: 1,
            pins: vec![pin.to_string()],
        }
    }

    fn batch(payments: Vec<PayRequest>) -> Request {
        Request::PayBatch(PayBatchRequest { payments })
    }

    #[test]
    fn each_payment_is_checked_alone_and_request_ids_are_unique() {
        let good = "79927398713";
        with_context(&Limits::default(), |context| {
            let merchant = principals().get(5).expect("merchant");
            let request = batch(vec![
                payment(1, good),
                payment(2, "79927398710"),
                payment(1, good),
                payment(3, good),
            ]);
            let Action::Batch(items) = validate_request(request, &merchant, context) else {
                panic!("a batch is validated item by item");
            };
            let codes: Vec<Option<ErrorCode>> = items
                .into_iter()
                .map(|item| match item {
                    Action::Route(Command::Pay { payment, .. }) => {
                        assert_eq!(payment.merchant_id, 5);
                        None
                    }
                    other => code_of(other),
                })
                .collect();
            assert_eq!(
                codes,
                vec![
                    None,
                    Some(ErrorCode::InvalidPin),
                    Some(ErrorCode::InvalidArgument),
                    None
                ]
            );
        });
    }

    #[test]
    fn a_batch_is_refused_whole_past_its_limits_or_role() {
        let limits = Limits {
            max_frame_bytes: 4096,
            max_payments_per_batch: 100,
            ..Limits::default()
        };
        with_context(&limits, |context| {
            let registry = principals();
            let merchant = registry.get(5).expect("merchant");
            let ids = |n: u64| (1..=n).map(|id| payment(id, "79927398713")).collect();
            let code = |request| code_of(validate_request(request, &merchant, context));
            assert_eq!(code(batch(Vec::new())), Some(ErrorCode::LimitExceeded));
            assert_eq!(code(batch(ids(101))), Some(ErrorCode::LimitExceeded));
            // 100 fit the count but not a 4 KiB reply frame.
            assert_eq!(code(batch(ids(100))), Some(ErrorCode::LimitExceeded));
            assert!(matches!(
                validate_request(batch(ids(40)), &merchant, context),
                Action::Batch(items) if items.len() == 40
            ));
            let hq = registry.get(42).expect("store hq");
            assert_eq!(
                code_of(validate_request(batch(ids(1)), &hq, context)),
                Some(ErrorCode::Forbidden)
            );
        });
    }
}
