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
//! Every operation has its own message and its own reply type; an answer
//! arrives once the change behind it is durable.

use super::messages::{
    Abort, Activate, Activation, ApplyCredits, AuditBegin, AuditEnd, AuditSlice, ClientOp,
    ClientWork, Commit, CountFailures, Insert, KeepAuthorized, MailboxSlot, NewCard, Prepare,
    ReadStoreShares, RecordAuthorization, RecordDecision, RecordPayout, RecordRefund,
    RecordRemittance, ReportPage, Seal, Stats,
};
use super::{Services, Shard};
use crate::ids::{PaymentId, RefundId, RemittanceId, ShardId, StoreId};
use crate::ledger::{ShardAudit, ShardPage, StoreShares};
use crate::pin::PinKey;
use crate::protocol::{ActivationResult, ReportAccount, ShardStats};
use crate::reply::{ReplyTx, Tag};
use crate::state_machine::{AuthorizationStep, Credit, PrepareRequest, ShardMachine, Take, Vote};
use crate::storage::records::{
    HoldRecord, PaymentRecord, PaymentRefunds, PayoutRecord, RefundRecord, RemittanceRecord,
};
use actix::prelude::*;
use actix_rt::ArbiterHandle;
use std::sync::Arc;
use tokio::sync::{Semaphore, oneshot};

/// The shard is gone: only during shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardGone;

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

    /// Waits for a slot in `shard`'s mailbox, then queues the message.
    async fn queue<M>(
        &self,
        shard: ShardId,
        make: impl FnOnce(MailboxSlot) -> M,
    ) -> Result<(), ShardGone>
    where
        M: Message<Result = ()> + Send + 'static,
        Shard: Handler<M>,
    {
        let slot = self.mailboxes[shard.index()]
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ShardGone)?;
        // The slot, not actix's own capacity (which `do_send` ignores),
        // bounds the mailbox; a stopped actor drops the message, and its
        // reply sender with it.
        self.actors[shard.index()].do_send(make(slot));
        Ok(())
    }

    /// Queues a message carrying a reply sender; the answer is to be
    /// awaited separately, so a caller can ask several shards at once.
    async fn ask<M, T>(
        &self,
        shard: ShardId,
        make: impl FnOnce(oneshot::Sender<T>, MailboxSlot) -> M,
    ) -> Result<Answer<T>, ShardGone>
    where
        M: Message<Result = ()> + Send + 'static,
        Shard: Handler<M>,
    {
        let (done, answer) = oneshot::channel();
        self.queue(shard, |slot| make(done, slot)).await?;
        Ok(Answer(answer))
    }

    /// Asks every shard the same question; answers in shard order.
    async fn ask_each<M, T>(
        &self,
        make: impl Fn(oneshot::Sender<T>, MailboxSlot) -> M,
    ) -> Result<Vec<T>, ShardGone>
    where
        M: Message<Result = ()> + Send + 'static,
        Shard: Handler<M>,
    {
        let mut answers = Vec::with_capacity(self.count());
        for shard in self.all() {
            answers.push(self.ask(shard, &make).await?);
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
        self.ask(shard, |done, _slot| Activate { cards, done, _slot })
            .await
    }

    pub async fn insert(
        &self,
        shard: ShardId,
        cards: Vec<NewCard>,
    ) -> Result<Answer<Vec<bool>>, ShardGone> {
        self.ask(shard, |done, _slot| Insert { cards, done, _slot })
            .await
    }

    pub async fn prepare(
        &self,
        shard: ShardId,
        request: PrepareRequest,
    ) -> Result<Answer<Vote>, ShardGone> {
        self.ask(shard, |done, _slot| Prepare {
            request,
            done,
            _slot,
        })
        .await
    }

    pub async fn commit(
        &self,
        shard: ShardId,
        payment: PaymentId,
        takes: Vec<Take>,
    ) -> Result<Answer<()>, ShardGone> {
        self.ask(shard, |done, _slot| Commit {
            payment,
            takes,
            done,
            _slot,
        })
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
        self.ask(shard, |done, _slot| Abort {
            payment,
            keys,
            declined,
            done,
            _slot,
        })
        .await
    }

    /// Counts `count` PIN failures of `principal` found outside any shard,
    /// durably, on the shard chosen by the principal.
    pub async fn count_failures(&self, principal: u32, count: u32) -> Result<(), ShardGone> {
        let shard = ShardId::from_index(principal as usize % self.count());
        let answer = self
            .ask(shard, |done, _slot| CountFailures {
                principal,
                count,
                done,
                _slot,
            })
            .await?;
        answer.get().await
    }

    pub async fn record_decision(
        &self,
        shard: ShardId,
        payment: PaymentId,
        record: PaymentRecord,
    ) -> Result<Answer<()>, ShardGone> {
        self.ask(shard, |done, _slot| RecordDecision {
            payment,
            record,
            done,
            _slot,
        })
        .await
    }

    pub async fn keep_authorized(
        &self,
        shard: ShardId,
        authorization: PaymentId,
        keeps: Vec<Take>,
        record: HoldRecord,
    ) -> Result<Answer<()>, ShardGone> {
        self.ask(shard, |done, _slot| KeepAuthorized {
            authorization,
            keeps,
            record,
            done,
            _slot,
        })
        .await
    }

    pub async fn record_authorization(
        &self,
        shard: ShardId,
        step: AuthorizationStep,
    ) -> Result<Answer<()>, ShardGone> {
        self.ask(shard, |done, _slot| RecordAuthorization {
            step,
            done,
            _slot,
        })
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
        self.ask(shard, |done, _slot| RecordRefund {
            refund,
            record,
            payment,
            refunded,
            credits,
            done,
            _slot,
        })
        .await
    }

    pub async fn apply_credits(
        &self,
        shard: ShardId,
        refund: RefundId,
        credits: Vec<Credit>,
    ) -> Result<Answer<()>, ShardGone> {
        self.ask(shard, |done, _slot| ApplyCredits {
            refund,
            credits,
            done,
            _slot,
        })
        .await
    }

    /// Every shard's shares of `stores`' books, summed: each store's
    /// books, in the order asked.
    pub async fn store_shares(&self, stores: &[StoreId]) -> Result<Vec<StoreShares>, ShardGone> {
        let per_shard = self
            .ask_each(|done, _slot| ReadStoreShares {
                stores: stores.to_vec(),
                done,
                _slot,
            })
            .await?;
        let mut sums = vec![StoreShares::default(); stores.len()];
        for shares in per_shard {
            for (sum, share) in sums.iter_mut().zip(&shares) {
                sum.add(share);
            }
        }
        Ok(sums)
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
        self.ask(shard, |done, _slot| RecordPayout {
            merchant_id,
            seq,
            record,
            request,
            book,
            done,
            _slot,
        })
        .await
    }

    pub async fn record_remittance(
        &self,
        shard: ShardId,
        remittance: RemittanceId,
        record: RemittanceRecord,
    ) -> Result<Answer<()>, ShardGone> {
        self.ask(shard, |done, _slot| RecordRemittance {
            remittance,
            record,
            done,
            _slot,
        })
        .await
    }

    /// Seals the period up to `cut_off_ms` on every shard: once this
    /// returns, every payment and refund stamped at or before it is
    /// durable, and none will be stamped so from now on.
    pub async fn seal(&self, cut_off_ms: u64) -> Result<(), ShardGone> {
        self.ask_each(|done, _slot| Seal {
            cut_off_ms,
            done,
            _slot,
        })
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
        self.ask_each(|done, _slot| ReportPage {
            after,
            only,
            limit,
            done,
            _slot,
        })
        .await
    }

    /// Starts an audit walk on every shard.
    pub async fn audit_begin(&self) -> Result<(), ShardGone> {
        self.ask_each(|done, _slot| AuditBegin { done, _slot })
            .await
            .map(drop)
    }

    /// One audit slice of `cards` cards on `shard`; true once it is done.
    pub async fn audit_slice(
        &self,
        shard: ShardId,
        cards: usize,
    ) -> Result<Answer<bool>, ShardGone> {
        self.ask(shard, |done, _slot| AuditSlice { cards, done, _slot })
            .await
    }

    /// Ends the audit walk on every shard.
    pub async fn audit_end(&self) -> Result<Vec<ShardAudit>, ShardGone> {
        let audits = self
            .ask_each(|done, _slot| AuditEnd { done, _slot })
            .await?;
        Ok(audits.into_iter().map(|audit| *audit).collect())
    }

    /// Every shard's group-commit figures, in shard order.
    pub async fn stats(&self) -> Result<Vec<ShardStats>, ShardGone> {
        self.ask_each(|done, _slot| Stats { done, _slot }).await
    }
}

/// A shard's answer to come: it arrives once the change behind it is
/// durable.
pub struct Answer<T>(oneshot::Receiver<T>);

impl<T> Answer<T> {
    pub async fn get(self) -> Result<T, ShardGone> {
        self.0.await.map_err(|_| ShardGone)
    }
}
