//! One handler for every [`ShardOp`]: the operation is applied to the
//! state machine now, its changes join the pending batch, and its answer
//! leaves when that batch is durable (or at once, for what changes
//! nothing that a later answer could depend on: audit steps and counters).

use super::Shard;
use super::messages::{Activation, Ask, NewCard, ShardAnswer, ShardOp};
use super::writer::Delivery;
use crate::card::DeclineReason;
use crate::protocol::ActivationResult;
use crate::state_machine::{PrepareRequest, ShardMachine, Vote};
use crate::storage::Changes;
use actix::prelude::*;

/// When an applied operation's answer may leave.
enum Applied {
    /// With the pending batch, once durable; `ops` count toward its size.
    WhenDurable {
        ops: usize,
        answer: ShardAnswer,
    },
    Now(ShardAnswer),
}

fn durable(ops: usize, answer: ShardAnswer) -> Applied {
    Applied::WhenDurable { ops, answer }
}

impl Handler<Ask> for Shard {
    type Result = ();

    fn handle(&mut self, ask: Ask, _ctx: &mut Context<Self>) {
        // The mailbox slot goes back when this handler returns.
        let Ask { op, done, _slot } = ask;
        match self.apply(op) {
            Applied::Now(answer) => drop(done.send(answer)),
            Applied::WhenDurable { ops, answer } => {
                self.deliver_when_durable(ops, Delivery::Answer(done, answer))
            }
        }
    }
}

impl Shard {
    fn apply(&mut self, op: ShardOp) -> Applied {
        let now_ms = crate::clock::now_ms();
        match op {
            ShardOp::Activate(cards) => {
                let results = self.activate(&cards, now_ms);
                durable(results.len(), ShardAnswer::Activated(results))
            }
            ShardOp::Insert(cards) => {
                let inserted = self.insert(&cards);
                durable(inserted.len(), ShardAnswer::Inserted(inserted))
            }
            ShardOp::Prepare(request) => {
                durable(1, ShardAnswer::Voted(self.prepare(&request, now_ms)))
            }
            ShardOp::Abort {
                payment,
                keys,
                declined,
            } => {
                self.machine
                    .abort(payment, &keys, &mut self.pending.changes);
                // An abort of a payment declined for want of funds over all
                // its cards notes the decline on this shard's cards: a
                // repeat on cards that have not changed counts as a PIN
                // failure of the merchant (already locked out: the payment
                // is declined either way).
                if declined && self.machine.note_decline(&keys) {
                    let _ = self.count_failures(payment.merchant_id, 1, now_ms);
                }
                durable(1, ShardAnswer::Done)
            }
            ShardOp::CountFailures { principal, count } => {
                // Locked out by them or before: the activation's other
                // cards are refused at their shards all the same.
                let _ = self.count_failures(principal, count, now_ms);
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
                write_decided(&mut self.machine, decided, &mut self.pending.changes);
                durable(1, ShardAnswer::Done)
            }
            books @ (ShardOp::ReadStoreShares(_)
            | ShardOp::Seal { .. }
            | ShardOp::ReportPage { .. }
            | ShardOp::AuditBegin
            | ShardOp::AuditSlice { .. }
            | ShardOp::AuditEnd
            | ShardOp::Stats) => self.read_books(books),
        }
    }

    /// The books, the seal and the audit: nothing joins the batch.
    fn read_books(&mut self, op: ShardOp) -> Applied {
        match op {
            // Books may include changes not yet synced: the answer waits
            // for the batch, like a page and an audit's end below.
            ShardOp::ReadStoreShares(stores) => {
                durable(0, ShardAnswer::Shares(self.machine.store_shares(&stores)))
            }
            // Answered with the current batch: records stamped before the
            // seal are in it or in an earlier one.
            ShardOp::Seal { cut_off_ms } => {
                self.machine.seal(cut_off_ms);
                durable(0, ShardAnswer::Done)
            }
            ShardOp::ReportPage { after, only, limit } => durable(
                0,
                ShardAnswer::Page(self.machine.report_page(after, only, limit)),
            ),
            ShardOp::AuditBegin => {
                self.machine.begin_audit();
                Applied::Now(ShardAnswer::Done)
            }
            // One slice per turn of the actor: payments queued meanwhile
            // run between slices.
            ShardOp::AuditSlice { cards } => {
                Applied::Now(ShardAnswer::AuditSliced(self.machine.audit_slice(cards)))
            }
            // Holds are judged against the claims at this moment.
            ShardOp::AuditEnd => {
                let claims = &self.services.claims;
                let audit = self.machine.end_audit(|p| claims.is_in_flight(p));
                durable(0, ShardAnswer::Audit(Box::new(audit)))
            }
            // Counters, not card state: answered at once.
            ShardOp::Stats => {
                let stats = self.stats.lock().map(|s| {
                    s.snapshot(
                        self.machine.id(),
                        self.machine.card_count() as u64,
                        self.machine.card_bytes(),
                    )
                });
                Applied::Now(ShardAnswer::Stats(stats.unwrap_or_default()))
            }
            _ => unreachable!("apply routes only the books and the audit here"),
        }
    }

    /// Each sale under its HQ's lockout guard: a PIN that names no card
    /// counts as a failure.
    fn activate(&mut self, cards: &[Activation], now_ms: u64) -> Vec<ActivationResult> {
        let validity_days = self.services.card_validity_days;
        let guard = self.services.guard.clone();
        let changes = &mut self.pending.changes;
        cards
            .iter()
            .map(|a| {
                let Ok(admission) = guard.admit(a.principal, now_ms) else {
                    return ActivationResult::LockedOut;
                };
                if let Some(amount_minor) = a.face_value_minor
                    && let Err(reason) = self.machine.check_face_value(&a.key, amount_minor)
                {
                    guard.settle(admission, false, now_ms, changes);
                    return ActivationResult::Declined { reason };
                }
                let result = self.machine.activate(
                    a.key,
                    a.store_id,
                    a.pos_ref,
                    now_ms,
                    validity_days,
                    changes,
                );
                let failed = result
                    == ActivationResult::Declined {
                        reason: DeclineReason::UnknownPin,
                    };
                guard.settle(admission, failed, now_ms, changes);
                result
            })
            .collect()
    }

    fn insert(&mut self, cards: &[NewCard]) -> Vec<bool> {
        let changes = &mut self.pending.changes;
        cards
            .iter()
            .map(|c| self.machine.insert_card(c.key, c.face_value_minor, changes))
            .collect()
    }

    /// The merchant's PIN failures count here, card by card as each shard
    /// checks its own; a merchant locked out meanwhile gets its payment
    /// aborted (it was told `locked_out` before any other payment started).
    fn prepare(&mut self, request: &PrepareRequest, now_ms: u64) -> Vote {
        let guard = self.services.guard.clone();
        let Ok(admission) = guard.admit(request.payment.merchant_id, now_ms) else {
            return Vote::No {
                position: request.cards[0].0,
                reason: DeclineReason::Aborted,
            };
        };
        let vote = self
            .machine
            .prepare(request, now_ms, &mut self.pending.changes);
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
                .is_some_and(|(_, card)| self.machine.note_decline([&card.key])),
            Vote::Yes { .. } => false,
        };
        guard.settle(admission, failed, now_ms, &mut self.pending.changes);
        vote
    }
}

/// Writes what a coordinator or the operator already decided (a commit,
/// a decision, credits, a payout, a remittance): nothing left to judge,
/// one operation in the batch. Pure: the simulation writes through it too.
pub fn write_decided(machine: &mut ShardMachine, op: ShardOp, changes: &mut Changes) {
    match op {
        ShardOp::Commit { payment, takes } => machine.commit(payment, &takes, changes),
        ShardOp::RecordDecision {
            payment,
            record,
            order_id,
        } => {
            let order_id = order_id.as_ref();
            machine.record_decision(payment, &record, order_id, changes);
        }
        ShardOp::KeepAuthorized {
            authorization,
            keeps,
            record,
        } => machine.keep_authorized(authorization, &keeps, &record, changes),
        ShardOp::RecordAuthorization(step) => machine.record_authorization(&step, changes),
        ShardOp::RecordRefund {
            refund,
            record,
            payment,
            refunded,
            credits,
        } => machine.record_refund(refund, &record, payment, &refunded, &credits, changes),
        ShardOp::ApplyCredits { refund, credits } => {
            machine.apply_credits(refund, &credits, changes)
        }
        ShardOp::RecordPayout {
            merchant_id,
            seq,
            record,
            request,
            book,
        } => machine.record_payout(merchant_id, seq, &record, request, book, changes),
        ShardOp::RecordRemittance { remittance, record } => {
            machine.record_remittance(remittance, &record, changes)
        }
        other => unreachable!("not a decided write: {other:?}"),
    }
}
