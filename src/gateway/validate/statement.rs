//! Statements (a merchant's, a store's): a period that is not empty, a
//! page of at least one line that fits a frame. Whether the merchant
//! exists is the router's to check.

use super::{Action, reject};
use crate::config::{Limits, report_lines_max};
use crate::protocol::{ErrorCode, StatementRequest, StoreStatementRequest};
use crate::router::Command;

pub(super) fn merchant(mut body: StatementRequest, limits: &Limits) -> Action {
    match page(body.from_ms, body.to_ms, body.limit, limits) {
        Ok(limit) => body.limit = limit,
        Err(refusal) => return *refusal,
    }
    Action::Route(Command::Statement(body))
}

pub(super) fn store(mut body: StoreStatementRequest, limits: &Limits) -> Action {
    match page(body.from_ms, body.to_ms, body.limit, limits) {
        Ok(limit) => body.limit = limit,
        Err(refusal) => return *refusal,
    }
    Action::Route(Command::StoreStatement(body))
}

/// The page's line count, or the refusal: an empty period, an empty page.
fn page(from_ms: u64, to_ms: u64, limit: u32, limits: &Limits) -> Result<u32, Box<Action>> {
    if from_ms >= to_ms {
        return Err(Box::new(reject(
            ErrorCode::InvalidArgument,
            "a statement's period ends after it starts".to_string(),
        )));
    }
    if limit == 0 {
        return Err(Box::new(reject(
            ErrorCode::LimitExceeded,
            "a page has at least one line".to_string(),
        )));
    }
    // A line is at most 45 bytes: a report line's bound covers it.
    let most = limits
        .max_report_lines
        .min(report_lines_max(limits.max_frame_bytes))
        .max(1);
    Ok(limit.min(u32::try_from(most).unwrap_or(u32::MAX)))
}
