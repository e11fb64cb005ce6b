//! The report: each shard's page of account lines, and the merge of the
//! shards' pages into one.

use super::audit::{CardTotals, set_books, totals};
use super::{BookTotals, ShardBooks};
use crate::ids::StoreId;
use crate::protocol::{MerchantLine, ReportAccount, ReportResponse, StoreLine, Totals};
use crate::storage::records::BookKind;
use std::collections::BTreeMap;

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
