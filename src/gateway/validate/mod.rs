//! Request validation: from a decoded wire request to a router command.
//!
//! Everything a peer can get wrong is caught here, with an error naming what
//! and where, before any shard is involved: PIN syntax and check digits,
//! amounts, list lengths, duplicate cards. Past this point the engine only
//! sees well-formed commands, so shards can assert instead of check.
//!
//! One file per request that needs checking.

mod activate;
mod balance;
mod issue;
mod pay;

use crate::config::Limits;
use crate::pin::PinHasher;
use crate::protocol::{ErrorCode, Request, Response};
use crate::router::Command;

/// What the reader does with one request.
pub enum Action {
    /// Route to the shards.
    Route(Command),
    /// Answer at once, without the shards.
    Reply(Response),
}

/// A request refused by validation: nothing is routed or recorded.
fn reject(code: ErrorCode, message: String) -> Action {
    Action::Reply(Response::error(code, message))
}

pub fn validate(request: Request, limits: &Limits, hasher: &PinHasher) -> Action {
    match request {
        Request::Ping => Action::Reply(Response::Pong),
        Request::Report => Action::Route(Command::Report),
        Request::Audit => Action::Route(Command::Audit),
        Request::Stats => Action::Route(Command::Stats),
        Request::Balance(body) => balance::validate(&body, hasher),
        Request::Issue(body) => issue::validate(&body, limits),
        Request::Activate(body) => activate::validate(&body, limits, hasher),
        Request::Pay(body) => pay::validate(&body, limits, hasher),
    }
}

#[cfg(test)]
fn code_of(action: Action) -> Option<ErrorCode> {
    match action {
        Action::Reply(Response::Error(error)) => error.error_code(),
        _ => None,
    }
}
