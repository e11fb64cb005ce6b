//! Request validation: from a decoded wire request to a router command.
//!
//! Everything a peer can get wrong is caught here, with an error naming what
//! and where, before any shard is involved: PIN syntax and check digits,
//! amounts, list lengths, duplicate cards. Past this point the engine only
//! sees well-formed commands, so shards can assert instead of check.

use crate::config::Limits;
use crate::ids::PaymentId;
use crate::pin::{Pin, PinHasher};
use crate::protocol::{ErrorCode, ErrorResponse, Request, Response};
use crate::router::Command;
use crate::shard::op::CardRef;

/// What the reader does with one request.
pub enum Action {
    /// Route to the shards.
    Route(Command),
    /// Answer at once, without the router.
    Reply(Response),
}

fn reject(code: ErrorCode, message: String) -> Action {
    Action::Reply(Response::Error(ErrorResponse::new(code, message)))
}

pub fn validate(request: Request, limits: &Limits, hasher: &PinHasher) -> Action {
    match request {
        Request::Ping => Action::Reply(Response::Pong),
        Request::Report => Action::Route(Command::Report),
        Request::Audit => Action::Route(Command::Audit),
        Request::Stats => Action::Route(Command::Stats),
        Request::Balance(body) => match Pin::parse(&body.pin) {
            Ok(pin) => Action::Route(Command::Balance {
                card: CardRef {
                    key: hasher.key(&pin),
                    last4: pin.last4(),
                },
            }),
            Err(error) => reject(ErrorCode::InvalidPin, error.to_string()),
        },
        Request::Issue(body) => {
            let count = body.count as usize;
            if count == 0 || count > limits.max_issue_per_request {
                return reject(
                    ErrorCode::LimitExceeded,
                    format!("issue count must be 1..={}", limits.max_issue_per_request),
                );
            }
            if body.face_value_minor == 0 || body.face_value_minor > limits.max_face_value_minor {
                return reject(
                    ErrorCode::InvalidAmount,
                    format!("face value must be 1..={}", limits.max_face_value_minor),
                );
            }
            Action::Route(Command::Issue {
                count,
                face_value_minor: body.face_value_minor,
            })
        }
        Request::Activate(body) => {
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
            // A bad PIN fails only its own slot, not the store's batch.
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
        Request::Pay(body) => {
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
            let mut cards: Vec<CardRef> = Vec::with_capacity(count);
            for (index, text) in body.pins.iter().enumerate() {
                let pin = match Pin::parse(text) {
                    Ok(pin) => pin,
                    Err(error) => {
                        return reject(
                            ErrorCode::InvalidPin,
                            format!("PIN at position {}: {error}", index + 1),
                        );
                    }
                };
                let key = hasher.key(&pin);
                if let Some(first) = cards.iter().position(|c| c.key == key) {
                    return reject(
                        ErrorCode::DuplicatePin,
                        format!(
                            "PIN at position {} repeats position {}",
                            index + 1,
                            first + 1
                        ),
                    );
                }
                cards.push(CardRef {
                    key,
                    last4: pin.last4(),
                });
            }
            Action::Route(Command::Pay {
                payment: PaymentId {
                    merchant_id: body.merchant_id,
                    request_id: body.request_id,
                },
                amount_minor: body.amount_minor,
                cards,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::PayRequest;

    fn code_of(action: Action) -> Option<ErrorCode> {
        match action {
            Action::Reply(Response::Error(error)) => error.error_code(),
            _ => None,
        }
    }

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
        let good = "79927398713";
        let other = "4539578763621486";
        assert!(matches!(
            validate(pay(&[good], 5), &limits, &hasher),
            Action::Route(_)
        ));
        assert_eq!(
            code_of(validate(pay(&[good], 0), &limits, &hasher)),
            Some(ErrorCode::InvalidAmount)
        );
        assert_eq!(
            code_of(validate(pay(&[], 5), &limits, &hasher)),
            Some(ErrorCode::LimitExceeded)
        );
        assert_eq!(
            code_of(validate(pay(&[good, "79927398710"], 5), &limits, &hasher)),
            Some(ErrorCode::InvalidPin)
        );
        assert_eq!(
            code_of(validate(pay(&[good, other, good], 5), &limits, &hasher)),
            Some(ErrorCode::DuplicatePin)
        );
        let eleven = vec![good; 11];
        assert_eq!(
            code_of(validate(pay(&eleven, 5), &limits, &hasher)),
            Some(ErrorCode::LimitExceeded)
        );
    }
}
