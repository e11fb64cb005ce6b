//! The rules of one shard, as a pure state machine.
//!
//! In the spirit of TigerBeetle's `prefetch → commit`: whoever drives a
//! [`ShardMachine`] (the shard actor in production, the simulator in tests,
//! the loader at start-up) first fetches from storage whatever an operation
//! needs (today: a payment's earlier outcome), then calls the operation.
//! The operation changes the in-memory state, appends the records to write
//! to a [`Changes`] write-set, and returns its reply as a value. Nothing in
//! here does I/O, starts a thread or reads a clock, so the same code runs in
//! the engine, in unit tests and in the deterministic simulation.
//!
//! * [`pay`]: payments whose cards all live on this shard, decided and
//!   applied in one step; the split rule shared with two-phase commit.
//! * [`holds`]: this shard's side of two-phase commit (prepare, commit,
//!   abort, the decision record) and re-placing holds at recovery.
//!
//! Every change and its bookkeeping go into the same write-set: a debit and
//! the merchant's credit, an activation and the store's debt, a hold and its
//! record. The driver writes each write-set atomically, so a crash can cut
//! between write-sets, never inside one.

mod holds;
mod pay;

pub use holds::{HeldCard, PrepareRequest, Take, Vote};
pub(crate) use pay::split_payment;

use crate::card::{Card, CardState, DeclineReason};
use crate::ids::{PaymentId, ShardId, StoreId};
use crate::ledger::{ShardBooks, ShardLedger};
use crate::pin::{KeyHashBuilder, PinKey};
use crate::protocol::{ActivationResult, BalanceResponse, ErrorCode, ErrorResponse};
use crate::storage::Changes;
use crate::storage::records::BookKind;
use std::collections::{BTreeSet, HashMap};

/// A shard's cards, by PIN key.
pub type CardMap = HashMap<PinKey, Card, KeyHashBuilder>;

/// Holds of prepared two-phase payments, by (payment, card).
type HoldMap = HashMap<(PaymentId, PinKey), u64>;

/// The in-memory state of one shard and the rules that change it.
pub struct ShardMachine {
    id: ShardId,
    cards: CardMap,
    holds: HoldMap,
    books: ShardBooks,
    /// Accounts credited since the last write-set was closed (rows to
    /// write). Ordered, so a run writes the same bytes every time.
    dirty_books: BTreeSet<(BookKind, u32)>,
}

impl ShardMachine {
    /// A shard starting from loaded cards and book shares, with no holds
    /// (recovery re-places any with [`ShardMachine::restore_hold`]).
    pub fn new(id: ShardId, cards: CardMap, books: ShardBooks) -> ShardMachine {
        ShardMachine {
            id,
            cards,
            holds: HoldMap::new(),
            books,
            dirty_books: BTreeSet::new(),
        }
    }

    pub fn id(&self) -> ShardId {
        self.id
    }

    pub fn card_count(&self) -> usize {
        self.cards.len()
    }

    /// Bytes the card map has allocated (see [`card_map_bytes`]).
    pub fn card_map_bytes(&self) -> u64 {
        card_map_bytes(&self.cards)
    }

    /// Registers a new (issued, worthless) card; false if the key exists.
    pub fn insert_card(&mut self, key: PinKey, face_value_minor: u64, out: &mut Changes) -> bool {
        if self.cards.contains_key(&key) {
            return false;
        }
        let card = Card::issued(face_value_minor);
        self.cards.insert(key, card);
        out.put_card(&key, &card);
        true
    }

    /// The store sold the card: it now carries its face value, and the
    /// store owes the center that much.
    pub fn activate(
        &mut self,
        key: PinKey,
        store_id: StoreId,
        pos_ref: u64,
        out: &mut Changes,
    ) -> ActivationResult {
        let Some(card) = self.cards.get_mut(&key) else {
            return ActivationResult::Declined {
                reason: DeclineReason::UnknownPin,
            };
        };
        if let Err(reason) = card.activate(store_id, pos_ref) {
            return ActivationResult::Declined { reason };
        }
        let face_value_minor = card.face_value_minor;
        out.put_card(&key, card);
        self.credit(BookKind::StoreOwed, store_id, face_value_minor);
        ActivationResult::Activated { face_value_minor }
    }

    /// A card as it stands (for checks and tools; merchants ask
    /// [`ShardMachine::balance`]).
    pub fn card(&self, key: &PinKey) -> Option<&Card> {
        self.cards.get(key)
    }

    /// A card's balance. An unknown PIN and an unsold card give the same
    /// error, so a guesser cannot tell them apart.
    pub fn balance(&self, key: &PinKey) -> Result<BalanceResponse, ErrorResponse> {
        let card = self
            .cards
            .get(key)
            .filter(|card| card.state != CardState::Issued)
            .ok_or_else(|| {
                ErrorResponse::new(ErrorCode::InvalidCard, "no sold card has this PIN")
            })?;
        Ok(BalanceResponse {
            state: card.state,
            face_value_minor: card.face_value_minor,
            balance_minor: card.balance_minor,
            available_minor: card.available_minor(),
        })
    }

    /// Cards, books and holds for a report or an audit, in one pass.
    pub fn snapshot(&self) -> ShardLedger {
        ShardLedger::snapshot(self.id, &self.cards, &self.books, &self.holds)
    }

    /// Closes a write-set: writes the book rows credited since the last
    /// one, once per account. A busy merchant's share would otherwise be
    /// rewritten by every payment of a batch, each rewrite a memtable
    /// insert; the rows still travel in the same atomic write as the card
    /// changes that moved the money.
    pub fn end_batch(&mut self, out: &mut Changes) {
        for (kind, account) in std::mem::take(&mut self.dirty_books) {
            out.put_book(kind, account, self.id, self.books.share(kind, account));
        }
    }

    /// What a card named in a payment can give, or why it cannot pay. A
    /// merchant hears `InvalidCard` for an unknown and an unsold card alike.
    fn payable(&self, key: &PinKey) -> Result<u64, DeclineReason> {
        let card = self.cards.get(key).ok_or(DeclineReason::InvalidCard)?;
        match card.spendable() {
            Ok(()) => Ok(card.available_minor()),
            Err(DeclineReason::NotActive) => Err(DeclineReason::InvalidCard),
            Err(reason) => Err(reason),
        }
    }

    /// Credits this shard's share of an account; the row is written when
    /// the write-set closes ([`ShardMachine::end_batch`]).
    fn credit(&mut self, kind: BookKind, account: u32, amount_minor: u64) {
        self.books.credit(kind, account, amount_minor);
        self.dirty_books.insert((kind, account));
    }
}

/// Bytes a card map has allocated, computed from its capacity.
///
/// The standard map (hashbrown) keeps its load at most 7/8: a capacity of
/// `c` means `c / 7 * 8` slots (below 8 slots, `c + 1`), each one
/// `(PinKey, Card)` entry plus one control byte, and a group of control
/// bytes more. This is the number to watch when sizing a machine: all cards
/// live in memory.
pub fn card_map_bytes(cards: &CardMap) -> u64 {
    const CONTROL_GROUP_BYTES: usize = 16;
    let slots = match cards.capacity() {
        0 => return 0,
        small @ 1..7 => small + 1,
        large => large / 7 * 8,
    };
    let slot_bytes = std::mem::size_of::<(PinKey, Card)>() + 1;
    (slots * slot_bytes + CONTROL_GROUP_BYTES) as u64
}

/// A card map entry is a 16-byte key and a 40-byte card with no padding:
/// the memory figures in the README and `kessai stats` assume it.
const _: () = assert!(std::mem::size_of::<(PinKey, Card)>() == 56);

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn machine_with(cards: &[(u8, Card)]) -> ShardMachine {
        let map = cards
            .iter()
            .map(|(byte, card)| (PinKey([*byte; 16]), *card))
            .collect();
        ShardMachine::new(ShardId(0), map, ShardBooks::default())
    }

    #[test]
    fn activation_credits_the_store_once_and_writes_the_card() {
        let mut machine = machine_with(&[(1, Card::issued(700))]);
        let mut out = Changes::new();
        assert_eq!(
            machine.activate(PinKey([1; 16]), 42, 9, &mut out),
            ActivationResult::Activated {
                face_value_minor: 700
            }
        );
        assert_eq!(
            machine.activate(PinKey([1; 16]), 43, 9, &mut out),
            ActivationResult::Declined {
                reason: DeclineReason::AlreadyActive
            }
        );
        assert_eq!(
            machine.activate(PinKey([2; 16]), 42, 9, &mut out),
            ActivationResult::Declined {
                reason: DeclineReason::UnknownPin
            }
        );
        assert_eq!(out.len(), 1, "one card record, no book row yet");
        machine.end_batch(&mut out);
        assert_eq!(out.len(), 2, "the store's share, once");
        let ledger = machine.snapshot();
        assert_eq!(ledger.books.share(BookKind::StoreOwed, 42), 700);
        assert_eq!(ledger.books.share(BookKind::StoreOwed, 43), 0);
    }

    #[test]
    fn balance_of_an_unknown_or_unsold_card_is_the_same_error() {
        let mut sold = Card::issued(500);
        sold.activate(1, 0).expect("activates");
        let machine = machine_with(&[(1, Card::issued(700)), (3, sold)]);
        let balance = machine.balance(&PinKey([3; 16])).expect("sold");
        assert_eq!(
            (balance.balance_minor, balance.face_value_minor),
            (500, 500)
        );
        let unsold = machine.balance(&PinKey([1; 16])).expect_err("unsold");
        let unknown = machine.balance(&PinKey([2; 16])).expect_err("unknown");
        assert_eq!(unsold, unknown);
        assert_eq!(unknown.error_code(), Some(ErrorCode::InvalidCard));
    }

    #[test]
    fn card_map_bytes_covers_every_entry_and_tracks_the_allocation() {
        let entry_bytes = std::mem::size_of::<(PinKey, Card)>() as u64;
        assert_eq!(card_map_bytes(&CardMap::default()), 0);
        for count in [1u32, 3, 7, 1_000, 100_000] {
            let mut cards = CardMap::with_capacity_and_hasher(count as usize, Default::default());
            for i in 0..count {
                let mut key = [0u8; crate::pin::PIN_KEY_BYTES];
                key[..4].copy_from_slice(&i.to_le_bytes());
                cards.insert(PinKey(key), Card::issued(1000));
            }
            let bytes = card_map_bytes(&cards);
            // hashbrown allocates a power of two of slots: the formula must
            // land on one, with at least one slot per card and at most
            // twice the slots the 7/8 load needs (one resize's worth).
            let slots = (bytes - 16) / (entry_bytes + 1);
            assert!(slots.is_power_of_two(), "{count} cards: {slots} slots");
            assert!(slots > u64::from(count), "{count} cards: {slots} slots");
            assert!(slots <= 2 * (u64::from(count) * 8 / 7).max(4));
        }
    }
}
