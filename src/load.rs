//! Start-up: turn the durable records into the shards' state machines.
//!
//! 1. Check the PIN secret against the fingerprint stored at first start.
//! 2. Read every card and give it to shard `pin_key mod N`, for whatever N
//!    this start uses: changing the shard count needs no migration.
//! 3. Merge every book row into shard 0's share (see
//!    [`crate::ledger::consolidate`]) and rewrite the rows that way.
//! 4. Resolve holds left by a crash ([`crate::twopc::recovery`]).
//!
//! Steps 3 and 4 write one synced batch before any shard starts. The same
//! code rebuilds the shards in the simulation test, from its in-memory
//! store, after every simulated crash.

use crate::ids::ShardId;
use crate::ledger::{self, ShardBooks};
use crate::pin::PinHasher;
use crate::state_machine::{CardMap, ShardMachine};
use crate::storage::records;
use crate::storage::{Cf, Changes, StorageError, Store};
use crate::twopc::recovery::{self, Recovered};

const META_FINGERPRINT: &str = "pin-secret-fingerprint";

/// What start-up found (logged, and asserted by tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct Loaded {
    pub cards: usize,
    pub book_rows: usize,
    pub recovered: Recovered,
}

pub fn load(
    store: &dyn Store,
    hasher: &PinHasher,
    shard_count: usize,
) -> Result<(Vec<ShardMachine>, Loaded), StorageError> {
    assert!(shard_count > 0);
    let mut changes = Changes::new();
    check_fingerprint(store, hasher, &mut changes)?;

    let mut loaded = Loaded::default();
    let mut cards: Vec<CardMap> = (0..shard_count).map(|_| CardMap::default()).collect();
    store.scan(Cf::Cards, &mut |key, value| {
        let key = records::decode_pin_key(key)?;
        let card = records::decode_card(value).map_err(|e| format!("card {}: {e}", key.label()))?;
        cards[key.shard(shard_count)].insert(key, card);
        loaded.cards += 1;
        Ok(())
    })?;

    let mut rows = Vec::new();
    store.scan(Cf::Books, &mut |key, value| {
        rows.push(records::decode_book_row(key, value)?);
        Ok(())
    })?;
    loaded.book_rows = rows.len();
    for row in &rows {
        changes.delete_book(row.kind, row.account_id, row.shard);
    }
    let consolidated = ledger::consolidate(&rows);
    consolidated.write_rows(ShardId(0), &mut changes);

    let mut machines: Vec<ShardMachine> = cards
        .into_iter()
        .enumerate()
        .map(|(index, cards)| {
            let books = if index == 0 {
                consolidated.clone()
            } else {
                ShardBooks::default()
            };
            ShardMachine::new(ShardId::from_index(index), cards, books)
        })
        .collect();
    loaded.recovered = recovery::resolve_holds(store, &mut machines, &mut changes)?;
    for machine in &mut machines {
        machine.end_batch(&mut changes);
    }
    store.commit(&changes)?;
    Ok((machines, loaded))
}

fn check_fingerprint(
    store: &dyn Store,
    hasher: &PinHasher,
    changes: &mut Changes,
) -> Result<(), StorageError> {
    let fingerprint = hasher.fingerprint();
    match store.get_meta(META_FINGERPRINT)? {
        Some(stored) if stored != fingerprint => Err(StorageError(
            "the PIN secret differs from the one this data dir was created with; \
             every card would be unknown. Restore the original secret."
                .into(),
        )),
        Some(_) => Ok(()),
        None => {
            changes.put(Cf::Meta, META_FINGERPRINT.as_bytes(), &fingerprint);
            Ok(())
        }
    }
}
