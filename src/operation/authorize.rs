//! An authorization across shards (see [`super::authorization`] for the
//! whole life of one): its prepare round and decision, as a payment's
//! ([`Prepared`]); then ([`Decided`]):
//!
//! * approved: its record, open, on its home shard, with what each card
//!   keeps held and its deadline; then each shard trims its holds to what
//!   its cards keep. The reply is the authorization, with its deadline.
//! * declined: the decline recorded (unless it is one that is not), then
//!   every hold aborted.

use super::authorization::{authorize_response_of, declined, opened};
use super::pay::phase_two;
use super::{Decided, Prepared, Rules, ShardOp};
use crate::card::DeclineReason;
use crate::ids::ShardId;
use crate::order::OrderId;
use crate::protocol::{AuthorizeResponse, PayResponse};
use crate::state_machine::{AuthorizationStep, IndexChange, is_recorded};
use crate::storage::records::{HoldRecord, PaymentRecord};
use crate::twopc::{PhaseTwo, TwoPhase};

/// One authorization, from its prepares to its reply.
pub type Authorize = Prepared<AuthorizeResponse>;

/// The authorization of `two_phase`'s amount on its cards, open for
/// `ttl_ms` once approved.
pub fn authorize(
    two_phase: TwoPhase,
    order_id: Option<OrderId>,
    shard_count: usize,
    ttl_ms: u64,
) -> Authorize {
    let rules = Rules {
        shard_count,
        order_id,
        ttl_ms,
    };
    Prepared::new(two_phase, rules, decided)
}

fn decided(
    rules: &mut Rules,
    two_phase: &TwoPhase,
    decision: PayResponse,
    now_ms: u64,
) -> Decided<AuthorizeResponse> {
    if decision.is_approved() {
        let record = opened(two_phase, &decision, now_ms, rules.ttl_ms);
        let expires_at_ms = record.authorization.as_ref().map_or(0, |t| t.expires_at_ms);
        let reply = authorize_response_of(&record, false);
        let keeps = keeps(two_phase, &decision, &record);
        let step = step(two_phase, record, IndexChange::Open(expires_at_ms), rules);
        return Decided::new(Some(home(two_phase, rules, step)), keeps, reply);
    }
    let record = is_recorded(&decision).then(|| {
        let record = declined(two_phase, &decision, now_ms);
        let step = step(two_phase, record, IndexChange::None, rules);
        home(two_phase, rules, step)
    });
    let reply = AuthorizeResponse::declined(
        decision.reason().unwrap_or(DeclineReason::Aborted),
        decision.position(),
        two_phase.amount_minor,
    );
    Decided::new(record, phase_two(two_phase, &decision), reply)
}

fn step(
    two_phase: &TwoPhase,
    record: PaymentRecord,
    index: IndexChange,
    rules: &mut Rules,
) -> AuthorizationStep {
    AuthorizationStep {
        authorization: two_phase.payment,
        record,
        index,
        operation: None,
        order_id: rules.order_id.take(),
    }
}

fn home(two_phase: &TwoPhase, rules: &Rules, step: AuthorizationStep) -> (ShardId, ShardOp) {
    let shard = two_phase.payment.home_shard(rules.shard_count);
    (shard, ShardOp::RecordAuthorization(step))
}

/// Each shard trims an approved authorization's holds to what its cards
/// keep.
fn keeps(
    two_phase: &TwoPhase,
    decision: &PayResponse,
    record: &PaymentRecord,
) -> Vec<(ShardId, ShardOp)> {
    let hold = HoldRecord {
        hold_minor: 0,
        amount_minor: record.amount_minor,
        card_keys: record.cards.iter().map(|card| card.key.0).collect(),
    };
    (0..two_phase.participants().len())
        .map(|index| {
            let PhaseTwo::Commit(keeps) = two_phase.phase_two(index, decision) else {
                unreachable!("an approved decision commits everywhere");
            };
            let op = ShardOp::KeepAuthorized {
                authorization: two_phase.payment,
                keeps,
                record: hold.clone(),
            };
            (two_phase.participants()[index].shard, op)
        })
        .collect()
}
