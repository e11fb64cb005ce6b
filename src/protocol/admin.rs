//! The operator's views: report, audit, stats.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StoreLine {
    pub store_id: u32,
    pub cards_activated: u64,
    /// What the store owes the center for the cards it sold, less
    /// reversed sales.
    pub owed_minor: u64,
    /// Sales reversed (already taken off `owed_minor`).
    pub reversed_minor: u64,
    /// What remittances paid off (already taken off `owed_minor`).
    pub remitted_minor: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MerchantLine {
    pub merchant_id: u32,
    /// What the center owes the merchant for approved payments, less
    /// refunds, payouts and fees (0 when a payout carried refunds beyond
    /// payments forward).
    pub owed_minor: u64,
    /// Refunds (already taken off `owed_minor`).
    pub refunded_minor: u64,
    /// Paid out to the merchant (already taken off `owed_minor`).
    pub paid_out_minor: u64,
    /// The center's fees taken at payouts (already taken off).
    pub fees_minor: u64,
}

/// Engine-wide sums. `activated_minor == balance_minor +
/// merchant_owed_minor + merchant_paid_out_minor + fees_minor +
/// breakage_minor` and `activated_minor == store_owed_minor +
/// store_remitted_minor` are the conservation laws the audit proves (the
/// owed sums net of reversals, refunds, remittances, payouts and fees; both
/// hold as long as no account is in credit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Totals {
    pub cards: u64,
    pub cards_issued: u64,
    pub cards_active: u64,
    pub cards_exhausted: u64,
    /// Unsold again after a reversed sale (worthless, like issued ones).
    pub cards_reversed: u64,
    /// Past their validity; their balance went to breakage.
    pub cards_expired: u64,
    /// Face value of every card sold and not reversed.
    pub activated_minor: u64,
    /// Money left on cards (holds included).
    pub balance_minor: u64,
    /// Part of the balance held by payments being committed.
    pub held_minor: u64,
    /// What stores owe, net of reversals and remittances.
    pub store_owed_minor: u64,
    pub store_reversed_minor: u64,
    pub store_remitted_minor: u64,
    /// What the center owes merchants, net of refunds.
    pub merchant_owed_minor: u64,
    pub merchant_refunded_minor: u64,
    pub merchant_paid_out_minor: u64,
    pub fees_minor: u64,
    /// What expired cards carried when they expired (the center's).
    pub breakage_minor: u64,
}

/// A book account: a store's, or a merchant's. Report lines run through
/// every store, then every merchant, ascending; an account names a place
/// in that order (the cursor of the next page) or one line (a filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ReportAccount {
    Store(u32),
    Merchant(u32),
}

/// One page of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRequest {
    /// Lines on this page at most (at least 1; the engine sends at most
    /// its `max_report_lines`).
    pub limit: u32,
    /// Start after this account (the previous page's `next`); `None` from
    /// the start.
    pub after: Option<ReportAccount>,
    /// Only this account's line.
    pub only: Option<ReportAccount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReportResponse {
    pub stores: Vec<StoreLine>,
    pub merchants: Vec<MerchantLine>,
    pub totals: Totals,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<ReportAccount>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditResponse {
    pub ok: bool,
    /// One line per finding, naming where (card, store, shard, payment);
    /// at most `PROBLEMS_MAX` of them.
    pub problems: Vec<String>,
    /// Findings beyond those listed.
    pub problems_omitted: u64,
    pub totals: Totals,
}

/// Per-shard counters, for operators tuning the shard count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ShardStats {
    pub shard: u16,
    pub cards: u64,
    /// Bytes the shard's card map has allocated (from its capacity).
    pub card_map_bytes: u64,
    /// Synced write batches (group commits) so far.
    pub batches: u64,
    /// Operations those batches carried.
    pub ops: u64,
    pub batch_ops_p50: u64,
    pub batch_ops_p99: u64,
    pub batch_ops_max: u64,
    pub sync_us_p50: u64,
    pub sync_us_p99: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StatsResponse {
    pub shards: Vec<ShardStats>,
}
