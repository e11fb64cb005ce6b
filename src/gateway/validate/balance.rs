//! Balance: one well-formed PIN.

use super::{Action, reject};
use crate::ids::CardRef;
use crate::pin::{Pin, PinHasher};
use crate::protocol::{BalanceRequest, ErrorCode};
use crate::router::Command;

pub(super) fn validate(body: &BalanceRequest, hasher: &PinHasher) -> Action {
    match Pin::parse(&body.pin) {
        Ok(pin) => Action::Route(Command::Balance {
            card: CardRef {
                key: hasher.key(&pin),
                last4: pin.last4(),
            },
        }),
        Err(error) => reject(ErrorCode::InvalidPin, error.to_string()),
    }
}
