//! A shard's cards: a dense vector of (key, card) entries, appended only so
//! every card keeps its slot, and an index from PIN key to slot.
//!
//! Every change to a card goes through [`Cards::update`], which keeps two
//! things exact at every instant:
//!
//! * the **running totals** ([`CardTotals`]): cards by state, activated
//!   face value, balances, holds, and each store's activations. Reports read
//!   them instead of scanning a million cards.
//! * an **audit in progress**: an audit walks the slots in slices, between
//!   which payments go on. A change to a card the walk has passed is
//!   applied to the walk's sums too, so when the walk ends its sums are the
//!   cards as they are then, and must equal the running totals exactly.
//!
//! The index stores only 4-byte slot numbers (hashbrown's `HashTable`, with
//! the key read from the entry), so a card costs its 64-byte entry plus
//! about 5 to 10 bytes of index.

use crate::card::Card;
use crate::config::CARDS_PER_SHARD_MAX;
use crate::ledger::CardTotals;
use crate::pin::PinKey;
use hashbrown::HashTable;

/// A card's place in its shard, stable for the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Slot(u32);

impl Slot {
    fn index(self) -> usize {
        self.0 as usize
    }

    /// The slot at `index` (below the shard's card count).
    pub(crate) fn from_index(index: usize) -> Slot {
        Slot(u32::try_from(index).expect("slots fit u32"))
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: PinKey,
    card: Card,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 64, "an entry is 64 bytes");

/// An audit's walk over the slots.
#[derive(Debug)]
struct Walk {
    /// Slots below this have been counted into `sums`.
    next: u32,
    sums: CardTotals,
}

#[derive(Default)]
pub struct Cards {
    entries: Vec<Entry>,
    index: HashTable<u32>,
    totals: CardTotals,
    walk: Option<Walk>,
}

impl Cards {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn totals(&self) -> &CardTotals {
        &self.totals
    }

    pub fn slot(&self, key: &PinKey) -> Option<Slot> {
        let entries = &self.entries;
        self.index
            .find(key.low_u64(), |&slot| entries[slot as usize].key == *key)
            .map(|&slot| Slot(slot))
    }

    pub fn get(&self, key: &PinKey) -> Option<&Card> {
        self.slot(key).map(|slot| self.card(slot))
    }

    pub fn card(&self, slot: Slot) -> &Card {
        &self.entries[slot.index()].card
    }

    pub fn key(&self, slot: Slot) -> PinKey {
        self.entries[slot.index()].key
    }

    /// True when the shard holds [`CARDS_PER_SHARD_MAX`] cards.
    pub fn is_full(&self) -> bool {
        self.entries.len() as u64 >= CARDS_PER_SHARD_MAX
    }

    /// Adds a new card; `None` when the key exists or the shard is full.
    pub fn insert(&mut self, key: PinKey, card: Card) -> Option<Slot> {
        if self.slot(&key).is_some() || self.is_full() {
            return None;
        }
        let slot = u32::try_from(self.entries.len()).expect("below CARDS_PER_SHARD_MAX");
        self.entries.push(Entry { key, card });
        let entries = &self.entries;
        self.index
            .insert_unique(key.low_u64(), slot, |&s| entries[s as usize].key.low_u64());
        self.totals.add(&card);
        // A walk in progress has not reached the new slot: it counts the
        // card when it gets there.
        Some(Slot(slot))
    }

    /// Changes one card, keeping the running totals and any audit walk
    /// exact.
    pub fn update<R>(&mut self, slot: Slot, change: impl FnOnce(&mut Card) -> R) -> R {
        let card = &mut self.entries[slot.index()].card;
        let before = *card;
        let result = change(card);
        let after = *card;
        if before != after {
            self.totals.remove(&before);
            self.totals.add(&after);
            if let Some(walk) = &mut self.walk
                && slot.0 < walk.next
            {
                walk.sums.remove(&before);
                walk.sums.add(&after);
            }
        }
        result
    }

    /// Every card with its key, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (&PinKey, &Card)> {
        self.entries.iter().map(|entry| (&entry.key, &entry.card))
    }

    /// Bytes the entries and the index have allocated: what a card costs in
    /// memory.
    pub fn allocated_bytes(&self) -> u64 {
        const CONTROL_GROUP_BYTES: usize = 16;
        let entries = self.entries.capacity() * std::mem::size_of::<Entry>();
        let index_slots = match self.index.capacity() {
            0 => 0,
            small @ 1..7 => small + 1,
            large => large / 7 * 8,
        };
        let index = if index_slots == 0 {
            0
        } else {
            index_slots * (std::mem::size_of::<u32>() + 1) + CONTROL_GROUP_BYTES
        };
        (entries + index) as u64
    }

    /// Starts an audit walk (replacing any unfinished one).
    pub fn begin_walk(&mut self) {
        self.walk = Some(Walk {
            next: 0,
            sums: CardTotals::default(),
        });
    }

    /// Counts up to `count` more cards into the walk, calling `visit` on
    /// each; true when the walk has passed every card.
    pub fn walk(&mut self, count: usize, mut visit: impl FnMut(&PinKey, &Card)) -> bool {
        let walk = self.walk.as_mut().expect("an audit walk is in progress");
        let start = walk.next as usize;
        let end = self.entries.len().min(start.saturating_add(count));
        for entry in &self.entries[start..end] {
            walk.sums.add(&entry.card);
            visit(&entry.key, &entry.card);
        }
        walk.next = u32::try_from(end).expect("slots fit u32");
        end == self.entries.len()
    }

    /// Ends the walk: its sums, which describe the cards as they are now.
    pub fn end_walk(&mut self) -> CardTotals {
        let walk = self.walk.take().expect("an audit walk is in progress");
        assert_eq!(
            walk.next as usize,
            self.entries.len(),
            "a walk ends after the last card"
        );
        walk.sums
    }

    /// For the audit tests: changes a card without telling the totals.
    #[cfg(test)]
    pub fn corrupt(&mut self, slot: Slot, change: impl FnOnce(&mut Card)) {
        change(&mut self.entries[slot.index()].card);
    }
}

impl FromIterator<(PinKey, Card)> for Cards {
    fn from_iter<I: IntoIterator<Item = (PinKey, Card)>>(iter: I) -> Cards {
        let mut cards = Cards::default();
        for (key, card) in iter {
            assert!(cards.insert(key, card).is_some(), "keys are unique");
        }
        cards
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::StoreId;
    use crate::ledger::StoreActivations;

    fn key(n: u32) -> PinKey {
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&n.to_le_bytes());
        bytes[4..8].copy_from_slice(&n.wrapping_mul(0x9E37_79B9).to_le_bytes());
        PinKey(bytes)
    }

    fn sold(face: u64, store: StoreId) -> Card {
        let mut card = Card::issued(face);
        card.activate(store, 0, 0, 0).expect("activates");
        card
    }

    #[test]
    fn cards_are_found_by_key_and_keep_their_slots() {
        let mut cards = Cards::default();
        let slots: Vec<Slot> = (0..1000)
            .map(|n| cards.insert(key(n), Card::issued(500)).expect("new"))
            .collect();
        assert!(
            cards.insert(key(7), Card::issued(1)).is_none(),
            "a key once"
        );
        for (n, slot) in slots.iter().enumerate() {
            assert_eq!(cards.slot(&key(n as u32)), Some(*slot));
            assert_eq!(cards.key(*slot), key(n as u32));
        }
        assert_eq!(cards.get(&key(5000)), None);
        assert_eq!(cards.totals().cards, 1000);
        assert_eq!(cards.totals().issued, 1000);
        assert!(cards.allocated_bytes() >= 1000 * 56);
    }

    #[test]
    fn running_totals_follow_every_change() {
        let mut cards: Cards = [(key(1), Card::issued(1000)), (key(2), sold(500, 7))]
            .into_iter()
            .collect();
        let one = cards.slot(&key(1)).expect("card");
        cards
            .update(one, |card| card.activate(7, 0, 0, 0))
            .expect("sold");
        cards.update(one, |card| card.debit(1000)).expect("spent");
        let totals = cards.totals();
        assert_eq!((totals.active, totals.exhausted), (1, 1));
        assert_eq!(totals.activated_minor, 1500);
        assert_eq!(totals.balance_minor, 500);
        assert_eq!(
            totals.by_store[&7],
            StoreActivations {
                cards: 2,
                face_value_minor: 1500
            }
        );
        // Recomputing from scratch gives the same sums.
        let mut fresh = CardTotals::default();
        for (_, card) in cards.iter() {
            fresh.add(card);
        }
        assert_eq!(&fresh, cards.totals());
    }

    #[test]
    fn a_walk_sees_the_cards_as_they_are_when_it_ends() {
        let mut cards: Cards = (0..100).map(|n| (key(n), sold(1000, n % 3))).collect();
        cards.begin_walk();
        assert!(!cards.walk(40, |_, _| {}));
        // Change a card already walked, one not yet walked, add a new one.
        let walked = cards.slot(&key(3)).expect("card");
        let ahead = cards.slot(&key(90)).expect("card");
        cards.update(walked, |c| c.debit(300)).expect("debit");
        cards.update(ahead, |c| c.hold(200)).expect("hold");
        cards.insert(key(1000), Card::issued(50)).expect("new");
        assert!(!cards.walk(40, |_, _| {}));
        assert!(cards.walk(1000, |_, _| {}));
        assert_eq!(&cards.end_walk(), cards.totals());
    }
}
