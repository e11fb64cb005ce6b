//! A merchant's statement: its payments, refunds and payouts in a period,
//! page by page ([`settlement::statement_page`]). Runs in the admin lane.

use crate::auth::Registry;
use crate::protocol::{ErrorCode, Response, StatementRequest, StoreStatementRequest};
use crate::settlement;
use crate::storage::Storage;

pub(super) fn statement(
    storage: &Storage,
    registry: &Registry,
    request: StatementRequest,
) -> Response {
    if let Some(refusal) = super::unknown_merchant(registry, request.merchant_id) {
        return refusal;
    }
    match settlement::statement_page(storage, &request) {
        Ok(page) => Response::Statement(page),
        Err(error) => {
            tracing::error!(%error, "statement read failed");
            Response::error(ErrorCode::Internal, "storage read failed")
        }
    }
}

/// A store's statement page (any store id: one with no journal has an
/// empty statement).
pub(super) fn store_statement(storage: &Storage, request: StoreStatementRequest) -> Response {
    match settlement::store_statement_page(storage, &request) {
        Ok(page) => Response::StoreStatement(page),
        Err(error) => {
            tracing::error!(%error, "store statement read failed");
            Response::error(ErrorCode::Internal, "storage read failed")
        }
    }
}
