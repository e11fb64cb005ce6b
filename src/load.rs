//! Start-up: turn the durable records into the shards' state machines.
//!
//! 1. Check the PIN secret against the fingerprint stored at first start.
//! 2. Read every card and give it to shard `pin_key mod N`, for whatever N
//!    this start uses: changing the shard count needs no migration.
//! 3. Give each shard its cards' reversed sales, and seal the periods
//!    payouts have closed.
//! 4. Merge every book row into shard 0's share (see
//!    [`crate::ledger::consolidate`]) and rewrite the rows that way.
//! 5. Resolve holds left by a crash, and apply refund credits it left
//!    ([`crate::twopc::recovery`]).
//!
//! Steps 4 and 5 write one synced batch before any shard starts. The same
//! code rebuilds the shards in the simulation test, from its in-memory
//! store, after every simulated crash.

use crate::config::{CARDS_PER_SHARD_MAX, FACE_VALUE_MINOR_CEILING, MONEY_MINOR_MAX};
use crate::ids::ShardId;
use crate::ledger::{self, ShardBooks};
use crate::pin::PinHasher;
use crate::protocol::AuditResponse;
use crate::state_machine::{Cards, ShardMachine};
use crate::storage::records::{self, BookKind};
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
    let mut changes = Changes::new();
    check_fingerprint(store, hasher, &mut changes)?;
    rebuild(store, shard_count, changes)
}

/// Shards for the offline audit: enough for any card count the ceilings
/// allow (2^25 cards each); the audit's answer does not depend on it.
const OFFLINE_AUDIT_SHARDS: usize = 16;

/// The conservation proof over `store` alone, as `kessai audit` would give
/// it for an engine started on it: the shards rebuilt by the real loader
/// (holds left by a crash resolved, refund credits applied), then audited
/// with nothing in flight. The loader's writes go to `store`: give it an
/// [`crate::storage::Overlay`] to write nothing. The PIN secret is not
/// needed, since no PIN is looked up.
pub fn audit_offline(store: &dyn Store) -> Result<(AuditResponse, Loaded), StorageError> {
    let (mut machines, loaded) = rebuild(store, OFFLINE_AUDIT_SHARDS, Changes::new())?;
    let shards: Vec<_> = machines
        .iter_mut()
        .map(|machine| machine.audit_now(|_| false))
        .collect();
    Ok((ledger::audit(&shards), loaded))
}

/// Steps 2 to 5, writing `changes` (step 1's, if any) with theirs.
fn rebuild(
    store: &dyn Store,
    shard_count: usize,
    mut changes: Changes,
) -> Result<(Vec<ShardMachine>, Loaded), StorageError> {
    assert!(shard_count > 0);
    let mut loaded = Loaded::default();
    let cards = read_cards(store, shard_count, &mut loaded)?;
    let consolidated = consolidate_books(store, &mut changes, &mut loaded)?;
    let mut machines = start_machines(store, shard_count, cards, consolidated)?;
    loaded.recovered = recovery::resolve_holds(store, &mut machines, &mut changes)?;
    recovery::apply_credits(store, &mut machines, &mut changes, &mut loaded.recovered)?;
    for machine in &mut machines {
        machine.end_batch(&mut changes);
    }
    store.commit(&changes)?;
    Ok((machines, loaded))
}

/// Step 2: every card, given to the shard that owns it under
/// `shard_count`; counted in `loaded`.
fn read_cards(
    store: &dyn Store,
    shard_count: usize,
    loaded: &mut Loaded,
) -> Result<Vec<Cards>, StorageError> {
    let mut cards: Vec<Cards> = (0..shard_count).map(|_| Cards::default()).collect();
    store.scan(Cf::Cards, &mut |key, value| {
        let key = records::decode_pin_key(key)?;
        let card = records::decode_card(value).map_err(|e| format!("card {}: {e}", key.label()))?;
        // The ceilings that keep every money sum below u64::MAX, checked on
        // data written under any earlier limits: refuse to start, never
        // overflow later.
        if card.face_value_minor > FACE_VALUE_MINOR_CEILING {
            return Err(format!(
                "card {} has face value {}, above the ceiling {FACE_VALUE_MINOR_CEILING}",
                key.label(),
                card.face_value_minor
            ));
        }
        let shard = &mut cards[key.shard(shard_count)];
        if shard.is_full() {
            return Err(format!(
                "shard {} would hold more than {CARDS_PER_SHARD_MAX} cards; run more shards",
                key.shard(shard_count)
            ));
        }
        if shard.insert(key, card).is_none() {
            return Err(format!("card {} is stored twice", key.label()));
        }
        loaded.cards += 1;
        Ok(())
    })?;
    Ok(cards)
}

/// Step 4: every book row merged into shard 0's share, the rows rewritten
/// that way in `changes`; the rows read are counted in `loaded`.
fn consolidate_books(
    store: &dyn Store,
    changes: &mut Changes,
    loaded: &mut Loaded,
) -> Result<ShardBooks, StorageError> {
    let mut rows = Vec::new();
    store.scan(Cf::Books, &mut |key, value| {
        rows.push(records::decode_book_row(key, value)?);
        Ok(())
    })?;
    loaded.book_rows = rows.len();
    for row in &rows {
        changes.delete_book(row.kind, row.account_id, row.shard);
    }
    let consolidated = ledger::consolidate(&rows).map_err(StorageError::Corrupt)?;
    // Honest books never hold more than the cards ever carried. Books above
    // everything the engine could ever carry were damaged outside it, and
    // crediting them further could overflow: refuse to start on them.
    // (Smaller damage is the audit's to find and locate.)
    for kind in BookKind::ALL {
        let total = consolidated.total(kind);
        if total > MONEY_MINOR_MAX {
            return Err(StorageError::Inconsistent(format!(
                "the {kind:?} books total {total}, more than any engine can hold \
                 ({MONEY_MINOR_MAX}): the data dir is damaged"
            )));
        }
    }
    consolidated.write_rows(ShardId(0), changes);
    Ok(consolidated)
}

/// Step 3: the shards' machines, shard 0 with the consolidated books, each
/// sealed at the last payout's cut-off and given its cards' reversed sales.
fn start_machines(
    store: &dyn Store,
    shard_count: usize,
    cards: Vec<Cards>,
    consolidated: ShardBooks,
) -> Result<Vec<ShardMachine>, StorageError> {
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
    // A payout's cut-off stays sealed across restarts, even if the clock
    // went back meanwhile: nothing is stamped into a closed period.
    let sealed_ms = last_cut_off(store)?;
    for machine in &mut machines {
        machine.seal(sealed_ms);
    }
    store.scan(Cf::Reversals, &mut |key, value| {
        let (key, store_id, pos_ref) = records::decode_reversal_key(key)?;
        let amount_minor = records::decode_u64(value)?;
        machines[key.shard(shard_count)].restore_reversal(key, store_id, pos_ref, amount_minor);
        Ok(())
    })?;
    Ok(machines)
}

/// The latest cut-off of any merchant's payout (0 without payouts).
fn last_cut_off(store: &dyn Store) -> Result<u64, StorageError> {
    let mut latest_ms = 0;
    store.scan(Cf::Payouts, &mut |_key, value| {
        latest_ms = latest_ms.max(records::PayoutRecord::decode(value)?.until_ms);
        Ok(())
    })?;
    Ok(latest_ms)
}

fn check_fingerprint(
    store: &dyn Store,
    hasher: &PinHasher,
    changes: &mut Changes,
) -> Result<(), StorageError> {
    let fingerprint = hasher.fingerprint();
    match store.get_meta(META_FINGERPRINT)? {
        Some(stored) if stored != fingerprint => Err(StorageError::WrongConfig(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStore;

    /// Loads `store` as an engine of one shard would, with `secret`.
    fn load_with(store: &MemStore, secret: &[u8]) -> Result<(), StorageError> {
        let (_, _) = load(store, &PinHasher::new(secret), 1)?;
        Ok(())
    }

    #[test]
    fn another_pin_secret_is_a_wrong_configuration() {
        let store = MemStore::new();
        let mut changes = Changes::new();
        check_fingerprint(&store, &PinHasher::new(b"secret-a"), &mut changes).expect("first");
        store.commit(&changes).expect("commit");
        assert_eq!(load_with(&store, b"secret-a"), Ok(()));
        assert!(matches!(
            load_with(&store, b"secret-b"),
            Err(StorageError::WrongConfig(_))
        ));
    }

    /// The offline audit is the live one: an activated card that no store
    /// book owes for is a finding, and the store under the overlay is not
    /// written by the loader's consolidation.
    #[test]
    fn the_offline_audit_finds_what_the_books_do_not_hold() {
        let store = MemStore::new();
        let mut changes = Changes::new();
        let mut card = crate::card::Card::issued(1000);
        card.activate(1, 0, 0, 0).expect("activates");
        changes.put_card(&crate::pin::PinKey([7; 16]), &card);
        store.commit(&changes).expect("commit");
        let records = store.len();
        let (audit, loaded) = audit_offline(&crate::storage::Overlay::new(&store)).expect("loads");
        assert_eq!(loaded.cards, 1);
        assert_eq!(audit.totals.activated_minor, 1000);
        assert!(!audit.ok, "{audit:?}");
        assert_eq!(store.len(), records, "nothing written under the overlay");

        let empty = MemStore::new();
        let (audit, _) = audit_offline(&crate::storage::Overlay::new(&empty)).expect("loads");
        assert!(audit.ok, "{audit:?}");
    }

    #[test]
    fn a_card_that_does_not_decode_is_corrupt() {
        let store = MemStore::new();
        let mut changes = Changes::new();
        changes.put(Cf::Cards, &[7; 16], b"not a card");
        store.commit(&changes).expect("commit");
        assert!(matches!(
            load_with(&store, b"secret-a"),
            Err(StorageError::Corrupt(_))
        ));
    }
}
