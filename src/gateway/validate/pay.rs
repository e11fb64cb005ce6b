//! Pay: a card count and an amount within their limits, then every PIN
//! well-formed and none repeated, checked in request order. The merchant is
//! the authenticated principal, never a field of the request.

use super::{Action, Context, amount_refused, pin_failure, reject};
use crate::auth::Principal;
use crate::ids::{CardList, CardRef, PaymentId};
use crate::pin::{Pin, PinHasher};
use crate::protocol::{ErrorCode, PayRequest};
use crate::router::Command;

pub(super) fn validate(body: &PayRequest, principal: &Principal, context: &Context<'_>) -> Action {
    validate_parts(
        body.request_id,
        body.amount_minor,
        &body.pins,
        principal,
        context,
    )
}

/// A payment's checks, from its fields (decoded into a [`PayRequest`] or
/// read in place).
pub(super) fn validate_parts(
    request_id: u64,
    amount_minor: u64,
    pins: &[impl AsRef<str>],
    principal: &Principal,
    context: &Context<'_>,
) -> Action {
    match checked(request_id, amount_minor, pins, principal, context) {
        Ok(payment) => Action::Route(Command::Pay {
            payment: payment.id,
            amount_minor: payment.amount_minor,
            cards: payment.cards,
            order_id: None,
        }),
        Err(refusal) => *refusal,
    }
}

/// A payment (or an authorization, which is checked the same way) that
/// passed every check.
pub(super) struct Checked {
    pub id: PaymentId,
    pub amount_minor: u64,
    pub cards: CardList,
}

/// The checks of a payment: card count, amount, every PIN well-formed and
/// none repeated, in request order; the refusal to send otherwise.
pub(super) fn checked(
    request_id: u64,
    amount_minor: u64,
    pins: &[impl AsRef<str>],
    principal: &Principal,
    context: &Context<'_>,
) -> Result<Checked, Box<Action>> {
    if let Some(refusal) = super::request_id_refused(request_id) {
        return Err(Box::new(refusal));
    }
    let id = PaymentId {
        merchant_id: principal.id,
        request_id,
    };
    checked_as(id, amount_minor, pins, principal, context)
}

/// [`checked`] for a payment whose id is already known good (derived
/// from an order id).
pub(super) fn checked_as(
    id: PaymentId,
    amount_minor: u64,
    pins: &[impl AsRef<str>],
    principal: &Principal,
    context: &Context<'_>,
) -> Result<Checked, Box<Action>> {
    let limits = context.limits;
    let count = pins.len();
    if count == 0 || count > limits.max_cards_per_payment {
        return Err(Box::new(reject(
            ErrorCode::LimitExceeded,
            format!("a payment names 1..={} PINs", limits.max_cards_per_payment),
        )));
    }
    if let Some(refusal) = amount_refused(amount_minor, limits) {
        return Err(Box::new(refusal));
    }
    let cards = match cards(pins, context.hasher) {
        Ok(cards) => cards,
        Err(Refusal::BadPin(message)) => {
            let refusal = reject(ErrorCode::InvalidPin, message);
            return Err(Box::new(pin_failure(principal, context, refusal)));
        }
        Err(Refusal::Duplicate(message)) => {
            return Err(Box::new(reject(ErrorCode::DuplicatePin, message)));
        }
    };
    Ok(Checked {
        id,
        amount_minor,
        cards,
    })
}

enum Refusal {
    /// A PIN failed its syntax or check digit: a PIN failure.
    BadPin(String),
    Duplicate(String),
}

/// The payment's cards, or the refusal naming the first bad position.
fn cards(pins: &[impl AsRef<str>], hasher: &PinHasher) -> Result<CardList, Refusal> {
    let mut cards = CardList::with_capacity(pins.len());
    for (index, text) in pins.iter().enumerate() {
        let pin = Pin::parse(text.as_ref())
            .map_err(|error| Refusal::BadPin(format!("PIN at position {}: {error}", index + 1)))?;
        let key = hasher.key(&pin);
        if let Some(first) = cards.iter().position(|c| c.key == key) {
            return Err(Refusal::Duplicate(format!(
                "PIN at position {} repeats position {}",
                index + 1,
                first + 1
            )));
        }
        cards.push(CardRef {
            key,
            last4: pin.last4(),
        });
    }
    Ok(cards)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{code_of, principals, with_context};
    use super::super::validate as validate_request;
    use super::*;
    use crate::config::Limits;
    use crate::protocol::{Request, Response};

    fn pay(pins: &[&str], amount_minor: u64) -> Request {
        Request::Pay(PayRequest {
            request_id: 1,
            amount_minor,
            pins: pins.iter().map(|p| p.to_string()).collect(),
        })
    }

    #[test]
    fn payments_are_checked_before_routing() {
        let limits = Limits::default();
        with_context(&limits, |context| {
            let merchant = principals().get(5).expect("merchant");
            let check = |request| code_of(validate_request(request, &merchant, context));
            let good = "79927398713";
            let other = "4539578763621486";
            match validate_request(pay(&[good], 5), &merchant, context) {
                Action::Route(Command::Pay { payment, .. }) => {
                    assert_eq!(payment.merchant_id, 5, "the merchant is the principal");
                }
                _ => panic!("a good payment is routed"),
            }
            assert_eq!(check(pay(&[good], 0)), Some(ErrorCode::InvalidAmount));
            assert_eq!(check(pay(&[], 5)), Some(ErrorCode::LimitExceeded));
            assert_eq!(
                check(pay(&[good, "79927398710"], 5)),
                Some(ErrorCode::InvalidPin)
            );
            assert_eq!(
                check(pay(&[good, other, good], 5)),
                Some(ErrorCode::DuplicatePin)
            );
            assert_eq!(check(pay(&[good; 11], 5)), Some(ErrorCode::LimitExceeded));
        })
    }

    #[test]
    fn bad_check_digits_go_to_a_shard_to_be_counted_until_the_lock_engages() {
        let limits = Limits {
            pin_failures_max: 3,
            ..Limits::default()
        };
        with_context(&limits, |context| {
            let merchant = principals().get(5).expect("merchant");
            let typo = || pay(&["79927398710"], 5);
            for _ in 0..3 {
                // Not counted here: the shard counts it durably, as the
                // shard actor does with this guard.
                match validate_request(typo(), &merchant, context) {
                    Action::Route(Command::PinFailure { principal, refusal }) => {
                        assert_eq!(principal, 5);
                        let Response::Error(error) = refusal else {
                            panic!("a refusal");
                        };
                        assert_eq!(error.error_code(), Some(ErrorCode::InvalidPin));
                    }
                    _ => panic!("a bad check digit is a PIN failure"),
                }
                let mut changes = crate::storage::Changes::default();
                let counted = context
                    .guard
                    .record_failure(5, context.now_ms, &mut changes);
                assert!(counted.is_ok() && !changes.is_empty(), "counted durably");
            }
            let good = pay(&["79927398713"], 5);
            let code = code_of(validate_request(good, &merchant, context));
            assert_eq!(code, Some(ErrorCode::LockedOut), "then even good PINs wait");
            let code = code_of(validate_request(typo(), &merchant, context));
            assert_eq!(
                code,
                Some(ErrorCode::LockedOut),
                "and typos are not counted"
            );
        })
    }
}
