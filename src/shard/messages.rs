//! What a shard takes: client work answered straight to a connection
//! ([`ClientWork`]), and every other operation as data ([`ShardOp`]),
//! answered with a [`ShardAnswer`] once the change behind it is durable.
//! Every message holds a mailbox slot (see [`super::Shards`]) that is
//! given back when the shard takes client work up, or has handled any other
//! message.

use crate::auth::Principal;
use crate::ids::{CardList, PaymentId, RefundId, RemittanceId, StoreId};
use crate::ledger::{ShardAudit, ShardPage, StoreShares};
use crate::order::OrderId;
use crate::pin::PinKey;
use crate::protocol::{ActivationResult, ReportAccount, Response, ShardStats};
use crate::reply::{ReplyTx, Tag};
use crate::state_machine::{AuthorizationStep, Credit, PrepareRequest, Take, Vote};
use crate::storage::records::{
    HoldRecord, PaymentRecord, PaymentRefunds, PayoutRecord, RefundRecord, RemittanceRecord,
};
use actix::Message;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, oneshot};

/// A place in a shard's bounded mailbox, held by a queued message.
pub type MailboxSlot = OwnedSemaphorePermit;

/// A client request served by one shard, its answer a wire response.
#[derive(Debug)]
pub enum ClientOp {
    /// A payment whose cards all live on this shard: decided and applied in
    /// one local atomic step, no two-phase commit.
    Pay {
        payment: PaymentId,
        amount_minor: u64,
        cards: CardList,
        order_id: Option<OrderId>,
    },
    Balance {
        /// The merchant or store HQ asking (its PIN failures are counted).
        principal: u32,
        key: PinKey,
        /// Set when a store HQ asks: it may see only cards its stores sold.
        hq: Option<Arc<Principal>>,
    },
    ReverseActivation {
        /// The store HQ asking (its PIN failures are counted).
        principal: u32,
        store_id: StoreId,
        pos_ref: u64,
        key: PinKey,
        /// The amount the till reversed, when the protocol carries one
        /// (ISO 8583 DE 4): it must be the card's face value.
        face_value_minor: Option<u64>,
    },
    /// PINs the gateway found bad (check digit, syntax): `count` failures
    /// of `principal`, written before `refusal` is answered (or
    /// `locked_out`, if they lock it out).
    PinFailures {
        principal: u32,
        count: u32,
        refusal: Response,
    },
}

/// Client requests from one connection read, answered straight to the
/// connection once durable, each under its request's tag.
pub struct ClientWork {
    pub reply: ReplyTx,
    pub ops: Vec<(Tag, ClientOp)>,
    pub _slot: MailboxSlot,
}

impl Message for ClientWork {
    type Result = ();
}

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
    /// [`crate::state_machine::ShardMachine::stamp`]); `Done` once every
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

/// An operation with where its answer goes.
pub struct Ask {
    pub op: ShardOp,
    pub done: oneshot::Sender<ShardAnswer>,
    pub _slot: MailboxSlot,
}

impl Message for Ask {
    type Result = ();
}
