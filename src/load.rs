//! Start-up: turn the database into the shards' in-memory state.
//!
//! 1. Check the PIN secret against the fingerprint stored at first start.
//! 2. Read every card and give it to shard `pin_key mod N`, for whatever N
//!    this start uses: changing the shard count needs no migration.
//! 3. Merge every book row into shard 0's share (see
//!    [`crate::ledger::consolidate`]) and rewrite the rows that way.
//! 4. Resolve holds left by a crash ([`crate::twopc::recovery`]).
//!
//! Steps 3 and 4 write one synced batch before any shard starts.

use crate::ledger;
use crate::pin::PinHasher;
use crate::shard::ShardState;
use crate::storage::records::{self, BookKind};
use crate::storage::{Cf, Changes, Storage, StorageError};
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
    storage: &Storage,
    hasher: &PinHasher,
    shard_count: usize,
) -> Result<(Vec<ShardState>, Loaded), StorageError> {
    assert!(shard_count > 0);
    let mut changes = Changes::new();
    let fingerprint = hasher.fingerprint();
    match storage.get_meta(META_FINGERPRINT)? {
        Some(stored) if stored != fingerprint => {
            return Err(StorageError(
                "the PIN secret differs from the one this data dir was created with; \
                 every card would be unknown. Restore the original secret."
                    .into(),
            ));
        }
        Some(_) => {}
        None => changes.put(Cf::Meta, META_FINGERPRINT.as_bytes(), &fingerprint),
    }

    let mut shards: Vec<ShardState> = (0..shard_count).map(|_| ShardState::default()).collect();
    let mut loaded = Loaded::default();
    storage.scan(Cf::Cards, |key, value| {
        let key = records::decode_pin_key(key)?;
        let card = records::decode_card(value).map_err(|e| format!("card {}: {e}", key.label()))?;
        shards[key.shard(shard_count)].cards.insert(key, card);
        loaded.cards += 1;
        Ok(())
    })?;

    let mut rows = Vec::new();
    storage.scan(Cf::Books, |key, value| {
        let (kind, account, shard) = records::decode_book_key(key)?;
        rows.push((kind, account, shard, records::decode_u64(value)?));
        Ok(())
    })?;
    loaded.book_rows = rows.len();
    for &(kind, account, shard, _) in &rows {
        changes.delete(Cf::Books, &records::book_key(kind, account, shard));
    }
    shards[0].books = ledger::consolidate(&rows);
    for (&store, &owed) in &shards[0].books.store_owed {
        changes.put_book(BookKind::StoreOwed, store, 0, owed);
    }
    for (&merchant, &owed) in &shards[0].books.merchant_owed {
        changes.put_book(BookKind::MerchantOwed, merchant, 0, owed);
    }

    loaded.recovered = recovery::resolve_holds(storage, &mut shards, &mut changes)?;
    storage.commit(&changes)?;
    Ok((shards, loaded))
}
