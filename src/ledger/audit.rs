//! The audit: sums over the cards, findings, and the laws checked over
//! every shard's audit (the laws are in the `ledger` module's doc).

use super::{BookTotals, ShardBooks, book_index};
use crate::card::{Card, CardState};
use crate::ids::{ShardId, StoreId};
use crate::protocol::{AuditResponse, Totals};
use crate::storage::records::BookKind;
use std::collections::BTreeMap;

/// Findings an audit lists at most (the rest are counted), so its reply
/// always fits a frame.
pub const PROBLEMS_MAX: usize = 100;

/// A store's activated cards, from the cards themselves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreActivations {
    pub cards: u64,
    pub face_value_minor: u64,
}

/// Sums over a set of cards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardTotals {
    pub cards: u64,
    pub issued: u64,
    pub active: u64,
    pub exhausted: u64,
    /// Unsold again after a reversed sale.
    pub reversed: u64,
    /// Past their validity (their balance went to breakage).
    pub expired: u64,
    /// Face value of every card sold and not reversed (active or
    /// exhausted).
    pub activated_minor: u64,
    /// Money on the cards, holds included.
    pub balance_minor: u64,
    pub held_minor: u64,
    pub by_store: BTreeMap<StoreId, StoreActivations>,
}

impl CardTotals {
    pub fn add(&mut self, card: &Card) {
        self.cards += 1;
        match card.state {
            CardState::Issued => self.issued += 1,
            CardState::Active => self.active += 1,
            CardState::Exhausted => self.exhausted += 1,
            CardState::Reversed => self.reversed += 1,
            CardState::Expired => self.expired += 1,
        }
        self.balance_minor += card.balance_minor;
        self.held_minor += card.held_minor;
        if card.state.is_sold() {
            self.activated_minor += card.face_value_minor;
            let store = self.by_store.entry(card.store_id).or_default();
            store.cards += 1;
            store.face_value_minor += card.face_value_minor;
        }
    }

    pub fn remove(&mut self, card: &Card) {
        self.cards -= 1;
        match card.state {
            CardState::Issued => self.issued -= 1,
            CardState::Active => self.active -= 1,
            CardState::Exhausted => self.exhausted -= 1,
            CardState::Reversed => self.reversed -= 1,
            CardState::Expired => self.expired -= 1,
        }
        self.balance_minor -= card.balance_minor;
        self.held_minor -= card.held_minor;
        if card.state.is_sold() {
            self.activated_minor -= card.face_value_minor;
            let store = self
                .by_store
                .get_mut(&card.store_id)
                .expect("a sold card's store is counted");
            store.cards -= 1;
            store.face_value_minor -= card.face_value_minor;
            if store.cards == 0 {
                self.by_store.remove(&card.store_id);
            }
        }
    }

    fn merge(&mut self, other: &CardTotals) {
        self.cards += other.cards;
        self.issued += other.issued;
        self.active += other.active;
        self.exhausted += other.exhausted;
        self.reversed += other.reversed;
        self.expired += other.expired;
        self.activated_minor += other.activated_minor;
        self.balance_minor += other.balance_minor;
        self.held_minor += other.held_minor;
        for (&store, activations) in &other.by_store {
            let mine = self.by_store.entry(store).or_default();
            mine.cards += activations.cards;
            mine.face_value_minor += activations.face_value_minor;
        }
    }
}

/// Findings, listed up to a cap and counted beyond it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    pub listed: Vec<String>,
    pub omitted: u64,
}

impl Findings {
    pub fn push(&mut self, finding: String) {
        if self.listed.len() < PROBLEMS_MAX {
            self.listed.push(finding);
        } else {
            self.omitted += 1;
        }
    }

    fn extend(&mut self, other: &Findings) {
        for finding in &other.listed {
            self.push(finding.clone());
        }
        self.omitted += other.omitted;
    }

    fn is_empty(&self) -> bool {
        self.listed.is_empty() && self.omitted == 0
    }
}

/// What one shard's audit found: the sums of its cards, walked while the
/// shard kept working and exact at the walk's end, its book shares at that
/// same moment, and what was wrong with its cards and holds.
#[derive(Debug, Clone, Default)]
pub struct ShardAudit {
    pub shard: ShardId,
    pub cards: CardTotals,
    pub books: ShardBooks,
    pub findings: Findings,
}

/// Engine-wide sums from the cards and the books' sums. The books' sums
/// are gross on every shard (a shard's refunds may exceed its share of the
/// credits); the debts are netted here, over every shard at once.
pub(super) fn totals(cards: &CardTotals, books: &BookTotals) -> Totals {
    let mut totals = Totals {
        cards: cards.cards,
        cards_issued: cards.issued,
        cards_active: cards.active,
        cards_exhausted: cards.exhausted,
        cards_reversed: cards.reversed,
        cards_expired: cards.expired,
        activated_minor: cards.activated_minor,
        balance_minor: cards.balance_minor,
        held_minor: cards.held_minor,
        ..Totals::default()
    };
    set_books(&mut totals, books);
    totals
}

pub(super) fn set_books(totals: &mut Totals, books: &BookTotals) {
    let total = |kind| books[book_index(kind)];
    totals.store_owed_minor = total(BookKind::StoreOwed)
        .saturating_sub(total(BookKind::StoreReversed))
        .saturating_sub(total(BookKind::StoreRemitted));
    totals.store_reversed_minor = total(BookKind::StoreReversed);
    totals.store_remitted_minor = total(BookKind::StoreRemitted);
    totals.merchant_owed_minor = total(BookKind::MerchantOwed)
        .saturating_sub(total(BookKind::MerchantRefunded))
        .saturating_sub(total(BookKind::MerchantPaidOut))
        .saturating_sub(total(BookKind::Fees));
    totals.merchant_refunded_minor = total(BookKind::MerchantRefunded);
    totals.merchant_paid_out_minor = total(BookKind::MerchantPaidOut);
    totals.fees_minor = total(BookKind::Fees);
    totals.breakage_minor = total(BookKind::Breakage);
}

/// Proves conservation and consistency over every shard's audit.
pub fn audit(shards: &[ShardAudit]) -> AuditResponse {
    let mut cards = CardTotals::default();
    let mut books = ShardBooks::default();
    let mut findings = Findings::default();
    for shard in shards {
        cards.merge(&shard.cards);
        books.merge(&shard.books);
        findings.extend(&shard.findings);
    }
    let totals = totals(&cards, &books.totals);
    check_conservation(&totals, &books, &mut findings);
    check_center(&totals, &books, &mut findings);
    check_stores(&totals, &cards, &books, &mut findings);
    check_merchants(&books, &mut findings);
    AuditResponse {
        ok: findings.is_empty(),
        problems: findings.listed,
        problems_omitted: findings.omitted,
        totals,
    }
}

/// The merchants' net credits: payments less refunds.
fn merchant_credits(books: &ShardBooks) -> i128 {
    i128::from(books.total(BookKind::MerchantOwed))
        - i128::from(books.total(BookKind::MerchantRefunded))
}

/// Money is conserved: every unit activated is on a card, with a merchant,
/// or broken.
fn check_conservation(totals: &Totals, books: &ShardBooks, findings: &mut Findings) {
    let merchants = merchant_credits(books);
    let breakage = i128::from(books.total(BookKind::Breakage));
    let accounted = i128::from(totals.balance_minor) + merchants + breakage;
    if i128::from(totals.activated_minor) != accounted {
        findings.push(format!(
            "conservation: activated {} != card balances {} + merchant credits {} - refunds {} \
             + breakage {} (difference {})",
            totals.activated_minor,
            totals.balance_minor,
            books.total(BookKind::MerchantOwed),
            books.total(BookKind::MerchantRefunded),
            books.total(BookKind::Breakage),
            i128::from(totals.activated_minor) - accounted
        ));
    }
}

/// The center's own books, from the same sums: what it holds (cash
/// received from stores less paid to merchants, and what stores still owe)
/// less what it owes (money on cards, merchants' balances) is what it
/// earned (fees, breakage).
fn check_center(totals: &Totals, books: &ShardBooks, findings: &mut Findings) {
    let gross = |kind| i128::from(books.total(kind));
    let activated = i128::from(totals.activated_minor);
    let cash = gross(BookKind::StoreRemitted) - gross(BookKind::MerchantPaidOut);
    let receivable = activated - gross(BookKind::StoreRemitted);
    let payable =
        merchant_credits(books) - gross(BookKind::MerchantPaidOut) - gross(BookKind::Fees);
    let liabilities = i128::from(totals.balance_minor) + payable;
    let earned = gross(BookKind::Fees) + gross(BookKind::Breakage);
    if cash + receivable - liabilities != earned {
        findings.push(format!(
            "center: cash {cash} + receivable {receivable} - card balances {} - merchant \
             payables {payable} != fees + breakage {earned}",
            totals.balance_minor
        ));
    }
}

/// The stores' books match the cards they sold: in all, and store by
/// store.
fn check_stores(totals: &Totals, cards: &CardTotals, books: &ShardBooks, findings: &mut Findings) {
    let gross = |kind| i128::from(books.total(kind));
    let stores = gross(BookKind::StoreOwed) - gross(BookKind::StoreReversed);
    if stores != i128::from(totals.activated_minor) {
        // (Remittances are money received, not a change to what was sold:
        // the receivable is this less them.)
        findings.push(format!(
            "stores: owed {} - reversed {} != activated face value {}",
            books.total(BookKind::StoreOwed),
            books.total(BookKind::StoreReversed),
            totals.activated_minor
        ));
    }
    let store_ids = books
        .accounts(BookKind::StoreOwed)
        .keys()
        .chain(books.accounts(BookKind::StoreReversed).keys())
        .chain(cards.by_store.keys());
    let store_ids: std::collections::BTreeSet<StoreId> = store_ids.copied().collect();
    for store in store_ids {
        let owed = books.share(BookKind::StoreOwed, store);
        let reversed = books.share(BookKind::StoreReversed, store);
        let activated = cards.by_store.get(&store).map_or(0, |a| a.face_value_minor);
        if i128::from(owed) - i128::from(reversed) != i128::from(activated) {
            findings.push(format!(
                "store {store}: books say owed {owed} - reversed {reversed} \
                 but its activated cards total {activated}"
            ));
        }
    }
}

/// No merchant was refunded more than it was credited.
fn check_merchants(books: &ShardBooks, findings: &mut Findings) {
    for (&merchant, &refunded) in books.accounts(BookKind::MerchantRefunded) {
        let owed = books.share(BookKind::MerchantOwed, merchant);
        if refunded > owed {
            findings.push(format!(
                "merchant {merchant}: refunds {refunded} exceed its credits {owed}"
            ));
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn active(face: u64, store: u32, spent: u64) -> Card {
        let mut card = Card::issued(face);
        card.activate(store, 0, 0, 0).expect("activate");
        if spent > 0 {
            card.debit(spent).expect("debit");
        }
        card
    }

    fn shard(cards: &[Card], books: ShardBooks) -> ShardAudit {
        let mut totals = CardTotals::default();
        for card in cards {
            totals.add(card);
        }
        ShardAudit {
            shard: ShardId(0),
            cards: totals,
            books,
            findings: Findings::default(),
        }
    }

    #[test]
    fn balanced_books_pass() {
        let mut books = ShardBooks::default();
        books.credit(BookKind::StoreOwed, 1, 1500);
        books.credit(BookKind::MerchantOwed, 9, 700);
        let cards = [active(1000, 1, 700), active(500, 1, 0), Card::issued(300)];
        let result = audit(&[shard(&cards, books)]);
        assert!(result.ok, "{:?}", result.problems);
        assert_eq!(result.totals.activated_minor, 1500);
        assert_eq!(result.totals.cards_issued, 1);
    }

    #[test]
    fn missing_merchant_credit_is_found_and_located() {
        let mut books = ShardBooks::default();
        books.credit(BookKind::StoreOwed, 1, 1000);
        books.credit(BookKind::MerchantOwed, 9, 600);
        let result = audit(&[shard(&[active(1000, 1, 700)], books)]);
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
        let result = audit(&[shard(&[active(1000, 1, 0)], books)]);
        assert!(result.problems.iter().any(|p| p.starts_with("store 1:")));
        assert!(result.problems.iter().any(|p| p.starts_with("store 2:")));
    }

    #[test]
    fn findings_are_capped_and_counted() {
        let mut books = ShardBooks::default();
        for store in 0..150 {
            books.credit(BookKind::StoreOwed, store, 1);
        }
        let result = audit(&[shard(&[], books)]);
        assert_eq!(result.problems.len(), PROBLEMS_MAX);
        assert_eq!(result.problems_omitted, 151 - PROBLEMS_MAX as u64);
    }
}
