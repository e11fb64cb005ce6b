//! [`ShardMachine::apply`]: one pure function from a [`ShardOp`] to its
//! [`ShardAnswer`], for the shard actor and the simulation alike. What an
//! operation needs from outside the machine (the clock, the engine-wide
//! PIN-failure guard, which payments are in flight) comes in an [`Env`];
//! what it changes goes into the caller's write-set.

use super::ShardMachine;
use super::ops::{Activation, NewCard, ShardAnswer, ShardOp};
use super::{PrepareRequest, Vote};
use crate::auth::{Guard, LockedOut};
use crate::card::DeclineReason;
use crate::ids::PaymentId;
use crate::protocol::{ActivationResult, ShardStats};
use crate::storage::Changes;

/// What an operation reads from outside its shard.
pub struct Env<'a> {
    pub now_ms: u64,
    /// PIN failures per principal, engine-wide (counts are shared by every
    /// shard; a failure's record joins this shard's write-set).
    pub guard: &'a Guard,
    /// The validity given to cards sold now.
    pub card_validity_days: u16,
    /// Whether a payment is being processed: an audit's holds are judged
    /// against it.
    pub in_flight: &'a dyn Fn(PaymentId) -> bool,
}

/// An applied operation's answer, and when it may leave.
#[derive(Debug)]
pub enum Applied {
    /// Once the write-set it joined is durable; `ops` count toward the
    /// batch's size. Books may include changes not yet synced, so reads of
    /// them wait too.
    WhenDurable { ops: usize, answer: ShardAnswer },
    /// At once: it changes nothing a later answer could depend on (an
    /// audit's steps, counters).
    Now(ShardAnswer),
}

impl Applied {
    pub fn answer(self) -> ShardAnswer {
        match self {
            Applied::WhenDurable { answer, .. } | Applied::Now(answer) => answer,
        }
    }
}

fn durable(ops: usize, answer: ShardAnswer) -> Applied {
    Applied::WhenDurable { ops, answer }
}

impl ShardMachine {
    /// Applies `op`: the state changes in memory, its records go into
    /// `changes`, and its answer is returned as a value. No I/O: whatever
    /// an operation needs from storage was fetched before.
    pub fn apply(&mut self, op: ShardOp, env: &Env, changes: &mut Changes) -> Applied {
        match op {
            ShardOp::Activate(cards) => {
                let results = self.activate_all(&cards, env, changes);
                durable(results.len(), ShardAnswer::Activated(results))
            }
            ShardOp::Insert(cards) => {
                let inserted = self.insert_all(&cards, changes);
                durable(inserted.len(), ShardAnswer::Inserted(inserted))
            }
            ShardOp::Prepare(request) => durable(
                1,
                ShardAnswer::Voted(self.prepare_guarded(&request, env, changes)),
            ),
            ShardOp::Abort {
                payment,
                keys,
                declined,
            } => {
                self.abort(payment, &keys, changes);
                // An abort of a payment declined for want of funds over all
                // its cards notes the decline on this shard's cards: a
                // repeat on cards that have not changed counts as a PIN
                // failure of the merchant (already locked out: the payment
                // is declined either way).
                if declined && self.note_decline(&keys) {
                    let _ = count_failures(env.guard, payment.merchant_id, 1, env.now_ms, changes);
                }
                durable(1, ShardAnswer::Done)
            }
            ShardOp::CountFailures { principal, count } => {
                // Locked out by them or before: the activation's other
                // cards are refused at their shards all the same.
                let _ = count_failures(env.guard, principal, count, env.now_ms, changes);
                durable(0, ShardAnswer::Done)
            }
            decided @ (ShardOp::Commit { .. }
            | ShardOp::RecordDecision { .. }
            | ShardOp::KeepAuthorized { .. }
            | ShardOp::RecordAuthorization(_)
            | ShardOp::RecordRefund { .. }
            | ShardOp::ApplyCredits { .. }
            | ShardOp::RecordPayout { .. }
            | ShardOp::RecordRemittance { .. }) => {
                self.write_decided(decided, changes);
                durable(1, ShardAnswer::Done)
            }
            books => self.read_books(books, env),
        }
    }

    /// The books, the seal and the audit: nothing joins the batch.
    fn read_books(&mut self, op: ShardOp, env: &Env) -> Applied {
        match op {
            ShardOp::ReadStoreShares(stores) => {
                durable(0, ShardAnswer::Shares(self.store_shares(&stores)))
            }
            // Answered with the current batch: records stamped before the
            // seal are in it or in an earlier one.
            ShardOp::Seal { cut_off_ms } => {
                self.seal(cut_off_ms);
                durable(0, ShardAnswer::Done)
            }
            ShardOp::ReportPage { after, only, limit } => {
                durable(0, ShardAnswer::Page(self.report_page(after, only, limit)))
            }
            ShardOp::AuditBegin => {
                self.begin_audit();
                Applied::Now(ShardAnswer::Done)
            }
            // One slice per turn of the driver: payments queued meanwhile
            // run between slices.
            ShardOp::AuditSlice { cards } => {
                Applied::Now(ShardAnswer::AuditSliced(self.audit_slice(cards)))
            }
            // Holds are judged against the claims at this moment.
            ShardOp::AuditEnd => {
                let audit = self.end_audit(env.in_flight);
                durable(0, ShardAnswer::Audit(Box::new(audit)))
            }
            // The machine's own figures; the actor adds its writer's.
            ShardOp::Stats => Applied::Now(ShardAnswer::Stats(ShardStats {
                shard: self.id().0,
                cards: self.card_count() as u64,
                card_map_bytes: self.card_bytes(),
                ..ShardStats::default()
            })),
            other => unreachable!("apply routes every change elsewhere: {other:?}"),
        }
    }

    /// Each sale under its HQ's lockout guard: a PIN that names no card
    /// counts as a failure.
    fn activate_all(
        &mut self,
        cards: &[Activation],
        env: &Env,
        changes: &mut Changes,
    ) -> Vec<ActivationResult> {
        let guard = env.guard;
        cards
            .iter()
            .map(|a| {
                let Ok(admission) = guard.admit(a.principal, env.now_ms) else {
                    return ActivationResult::LockedOut;
                };
                if let Some(amount_minor) = a.face_value_minor
                    && let Err(reason) = self.check_face_value(&a.key, amount_minor)
                {
                    guard.settle(admission, false, env.now_ms, changes);
                    return ActivationResult::Declined { reason };
                }
                let result = self.activate(
                    a.key,
                    a.store_id,
                    a.pos_ref,
                    env.now_ms,
                    env.card_validity_days,
                    changes,
                );
                let failed = result
                    == ActivationResult::Declined {
                        reason: DeclineReason::UnknownPin,
                    };
                guard.settle(admission, failed, env.now_ms, changes);
                result
            })
            .collect()
    }

    fn insert_all(&mut self, cards: &[NewCard], changes: &mut Changes) -> Vec<bool> {
        cards
            .iter()
            .map(|c| self.insert_card(c.key, c.face_value_minor, changes))
            .collect()
    }

    /// The merchant's PIN failures count here, card by card as each shard
    /// checks its own; a merchant locked out meanwhile gets its payment
    /// aborted (it was told `locked_out` before any other payment started).
    fn prepare_guarded(
        &mut self,
        request: &PrepareRequest,
        env: &Env,
        changes: &mut Changes,
    ) -> Vote {
        let Ok(admission) = env.guard.admit(request.payment.merchant_id, env.now_ms) else {
            return Vote::No {
                position: request.cards[0].0,
                reason: DeclineReason::Aborted,
            };
        };
        let vote = self.prepare(request, env.now_ms, changes);
        let failed = match vote {
            Vote::No {
                reason: DeclineReason::InvalidCard,
                ..
            } => true,
            // A card that cannot pay: a repeat on it counts.
            Vote::No { position, .. } => request
                .cards
                .iter()
                .find(|(at, _)| *at == position)
                .is_some_and(|(_, card)| self.note_decline([&card.key])),
            Vote::Yes { .. } => false,
        };
        env.guard.settle(admission, failed, env.now_ms, changes);
        vote
    }

    /// Writes what a coordinator or the operator already decided (a
    /// commit, a decision, credits, a payout, a remittance): nothing left
    /// to judge, one operation in the batch.
    fn write_decided(&mut self, op: ShardOp, changes: &mut Changes) {
        match op {
            ShardOp::Commit { payment, takes } => self.commit(payment, &takes, changes),
            ShardOp::RecordDecision {
                payment,
                record,
                order_id,
            } => self.record_decision(payment, &record, order_id.as_ref(), changes),
            ShardOp::KeepAuthorized {
                authorization,
                keeps,
                record,
            } => self.keep_authorized(authorization, &keeps, &record, changes),
            ShardOp::RecordAuthorization(step) => self.record_authorization(&step, changes),
            ShardOp::RecordRefund {
                refund,
                record,
                payment,
                refunded,
                credits,
            } => self.record_refund(refund, &record, payment, &refunded, &credits, changes),
            ShardOp::ApplyCredits { refund, credits } => {
                self.apply_credits(refund, &credits, changes)
            }
            ShardOp::RecordPayout {
                merchant_id,
                seq,
                record,
                request,
                book,
            } => self.record_payout(merchant_id, seq, &record, request, book, changes),
            ShardOp::RecordRemittance { remittance, record } => {
                self.record_remittance(remittance, &record, changes)
            }
            other => unreachable!("not a decided write: {other:?}"),
        }
    }
}

/// Counts `count` failures of `principal` found without a shard's card
/// (bad check digits) or after the fact, into `changes`: durable before
/// the answer that tells of them. `Err` once they lock it out.
pub fn count_failures(
    guard: &Guard,
    principal: u32,
    count: u32,
    now_ms: u64,
    changes: &mut Changes,
) -> Result<(), LockedOut> {
    for _ in 0..count {
        guard.record_failure(principal, now_ms, changes)?;
    }
    Ok(())
}
