//! The books: what each store owes the center, what the center owes each
//! merchant, and the audit that proves no money was created or lost.
//!
//! Books are kept as per-shard shares. The shard that activates a card also
//! credits the store's share, and the shard that debits a card also credits
//! the merchant's share, in the same atomic write. Every change a shard makes
//! therefore keeps
//!
//! `activated face value = card balances + merchant credits`
//!
//! balanced by itself, and since the state at start-up was balanced, the
//! engine-wide sums stay balanced at every instant: the audit can read the
//! shards one after another, while payments are in flight, and still expect
//! the law to hold exactly.
//!
//! Sums use plain arithmetic: the release profile keeps overflow checks on,
//! so a sum that could wrap stops the engine rather than report a wrong
//! total.

use crate::card::{Card, CardState};
use crate::ids::{MerchantId, PaymentId, ShardId, StoreId};
use crate::pin::{KeyHashBuilder, PinKey};
use crate::protocol::{AuditResponse, MerchantLine, ReportResponse, StoreLine, Totals};
use crate::storage::Changes;
use crate::storage::records::{BookKind, BookRow};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Findings one shard reports at most, so a badly broken store cannot make
/// the audit reply exceed a frame.
pub(crate) const PROBLEMS_PER_SHARD_MAX: usize = 64;

/// One shard's shares of the store and merchant accounts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardBooks {
    store_owed: HashMap<StoreId, u64>,
    merchant_owed: HashMap<MerchantId, u64>,
}

impl ShardBooks {
    fn accounts(&self, kind: BookKind) -> &HashMap<u32, u64> {
        match kind {
            BookKind::StoreOwed => &self.store_owed,
            BookKind::MerchantOwed => &self.merchant_owed,
        }
    }

    /// Adds to an account share and returns the share's new total.
    pub fn credit(&mut self, kind: BookKind, account: u32, amount_minor: u64) -> u64 {
        let accounts = match kind {
            BookKind::StoreOwed => &mut self.store_owed,
            BookKind::MerchantOwed => &mut self.merchant_owed,
        };
        let share = accounts.entry(account).or_insert(0);
        *share = share.checked_add(amount_minor).expect("book overflow");
        *share
    }

    /// The current share of an account (0 if never credited).
    pub fn share(&self, kind: BookKind, account: u32) -> u64 {
        self.accounts(kind).get(&account).copied().unwrap_or(0)
    }

    /// Writes every account share as `shard`'s book rows.
    pub(crate) fn write_rows(&self, shard: ShardId, out: &mut Changes) {
        for kind in [BookKind::StoreOwed, BookKind::MerchantOwed] {
            for (&account, &amount_minor) in self.accounts(kind) {
                out.put_book(kind, account, shard, amount_minor);
            }
        }
    }

    fn total(&self, kind: BookKind) -> u64 {
        self.accounts(kind).values().sum()
    }
}

/// Merges book rows written by any number of shards (under any earlier
/// shard count) into one share per account. At start the engine writes the
/// merged rows as shard 0's and deletes the rest, so later shares start from
/// zero and a changed shard count never splits an account's history.
pub(crate) fn consolidate(rows: &[BookRow]) -> ShardBooks {
    let mut books = ShardBooks::default();
    for row in rows {
        books.credit(row.kind, row.account_id, row.amount_minor);
    }
    books
}

/// Cards a store sold, and their face value, counted from the cards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreActivations {
    pub cards: u64,
    pub face_value_minor: u64,
}

impl StoreActivations {
    fn add(&mut self, other: StoreActivations) {
        self.cards += other.cards;
        self.face_value_minor += other.face_value_minor;
    }
}

/// A hold of a prepared payment on one card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldLine {
    pub payment: PaymentId,
    pub card: PinKey,
    pub amount_minor: u64,
}

/// Everything a report or an audit needs from one shard, taken in one pass
/// over its cards inside the shard actor (so it is a consistent snapshot of
/// that shard).
#[derive(Debug, Clone, Default)]
pub struct ShardLedger {
    pub shard: ShardId,
    pub totals: Totals,
    pub books: ShardBooks,
    /// Per store, from the cards.
    pub activated_by_store: HashMap<StoreId, StoreActivations>,
    /// Broken card invariants, capped at [`PROBLEMS_PER_SHARD_MAX`].
    pub problems: Vec<String>,
    pub holds: Vec<HoldLine>,
}

impl ShardLedger {
    pub fn snapshot(
        shard: ShardId,
        cards: &HashMap<PinKey, Card, KeyHashBuilder>,
        books: &ShardBooks,
        holds: &HashMap<(PaymentId, PinKey), u64>,
    ) -> ShardLedger {
        let mut ledger = ShardLedger {
            shard,
            books: books.clone(),
            ..ShardLedger::default()
        };
        let mut held_by_card: HashMap<PinKey, u64> = HashMap::new();
        for (&(payment, card), &amount_minor) in holds {
            ledger.holds.push(HoldLine {
                payment,
                card,
                amount_minor,
            });
            *held_by_card.entry(card).or_insert(0) += amount_minor;
        }
        for (key, card) in cards {
            ledger.count_card(card);
            let mut finding = card.check().err().map(str::to_string);
            let held = held_by_card.get(key).copied().unwrap_or(0);
            if finding.is_none() && held != card.held_minor {
                finding = Some(format!(
                    "card holds {} but its hold records sum to {held}",
                    card.held_minor
                ));
            }
            if let Some(finding) = finding
                && ledger.problems.len() < PROBLEMS_PER_SHARD_MAX
            {
                ledger
                    .problems
                    .push(format!("shard {shard}: card {}: {finding}", key.label()));
            }
        }
        ledger.totals.store_owed_minor = books.total(BookKind::StoreOwed);
        ledger.totals.merchant_owed_minor = books.total(BookKind::MerchantOwed);
        ledger
    }

    fn count_card(&mut self, card: &Card) {
        let totals = &mut self.totals;
        totals.cards += 1;
        match card.state {
            CardState::Issued => totals.cards_issued += 1,
            CardState::Active => totals.cards_active += 1,
            CardState::Exhausted => totals.cards_exhausted += 1,
        }
        if card.state != CardState::Issued {
            totals.activated_minor += card.face_value_minor;
            self.activated_by_store
                .entry(card.store_id)
                .or_default()
                .add(StoreActivations {
                    cards: 1,
                    face_value_minor: card.face_value_minor,
                });
        }
        totals.balance_minor += card.balance_minor;
        totals.held_minor += card.held_minor;
    }
}

fn add_totals(into: &mut Totals, from: &Totals) {
    into.cards += from.cards;
    into.cards_issued += from.cards_issued;
    into.cards_active += from.cards_active;
    into.cards_exhausted += from.cards_exhausted;
    into.activated_minor += from.activated_minor;
    into.balance_minor += from.balance_minor;
    into.held_minor += from.held_minor;
    into.store_owed_minor += from.store_owed_minor;
    into.merchant_owed_minor += from.merchant_owed_minor;
}

/// Engine-wide books, merged from every shard's ledger.
#[derive(Default)]
struct Merged {
    totals: Totals,
    store_owed: BTreeMap<StoreId, u64>,
    store_activated: BTreeMap<StoreId, StoreActivations>,
    merchant_owed: BTreeMap<MerchantId, u64>,
}

fn merge(ledgers: &[ShardLedger]) -> Merged {
    let mut merged = Merged::default();
    for ledger in ledgers {
        add_totals(&mut merged.totals, &ledger.totals);
        for (&store, &owed) in &ledger.books.store_owed {
            *merged.store_owed.entry(store).or_insert(0) += owed;
        }
        for (&store, &activations) in &ledger.activated_by_store {
            merged
                .store_activated
                .entry(store)
                .or_default()
                .add(activations);
        }
        for (&merchant, &owed) in &ledger.books.merchant_owed {
            *merged.merchant_owed.entry(merchant).or_insert(0) += owed;
        }
    }
    merged
}

pub fn report(ledgers: &[ShardLedger]) -> ReportResponse {
    let merged = merge(ledgers);
    let stores = merged
        .store_owed
        .iter()
        .map(|(&store_id, &owed_minor)| StoreLine {
            store_id,
            cards_activated: merged.store_activated.get(&store_id).map_or(0, |a| a.cards),
            owed_minor,
        })
        .collect();
    let merchants = merged
        .merchant_owed
        .iter()
        .map(|(&merchant_id, &owed_minor)| MerchantLine {
            merchant_id,
            owed_minor,
        })
        .collect();
    ReportResponse {
        stores,
        merchants,
        totals: merged.totals,
    }
}

/// Proves conservation and consistency. `in_flight(payment)` tells whether a
/// payment is still being processed; a hold of any other payment is
/// dangling (money locked with nobody left to release it).
pub fn audit(ledgers: &[ShardLedger], in_flight: impl Fn(PaymentId) -> bool) -> AuditResponse {
    let merged = merge(ledgers);
    let totals = merged.totals;
    let mut problems: Vec<String> = ledgers.iter().flat_map(|l| l.problems.clone()).collect();

    let accounted = i128::from(totals.balance_minor) + i128::from(totals.merchant_owed_minor);
    if i128::from(totals.activated_minor) != accounted {
        problems.push(format!(
            "conservation: activated {} != card balances {} + merchant credits {} (difference {})",
            totals.activated_minor,
            totals.balance_minor,
            totals.merchant_owed_minor,
            i128::from(totals.activated_minor) - accounted
        ));
    }
    if totals.store_owed_minor != totals.activated_minor {
        problems.push(format!(
            "stores: owed {} != activated face value {}",
            totals.store_owed_minor, totals.activated_minor
        ));
    }
    let stores: BTreeSet<StoreId> = merged
        .store_owed
        .keys()
        .chain(merged.store_activated.keys())
        .copied()
        .collect();
    for store in stores {
        let owed = merged.store_owed.get(&store).copied().unwrap_or(0);
        let activated = merged
            .store_activated
            .get(&store)
            .map_or(0, |a| a.face_value_minor);
        if owed != activated {
            problems.push(format!(
                "store {store}: books say owed {owed} but its activated cards total {activated}"
            ));
        }
    }
    for ledger in ledgers {
        for hold in ledger.holds.iter().filter(|hold| !in_flight(hold.payment)) {
            problems.push(format!(
                "shard {}: dangling hold of {} on card {} for merchant {} request {}",
                ledger.shard,
                hold.amount_minor,
                hold.card.label(),
                hold.payment.merchant_id,
                hold.payment.request_id
            ));
        }
    }
    AuditResponse {
        ok: problems.is_empty(),
        problems,
        totals,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard_with(cards: &[(u8, Card)], books: ShardBooks) -> ShardLedger {
        let map: HashMap<PinKey, Card, KeyHashBuilder> = cards
            .iter()
            .map(|(id, card)| (PinKey([*id; 16]), *card))
            .collect();
        ShardLedger::snapshot(ShardId(0), &map, &books, &HashMap::new())
    }

    fn active(face: u64, store: u32, spent: u64) -> Card {
        let mut card = Card::issued(face);
        card.activate(store, 0).expect("activate");
        if spent > 0 {
            card.debit(spent).expect("debit");
        }
        card
    }

    #[test]
    fn balanced_books_pass() {
        let mut books = ShardBooks::default();
        books.credit(BookKind::StoreOwed, 1, 1500);
        books.credit(BookKind::MerchantOwed, 9, 700);
        let ledger = shard_with(
            &[
                (1, active(1000, 1, 700)),
                (2, active(500, 1, 0)),
                (3, Card::issued(300)),
            ],
            books,
        );
        let result = audit(std::slice::from_ref(&ledger), |_| false);
        assert!(result.ok, "{:?}", result.problems);
        let report = report(&[ledger]);
        assert_eq!(report.totals.activated_minor, 1500);
        assert_eq!(report.totals.cards_issued, 1);
        assert_eq!(report.stores[0].cards_activated, 2);
        assert_eq!(report.merchants[0].owed_minor, 700);
    }

    #[test]
    fn missing_merchant_credit_is_found_and_located() {
        let mut books = ShardBooks::default();
        books.credit(BookKind::StoreOwed, 1, 1000);
        books.credit(BookKind::MerchantOwed, 9, 600);
        let ledger = shard_with(&[(1, active(1000, 1, 700))], books);
        let result = audit(&[ledger], |_| false);
        assert!(!result.ok);
        assert!(
            result.problems.iter().any(|p| p.contains("difference 100")),
            "{:?}",
            result.problems
        );
    }

    #[test]
    fn store_books_disagreeing_with_cards_name_the_store() {
        let mut books = ShardBooks::default();
        books.credit(BookKind::StoreOwed, 1, 500);
        books.credit(BookKind::StoreOwed, 2, 500);
        let ledger = shard_with(&[(1, active(1000, 1, 0))], books);
        let result = audit(&[ledger], |_| false);
        assert!(result.problems.iter().any(|p| p.starts_with("store 1:")));
        assert!(result.problems.iter().any(|p| p.starts_with("store 2:")));
    }

    #[test]
    fn holds_are_dangling_only_without_an_in_flight_payment() {
        let mut card = active(1000, 1, 0);
        card.hold(300).expect("hold");
        let payment = PaymentId {
            merchant_id: 9,
            request_id: 1,
        };
        let map: HashMap<PinKey, Card, KeyHashBuilder> =
            [(PinKey([1; 16]), card)].into_iter().collect();
        let holds: HashMap<(PaymentId, PinKey), u64> =
            [((payment, PinKey([1; 16])), 300)].into_iter().collect();
        let mut books = ShardBooks::default();
        books.credit(BookKind::StoreOwed, 1, 1000);
        let ledger = ShardLedger::snapshot(ShardId(0), &map, &books, &holds);
        assert!(audit(std::slice::from_ref(&ledger), |_| true).ok);
        let result = audit(&[ledger], |_| false);
        assert!(result.problems.iter().any(|p| p.contains("dangling hold")));
    }

    #[test]
    fn consolidation_sums_shares_from_any_shard_count() {
        let row = |kind, account_id, shard, amount_minor| BookRow {
            kind,
            account_id,
            shard: ShardId(shard),
            amount_minor,
        };
        let rows = [
            row(BookKind::MerchantOwed, 9, 0, 100),
            row(BookKind::MerchantOwed, 9, 5, 50),
            row(BookKind::StoreOwed, 1, 3, 500),
        ];
        let books = consolidate(&rows);
        assert_eq!(books.share(BookKind::MerchantOwed, 9), 150);
        assert_eq!(books.share(BookKind::StoreOwed, 1), 500);
        let mut out = Changes::new();
        books.write_rows(ShardId(0), &mut out);
        assert_eq!(out.len(), 2);
    }
}
