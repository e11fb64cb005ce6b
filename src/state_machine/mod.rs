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
//! * [`ops`]: every operation the rest of the engine asks of a shard, as
//!   data, and its answer.
//! * [`apply`]: [`ShardMachine::apply`], the one function that applies
//!   them (client payments, balances and reversals take their own entry
//!   points, after the driver's prefetch).
//! * [`pay`]: payments whose cards all live on this shard, decided and
//!   applied in one step; the split rule shared with two-phase commit.
//! * [`holds`]: this shard's side of two-phase commit (prepare, commit,
//!   abort, the decision record) and re-placing holds at recovery.
//! * [`reverse`]: activation reversal.
//! * [`expiry`]: cards past their validity, their balance to breakage.
//! * [`refund`]: a refund's decision record and its credits to the cards.
//! * [`remit`]: a store HQ's remittance, booked against its stores' debt.
//!
//! Time is an input like any other: the driver reads the clock and passes
//! `now_ms` to the operations that keep or compare times.
//!
//! Every change and its bookkeeping go into the same write-set: a debit and
//! the merchant's credit, an activation and the store's debt, a hold and its
//! record. The driver writes each write-set atomically, so a crash can cut
//! between write-sets, never inside one.

mod apply;
mod audit;
mod cards;
mod expiry;
mod holds;
mod ops;
mod pay;
mod refund;
mod remit;
mod reverse;

pub use apply::{Applied, Env, count_failures};
pub use cards::Cards;
pub use holds::{AuthorizationStep, HeldCard, IndexChange, PrepareRequest, Take, Vote};
pub use ops::{Activation, NewCard, ShardAnswer, ShardOp};
pub(crate) use pay::split_payment;
pub use pay::{declined_cards, is_recorded};
pub use refund::Credit;

use crate::card::{Card, CardState, DeclineReason, Sale};
use crate::ids::{PaymentId, ShardId, StoreId};
use crate::ledger::{ShardBooks, ShardPage};
use crate::pin::PinKey;
use crate::protocol::{ActivationResult, BalanceResponse, ErrorCode, ErrorResponse, ReportAccount};
use crate::storage::Changes;
use crate::storage::records::{
    BookKind, JournalEntry, JournalKind, PaymentRecord, RecordedOutcome,
};
use std::collections::{HashMap, HashSet};

/// Holds of prepared two-phase payments, by (payment, card).
type HoldMap = HashMap<(PaymentId, PinKey), u64>;

/// Every reversed sale of this shard's cards, by (card, store, POS
/// reference): what the reversal took off the store's debt. Reversals are
/// rare next to sales, so all of them stay in memory.
type ReversalMap = HashMap<(PinKey, StoreId, u64), u64>;

/// The in-memory state of one shard and the rules that change it.
pub struct ShardMachine {
    id: ShardId,
    cards: Cards,
    holds: HoldMap,
    /// Payments whose holds here are an open authorization's: they stand
    /// until it is captured, voided or released (not in flight, yet not
    /// dangling).
    authorized: HashSet<PaymentId>,
    reversals: ReversalMap,
    books: ShardBooks,
    /// Accounts credited since the last write-set was closed (rows to
    /// write), once per run of credits to one account; sorted and
    /// deduplicated when the rows are written, so a run writes the same
    /// bytes every time. A vector, kept between batches, where a set
    /// allocates a node whenever it goes from empty to one entry.
    dirty_books: Vec<(BookKind, u32)>,
    /// An audit in progress (see [`audit`]).
    audit: Option<audit::AuditRun>,
    /// The next slot the expiry sweep looks at (see [`expiry`]).
    sweep_next: usize,
    /// No record written from now on is stamped at or before this: the
    /// shard's side of a payout's cut-off (see [`ShardMachine::stamp`]).
    stamp_floor_ms: u64,
    /// The record of the last payment decided here, its buffers reused for
    /// the next one (see [`crate::idempotency::record_into`]).
    payment_record: PaymentRecord,
}

impl ShardMachine {
    /// A shard starting from loaded cards and book shares, with no holds
    /// (recovery re-places any with [`ShardMachine::restore_hold`]).
    pub fn new(id: ShardId, cards: Cards, books: ShardBooks) -> ShardMachine {
        ShardMachine {
            id,
            cards,
            holds: HoldMap::new(),
            authorized: HashSet::new(),
            reversals: ReversalMap::new(),
            books,
            dirty_books: Vec::new(),
            audit: None,
            sweep_next: 0,
            stamp_floor_ms: 0,
            payment_record: PaymentRecord {
                at_ms: 0,
                amount_minor: 0,
                cards: Vec::new(),
                outcome: RecordedOutcome::Approved { parts: Vec::new() },
                authorization: None,
            },
        }
    }

    /// The time to record for a payment, refund or store-journal entry
    /// written now: `now_ms`, but never earlier than anything this shard
    /// stamped before, nor at or before a period it has sealed.
    ///
    /// This is what makes payouts exact whatever the timing: a payout at
    /// cut-off `T` first has every shard [`seal`](ShardMachine::seal) `T`
    /// and waits until that shard's current batch is durable. A record
    /// stamped at or before `T` was stamped before the seal, so it sits in
    /// that batch or an earlier one, and is on disk when the payout reads;
    /// a record stamped after the seal is stamped after `T`, and belongs to
    /// the next payout. Every payment and refund falls in exactly one
    /// period, by its stamp. Statements seal the end of their period the
    /// same way, so a period that has ended reads complete.
    pub fn stamp(&mut self, now_ms: u64) -> u64 {
        let at_ms = now_ms.max(self.stamp_floor_ms);
        self.stamp_floor_ms = at_ms;
        at_ms
    }

    /// Seals the period up to `cut_off_ms`: records written from now on
    /// are stamped after it.
    pub fn seal(&mut self, cut_off_ms: u64) {
        self.stamp_floor_ms = self.stamp_floor_ms.max(cut_off_ms.saturating_add(1));
    }

    pub fn id(&self) -> ShardId {
        self.id
    }

    pub fn card_count(&self) -> usize {
        self.cards.len()
    }

    /// Bytes the cards have allocated in memory.
    pub fn card_bytes(&self) -> u64 {
        self.cards.allocated_bytes()
    }

    /// Registers a new (issued, worthless) card; false if the key exists
    /// (or the shard is full: [`crate::config::CARDS_PER_SHARD_MAX`]).
    pub fn insert_card(&mut self, key: PinKey, face_value_minor: u64, out: &mut Changes) -> bool {
        let card = Card::issued(face_value_minor);
        if self.cards.insert(key, card).is_none() {
            return false;
        }
        out.put_card(&key, &card);
        true
    }

    /// The store sold the card at `now_ms`: it now carries its face value,
    /// valid `validity_days` (0: for good), and the store owes the center
    /// that much.
    pub fn activate(
        &mut self,
        key: PinKey,
        store_id: StoreId,
        pos_ref: u64,
        now_ms: u64,
        validity_days: u16,
        out: &mut Changes,
    ) -> ActivationResult {
        let Some(slot) = self.cards.slot(&key) else {
            return ActivationResult::Declined {
                reason: DeclineReason::UnknownPin,
            };
        };
        if self.reversals.contains_key(&(key, store_id, pos_ref)) {
            return ActivationResult::Declined {
                reason: DeclineReason::ActivationReversed,
            };
        }
        let sale = self.cards.update(slot, |card| {
            card.activate(store_id, pos_ref, now_ms, validity_days)
        });
        match sale {
            Ok(Sale::New) => {}
            // Told again, changing and writing nothing: the store owes the
            // face value once.
            Ok(Sale::Replayed) => {
                return ActivationResult::Activated {
                    face_value_minor: self.cards.card(slot).face_value_minor,
                };
            }
            Err(reason) => return ActivationResult::Declined { reason },
        }
        let card = self.cards.card(slot);
        let face_value_minor = card.face_value_minor;
        out.put_card(&key, card);
        let at_ms = self.stamp(now_ms);
        let entry = JournalEntry::of_card(JournalKind::Activation, &key, pos_ref, at_ms);
        out.put_journal(store_id, &entry, face_value_minor);
        self.credit(BookKind::StoreOwed, store_id, face_value_minor);
        ActivationResult::Activated { face_value_minor }
    }

    /// Whether the till charged the card's face value: `amount_minor` (ISO
    /// 8583 DE 4 of an activation or a reversal) must equal it, or the
    /// sale is declined `WrongAmount` before anything changes. An unknown
    /// card passes here; the operation itself declines it.
    pub fn check_face_value(&self, key: &PinKey, amount_minor: u64) -> Result<(), DeclineReason> {
        match self.cards.get(key) {
            Some(card) if card.face_value_minor != amount_minor => Err(DeclineReason::WrongAmount),
            _ => Ok(()),
        }
    }

    /// A store HQ's balance inquiry: only a card one of its `stores`
    /// (ascending) sold. An unknown or unsold card is `invalid_card`, as
    /// for a merchant; a card another HQ's store sold is `forbidden`.
    pub fn balance_of_own(
        &self,
        key: &PinKey,
        stores: &[StoreId],
        now_ms: u64,
    ) -> Result<BalanceResponse, ErrorResponse> {
        let balance = self.balance(key, now_ms)?;
        let sold_by = self.cards.get(key).map(|card| card.store_id);
        match sold_by {
            Some(store) if stores.binary_search(&store).is_ok() => Ok(balance),
            _ => Err(ErrorResponse::new(
                ErrorCode::Forbidden,
                "another store HQ's store sold this card",
            )),
        }
    }

    /// A card as it stands (for checks and tools; merchants ask
    /// [`ShardMachine::balance`]).
    pub fn card(&self, key: &PinKey) -> Option<&Card> {
        self.cards.get(key)
    }

    /// A card's balance at `now_ms`. An unknown PIN and an unsold card
    /// give the same error, so a guesser cannot tell them apart. A card
    /// past its validity is shown expired, whether or not the sweep has
    /// moved its balance yet.
    pub fn balance(&self, key: &PinKey, now_ms: u64) -> Result<BalanceResponse, ErrorResponse> {
        let card = self
            .cards
            .get(key)
            .filter(|card| card.state.is_sold())
            .ok_or_else(|| {
                ErrorResponse::new(ErrorCode::InvalidCard, "no sold card has this PIN")
            })?;
        if card.is_due(now_ms) {
            return Ok(BalanceResponse {
                state: CardState::Expired,
                face_value_minor: card.face_value_minor,
                balance_minor: 0,
                available_minor: 0,
            });
        }
        Ok(BalanceResponse {
            state: card.state,
            face_value_minor: card.face_value_minor,
            balance_minor: card.balance_minor,
            available_minor: card.available_minor(),
        })
    }

    /// This shard's part of a report page: O(limit), from the running
    /// totals and the books, never a scan of the cards.
    pub fn report_page(
        &self,
        after: Option<ReportAccount>,
        only: Option<ReportAccount>,
        limit: usize,
    ) -> ShardPage {
        self.books.page(self.cards.totals(), after, only, limit)
    }

    /// Closes a write-set: writes the book rows credited since the last
    /// one, once per account. A busy merchant's share would otherwise be
    /// rewritten by every payment of a batch, each rewrite a memtable
    /// insert; the rows still travel in the same atomic write as the card
    /// changes that moved the money.
    pub fn end_batch(&mut self, out: &mut Changes) {
        self.dirty_books.sort_unstable();
        self.dirty_books.dedup();
        for &(kind, account) in &self.dirty_books {
            out.put_book(kind, account, self.id, self.books.share(kind, account));
        }
        self.dirty_books.clear();
    }

    /// What a card named in a payment can give at `now_ms`, or why it
    /// cannot pay. A merchant hears `InvalidCard` for an unknown and an
    /// unsold card alike.
    fn payable(&self, key: &PinKey, now_ms: u64) -> Result<u64, DeclineReason> {
        let card = self.cards.get(key).ok_or(DeclineReason::InvalidCard)?;
        if card.is_due(now_ms) {
            return Err(DeclineReason::Expired);
        }
        match card.spendable() {
            Ok(()) => Ok(card.available_minor()),
            Err(DeclineReason::NotActive) => Err(DeclineReason::InvalidCard),
            Err(reason) => Err(reason),
        }
    }

    /// Changes the card under `key`, which the caller knows exists.
    fn update_card<R>(&mut self, key: &PinKey, change: impl FnOnce(&mut Card) -> R) -> R {
        let slot = self.cards.slot(key).expect("the card was checked to exist");
        self.cards.update(slot, change)
    }

    /// Credits this shard's share of an account; the row is written when
    /// the write-set closes ([`ShardMachine::end_batch`]).
    fn credit(&mut self, kind: BookKind, account: u32, amount_minor: u64) {
        self.books.credit(kind, account, amount_minor);
        // A run of credits to one account (one merchant's payments) takes
        // one entry.
        if self.dirty_books.last() != Some(&(kind, account)) {
            self.dirty_books.push((kind, account));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn machine_with(cards: &[(u8, Card)]) -> ShardMachine {
        let cards = cards
            .iter()
            .map(|(byte, card)| (PinKey([*byte; 16]), *card))
            .collect();
        ShardMachine::new(ShardId(0), cards, ShardBooks::default())
    }

    #[test]
    fn activation_credits_the_store_once_and_writes_the_card() {
        let mut machine = machine_with(&[(1, Card::issued(700))]);
        let mut out = Changes::new();
        assert_eq!(
            machine.activate(PinKey([1; 16]), 42, 9, 0, 0, &mut out),
            ActivationResult::Activated {
                face_value_minor: 700
            }
        );
        assert_eq!(
            machine.activate(PinKey([1; 16]), 43, 9, 0, 0, &mut out),
            ActivationResult::Declined {
                reason: DeclineReason::AlreadyActive
            }
        );
        assert_eq!(
            machine.activate(PinKey([2; 16]), 42, 9, 0, 0, &mut out),
            ActivationResult::Declined {
                reason: DeclineReason::UnknownPin
            }
        );
        assert_eq!(
            out.len(),
            2,
            "the card and its journal entry, no book row yet"
        );
        machine.end_batch(&mut out);
        assert_eq!(out.len(), 3, "the store's share, once");
        let page = machine.report_page(None, None, 10);
        assert_eq!(page.lines.len(), 1, "store 42 only");
        assert_eq!(page.lines[0].owed_minor, 700);
        assert_eq!(page.lines[0].cards_activated, 1);
    }

    #[test]
    fn the_same_sale_again_replays_and_books_nothing() {
        let mut machine = machine_with(&[(1, Card::issued(700))]);
        let mut out = Changes::new();
        let key = PinKey([1; 16]);
        let sold = ActivationResult::Activated {
            face_value_minor: 700,
        };
        assert_eq!(machine.activate(key, 42, 9, 0, 0, &mut out), sold);
        let written = out.len();
        assert_eq!(machine.activate(key, 42, 9, 5, 0, &mut out), sold);
        assert_eq!(out.len(), written, "a replay writes nothing");
        assert_eq!(
            machine.activate(key, 42, 10, 5, 0, &mut out),
            ActivationResult::Declined {
                reason: DeclineReason::AlreadyActive
            },
            "another sale of a sold card"
        );
        machine.end_batch(&mut out);
        let line = machine.report_page(None, None, 10).lines[0];
        assert_eq!((line.owed_minor, line.cards_activated), (700, 1));
    }

    #[test]
    fn the_face_value_check_names_the_wrong_amount() {
        let machine = machine_with(&[(1, Card::issued(700))]);
        assert_eq!(machine.check_face_value(&PinKey([1; 16]), 700), Ok(()));
        assert_eq!(
            machine.check_face_value(&PinKey([1; 16]), 500),
            Err(DeclineReason::WrongAmount)
        );
        assert_eq!(machine.check_face_value(&PinKey([2; 16]), 500), Ok(()));
    }

    #[test]
    fn a_store_hq_sees_the_balance_of_its_own_cards_only() {
        let mut ours = Card::issued(500);
        ours.activate(3, 1, 0, 0).expect("activates");
        let mut theirs = Card::issued(500);
        theirs.activate(9, 1, 0, 0).expect("activates");
        let machine = machine_with(&[(1, ours), (2, theirs), (3, Card::issued(500))]);
        let stores = [2, 3, 4];
        let own = machine.balance_of_own(&PinKey([1; 16]), &stores, 0);
        assert_eq!(own.expect("ours").balance_minor, 500);
        let foreign = machine.balance_of_own(&PinKey([2; 16]), &stores, 0);
        assert_eq!(
            foreign.expect_err("theirs").error_code(),
            Some(ErrorCode::Forbidden)
        );
        for unsold in [PinKey([3; 16]), PinKey([4; 16])] {
            let error = machine
                .balance_of_own(&unsold, &stores, 0)
                .expect_err("unsold");
            assert_eq!(error.error_code(), Some(ErrorCode::InvalidCard));
        }
    }

    #[test]
    fn balance_of_an_unknown_or_unsold_card_is_the_same_error() {
        let mut sold = Card::issued(500);
        sold.activate(1, 0, 0, 0).expect("activates");
        let machine = machine_with(&[(1, Card::issued(700)), (3, sold)]);
        let balance = machine.balance(&PinKey([3; 16]), 0).expect("sold");
        assert_eq!(
            (balance.balance_minor, balance.face_value_minor),
            (500, 500)
        );
        let unsold = machine.balance(&PinKey([1; 16]), 0).expect_err("unsold");
        let unknown = machine.balance(&PinKey([2; 16]), 0).expect_err("unknown");
        assert_eq!(unsold, unknown);
        assert_eq!(unknown.error_code(), Some(ErrorCode::InvalidCard));
    }
}
