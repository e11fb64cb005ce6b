//! Pay: a card count and an amount within their limits, then every PIN
//! well-formed and none repeated, checked in request order.

use super::{Action, reject};
use crate::config::Limits;
use crate::ids::{CardRef, PaymentId};
use crate::pin::{Pin, PinHasher};
use crate::protocol::{ErrorCode, PayRequest};
use crate::router::Command;

pub(super) fn validate(body: &PayRequest, limits: &Limits, hasher: &PinHasher) -> Action {
    let count = body.pins.len();
    if count == 0 || count > limits.max_cards_per_payment {
        return reject(
            ErrorCode::LimitExceeded,
            format!("a payment names 1..={} PINs", limits.max_cards_per_payment),
        );
    }
    if body.amount_minor == 0 || body.amount_minor > limits.max_amount_minor {
        return reject(
            ErrorCode::InvalidAmount,
            format!("amount must be 1..={}", limits.max_amount_minor),
        );
    }
    let cards = match cards(&body.pins, hasher) {
        Ok(cards) => cards,
        Err(refused) => return refused,
    };
    Action::Route(Command::Pay {
        payment: PaymentId {
            merchant_id: body.merchant_id,
            request_id: body.request_id,
        },
        amount_minor: body.amount_minor,
        cards,
    })
}

/// The payment's cards, or the refusal naming the first bad position.
fn cards(pins: &[String], hasher: &PinHasher) -> Result<Vec<CardRef>, Action> {
    let mut cards: Vec<CardRef> = Vec::with_capacity(pins.len());
    for (index, text) in pins.iter().enumerate() {
        let pin = Pin::parse(text).map_err(|error| {
            reject(
                ErrorCode::InvalidPin,
                format!("PIN at position {}: {error}", index + 1),
            )
        })?;
        let key = hasher.key(&pin);
        if let Some(first) = cards.iter().position(|c| c.key == key) {
            return Err(reject(
                ErrorCode::DuplicatePin,
                format!(
                    "PIN at position {} repeats position {}",
                    index + 1,
                    first + 1
                ),
            ));
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
    use super::super::{code_of, validate as validate_request};
    use super::*;
    use crate::protocol::Request;

    fn pay(pins: &[&str], amount_minor: u64) -> Request {
        Request::Pay(PayRequest {
            merchant_id: 1,
            request_id: 1,
            amount_minor,
            pins: pins.iter().map(|p| p.to_string()).collect(),
        })
    }

    #[test]
    fn payments_are_checked_before_routing() {
        let limits = Limits::default();
        let hasher = PinHasher::new(b"k");
        let check = |request| code_of(validate_request(request, &limits, &hasher));
        let good = "79927398713";
        let other = "4539578763621486";
        assert!(matches!(
            validate_request(pay(&[good], 5), &limits, &hasher),
            Action::Route(_)
        ));
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
    }
}
