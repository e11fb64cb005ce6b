//! The messages a shard takes, one per operation, each with its own reply
//! type. Every message holds a mailbox slot (see [`super::Shards`]) that is
//! given back when the shard takes client work up, or has handled any other
//! message.

use crate::auth::Principal;
use crate::ids::{CardRef, PaymentId, RefundId, RemittanceId, StoreId};
use crate::ledger::{ShardAudit, ShardPage, StoreShares};
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

macro_rules! shard_message {
    ($name:ident) => {
        impl Message for $name {
            type Result = ();
        }
    };
}

/// A client request served by one shard, its answer a wire response.
#[derive(Debug)]
pub enum ClientOp {
    /// A payment whose cards all live on this shard: decided and applied in
    /// one local atomic step, no two-phase commit.
    Pay {
        payment: PaymentId,
        amount_minor: u64,
        cards: Vec<CardRef>,
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
shard_message!(ClientWork);

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

pub struct Activate {
    pub cards: Vec<Activation>,
    pub done: oneshot::Sender<Vec<ActivationResult>>,
    pub _slot: MailboxSlot,
}
shard_message!(Activate);

/// A new (issued, worthless) card.
#[derive(Debug, Clone, Copy)]
pub struct NewCard {
    pub key: PinKey,
    pub face_value_minor: u64,
}

/// Answers, per card, whether it was inserted (false: the key exists).
pub struct Insert {
    pub cards: Vec<NewCard>,
    pub done: oneshot::Sender<Vec<bool>>,
    pub _slot: MailboxSlot,
}
shard_message!(Insert);

pub struct Prepare {
    pub request: PrepareRequest,
    pub done: oneshot::Sender<Vote>,
    pub _slot: MailboxSlot,
}
shard_message!(Prepare);

pub struct Commit {
    pub payment: PaymentId,
    pub takes: Vec<Take>,
    pub done: oneshot::Sender<()>,
    pub _slot: MailboxSlot,
}
shard_message!(Commit);

pub struct Abort {
    pub payment: PaymentId,
    pub keys: Vec<PinKey>,
    /// The payment was declined for want of funds over all its cards:
    /// the decline is noted on them (see `Card::note_decline`).
    pub declined: bool,
    pub done: oneshot::Sender<()>,
    pub _slot: MailboxSlot,
}
shard_message!(Abort);

pub struct RecordDecision {
    pub payment: PaymentId,
    pub record: PaymentRecord,
    pub done: oneshot::Sender<()>,
    pub _slot: MailboxSlot,
}
shard_message!(RecordDecision);

/// An authorization's holds, trimmed to what it keeps.
pub struct KeepAuthorized {
    pub authorization: PaymentId,
    pub keeps: Vec<Take>,
    pub record: HoldRecord,
    pub done: oneshot::Sender<()>,
    pub _slot: MailboxSlot,
}
shard_message!(KeepAuthorized);

/// An authorization's step, written by its home shard.
pub struct RecordAuthorization {
    pub step: AuthorizationStep,
    pub done: oneshot::Sender<()>,
    pub _slot: MailboxSlot,
}
shard_message!(RecordAuthorization);

/// A refund's decision, written by its home shard.
pub struct RecordRefund {
    pub refund: RefundId,
    pub record: RefundRecord,
    pub payment: PaymentId,
    pub refunded: PaymentRefunds,
    pub credits: Vec<Credit>,
    pub done: oneshot::Sender<()>,
    pub _slot: MailboxSlot,
}
shard_message!(RecordRefund);

/// A refund's credits to this shard's cards.
pub struct ApplyCredits {
    pub refund: RefundId,
    pub credits: Vec<Credit>,
    pub done: oneshot::Sender<()>,
    pub _slot: MailboxSlot,
}
shard_message!(ApplyCredits);

/// This shard's shares of some stores' books.
pub struct ReadStoreShares {
    pub stores: Vec<StoreId>,
    pub done: oneshot::Sender<Vec<StoreShares>>,
    pub _slot: MailboxSlot,
}
shard_message!(ReadStoreShares);

/// A payout (created, or confirmed), written by its merchant's home shard.
pub struct RecordPayout {
    pub merchant_id: u32,
    pub seq: u64,
    pub record: PayoutRecord,
    /// The request that created it (`None`: a confirmation).
    pub request: Option<PaymentId>,
    /// Book what it paid and its fee (once, when created).
    pub book: bool,
    pub done: oneshot::Sender<()>,
    pub _slot: MailboxSlot,
}
shard_message!(RecordPayout);

/// A remittance, written by its home shard.
pub struct RecordRemittance {
    pub remittance: RemittanceId,
    pub record: RemittanceRecord,
    pub done: oneshot::Sender<()>,
    pub _slot: MailboxSlot,
}
shard_message!(RecordRemittance);

/// PIN failures of `principal` found outside any shard (an activation's
/// malformed PINs), counted here and durable before the answer.
pub struct CountFailures {
    pub principal: u32,
    pub count: u32,
    pub done: oneshot::Sender<()>,
    pub _slot: MailboxSlot,
}
shard_message!(CountFailures);

/// Seals the period up to `cut_off_ms` (see
/// [`crate::state_machine::ShardMachine::stamp`]); answered once every
/// record stamped at or before it is durable.
pub struct Seal {
    pub cut_off_ms: u64,
    pub done: oneshot::Sender<()>,
    pub _slot: MailboxSlot,
}
shard_message!(Seal);

/// This shard's part of a report page.
pub struct ReportPage {
    pub after: Option<ReportAccount>,
    pub only: Option<ReportAccount>,
    pub limit: usize,
    pub done: oneshot::Sender<ShardPage>,
    pub _slot: MailboxSlot,
}
shard_message!(ReportPage);

/// Starts an audit walk over the shard's cards.
pub struct AuditBegin {
    pub done: oneshot::Sender<()>,
    pub _slot: MailboxSlot,
}
shard_message!(AuditBegin);

/// Checks the next `cards` cards; answers true once every card is checked.
pub struct AuditSlice {
    pub cards: usize,
    pub done: oneshot::Sender<bool>,
    pub _slot: MailboxSlot,
}
shard_message!(AuditSlice);

/// Ends the audit walk: the shard's sums, books and findings.
pub struct AuditEnd {
    pub done: oneshot::Sender<Box<ShardAudit>>,
    pub _slot: MailboxSlot,
}
shard_message!(AuditEnd);

pub struct Stats {
    pub done: oneshot::Sender<ShardStats>,
    pub _slot: MailboxSlot,
}
shard_message!(Stats);
