//! The card shard: an actor that owns the in-memory state of its cards.
//!
//! A card belongs to shard `pin_key mod N`. The shard is the only place that
//! reads or changes its cards, so no locks guard them: the actor's mailbox
//! serialises every operation. It applies each operation to memory at once,
//! records the write-set and the reply in the pending batch, and leaves
//! durability and replying to its writer thread (see [`writer`]).
//!
//! Every state change and its bookkeeping go into the same batch: a debit
//! and the merchant's credit, an activation and the store's debt, a hold and
//! its record. A crash can cut between batches, never inside one.

pub mod op;
pub mod writer;

use crate::card::{Card, DeclineReason, take_in_order};
use crate::config::CARDS_PER_PAYMENT_MAX;
use crate::idempotency::{self, Claims};
use crate::ids::{MerchantId, PaymentId, StoreId};
use crate::ledger::{ShardBooks, ShardLedger};
use crate::pin::{KeyHashBuilder, PinKey};
use crate::protocol::{
    ActivationResult, BalanceResponse, ErrorCode, PayPart, PayResponse, Response,
};
use crate::storage::Storage;
use crate::storage::records::{BookKind, HoldRecord, StoredPayment};
use actix::prelude::*;
use op::{CardRef, Op, Origin, Outcome, Vote};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use writer::{Pending, WriterStats};

/// Bytes a card map has allocated, computed from its capacity.
///
/// The standard map (hashbrown) keeps its load at most 7/8: a capacity of
/// `c` means `c / 7 * 8` slots (below 8 slots, `c + 1`), each one
/// `(PinKey, Card)` entry plus one control byte, and a group of control
/// bytes more. This is the number to watch when sizing a machine: all cards
/// live in memory.
pub fn card_map_bytes(cards: &HashMap<PinKey, Card, KeyHashBuilder>) -> u64 {
    const CONTROL_GROUP_BYTES: usize = 16;
    let slots = match cards.capacity() {
        0 => return 0,
        small @ 1..7 => small + 1,
        large => large / 7 * 8,
    };
    let slot_bytes = std::mem::size_of::<(PinKey, Card)>() + 1;
    (slots * slot_bytes + CONTROL_GROUP_BYTES) as u64
}

/// Cards and books a shard starts with (built by the start-up loader).
#[derive(Default)]
pub struct ShardState {
    pub cards: HashMap<PinKey, Card, KeyHashBuilder>,
    pub books: ShardBooks,
}

/// A batch of operations for one shard, from one sender.
pub struct ShardBatch {
    pub origin: Origin,
    pub ops: Vec<(u64, Op)>,
}

impl Message for ShardBatch {
    type Result = ();
}

/// From the writer thread: the batch it was given is durable and answered;
/// here are its emptied buffers back.
struct Durable(Pending);

impl Message for Durable {
    type Result = ();
}

pub struct Shard {
    id: u16,
    cards: HashMap<PinKey, Card, KeyHashBuilder>,
    /// Holds of prepared two-phase payments, by (payment, card).
    holds: HashMap<(PaymentId, PinKey), u64>,
    books: ShardBooks,
    /// Accounts credited since the pending batch started (rows to write).
    dirty_books: HashSet<(BookKind, u32)>,
    storage: Arc<Storage>,
    claims: Arc<Claims>,
    /// The batch being gathered while the writer syncs the previous one.
    pending: Pending,
    /// Buffers returned by the writer, reused for the next batch.
    spare: Option<Pending>,
    writer: Option<crossbeam_channel::Sender<Pending>>,
    writer_busy: bool,
    stats: Arc<Mutex<WriterStats>>,
}

impl Shard {
    pub fn new(id: u16, state: ShardState, storage: Arc<Storage>, claims: Arc<Claims>) -> Shard {
        Shard {
            id,
            cards: state.cards,
            holds: HashMap::new(),
            books: state.books,
            dirty_books: HashSet::new(),
            storage,
            claims,
            pending: Pending::default(),
            spare: None,
            writer: None,
            writer_busy: false,
            stats: Arc::new(Mutex::new(WriterStats::new())),
        }
    }

    /// Hands the pending batch to the writer unless it is busy (then the
    /// batch keeps growing until the writer returns).
    ///
    /// Book rows are written here, once per account per batch: a busy
    /// merchant's share would otherwise be rewritten by every payment in the
    /// batch, and each rewrite costs a memtable insert. They still travel in
    /// the same atomic batch as the card changes that moved the money.
    fn ship_if_idle(&mut self) {
        if self.writer_busy || self.pending.is_empty() {
            return;
        }
        for (kind, account) in self.dirty_books.drain() {
            let share = self.books.share(kind, account);
            self.pending.changes.put_book(kind, account, self.id, share);
        }
        let next = self.spare.take().unwrap_or_default();
        let batch = std::mem::replace(&mut self.pending, next);
        let writer = self
            .writer
            .as_ref()
            .expect("writer runs while the shard does");
        writer
            .send(batch)
            .expect("the writer thread lives as long as the shard");
        self.writer_busy = true;
    }

    fn apply(&mut self, op: Op) -> Outcome {
        match op {
            Op::Insert {
                key,
                face_value_minor,
            } => self.insert(key, face_value_minor),
            Op::Activate {
                key,
                store_id,
                pos_ref,
            } => self.activate(key, store_id, pos_ref),
            Op::Pay {
                payment,
                amount_minor,
                cards,
            } => self.pay(payment, amount_minor, &cards),
            Op::Balance { key } => self.balance(key),
            Op::Prepare {
                payment,
                amount_minor,
                cards,
                all_cards,
            } => Outcome::Vote(self.prepare(payment, amount_minor, &cards, all_cards)),
            Op::Commit { payment, takes } => self.commit(payment, &takes),
            Op::Abort { payment, keys } => self.abort(payment, &keys),
            Op::RecordDecision { payment, stored } => {
                self.pending.changes.put_payment(payment, &stored);
                Outcome::Done
            }
            Op::Ledger => Outcome::Ledger(Box::new(ShardLedger::snapshot(
                self.id,
                &self.cards,
                &self.books,
                &self.holds,
            ))),
            Op::Stats => {
                let stats = self.stats.lock().map(|s| {
                    s.snapshot(
                        self.id,
                        self.cards.len() as u64,
                        card_map_bytes(&self.cards),
                    )
                });
                Outcome::Stats(stats.unwrap_or_default())
            }
        }
    }

    fn insert(&mut self, key: PinKey, face_value_minor: u64) -> Outcome {
        if self.cards.contains_key(&key) {
            return Outcome::Inserted(false);
        }
        let card = Card::issued(face_value_minor);
        self.cards.insert(key, card);
        self.pending.changes.put_card(&key, &card);
        Outcome::Inserted(true)
    }

    fn activate(&mut self, key: PinKey, store_id: StoreId, pos_ref: u64) -> Outcome {
        let Some(card) = self.cards.get_mut(&key) else {
            return Outcome::Activation(ActivationResult::Declined {
                reason: DeclineReason::UnknownPin,
            });
        };
        if let Err(reason) = card.activate(store_id, pos_ref) {
            return Outcome::Activation(ActivationResult::Declined { reason });
        }
        let face_value_minor = card.face_value_minor;
        self.pending.changes.put_card(&key, card);
        self.credit(BookKind::StoreOwed, store_id, face_value_minor);
        Outcome::Activation(ActivationResult::Activated { face_value_minor })
    }

    /// Credits this shard's share of an account. The share's row is written
    /// once per batch, when the batch ships (see [`Shard::ship_if_idle`]).
    fn credit(&mut self, kind: BookKind, account: u32, amount_minor: u64) {
        self.books.credit(kind, account, amount_minor);
        self.dirty_books.insert((kind, account));
    }

    fn balance(&self, key: PinKey) -> Outcome {
        Outcome::Response(match self.cards.get(&key) {
            Some(card) => Response::Balance(BalanceResponse {
                state: card.state,
                face_value_minor: card.face_value_minor,
                balance_minor: card.balance_minor,
                available_minor: card.available_minor(),
            }),
            None => Response::error(ErrorCode::UnknownPin, "no card has this PIN"),
        })
    }

    /// A payment whose cards all live here: claim, replay or decide, apply,
    /// record, all in this one turn of the actor.
    fn pay(&mut self, payment: PaymentId, amount_minor: u64, cards: &[CardRef]) -> Outcome {
        if !self.claims.claim(payment) {
            return Outcome::Response(Response::error(
                ErrorCode::RequestInProgress,
                "this request id is being processed; retry when it has answered",
            ));
        }
        // Released by the writer once this batch is durable.
        self.pending.claims.push(payment);
        match self.storage.get_payment(payment) {
            Ok(Some(stored)) => {
                return Outcome::Response(idempotency::replay(&stored, amount_minor, cards));
            }
            Ok(None) => {}
            Err(error) => {
                tracing::error!(%error, "payment lookup failed");
                return Outcome::Response(Response::error(
                    ErrorCode::Internal,
                    "storage read failed",
                ));
            }
        }
        let response = self.debit_in_order(payment.merchant_id, amount_minor, cards);
        let stored = StoredPayment {
            response,
            card_keys: cards.iter().map(|c| c.key.0).collect(),
        };
        self.pending.changes.put_payment(payment, &stored);
        Outcome::Response(Response::Paid(stored.response))
    }

    /// Takes `amount_minor` from the cards in order, each up to its
    /// available balance, or declines without touching any card.
    fn debit_in_order(
        &mut self,
        merchant_id: MerchantId,
        amount_minor: u64,
        cards: &[CardRef],
    ) -> PayResponse {
        let count = cards.len();
        assert!(count <= CARDS_PER_PAYMENT_MAX, "validated at the gateway");
        let mut available_minor = [0u64; CARDS_PER_PAYMENT_MAX];
        for (index, card_ref) in cards.iter().enumerate() {
            let position = Some((index + 1) as u8);
            let Some(card) = self.cards.get(&card_ref.key) else {
                return PayResponse::declined(DeclineReason::UnknownPin, position, amount_minor, 0);
            };
            if let Err(reason) = card.spendable() {
                return PayResponse::declined(reason, position, amount_minor, 0);
            }
            available_minor[index] = card.available_minor();
        }
        let takes_minor = match split_payment(amount_minor, &available_minor[..count]) {
            Ok(takes) => takes,
            Err(declined) => return declined,
        };
        let mut parts = Vec::with_capacity(count);
        for (card_ref, &take_minor) in cards.iter().zip(&takes_minor[..count]) {
            let card = self.cards.get_mut(&card_ref.key).expect("checked above");
            if take_minor > 0 {
                card.debit(take_minor).expect("available checked above");
                self.pending.changes.put_card(&card_ref.key, card);
            }
            parts.push(PayPart {
                pin_last4: card_ref.last4,
                taken_minor: take_minor,
                remaining_minor: card.balance_minor,
            });
        }
        self.credit(BookKind::MerchantOwed, merchant_id, amount_minor);
        PayResponse::approved(amount_minor, parts)
    }

    /// Phase one: check every card, then hold up to the amount across them
    /// in order. A card that cannot pay votes no and holds nothing.
    ///
    /// Each card holds at most what the payment still needs after the
    /// earlier cards on this shard; cards on other shards are unknown here,
    /// so the coordinator may end up taking less than a hold, never more.
    fn prepare(
        &mut self,
        payment: PaymentId,
        amount_minor: u64,
        cards: &[(u8, CardRef)],
        all_cards: Vec<[u8; crate::pin::PIN_KEY_BYTES]>,
    ) -> Vote {
        for &(position, card_ref) in cards {
            let check = match self.cards.get(&card_ref.key) {
                None => Err(DeclineReason::UnknownPin),
                Some(card) => card.spendable(),
            };
            if let Err(reason) = check {
                return Vote::No { position, reason };
            }
        }
        let mut record = HoldRecord {
            hold_minor: 0,
            amount_minor,
            card_keys: all_cards,
        };
        let mut cap_left_minor = amount_minor;
        let mut holds = Vec::with_capacity(cards.len());
        for &(position, card_ref) in cards {
            let card = self.cards.get_mut(&card_ref.key).expect("checked above");
            let held_minor = card.hold(cap_left_minor).expect("checked above");
            cap_left_minor -= held_minor;
            let earlier = self.holds.insert((payment, card_ref.key), held_minor);
            assert!(earlier.is_none(), "a payment prepared the same card twice");
            record.hold_minor = held_minor;
            self.pending
                .changes
                .put_hold(payment, &card_ref.key, &record);
            holds.push((position, held_minor, card.balance_minor));
        }
        Vote::Yes { holds }
    }

    /// Phase two: each hold becomes a debit of its take (the rest of the
    /// hold is released); the merchant's share is credited with the total.
    fn commit(&mut self, payment: PaymentId, takes: &[(PinKey, u64)]) -> Outcome {
        let mut total_minor = 0u64;
        for &(key, take_minor) in takes {
            let hold_minor = self
                .holds
                .remove(&(payment, key))
                .expect("commit names a card this shard prepared");
            let card = self.cards.get_mut(&key).expect("a held card exists");
            card.commit_hold(hold_minor, take_minor);
            self.pending.changes.put_card(&key, card);
            self.pending.changes.delete_hold(payment, &key);
            total_minor += take_minor;
        }
        if total_minor > 0 {
            self.credit(BookKind::MerchantOwed, payment.merchant_id, total_minor);
        }
        Outcome::Done
    }

    /// Phase two, abort. Cards this shard never held (it voted no, or the
    /// prepare never arrived) are skipped.
    fn abort(&mut self, payment: PaymentId, keys: &[PinKey]) -> Outcome {
        for key in keys {
            if let Some(hold_minor) = self.holds.remove(&(payment, *key)) {
                let card = self.cards.get_mut(key).expect("a held card exists");
                card.release(hold_minor);
                self.pending.changes.delete_hold(payment, key);
            }
        }
        Outcome::Done
    }
}

/// Splits a payment over its cards in order ([`take_in_order`]), or gives
/// the `InsufficientFunds` decline when what the cards can give falls short.
/// The local path and the two-phase coordinator both decide through here.
pub fn split_payment(
    amount_minor: u64,
    can_give_minor: &[u64],
) -> Result<[u64; CARDS_PER_PAYMENT_MAX], PayResponse> {
    let count = can_give_minor.len();
    let mut takes_minor = [0u64; CARDS_PER_PAYMENT_MAX];
    if take_in_order(amount_minor, can_give_minor, &mut takes_minor[..count]) {
        return Ok(takes_minor);
    }
    // A shortfall is not one card's fault, except when there is one card.
    Err(PayResponse::declined(
        DeclineReason::InsufficientFunds,
        (count == 1).then_some(1),
        amount_minor,
        can_give_minor.iter().sum(),
    ))
}

impl Actor for Shard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // One batch is synced while the next gathers: a channel of one.
        let (tx, rx) = crossbeam_channel::bounded::<Pending>(1);
        self.writer = Some(tx);
        let me = ctx.address().downgrade();
        let (id, storage, claims, stats) = (
            self.id,
            self.storage.clone(),
            self.claims.clone(),
            self.stats.clone(),
        );
        std::thread::Builder::new()
            .name(format!("kessai-writer-{id}"))
            .spawn(move || {
                writer::run(id, storage, claims, stats, rx, |pending| {
                    if let Some(shard) = me.upgrade() {
                        shard.do_send(Durable(pending));
                    }
                })
            })
            .expect("spawn writer thread");
    }
}

impl Handler<ShardBatch> for Shard {
    type Result = ();

    fn handle(&mut self, batch: ShardBatch, _ctx: &mut Context<Self>) {
        let mut results = Vec::with_capacity(batch.ops.len());
        for (tag, op) in batch.ops {
            results.push((tag, self.apply(op)));
        }
        self.pending.ops += results.len();
        self.pending.deliveries.push((batch.origin, results));
        self.ship_if_idle();
    }
}

impl Handler<Durable> for Shard {
    type Result = ();

    fn handle(&mut self, durable: Durable, _ctx: &mut Context<Self>) {
        debug_assert!(self.writer_busy);
        self.writer_busy = false;
        self.spare = Some(durable.0);
        self.ship_if_idle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_map_bytes_covers_every_entry_and_tracks_the_allocation() {
        let entry_bytes = std::mem::size_of::<(PinKey, Card)>() as u64;
        assert_eq!(entry_bytes, 56, "16-byte key + 40-byte card, no padding");
        assert_eq!(card_map_bytes(&HashMap::default()), 0);
        for count in [1u32, 3, 7, 1_000, 100_000] {
            let mut cards = HashMap::with_capacity_and_hasher(count as usize, Default::default());
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
