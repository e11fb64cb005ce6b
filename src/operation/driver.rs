//! The one driver of every step machine over the real shards.

use super::{Operation, ShardOp, Step};
use crate::ids::ShardId;
use crate::shard::{ShardGone, Shards};
use crate::twopc::crashpoint;
use std::time::Duration;

/// Runs `operation` to its reply: each round's asks go to the shards at
/// once (each waits for a slot in its shard's mailbox: the engine's own
/// work is never refused), its answers are taken as they are awaited, a
/// timed round ends at `prepare_timeout`, and an armed crash point aborts
/// the process where the operation reaches it.
pub async fn drive<O: Operation>(
    shards: &Shards,
    prepare_timeout: Duration,
    mut operation: O,
) -> Result<O::Reply, ShardGone> {
    let mut step = operation.start(crate::clock::now_ms());
    loop {
        step = match step {
            Step::Done(reply) => return Ok(reply),
            Step::Reached(point) => {
                crashpoint::reached(point);
                operation.resume(crate::clock::now_ms())
            }
            Step::Ask { asks, timed: false } => round(shards, &mut operation, asks).await?,
            Step::Ask { asks, timed: true } => {
                let asked = round(shards, &mut operation, asks);
                match tokio::time::timeout(prepare_timeout, asked).await {
                    Ok(next) => next?,
                    // The answers still to come are dropped with the round.
                    Err(_elapsed) => operation.on_timeout(crate::clock::now_ms()),
                }
            }
            Step::Wait => unreachable!("an operation waits only inside a round"),
        };
    }
}

/// One round: every ask queued, then the answers, until the operation
/// steps out of the round.
async fn round<O: Operation>(
    shards: &Shards,
    operation: &mut O,
    asks: Vec<(ShardId, ShardOp)>,
) -> Result<Step<O::Reply>, ShardGone> {
    let mut answers = Vec::with_capacity(asks.len());
    for (shard, op) in asks {
        answers.push(shards.ask(shard, op).await?);
    }
    for (index, answer) in answers.into_iter().enumerate() {
        let mut step = operation.on_answer(index, answer.get().await?, crate::clock::now_ms());
        loop {
            match step {
                Step::Wait => break,
                Step::Reached(point) => {
                    crashpoint::reached(point);
                    step = operation.resume(crate::clock::now_ms());
                }
                next => return Ok(next),
            }
        }
    }
    unreachable!("an operation steps out of a round by its last answer")
}
