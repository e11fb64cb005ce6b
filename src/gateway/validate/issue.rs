//! Issue: a count and a face value within their limits.

use super::{Action, reject};
use crate::config::Limits;
use crate::protocol::{ErrorCode, IssueRequest};
use crate::router::Command;

pub(super) fn validate(body: &IssueRequest, limits: &Limits) -> Action {
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
