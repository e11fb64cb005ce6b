//! [`Shards`]: how the rest of the engine reaches the shard actors.
//!
//! Each shard's mailbox is bounded by `limits.shard_mailbox_capacity`
//! messages: a sender takes a slot before it queues a message, and the slot
//! comes back when the shard takes the message up (client work, whose
//! answer may leave before its handler returns) or has handled it (the
//! rest). Client work that finds the mailbox full is refused (and answered
//! `busy`); the engine's own messages (two-phase commit, audits) wait for a
//! slot, so a decided commit is never dropped.
//!
//! Every operation is a [`ShardOp`], asked with [`Shards::ask`]; the typed
//! calls below only build the operation and pick its answer's kind. An
//! answer arrives once the change behind it is durable.

use super::messages::{Ask, ClientOp, ClientWork};
use super::{Services, Shard};
use crate::ids::{PaymentId, RefundId, ShardId};
use crate::ledger::{ShardAudit, ShardPage};
use crate::order::OrderId;
use crate::pin::PinKey;
use crate::protocol::{ActivationResult, ReportAccount, ShardStats};
use crate::reply::{ReplyTx, Tag};
use crate::state_machine::{Activation, NewCard, ShardAnswer, ShardOp};
use crate::state_machine::{AuthorizationStep, Credit, PrepareRequest, ShardMachine, Take, Vote};
use crate::storage::records::{
    HoldRecord, PaymentRecord, PaymentRefunds, PayoutRecord, RefundRecord,
};
use actix::prelude::*;
use actix_rt::ArbiterHandle;
use std::sync::Arc;
use tokio::sync::{Semaphore, oneshot};

/// The shard is gone: only during shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardGone;

/// Picks one kind of [`ShardAnswer`].
macro_rules! pick {
    ($kind:ident) => {
        |answer| match answer {
            ShardAnswer::$kind(value) => Some(value),
            _ => None,
        }
    };
}

/// Picks [`ShardAnswer::Done`].
fn done(answer: ShardAnswer) -> Option<()> {
    matches!(answer, ShardAnswer::Done).then_some(())
}

/// Every shard actor, with its bounded mailbox.
pub struct Shards {
    actors: Vec<Addr<Shard>>,
    mailboxes: Vec<Arc<Semaphore>>,
}

impl Shards {
    /// Starts one actor per machine, spread round-robin over `arbiters`.
    pub fn start(
        machines: Vec<ShardMachine>,
        services: &Services,
        arbiters: &[ArbiterHandle],
        mailbox_capacity: usize,
    ) -> Shards {
        assert!(!arbiters.is_empty() && mailbox_capacity > 0);
        let count = machines.len();
        let actors = machines
            .into_iter()
            .enumerate()
            .map(|(index, machine)| {
                assert_eq!(machine.id().index(), index, "machines in shard order");
                let services = services.clone();
                Shard::start_in_arbiter(&arbiters[index % arbiters.len()], move |_| {
                    Shard::new(machine, services)
                })
            })
            .collect();
        let mailboxes = (0..count)
            .map(|_| Arc::new(Semaphore::new(mailbox_capacity)))
            .collect();
        Shards { actors, mailboxes }
    }

    pub fn count(&self) -> usize {
        self.actors.len()
    }

    /// The shard that owns `key`.
    pub fn of(&self, key: &PinKey) -> ShardId {
        ShardId::of(key, self.count())
    }

    pub fn all(&self) -> impl Iterator<Item = ShardId> + use<> {
        (0..self.count()).map(ShardId::from_index)
    }

    /// Waits for a slot in `shard`'s mailbox, then queues `op`; its
    /// answer is to be awaited separately, so a caller can ask several
    /// shards at once.
    pub async fn ask(&self, shard: ShardId, op: ShardOp) -> Result<Asked, ShardGone> {
        let slot = self.mailboxes[shard.index()]
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ShardGone)?;
        let (done, answer) = oneshot::channel();
        // The slot, not actix's own capacity (which `do_send` ignores),
        // bounds the mailbox; a stopped actor drops the message, and its
        // reply sender with it.
        self.actors[shard.index()].do_send(Ask {
            op,
            done,
            _slot: slot,
        });
        Ok(Asked(answer))
    }

    /// Asks `shard`, and picks the answer's kind.
    async fn ask_for<T>(
        &self,
        shard: ShardId,
        op: ShardOp,
        pick: fn(ShardAnswer) -> Option<T>,
    ) -> Result<Answer<T>, ShardGone> {
        Ok(Answer {
            asked: self.ask(shard, op).await?,
            pick,
        })
    }

    /// Asks every shard the same question; answers in shard order.
    async fn ask_each<T>(
        &self,
        op: impl Fn() -> ShardOp,
        pick: fn(ShardAnswer) -> Option<T>,
    ) -> Result<Vec<T>, ShardGone> {
        let mut answers = Vec::with_capacity(self.count());
        for shard in self.all() {
            answers.push(self.ask_for(shard, op(), pick).await?);
        }
        let mut out = Vec::with_capacity(answers.len());
        for answer in answers {
            out.push(answer.get().await?);
        }
        Ok(out)
    }

    /// Client requests whose answers go straight to a connection. Never
    /// waits: with `shard`'s mailbox full the requests come back, to be
    /// answered `busy`.
    pub fn try_client(
        &self,
        shard: ShardId,
        reply: ReplyTx,
        ops: Vec<(Tag, ClientOp)>,
    ) -> Result<(), Vec<(Tag, ClientOp)>> {
        match self.mailboxes[shard.index()].clone().try_acquire_owned() {
            Ok(_slot) => {
                self.actors[shard.index()].do_send(ClientWork { reply, ops, _slot });
                Ok(())
            }
            Err(_full) => Err(ops),
        }
    }

    pub async fn activate(
        &self,
        shard: ShardId,
        cards: Vec<Activation>,
    ) -> Result<Answer<Vec<ActivationResult>>, ShardGone> {
        self.ask_for(shard, ShardOp::Activate(cards), pick!(Activated))
            .await
    }

    pub async fn insert(
        &self,
        shard: ShardId,
        cards: Vec<NewCard>,
    ) -> Result<Answer<Vec<bool>>, ShardGone> {
        self.ask_for(shard, ShardOp::Insert(cards), pick!(Inserted))
            .await
    }

    pub async fn prepare(
        &self,
        shard: ShardId,
        request: PrepareRequest,
    ) -> Result<Answer<Vote>, ShardGone> {
        self.ask_for(shard, ShardOp::Prepare(request), pick!(Voted))
            .await
    }

    pub async fn commit(
        &self,
        shard: ShardId,
        payment: PaymentId,
        takes: Vec<Take>,
    ) -> Result<Answer<()>, ShardGone> {
        self.ask_for(shard, ShardOp::Commit { payment, takes }, done)
            .await
    }

    /// Releases `payment`'s holds on `shard`; `declined` when it was
    /// declined for want of funds over all its cards (the shard notes it).
    pub async fn abort(
        &self,
        shard: ShardId,
        payment: PaymentId,
        keys: Vec<PinKey>,
        declined: bool,
    ) -> Result<Answer<()>, ShardGone> {
        let op = ShardOp::Abort {
            payment,
            keys,
            declined,
        };
        self.ask_for(shard, op, done).await
    }

    /// Counts `count` PIN failures of `principal` found outside any shard,
    /// durably, on the shard chosen by the principal.
    pub async fn count_failures(&self, principal: u32, count: u32) -> Result<(), ShardGone> {
        let shard = ShardId::from_index(principal as usize % self.count());
        let op = ShardOp::CountFailures { principal, count };
        self.ask_for(shard, op, done).await?.get().await
    }

    pub async fn record_decision(
        &self,
        shard: ShardId,
        payment: PaymentId,
        record: PaymentRecord,
        order_id: Option<OrderId>,
    ) -> Result<Answer<()>, ShardGone> {
        let op = ShardOp::RecordDecision {
            payment,
            record,
            order_id,
        };
        self.ask_for(shard, op, done).await
    }

    pub async fn keep_authorized(
        &self,
        shard: ShardId,
        authorization: PaymentId,
        keeps: Vec<Take>,
        record: HoldRecord,
    ) -> Result<Answer<()>, ShardGone> {
        let op = ShardOp::KeepAuthorized {
            authorization,
            keeps,
            record,
        };
        self.ask_for(shard, op, done).await
    }

    pub async fn record_authorization(
        &self,
        shard: ShardId,
        step: AuthorizationStep,
    ) -> Result<Answer<()>, ShardGone> {
        self.ask_for(shard, ShardOp::RecordAuthorization(step), done)
            .await
    }

    pub async fn record_refund(
        &self,
        shard: ShardId,
        refund: RefundId,
        record: RefundRecord,
        payment: PaymentId,
        refunded: PaymentRefunds,
        credits: Vec<Credit>,
    ) -> Result<Answer<()>, ShardGone> {
        let op = ShardOp::RecordRefund {
            refund,
            record,
            payment,
            refunded,
            credits,
        };
        self.ask_for(shard, op, done).await
    }

    pub async fn apply_credits(
        &self,
        shard: ShardId,
        refund: RefundId,
        credits: Vec<Credit>,
    ) -> Result<Answer<()>, ShardGone> {
        let op = ShardOp::ApplyCredits { refund, credits };
        self.ask_for(shard, op, done).await
    }

    pub async fn record_payout(
        &self,
        shard: ShardId,
        merchant_id: u32,
        seq: u64,
        record: PayoutRecord,
        request: Option<PaymentId>,
        book: bool,
    ) -> Result<Answer<()>, ShardGone> {
        let op = ShardOp::RecordPayout {
            merchant_id,
            seq,
            record,
            request,
            book,
        };
        self.ask_for(shard, op, done).await
    }

    /// Seals the period up to `cut_off_ms` on every shard: once this
    /// returns, every payment and refund stamped at or before it is
    /// durable, and none will be stamped so from now on.
    pub async fn seal(&self, cut_off_ms: u64) -> Result<(), ShardGone> {
        self.ask_each(|| ShardOp::Seal { cut_off_ms }, done)
            .await
            .map(drop)
    }

    /// Every shard's part of a report page, asked of all shards at once.
    pub async fn report_pages(
        &self,
        after: Option<ReportAccount>,
        only: Option<ReportAccount>,
        limit: usize,
    ) -> Result<Vec<ShardPage>, ShardGone> {
        let op = || ShardOp::ReportPage { after, only, limit };
        self.ask_each(op, pick!(Page)).await
    }

    /// Starts an audit walk on every shard.
    pub async fn audit_begin(&self) -> Result<(), ShardGone> {
        self.ask_each(|| ShardOp::AuditBegin, done).await.map(drop)
    }

    /// One audit slice of `cards` cards on `shard`; true once it is done.
    pub async fn audit_slice(
        &self,
        shard: ShardId,
        cards: usize,
    ) -> Result<Answer<bool>, ShardGone> {
        self.ask_for(shard, ShardOp::AuditSlice { cards }, pick!(AuditSliced))
            .await
    }

    /// Ends the audit walk on every shard.
    pub async fn audit_end(&self) -> Result<Vec<ShardAudit>, ShardGone> {
        let audits = self.ask_each(|| ShardOp::AuditEnd, pick!(Audit)).await?;
        Ok(audits.into_iter().map(|audit| *audit).collect())
    }

    /// Every shard's group-commit figures, in shard order.
    pub async fn stats(&self) -> Result<Vec<ShardStats>, ShardGone> {
        self.ask_each(|| ShardOp::Stats, pick!(Stats)).await
    }
}

/// A shard's answer to come, of any kind: it arrives once the change
/// behind it is durable.
pub struct Asked(oneshot::Receiver<ShardAnswer>);

impl Asked {
    pub async fn get(self) -> Result<ShardAnswer, ShardGone> {
        self.0.await.map_err(|_| ShardGone)
    }
}

/// A shard's answer to come, of a known kind.
pub struct Answer<T> {
    asked: Asked,
    pick: fn(ShardAnswer) -> Option<T>,
}

impl<T> Answer<T> {
    pub async fn get(self) -> Result<T, ShardGone> {
        let answer = self.asked.get().await?;
        // Kept in production: a shard that answers an operation with
        // another kind of answer is a bug, and nothing after it is safe.
        Ok((self.pick)(answer).expect("a shard answers each operation in its own kind"))
    }
}
