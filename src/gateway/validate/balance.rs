//! Balance: one well-formed PIN (a bad check digit counts as a PIN
//! failure).

use super::{Action, Context, pin_failure, reject};
use crate::auth::Principal;
use crate::ids::CardRef;
use crate::pin::Pin;
use crate::protocol::{BalanceRequest, ErrorCode};
use crate::router::Command;

pub(super) fn validate(
    body: &BalanceRequest,
    principal: &Principal,
    context: &Context<'_>,
) -> Action {
    match Pin::parse(&body.pin) {
        Ok(pin) => Action::Route(Command::Balance {
            principal: principal.id,
            card: CardRef {
                key: context.hasher.key(&pin),
                last4: pin.last4(),
            },
            hq: None,
        }),
        Err(error) => pin_failure(
            principal,
            context,
            reject(ErrorCode::InvalidPin, error.to_string()),
        ),
    }
}
