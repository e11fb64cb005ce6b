//! The first half of a payment or an authorization across shards:
//!
//! 1. **Prepare** (a timed round): every shard holding some of the cards
//!    checks them, places durable holds and votes.
//! 2. **Decide** ([`TwoPhase::decide`]): commit if every shard voted yes
//!    and the holds cover the amount; abort otherwise, or when the votes do
//!    not all arrive in time. Crash point `after-prepare`.
//!
//! Then the decision runs as a [`Decided`], which the operation builds
//! from it: a payment ([`super::pay`]) records it and commits or aborts; an
//! authorization ([`super::authorize`]) records it open and trims the
//! holds, or records the decline and aborts.

use super::{Decided, Operation, Round, ShardAnswer, ShardOp, Step};
use crate::ids::{PaymentId, ShardId};
use crate::protocol::PayResponse;
use crate::twopc::TwoPhase;
use crate::twopc::crashpoint::CrashPoint;

/// What follows a decision: the decided half of the operation, built from
/// the participants and the decision at `now_ms`.
pub type Then<R> = fn(&mut Rules, &TwoPhase, PayResponse, u64) -> Decided<R>;

/// What the decided half needs besides the decision.
#[derive(Debug, Clone)]
pub struct Rules {
    pub shard_count: usize,
    pub order_id: Option<crate::order::OrderId>,
    /// An authorization's time to live.
    pub ttl_ms: u64,
}

/// A payment or authorization across shards, from its prepares to its
/// reply.
pub struct Prepared<R> {
    two_phase: TwoPhase,
    rules: Rules,
    round: Round,
    then: Then<R>,
    decided: Option<Decided<R>>,
}

impl<R> std::fmt::Debug for Prepared<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("payment", &self.two_phase.payment)
            .field("round", &self.round)
            .field("decided", &self.decided.is_some())
            .finish()
    }
}

impl<R> Prepared<R> {
    pub(super) fn new(two_phase: TwoPhase, rules: Rules, then: Then<R>) -> Self {
        Prepared {
            two_phase,
            rules,
            round: Round::default(),
            then,
            decided: None,
        }
    }

    pub fn payment(&self) -> PaymentId {
        self.two_phase.payment
    }

    fn decide(&mut self, decision: PayResponse, now_ms: u64) -> Step<R> {
        let decided = (self.then)(&mut self.rules, &self.two_phase, decision, now_ms);
        self.decided = Some(decided);
        Step::Reached(CrashPoint::AfterPrepare)
    }
}

/// Phase one: a prepare for every participant, in participant order.
fn prepares(two_phase: &TwoPhase) -> Vec<(ShardId, ShardOp)> {
    (0..two_phase.participants().len())
        .map(|index| {
            let shard = two_phase.participants()[index].shard;
            (shard, ShardOp::Prepare(two_phase.prepare(index)))
        })
        .collect()
}

impl<R> Operation for Prepared<R> {
    type Reply = R;

    fn start(&mut self, _now_ms: u64) -> Step<R> {
        let asks = prepares(&self.two_phase);
        self.round = Round::of(asks.len());
        Step::Ask { asks, timed: true }
    }

    fn on_answer(&mut self, index: usize, answer: ShardAnswer, now_ms: u64) -> Step<R> {
        if let Some(decided) = &mut self.decided {
            return decided.on_answer(index, answer, now_ms);
        }
        let ShardAnswer::Voted(vote) = answer else {
            panic!("a shard answers a prepare with a vote: {answer:?}");
        };
        self.round.answer();
        if !self.two_phase.vote(index, vote) {
            return Step::Wait;
        }
        let decision = self.two_phase.decide(false);
        self.decide(decision, now_ms)
    }

    fn on_timeout(&mut self, now_ms: u64) -> Step<R> {
        assert!(self.decided.is_none(), "only the prepare round is timed");
        tracing::warn!(payment = ?self.payment(), "prepare timed out; aborting");
        let aborted = self.two_phase.decide(true);
        self.decide(aborted, now_ms)
    }

    fn resume(&mut self, now_ms: u64) -> Step<R> {
        let decided = self.decided.as_mut().expect("resumed after the decision");
        if decided.is_new() {
            decided.start(now_ms)
        } else {
            decided.resume(now_ms)
        }
    }
}
