//! Activation: a store's headquarters reports cards sold at its POS. The
//! batch is split by shard, and each card answers for itself.

use super::Partition;
use crate::ids::StoreId;
use crate::pin::PinKey;
use crate::protocol::{ActivateResponse, ActivationResult, Response};
use crate::shard::{Activation, ShardGone, Shards};

/// One sale: who reports it, where, under which POS reference, and (ISO
/// 8583) the amount charged per card.
pub(super) struct Sale {
    pub principal: u32,
    pub store_id: StoreId,
    pub pos_ref: u64,
    pub face_value_minor: Option<u64>,
}

pub(super) async fn activate(
    shards: &Shards,
    sale: Sale,
    cards: Vec<Option<PinKey>>,
) -> Result<Response, ShardGone> {
    let Sale {
        principal,
        store_id,
        pos_ref,
        face_value_minor,
    } = sale;
    // Malformed PINs are failures too, counted (durably) before the
    // cards are looked at, so a lock they engage holds for the rest.
    let malformed = cards.iter().filter(|card| card.is_none()).count();
    if malformed > 0 {
        let count = u32::try_from(malformed).expect("activations are capped far below u32");
        shards.count_failures(principal, count).await?;
    }
    let mut results = vec![ActivationResult::InvalidPin; cards.len()];
    let mut partition = Partition::new(shards.count());
    for (place, key) in cards.iter().enumerate() {
        if let Some(key) = key {
            let activation = Activation {
                key: *key,
                principal,
                store_id,
                pos_ref,
                face_value_minor,
            };
            partition.push(shards.of(key), place, activation);
        }
    }
    let mut answers = Vec::new();
    for (shard, batch) in partition.take_batches() {
        answers.push((shard, shards.activate(shard, batch).await?));
    }
    for (shard, answer) in answers {
        partition.scatter(shard, answer.get().await?, &mut results);
    }
    Ok(Response::Activated(ActivateResponse { results }))
}
