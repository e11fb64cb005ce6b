//! A merchant's statement: its payments, refunds and payouts in a period,
//! page by page ([`settlement::statement_page`]); a store's: its journal.
//! Runs in the admin lane; the page is read on the blocking pool
//! (`blocking.rs`), as a long period's scan must not hold the lane.
//!
//! A period that has ended is complete: before reading, every shard seals
//! it (as a payout's cut-off, `ShardMachine::stamp`), so every line with
//! its time in the period is on disk and no later one can be stamped into
//! it.

use crate::auth::Registry;
use crate::operation::blocking::{self, SharedStore};
use crate::protocol::{ErrorCode, Response, StatementRequest, StoreStatementRequest};
use crate::settlement;
use crate::shard::{ShardGone, Shards};

/// Seals what has passed of a period ending at `to_ms`.
async fn seal_ended(shards: &Shards, to_ms: u64) -> Result<(), ShardGone> {
    shards.seal(to_ms.min(crate::clock::now_ms())).await
}

pub(super) async fn statement(
    shards: &Shards,
    storage: &SharedStore,
    registry: &Registry,
    request: StatementRequest,
) -> Result<Response, ShardGone> {
    if let Some(refusal) = super::unknown_merchant(registry, request.merchant_id) {
        return Ok(refusal);
    }
    seal_ended(shards, request.to_ms).await?;
    let page = blocking::read(storage, move |store| {
        settlement::statement_page(store, &request)
    })
    .await?;
    Ok(match page {
        Ok(page) => Response::Statement(page),
        Err(error) => {
            tracing::error!(%error, "statement read failed");
            Response::error(ErrorCode::Internal, "storage read failed")
        }
    })
}

/// A store's statement page (any store id: one with no journal has an
/// empty statement).
pub(super) async fn store_statement(
    shards: &Shards,
    storage: &SharedStore,
    request: StoreStatementRequest,
) -> Result<Response, ShardGone> {
    seal_ended(shards, request.to_ms).await?;
    let page = blocking::read(storage, move |store| {
        settlement::store_statement_page(store, &request)
    })
    .await?;
    Ok(match page {
        Ok(page) => Response::StoreStatement(page),
        Err(error) => {
            tracing::error!(%error, "store statement read failed");
            Response::error(ErrorCode::Internal, "storage read failed")
        }
    })
}
