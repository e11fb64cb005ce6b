//! The books: what each store owes the center, what the center owes each
//! merchant, the report, and the audit that proves no money was created or
//! lost.
//!
//! Books are kept as per-shard shares. The shard that activates a card also
//! credits the store's share, and the shard that debits a card also credits
//! the merchant's share, in the same atomic write. Every change a shard makes
//! therefore keeps
//!
//! `activated face value = card balances + merchant credits`
//!
//! balanced by itself: the difference between a shard's side of each law
//! never changes. So the audit can read the shards one after another, while
//! payments are in flight, and still expect the engine-wide sums to balance
//! exactly.
//!
//! Money sums cannot overflow: config ceilings cap a card's face value and
//! the engine's card count so that every sum stays below `u64::MAX` (see
//! [`crate::config`]); sums read from disk at start are checked, so data
//! written under other limits is refused with an error, never a panic.

use crate::card::{Card, CardState};
use crate::ids::{MerchantId, ShardId, StoreId};
use crate::protocol::{
    AuditResponse, MerchantLine, ReportAccount, ReportResponse, StoreLine, Totals,
};
use crate::storage::Changes;
use crate::storage::records::{BookKind, BookRow};
use std::collections::BTreeMap;

/// Findings an audit lists at most (the rest are counted), so its reply
/// always fits a frame.
pub const PROBLEMS_MAX: usize = 100;

/// One shard's shares of the store and merchant accounts, with their sums.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardBooks {
    store_owed: BTreeMap<StoreId, u64>,
    merchant_owed: BTreeMap<MerchantId, u64>,
    store_total: u64,
    merchant_total: u64,
}

impl ShardBooks {
    fn accounts(&self, kind: BookKind) -> &BTreeMap<u32, u64> {
        match kind {
            BookKind::StoreOwed => &self.store_owed,
            BookKind::MerchantOwed => &self.merchant_owed,
        }
    }

    /// Adds to an account share and returns the share's new total.
    pub fn credit(&mut self, kind: BookKind, account: u32, amount_minor: u64) -> u64 {
        let (accounts, total) = match kind {
            BookKind::StoreOwed => (&mut self.store_owed, &mut self.store_total),
            BookKind::MerchantOwed => (&mut self.merchant_owed, &mut self.merchant_total),
        };
        *total += amount_minor;
        let share = accounts.entry(account).or_insert(0);
        *share += amount_minor;
        *share
    }

    /// The current share of an account (0 if never credited).
    pub fn share(&self, kind: BookKind, account: u32) -> u64 {
        self.accounts(kind).get(&account).copied().unwrap_or(0)
    }

    pub fn total(&self, kind: BookKind) -> u64 {
        match kind {
            BookKind::StoreOwed => self.store_total,
            BookKind::MerchantOwed => self.merchant_total,
        }
    }

    /// Writes every account share as `shard`'s book rows.
    pub(crate) fn write_rows(&self, shard: ShardId, out: &mut Changes) {
        for kind in [BookKind::StoreOwed, BookKind::MerchantOwed] {
            for (&account, &amount_minor) in self.accounts(kind) {
                out.put_book(kind, account, shard, amount_minor);
            }
        }
    }
}

/// Merges book rows written by any number of shards (under any earlier
/// shard count) into one share per account. At start the engine writes the
/// merged rows as shard 0's and deletes the rest, so later shares start from
/// zero and a changed shard count never splits an account's history.
/// Refuses sums that do not fit (data written under other limits).
pub(crate) fn consolidate(rows: &[BookRow]) -> Result<ShardBooks, String> {
    let mut books = ShardBooks::default();
    for row in rows {
        let (accounts, total) = match row.kind {
            BookKind::StoreOwed => (&mut books.store_owed, &mut books.store_total),
            BookKind::MerchantOwed => (&mut books.merchant_owed, &mut books.merchant_total),
        };
        let share = accounts.entry(row.account_id).or_insert(0);
        let overflow = || format!("book sums overflow at account {}", row.account_id);
        *share = share.checked_add(row.amount_minor).ok_or_else(overflow)?;
        *total = total.checked_add(row.amount_minor).ok_or_else(overflow)?;
    }
    Ok(books)
}

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
    /// Face value of every card sold (active or exhausted).
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
        }
        self.balance_minor += card.balance_minor;
        self.held_minor += card.held_minor;
        if card.state != CardState::Issued {
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
        }
        self.balance_minor -= card.balance_minor;
        self.held_minor -= card.held_minor;
        if card.state != CardState::Issued {
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

fn totals(cards: &CardTotals, store_owed_minor: u64, merchant_owed_minor: u64) -> Totals {
    Totals {
        cards: cards.cards,
        cards_issued: cards.issued,
        cards_active: cards.active,
        cards_exhausted: cards.exhausted,
        activated_minor: cards.activated_minor,
        balance_minor: cards.balance_minor,
        held_minor: cards.held_minor,
        store_owed_minor,
        merchant_owed_minor,
    }
}

/// Proves conservation and consistency over every shard's audit.
pub fn audit(shards: &[ShardAudit]) -> AuditResponse {
    let mut cards = CardTotals::default();
    let mut findings = Findings::default();
    let mut store_owed: BTreeMap<StoreId, u64> = BTreeMap::new();
    let (mut store_total, mut merchant_total) = (0u64, 0u64);
    for shard in shards {
        cards.merge(&shard.cards);
        findings.extend(&shard.findings);
        for (&store, &owed) in &shard.books.store_owed {
            *store_owed.entry(store).or_insert(0) += owed;
        }
        store_total += shard.books.store_total;
        merchant_total += shard.books.merchant_total;
    }
    let totals = totals(&cards, store_total, merchant_total);
    let accounted = i128::from(totals.balance_minor) + i128::from(totals.merchant_owed_minor);
    if i128::from(totals.activated_minor) != accounted {
        findings.push(format!(
            "conservation: activated {} != card balances {} + merchant credits {} (difference {})",
            totals.activated_minor,
            totals.balance_minor,
            totals.merchant_owed_minor,
            i128::from(totals.activated_minor) - accounted
        ));
    }
    if totals.store_owed_minor != totals.activated_minor {
        findings.push(format!(
            "stores: owed {} != activated face value {}",
            totals.store_owed_minor, totals.activated_minor
        ));
    }
    let stores = store_owed.keys().chain(cards.by_store.keys());
    let stores: std::collections::BTreeSet<StoreId> = stores.copied().collect();
    for store in stores {
        let owed = store_owed.get(&store).copied().unwrap_or(0);
        let activated = cards.by_store.get(&store).map_or(0, |a| a.face_value_minor);
        if owed != activated {
            findings.push(format!(
                "store {store}: books say owed {owed} but its activated cards total {activated}"
            ));
        }
    }
    AuditResponse {
        ok: findings.is_empty(),
        problems: findings.listed,
        problems_omitted: findings.omitted,
        totals,
    }
}

/// One line of a shard's report page: its share of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardLine {
    pub account: ReportAccount,
    pub owed_minor: u64,
    /// For a store: the cards it sold that this shard holds.
    pub cards_activated: u64,
}

/// What one shard contributes to a report page.
#[derive(Debug, Clone, Default)]
pub struct ShardPage {
    pub totals: Totals,
    /// Its first lines after the cursor, ascending, at most the page's
    /// limit.
    pub lines: Vec<ShardLine>,
}

impl ShardBooks {
    /// The first `limit` lines after `after` (stores, then merchants), this
    /// shard's shares; with `only`, that account's line alone. Costs
    /// O(limit), not O(accounts): the maps are read from the cursor on.
    pub fn page(
        &self,
        cards: &CardTotals,
        after: Option<ReportAccount>,
        only: Option<ReportAccount>,
        limit: usize,
    ) -> ShardPage {
        let store_line = |store| ShardLine {
            account: ReportAccount::Store(store),
            owed_minor: self.share(BookKind::StoreOwed, store),
            cards_activated: cards.by_store.get(&store).map_or(0, |a| a.cards),
        };
        let merchant_line = |merchant| ShardLine {
            account: ReportAccount::Merchant(merchant),
            owed_minor: self.share(BookKind::MerchantOwed, merchant),
            cards_activated: 0,
        };
        let known = |account: ReportAccount| match account {
            ReportAccount::Store(store) => {
                self.store_owed.contains_key(&store) || cards.by_store.contains_key(&store)
            }
            ReportAccount::Merchant(merchant) => self.merchant_owed.contains_key(&merchant),
        };
        let mut lines = Vec::new();
        if let Some(account) = only {
            let wanted = after.is_none_or(|after| account > after) && known(account);
            if wanted && limit > 0 {
                lines.push(match account {
                    ReportAccount::Store(store) => store_line(store),
                    ReportAccount::Merchant(merchant) => merchant_line(merchant),
                });
            }
        } else {
            let (store_from, merchant_from) = match after {
                None => (Some(0), 0),
                Some(ReportAccount::Store(store)) => (store.checked_add(1), 0),
                Some(ReportAccount::Merchant(merchant)) => (None, merchant.saturating_add(1)),
            };
            if let Some(from) = store_from {
                // The union of two sorted maps' first `limit` keys holds the
                // union's first `limit`.
                let mut stores: Vec<StoreId> = self
                    .store_owed
                    .range(from..)
                    .map(|(&s, _)| s)
                    .take(limit)
                    .chain(cards.by_store.range(from..).map(|(&s, _)| s).take(limit))
                    .collect();
                stores.sort_unstable();
                stores.dedup();
                lines.extend(stores.into_iter().take(limit).map(store_line));
            }
            let skip_merchants = matches!(after, Some(ReportAccount::Merchant(u32::MAX)));
            if !skip_merchants {
                let room = limit - lines.len();
                let merchants = self.merchant_owed.range(merchant_from..).take(room);
                lines.extend(merchants.map(|(&m, _)| merchant_line(m)));
            }
        }
        ShardPage {
            totals: totals(cards, self.store_total, self.merchant_total),
            lines,
        }
    }
}

/// Merges the shards' pages: sums each account's shares and keeps the
/// first `limit` accounts. Each shard sent its own first `limit` accounts,
/// so every account among the engine-wide first `limit` is complete.
pub fn report_page(shards: &[ShardPage], limit: usize) -> ReportResponse {
    let mut lines: BTreeMap<ReportAccount, (u64, u64)> = BTreeMap::new();
    let mut engine = Totals::default();
    let mut any_full = false;
    for shard in shards {
        add_totals(&mut engine, &shard.totals);
        any_full |= shard.lines.len() == limit;
        for line in &shard.lines {
            let entry = lines.entry(line.account).or_insert((0, 0));
            entry.0 += line.owed_minor;
            entry.1 += line.cards_activated;
        }
    }
    // More may follow when the shards sent more than a page between them,
    // or when one sent a full page (it may have more).
    let more = lines.len() > limit || any_full;
    let page: Vec<(ReportAccount, (u64, u64))> = lines.into_iter().take(limit).collect();
    let next = (more && page.len() == limit).then(|| page[limit - 1].0);
    let mut response = ReportResponse {
        totals: engine,
        next,
        ..ReportResponse::default()
    };
    for (account, (owed_minor, cards_activated)) in page {
        match account {
            ReportAccount::Store(store_id) => response.stores.push(StoreLine {
                store_id,
                cards_activated,
                owed_minor,
            }),
            ReportAccount::Merchant(merchant_id) => response.merchants.push(MerchantLine {
                merchant_id,
                owed_minor,
            }),
        }
    }
    response
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

#[cfg(test)]
mod tests {
    use super::*;

    fn active(face: u64, store: u32, spent: u64) -> Card {
        let mut card = Card::issued(face);
        card.activate(store, 0).expect("activate");
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

    #[test]
    fn consolidation_sums_shares_and_refuses_overflow() {
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
        let books = consolidate(&rows).expect("fits");
        assert_eq!(books.share(BookKind::MerchantOwed, 9), 150);
        assert_eq!(books.total(BookKind::StoreOwed), 500);
        let mut out = Changes::new();
        books.write_rows(ShardId(0), &mut out);
        assert_eq!(out.len(), 2);
        let huge = [
            row(BookKind::MerchantOwed, 9, 0, u64::MAX),
            row(BookKind::MerchantOwed, 9, 1, 1),
        ];
        assert!(consolidate(&huge).is_err(), "an error, not a panic");
    }

    /// Paging through shards' books at any page size yields every account
    /// once, in order, with its shares summed: the whole report.
    #[test]
    fn pages_at_any_size_add_up_to_the_whole_report() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next_random = |below: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % below
        };
        let mut shards: [ShardBooks; 3] = Default::default();
        let mut whole: BTreeMap<ReportAccount, u64> = BTreeMap::new();
        for _ in 0..200 {
            let shard = next_random(3) as usize;
            let account = next_random(60) as u32;
            let amount = 1 + next_random(9);
            let (kind, key) = if next_random(4) == 0 {
                (BookKind::MerchantOwed, ReportAccount::Merchant(account))
            } else {
                (BookKind::StoreOwed, ReportAccount::Store(account))
            };
            shards[shard].credit(kind, account, amount);
            *whole.entry(key).or_insert(0) += amount;
        }
        let empty = CardTotals::default();
        for limit in 1..=70 {
            let mut paged: BTreeMap<ReportAccount, u64> = BTreeMap::new();
            let mut after = None;
            loop {
                let pages: Vec<ShardPage> = shards
                    .iter()
                    .map(|books| books.page(&empty, after, None, limit))
                    .collect();
                let page = report_page(&pages, limit);
                assert!(page.stores.len() + page.merchants.len() <= limit);
                for line in &page.stores {
                    let fresh = paged.insert(ReportAccount::Store(line.store_id), line.owed_minor);
                    assert!(fresh.is_none(), "store {} twice", line.store_id);
                }
                for line in &page.merchants {
                    let account = ReportAccount::Merchant(line.merchant_id);
                    assert!(paged.insert(account, line.owed_minor).is_none());
                }
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            assert_eq!(paged, whole, "pages of {limit}");
        }
    }

    #[test]
    fn report_pages_merge_shares_and_carry_a_cursor() {
        let mut a = ShardBooks::default();
        let mut b = ShardBooks::default();
        for store in [1, 3, 5] {
            a.credit(BookKind::StoreOwed, store, 10);
        }
        for store in [2, 3, 4] {
            b.credit(BookKind::StoreOwed, store, 1);
        }
        b.credit(BookKind::MerchantOwed, 7, 4);
        let empty = CardTotals::default();
        let page = |after| {
            let pages = [
                a.page(&empty, after, None, 2),
                b.page(&empty, after, None, 2),
            ];
            report_page(&pages, 2)
        };
        let first = page(None);
        let owed: Vec<(u32, u64)> = first
            .stores
            .iter()
            .map(|l| (l.store_id, l.owed_minor))
            .collect();
        assert_eq!(owed, [(1, 10), (2, 1)]);
        assert_eq!(first.next, Some(ReportAccount::Store(2)));
        let second = page(first.next);
        let owed: Vec<(u32, u64)> = second
            .stores
            .iter()
            .map(|l| (l.store_id, l.owed_minor))
            .collect();
        assert_eq!(owed, [(3, 11), (4, 1)]);
        let third = page(second.next);
        assert_eq!(third.stores.len(), 1);
        assert_eq!(third.merchants[0].owed_minor, 4);
        // No shard filled its page, so nothing follows.
        assert_eq!(third.next, None);
        assert_eq!(third.totals.store_owed_minor, 33);
        // A cursor past the last account reads an empty page.
        let last = page(Some(ReportAccount::Merchant(7)));
        assert!(last.stores.is_empty() && last.merchants.is_empty());
        assert_eq!(last.next, None);
        let only = report_page(
            &[
                a.page(&empty, None, Some(ReportAccount::Store(3)), 10),
                b.page(&empty, None, Some(ReportAccount::Store(3)), 10),
            ],
            10,
        );
        assert_eq!(only.stores.len(), 1);
        assert_eq!(only.stores[0].owed_minor, 11);
    }
}
