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
//!
//! One concern per file:
//!
//! * `mod.rs`: the books: each shard's shares of every account, a store's
//!   shares, how a remittance pays off debts, consolidation at start.
//! * `audit.rs`: the audit: card sums, findings, and the laws checked over
//!   every shard's audit.
//! * `report.rs`: the report: a shard's page of lines and the merge of the
//!   shards' pages.

use crate::ids::{ShardId, StoreId};
use crate::storage::Changes;
use crate::storage::records::{BookKind, BookRow};
use std::collections::BTreeMap;

mod audit;
mod report;

pub use audit::{CardTotals, Findings, PROBLEMS_MAX, ShardAudit, StoreActivations, audit};
pub use report::{ShardLine, ShardPage, report_page};

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

/// Each book's sum, by [`BookKind`] (`kind as usize - 1`).
pub type BookTotals = [u64; BookKind::ALL.len()];

#[cfg(test)]
mod tests {
    use super::*;

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
}
