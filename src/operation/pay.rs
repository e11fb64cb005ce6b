//! A payment across shards: its prepare round and decision
//! ([`Prepared`]), then the decision recorded on the payment's home shard
//! (a decline for an invalid card is not recorded: it is an abort, which
//! recovery presumes anyway), then every shard commits or aborts
//! ([`Decided`]). The reply is the decision.
//!
//! A crash anywhere is repaired at start by [`crate::twopc::recovery`].

use super::{Decided, Prepared, Rules, ShardOp};
use crate::card::DeclineReason;
use crate::ids::ShardId;
use crate::order::OrderId;
use crate::protocol::PayResponse;
use crate::state_machine::is_recorded;
use crate::twopc::{PhaseTwo, TwoPhase};

/// One payment across shards, from its prepares to its reply.
pub type Pay = Prepared<PayResponse>;

/// The payment of `two_phase`'s cards, named by `order_id` if it has one.
pub fn pay(two_phase: TwoPhase, order_id: Option<OrderId>, shard_count: usize) -> Pay {
    debug_assert!(
        two_phase.participants().len() > 1,
        "single-shard payments commit locally"
    );
    let rules = Rules {
        shard_count,
        order_id,
        ttl_ms: 0,
    };
    Prepared::new(two_phase, rules, decided)
}

/// A payment's decision: recorded (unless not to be), then phase two.
fn decided(
    rules: &mut Rules,
    two_phase: &TwoPhase,
    decision: PayResponse,
    now_ms: u64,
) -> Decided<PayResponse> {
    let payment = two_phase.payment;
    let record = is_recorded(&decision).then(|| {
        let op = ShardOp::RecordDecision {
            payment,
            record: two_phase.record(&decision, now_ms),
            order_id: rules.order_id.take(),
        };
        (payment.home_shard(rules.shard_count), op)
    });
    Decided::new(record, phase_two(two_phase, &decision), decision)
}

/// Phase two: what each participant is told, in participant order.
pub(super) fn phase_two(two_phase: &TwoPhase, decision: &PayResponse) -> Vec<(ShardId, ShardOp)> {
    let payment = two_phase.payment;
    // Declined for want of funds over all its cards (no one card's fault):
    // every shard notes the decline on its cards.
    let declined = decision.reason() == Some(DeclineReason::InsufficientFunds);
    (0..two_phase.participants().len())
        .map(|index| {
            let shard = two_phase.participants()[index].shard;
            let op = match two_phase.phase_two(index, decision) {
                PhaseTwo::Commit(takes) => ShardOp::Commit { payment, takes },
                PhaseTwo::Abort(keys) => ShardOp::Abort {
                    payment,
                    keys,
                    declined,
                },
            };
            (shard, op)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{CardRef, PaymentId, Position};
    use crate::operation::{Operation, ShardAnswer, Step};
    use crate::pin::PinKey;
    use crate::state_machine::{HeldCard, Vote};
    use crate::twopc::crashpoint::CrashPoint;

    fn cards() -> Vec<CardRef> {
        // Keys 0 and 1 fall on shards 0 and 1 of two.
        (0..2u8)
            .map(|n| CardRef {
                key: PinKey([n; 16]),
                last4: u16::from(n),
            })
            .collect()
    }

    fn payment() -> Pay {
        let payment = PaymentId {
            merchant_id: 1,
            request_id: 7,
        };
        pay(TwoPhase::new(payment, 300, cards(), 2), None, 2)
    }

    fn yes(position: u8, held_minor: u64) -> ShardAnswer {
        ShardAnswer::Voted(Vote::Yes {
            holds: vec![HeldCard {
                position: Position::from_number(position).expect("1-based"),
                held_minor,
                balance_minor: held_minor,
            }],
        })
    }

    fn asks(step: Step<PayResponse>) -> Vec<(ShardId, ShardOp)> {
        match step {
            Step::Ask { asks, .. } => asks,
            other => panic!("expected asks, got {other:?}"),
        }
    }

    fn reached(step: Step<PayResponse>) -> CrashPoint {
        match step {
            Step::Reached(point) => point,
            other => panic!("expected a crash point, got {other:?}"),
        }
    }

    /// The whole approved path, answers out of order: prepare, decide,
    /// record on the home shard, commit everywhere, in that order.
    #[test]
    fn an_approved_payment_records_its_decision_before_any_commit() {
        let mut pay = payment();
        let prepares = asks(pay.start(0));
        assert_eq!(prepares.len(), 2);
        let at = |shards: &[(ShardId, ShardOp)], i: u8| {
            shards
                .iter()
                .position(|(_, op)| matches!(op, ShardOp::Prepare(r) if r.cards[0].0.number() == i))
                .expect("a prepare per card")
        };
        let (first, second) = (at(&prepares, 1), at(&prepares, 2));
        assert!(matches!(pay.on_answer(second, yes(2, 200), 0), Step::Wait));
        assert_eq!(
            reached(pay.on_answer(first, yes(1, 100), 0)),
            CrashPoint::AfterPrepare
        );
        let record = asks(pay.resume(5));
        assert_eq!(record.len(), 1);
        assert_eq!(record[0].0, pay.payment().home_shard(2));
        let ShardOp::RecordDecision { record: r, .. } = &record[0].1 else {
            panic!("the decision is recorded first");
        };
        assert!(r.is_approved());
        assert_eq!(
            reached(pay.on_answer(0, ShardAnswer::Done, 5)),
            CrashPoint::AfterDecision
        );
        let commits = asks(pay.resume(5));
        assert!(
            commits
                .iter()
                .all(|(_, op)| matches!(op, ShardOp::Commit { .. }))
        );
        assert_eq!(
            reached(pay.on_answer(1, ShardAnswer::Done, 5)),
            CrashPoint::MidCommit
        );
        assert!(matches!(pay.resume(5), Step::Wait));
        let Step::Done(paid) = pay.on_answer(0, ShardAnswer::Done, 5) else {
            panic!("done after the last commit");
        };
        assert!(paid.is_approved());
        let taken: Vec<u64> = paid.parts().iter().map(|p| p.taken_minor).collect();
        assert_eq!(taken, vec![100, 200]);
    }

    /// A timeout aborts: the abort is recorded, then every shard is told.
    #[test]
    fn a_prepare_timeout_aborts_everywhere() {
        let mut pay = payment();
        let _ = asks(pay.start(0));
        assert_eq!(reached(pay.on_timeout(0)), CrashPoint::AfterPrepare);
        let record = asks(pay.resume(0));
        assert!(matches!(record[0].1, ShardOp::RecordDecision { .. }));
        let _ = reached(pay.on_answer(0, ShardAnswer::Done, 0));
        let aborts = asks(pay.resume(0));
        assert!(aborts.iter().all(|(_, op)| matches!(
            op,
            ShardOp::Abort {
                declined: false,
                ..
            }
        )));
        let _ = reached(pay.on_answer(0, ShardAnswer::Done, 0));
        assert!(matches!(pay.resume(0), Step::Wait));
        let Step::Done(paid) = pay.on_answer(1, ShardAnswer::Done, 0) else {
            panic!("done after the last abort");
        };
        assert_eq!(paid.reason(), Some(DeclineReason::Aborted));
    }
}
