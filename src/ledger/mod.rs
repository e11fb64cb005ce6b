//! The books: what each store owes the center, what the center owes each
//! merchant, the report, and the audit that proves no money was created or
//! lost.
//!
//! Books are kept as per-shard shares. The shard that activates a card also
//! credits the store's share, and the shard that debits a card also credits
//! the merchant's share, in the same atomic write. Every change a shard makes
//! therefore keeps
//!
//! `activated face value = card balances + merchant credits - refunds
//!  + breakage`
//!
//! (a refund credits a card back and books the merchant's refund on the
//! card's shard, in one write; an expiring card's balance moves to its
//! store's breakage in one write), and likewise
//!
//! `store debt - reversals = face value of the cards sold and not reversed`
//!
//! Books only grow: a refund or a reversal is a credit to a book of its
//! own ([`BookKind::MerchantRefunded`], [`BookKind::StoreReversed`]),
//! never a debit of a share, because after the shares were merged at start
//! one shard's share can be smaller than what it would have to debit.
//!
//! Every write a shard makes keeps its own side of each law
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
use crate::ids::{ShardId, StoreId};
use crate::protocol::{
    AuditResponse, MerchantLine, ReportAccount, ReportResponse, StoreLine, Totals,
};
use crate::storage::Changes;
use crate::storage::records::{BookKind, BookRow};
use std::collections::BTreeMap;

/// Findings an audit lists at most (the rest are counted), so its reply
/// always fits a frame.
pub const PROBLEMS_MAX: usize = 100;

/// One shard's shares of every book's accounts, with each book's sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardBooks {
    /// By [`BookKind`] (`kind as usize - 1`).
    accounts: [BTreeMap<u32, u64>; BookKind::ALL.len()],
    totals: [u64; BookKind::ALL.len()],
}

fn book_index(kind: BookKind) -> usize {
    kind as usize - 1
}

impl ShardBooks {
    fn accounts(&self, kind: BookKind) -> &BTreeMap<u32, u64> {
        &self.accounts[book_index(kind)]
    }

    /// Adds to an account share and returns the share's new total.
    pub fn credit(&mut self, kind: BookKind, account: u32, amount_minor: u64) -> u64 {
        let index = book_index(kind);
        self.totals[index] += amount_minor;
        let share = self.accounts[index].entry(account).or_insert(0);
        *share += amount_minor;
        *share
    }

    /// The current share of an account (0 if never credited).
    pub fn share(&self, kind: BookKind, account: u32) -> u64 {
        self.accounts(kind).get(&account).copied().unwrap_or(0)
    }

    pub fn total(&self, kind: BookKind) -> u64 {
        self.totals[book_index(kind)]
    }

    /// Writes every account share as `shard`'s book rows.
    pub(crate) fn write_rows(&self, shard: ShardId, out: &mut Changes) {
        for kind in BookKind::ALL {
            for (&account, &amount_minor) in self.accounts(kind) {
                out.put_book(kind, account, shard, amount_minor);
            }
        }
    }

    /// Adds another shard's shares (the audit's engine-wide books).
    fn merge(&mut self, other: &ShardBooks) {
        for kind in BookKind::ALL {
            for (&account, &amount_minor) in other.accounts(kind) {
                self.credit(kind, account, amount_minor);
            }
        }
    }
}

/// What one store's books say, summed over shards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreShares {
    pub owed_minor: u64,
    pub reversed_minor: u64,
    pub remitted_minor: u64,
}

impl StoreShares {
    /// What the store owes now (0 when in credit).
    pub fn debt_minor(&self) -> u64 {
        self.owed_minor
            .saturating_sub(self.reversed_minor)
            .saturating_sub(self.remitted_minor)
    }

    pub fn add(&mut self, other: &StoreShares) {
        self.owed_minor += other.owed_minor;
        self.reversed_minor += other.reversed_minor;
        self.remitted_minor += other.remitted_minor;
    }
}

impl ShardBooks {
    /// This shard's shares of `store`'s books.
    pub fn store_shares(&self, store: StoreId) -> StoreShares {
        StoreShares {
            owed_minor: self.share(BookKind::StoreOwed, store),
            reversed_minor: self.share(BookKind::StoreReversed, store),
            remitted_minor: self.share(BookKind::StoreRemitted, store),
        }
    }
}

/// How a remittance of `amount_minor` pays off stores' debts: ascending by
/// store, each up to its debt. `None` when the debts do not cover it.
pub fn allocate_remittance(
    debts: &[(StoreId, u64)],
    amount_minor: u64,
) -> Option<Vec<(StoreId, u64)>> {
    let owed: u64 = debts.iter().map(|(_, debt)| debt).sum();
    if amount_minor > owed {
        return None;
    }
    let mut sorted = debts.to_vec();
    sorted.sort_unstable();
    let mut left_minor = amount_minor;
    let mut allocations = Vec::new();
    for (store, debt_minor) in sorted {
        let paid_minor = debt_minor.min(left_minor);
        if paid_minor > 0 {
            allocations.push((store, paid_minor));
            left_minor -= paid_minor;
        }
    }
    assert_eq!(left_minor, 0, "the debts covered the amount");
    Some(allocations)
}

/// Merges book rows written by any number of shards (under any earlier
/// shard count) into one share per account. At start the engine writes the
/// merged rows as shard 0's and deletes the rest, so later shares start from
/// zero and a changed shard count never splits an account's history.
/// Refuses sums that do not fit (data written under other limits).
pub(crate) fn consolidate(rows: &[BookRow]) -> Result<ShardBooks, String> {
    let mut books = ShardBooks::default();
    for row in rows {
        let index = book_index(row.kind);
        let (accounts, total) = (&mut books.accounts[index], &mut books.totals[index]);
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

/// Each book's sum, by [`BookKind`] (`kind as usize - 1`).
pub type BookTotals = [u64; BookKind::ALL.len()];

/// Engine-wide sums from the cards and the books' sums. The books' sums
/// are gross on every shard (a shard's refunds may exceed its share of the
/// credits); the debts are netted here, over every shard at once.
fn totals(cards: &CardTotals, books: &BookTotals) -> Totals {
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

fn set_books(totals: &mut Totals, books: &BookTotals) {
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

/// Adds the card sums of a page's totals (the books are netted apart).
fn add_card_totals(into: &mut Totals, from: &Totals) {
    into.cards += from.cards;
    into.cards_issued += from.cards_issued;
    into.cards_active += from.cards_active;
    into.cards_exhausted += from.cards_exhausted;
    into.cards_reversed += from.cards_reversed;
    into.cards_expired += from.cards_expired;
    into.activated_minor += from.activated_minor;
    into.balance_minor += from.balance_minor;
    into.held_minor += from.held_minor;
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

/// One line of a shard's report page: its share of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardLine {
    pub account: ReportAccount,
    /// Gross: activations for a store, payments for a merchant.
    pub owed_minor: u64,
    /// Reversals for a store, refunds for a merchant (netted at the merge).
    pub offset_minor: u64,
    /// Remittances for a store, payouts for a merchant (netted at the
    /// merge).
    pub remitted_minor: u64,
    /// Fees taken from a merchant (netted at the merge); 0 for a store.
    pub fees_minor: u64,
    /// For a store: the cards it sold that this shard holds.
    pub cards_activated: u64,
}

/// What one shard contributes to a report page.
#[derive(Debug, Clone, Default)]
pub struct ShardPage {
    /// The shard's card sums (its books' fields are left 0).
    pub totals: Totals,
    /// The shard's gross book sums.
    pub book_totals: BookTotals,
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
        let mut lines = Vec::new();
        if let Some(account) = only {
            let wanted = after.is_none_or(|after| account > after) && self.knows(cards, account);
            if wanted && limit > 0 {
                lines.push(self.line(cards, account));
            }
        } else {
            let (store_from, merchant_from) = match after {
                None => (Some(0), 0),
                Some(ReportAccount::Store(store)) => (store.checked_add(1), 0),
                Some(ReportAccount::Merchant(merchant)) => (None, merchant.saturating_add(1)),
            };
            if let Some(from) = store_from {
                let stores = self.stores_from(cards, from, limit);
                let store_lines = stores.into_iter().take(limit);
                lines
                    .extend(store_lines.map(|store| self.line(cards, ReportAccount::Store(store))));
            }
            let skip_merchants = matches!(after, Some(ReportAccount::Merchant(u32::MAX)));
            if !skip_merchants {
                let room = limit - lines.len();
                let merchants = self.merchants_from(merchant_from, room);
                let merchant_lines = merchants.into_iter().take(room);
                lines.extend(merchant_lines.map(|m| self.line(cards, ReportAccount::Merchant(m))));
            }
        }
        ShardPage {
            totals: totals(cards, &BookTotals::default()),
            book_totals: self.totals,
            lines,
        }
    }

    /// This shard's line of `account`.
    fn line(&self, cards: &CardTotals, account: ReportAccount) -> ShardLine {
        match account {
            ReportAccount::Store(store) => ShardLine {
                account,
                owed_minor: self.share(BookKind::StoreOwed, store),
                offset_minor: self.share(BookKind::StoreReversed, store),
                remitted_minor: self.share(BookKind::StoreRemitted, store),
                fees_minor: 0,
                cards_activated: cards.by_store.get(&store).map_or(0, |a| a.cards),
            },
            ReportAccount::Merchant(merchant) => ShardLine {
                account,
                owed_minor: self.share(BookKind::MerchantOwed, merchant),
                offset_minor: self.share(BookKind::MerchantRefunded, merchant),
                remitted_minor: self.share(BookKind::MerchantPaidOut, merchant),
                fees_minor: self.share(BookKind::Fees, merchant),
                cards_activated: 0,
            },
        }
    }

    /// Whether this shard has a share of `account`. A store is reversed
    /// only after it was owed, but a shard's share of the two can sit on
    /// different shards: both maps name stores (and both merchant maps
    /// name merchants).
    fn knows(&self, cards: &CardTotals, account: ReportAccount) -> bool {
        match account {
            ReportAccount::Store(store) => {
                self.accounts(BookKind::StoreOwed).contains_key(&store)
                    || self.accounts(BookKind::StoreReversed).contains_key(&store)
                    || self.accounts(BookKind::StoreRemitted).contains_key(&store)
                    || cards.by_store.contains_key(&store)
            }
            ReportAccount::Merchant(merchant) => {
                self.accounts(BookKind::MerchantOwed)
                    .contains_key(&merchant)
                    || self
                        .accounts(BookKind::MerchantRefunded)
                        .contains_key(&merchant)
                    || self
                        .accounts(BookKind::MerchantPaidOut)
                        .contains_key(&merchant)
            }
        }
    }

    /// The stores this shard knows from `from` on, ascending, deduplicated;
    /// the first `limit` of them are the first `limit` it knows.
    fn stores_from(&self, cards: &CardTotals, from: StoreId, limit: usize) -> Vec<StoreId> {
        // The union of two sorted maps' first `limit` keys holds the
        // union's first `limit`.
        let first = |map: &BTreeMap<StoreId, _>| -> Vec<StoreId> {
            map.range(from..).map(|(&s, _)| s).take(limit).collect()
        };
        let mut stores: Vec<StoreId> = first(self.accounts(BookKind::StoreOwed));
        stores.extend(first(self.accounts(BookKind::StoreReversed)));
        stores.extend(first(self.accounts(BookKind::StoreRemitted)));
        stores.extend(cards.by_store.range(from..).map(|(&s, _)| s).take(limit));
        stores.sort_unstable();
        stores.dedup();
        stores
    }

    /// The merchants this shard knows from `from` on, ascending,
    /// deduplicated; the first `room` of them are the first `room` it
    /// knows.
    fn merchants_from(&self, from: u32, room: usize) -> Vec<u32> {
        let maps = [
            self.accounts(BookKind::MerchantOwed),
            self.accounts(BookKind::MerchantRefunded),
            self.accounts(BookKind::MerchantPaidOut),
        ];
        let mut merchants: Vec<u32> = maps
            .into_iter()
            .flat_map(|map| map.range(from..).map(|(&m, _)| m).take(room))
            .collect();
        merchants.sort_unstable();
        merchants.dedup();
        merchants
    }
}

/// Merges the shards' pages: sums each account's shares and keeps the
/// first `limit` accounts. Each shard sent its own first `limit` accounts,
/// so every account among the engine-wide first `limit` is complete.
pub fn report_page(shards: &[ShardPage], limit: usize) -> ReportResponse {
    // Per account: gross owed, offset (reversed or refunded), remitted or
    // paid out, fees, cards.
    let mut lines: BTreeMap<ReportAccount, [u64; 5]> = BTreeMap::new();
    let mut engine = Totals::default();
    let mut books = BookTotals::default();
    let mut any_full = false;
    for shard in shards {
        add_card_totals(&mut engine, &shard.totals);
        for (sum, shard_sum) in books.iter_mut().zip(shard.book_totals) {
            *sum += shard_sum;
        }
        any_full |= shard.lines.len() == limit;
        for line in &shard.lines {
            let entry = lines.entry(line.account).or_insert([0; 5]);
            entry[0] += line.owed_minor;
            entry[1] += line.offset_minor;
            entry[2] += line.remitted_minor;
            entry[3] += line.fees_minor;
            entry[4] += line.cards_activated;
        }
    }
    // More may follow when the shards sent more than a page between them,
    // or when one sent a full page (it may have more).
    let more = lines.len() > limit || any_full;
    let page: Vec<_> = lines.into_iter().take(limit).collect();
    let next = (more && page.len() == limit).then(|| page[limit - 1].0);
    set_books(&mut engine, &books);
    let mut response = ReportResponse {
        totals: engine,
        next,
        ..ReportResponse::default()
    };
    for (
        account,
        [
            gross_minor,
            offset_minor,
            settled_minor,
            fees_minor,
            cards_activated,
        ],
    ) in page
    {
        // Netted over every shard's share. An account in credit (a store
        // whose remittances exceed what it owes after a later reversal, a
        // merchant whose refunds a payout carried forward) shows 0.
        let owed_minor = gross_minor
            .saturating_sub(offset_minor)
            .saturating_sub(settled_minor)
            .saturating_sub(fees_minor);
        match account {
            ReportAccount::Store(store_id) => response.stores.push(StoreLine {
                store_id,
                cards_activated,
                owed_minor,
                reversed_minor: offset_minor,
                remitted_minor: settled_minor,
            }),
            ReportAccount::Merchant(merchant_id) => response.merchants.push(MerchantLine {
                merchant_id,
                owed_minor,
                refunded_minor: offset_minor,
                paid_out_minor: settled_minor,
                fees_minor,
            }),
        }
    }
    response
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
