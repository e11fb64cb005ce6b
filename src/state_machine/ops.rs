//! Every operation a shard's state machine takes from the rest of the
//! engine, as data ([`ShardOp`]), and its answer ([`ShardAnswer`]). The
//! shard actor queues them; [`super::ShardMachine::apply`] applies them; the
//! simulation sends the same values.

use super::{AuthorizationStep, Credit, PrepareRequest, Take, Vote};
use crate::ids::{PaymentId, RefundId, RemittanceId, StoreId};
use crate::ledger::{ShardAudit, ShardPage, StoreShares};
use crate::order::OrderId;
use crate::pin::PinKey;
use crate::protocol::{ActivationResult, ReportAccount, ShardStats};
use crate::storage::records::{
    HoldRecord, PaymentRecord, PaymentRefunds, PayoutRecord, RefundRecord, RemittanceRecord,
};

/// One card sold at a store.
#[derive(Debug, Clone, Copy)]
pub struct Activation {
    pub key: PinKey,
    /// The store HQ reporting the sale (its PIN failures are counted).
    pub principal: u32,
    pub store_id: StoreId,
    pub pos_ref: u64,
    /// The amount the till charged, when the protocol carries one (ISO 8583
    /// DE 4): it must be the card's face value.
    pub face_value_minor: Option<u64>,
}

/// A new (issued, worthless) card.
#[derive(Debug, Clone, Copy)]
pub struct NewCard {
    pub key: PinKey,
    pub face_value_minor: u64,
}

/// Every operation the rest of the engine asks of a shard, as data. Each
/// names its answer ([`ShardAnswer`]) in its comment.
#[derive(Debug)]
pub enum ShardOp {
    /// Cards sold at stores: `Activated`, one result per card.
    Activate(Vec<Activation>),
    /// New cards: `Inserted`, per card whether it was new (false: the key
    /// exists).
    Insert(Vec<NewCard>),
    /// Phase one of a payment across shards: `Voted`.
    Prepare(PrepareRequest),
    /// Phase two, commit: take from the held cards. `Done`.
    Commit {
        payment: PaymentId,
        takes: Vec<Take>,
    },
    /// Phase two, abort: release the holds. `declined` when the payment
    /// was declined for want of funds over all its cards (the shard notes
    /// it on them). `Done`.
    Abort {
        payment: PaymentId,
        keys: Vec<PinKey>,
        declined: bool,
    },
    /// A two-phase payment's decision, on its home shard. `Done`.
    RecordDecision {
        payment: PaymentId,
        record: PaymentRecord,
        order_id: Option<OrderId>,
    },
    /// An authorization's holds, trimmed to what it keeps. `Done`.
    KeepAuthorized {
        authorization: PaymentId,
        keeps: Vec<Take>,
        record: HoldRecord,
    },
    /// An authorization's step, on its home shard. `Done`.
    RecordAuthorization(AuthorizationStep),
    /// A refund's decision, on its home shard. `Done`.
    RecordRefund {
        refund: RefundId,
        record: RefundRecord,
        payment: PaymentId,
        refunded: PaymentRefunds,
        credits: Vec<Credit>,
    },
    /// A refund's credits to this shard's cards. `Done`.
    ApplyCredits {
        refund: RefundId,
        credits: Vec<Credit>,
    },
    /// This shard's shares of some stores' books: `Shares`.
    ReadStoreShares(Vec<StoreId>),
    /// A payout (created, or confirmed), on its merchant's home shard.
    /// `Done`.
    RecordPayout {
        merchant_id: u32,
        seq: u64,
        record: PayoutRecord,
        /// The request that created it (`None`: a confirmation).
        request: Option<PaymentId>,
        /// Book what it paid and its fee (once, when created).
        book: bool,
    },
    /// A remittance, on its home shard. `Done`.
    RecordRemittance {
        remittance: RemittanceId,
        record: RemittanceRecord,
    },
    /// PIN failures of `principal` found outside any shard (an
    /// activation's malformed PINs), durable before the answer. `Done`.
    CountFailures { principal: u32, count: u32 },
    /// Seals the period up to `cut_off_ms` (see
    /// [`super::ShardMachine::stamp`]); `Done` once every
    /// record stamped at or before it is durable.
    Seal { cut_off_ms: u64 },
    /// This shard's part of a report page: `Page`.
    ReportPage {
        after: Option<ReportAccount>,
        only: Option<ReportAccount>,
        limit: usize,
    },
    /// Starts an audit walk over the shard's cards: `Done`, at once.
    AuditBegin,
    /// Checks the next `cards` cards: `AuditSliced`, at once, true once
    /// every card is checked.
    AuditSlice { cards: usize },
    /// Ends the audit walk: `Audit`, the shard's sums, books and findings.
    AuditEnd,
    /// Group-commit figures: `Stats`, at once.
    Stats,
}

/// A shard's answer to a [`ShardOp`].
#[derive(Debug)]
pub enum ShardAnswer {
    Done,
    Activated(Vec<ActivationResult>),
    Inserted(Vec<bool>),
    Voted(Vote),
    Shares(Vec<StoreShares>),
    Page(ShardPage),
    AuditSliced(bool),
    Audit(Box<ShardAudit>),
    Stats(ShardStats),
}
