//! Statement: a period that is not empty, a page of at least one line
//! that fits a frame. The merchant is the router's to check.

use super::{Action, reject};
use crate::config::{Limits, report_lines_max};
use crate::protocol::{ErrorCode, StatementRequest};
use crate::router::Command;

pub(super) fn validate(mut body: StatementRequest, limits: &Limits) -> Action {
    if body.from_ms >= body.to_ms {
        return reject(
            ErrorCode::InvalidArgument,
            "a statement's period ends after it starts".to_string(),
        );
    }
    if body.limit == 0 {
        return reject(
            ErrorCode::LimitExceeded,
            "a page has at least one line".to_string(),
        );
    }
    // A line is at most 41 bytes, a report line's bound covers it.
    let most = limits
        .max_report_lines
        .min(report_lines_max(limits.max_frame_bytes))
        .max(1);
    body.limit = body.limit.min(u32::try_from(most).unwrap_or(u32::MAX));
    Action::Route(Command::Statement(body))
}
