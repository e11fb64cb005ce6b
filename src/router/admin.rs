//! The operator's views: report, audit and stats, each gathered from every
//! shard.

use crate::idempotency::Claims;
use crate::ledger;
use crate::protocol::{Response, StatsResponse};
use crate::shard::{ShardGone, Shards};

pub(super) async fn report(shards: &Shards) -> Result<Response, ShardGone> {
    Ok(Response::Report(ledger::report(&shards.snapshots().await?)))
}

pub(super) async fn audit(shards: &Shards, claims: &Claims) -> Result<Response, ShardGone> {
    let ledgers = shards.snapshots().await?;
    Ok(Response::Audit(ledger::audit(&ledgers, |payment| {
        claims.is_in_flight(payment)
    })))
}

pub(super) async fn stats(shards: &Shards) -> Result<Response, ShardGone> {
    Ok(Response::Stats(StatsResponse {
        shards: shards.stats().await?,
    }))
}
