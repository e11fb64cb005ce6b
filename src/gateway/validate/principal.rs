//! Principal management (operator only): checked by the registry itself,
//! which knows which ids exist; here only the shape of the request.

use super::Action;
use crate::protocol::PrincipalAddRequest;
use crate::router::Command;

pub(super) fn add(body: PrincipalAddRequest) -> Action {
    Action::Route(Command::PrincipalAdd(body))
}
