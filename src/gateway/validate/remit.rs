//! Remit: an amount within the engine's payment ceiling and a bank
//! reference of 1..=64 bytes. Whether the HQ exists and what its stores
//! owe are the router's to check, against the registry and the books.

use super::{Action, reject};
use crate::auth::Principal;
use crate::config::AMOUNT_MINOR_CEILING;
use crate::protocol::{ErrorCode, REMIT_REFERENCE_BYTES_MAX, RemitRequest};
use crate::router::Command;

pub(super) fn validate(body: RemitRequest, principal: &Principal) -> Action {
    if body.amount_minor == 0 || body.amount_minor > AMOUNT_MINOR_CEILING {
        return reject(
            ErrorCode::InvalidAmount,
            format!("a remittance is 1..={AMOUNT_MINOR_CEILING}"),
        );
    }
    if body.reference.is_empty() || body.reference.len() > REMIT_REFERENCE_BYTES_MAX {
        return reject(
            ErrorCode::InvalidArgument,
            format!("a remittance's reference is 1..={REMIT_REFERENCE_BYTES_MAX} bytes"),
        );
    }
    Action::Route(Command::Remit {
        operator: principal.id,
        request: body,
    })
}
