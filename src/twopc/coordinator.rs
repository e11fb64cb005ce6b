//! The coordinator of one payment across shards: drives [`TwoPhase`] over
//! the real shards.
//!
//! It runs as a future on the arbiter of the connection that asked (one per
//! payment, costing an allocation rather than an actor), and it is the only
//! party that decides:
//!
//! 1. Claim the payment id; replay a recorded outcome if there is one.
//! 2. **Prepare**: send each involved shard its cards. A shard checks them,
//!    places durable holds (held money cannot be spent by anyone else) and
//!    votes yes with what it held, or votes no naming the first bad card.
//! 3. **Decide** ([`TwoPhase::decide`]): commit if every shard voted yes and
//!    the holds cover the amount, taking from the cards in the order given;
//!    abort otherwise, or when the votes do not all arrive within
//!    `prepare_timeout_ms`.
//! 4. **Log** the decision durably (the payment's home shard writes it
//!    through its group commit) before telling any shard.
//! 5. **Commit or abort** on every involved shard, wait for all of them,
//!    answer, release the claim.
//!
//! A crash anywhere is repaired at start by [`super::recovery`].

use super::crashpoint::{self, CrashPoint};
use super::decision::{PhaseTwo, TwoPhase};
use crate::auth::Guard;
use crate::card::DeclineReason;
use crate::idempotency::{self, ClaimGuard, Claims};
use crate::ids::{CardRef, OperationId, PaymentId, RefundId};
use crate::order::OrderId;
use crate::protocol::{ErrorCode, PayResponse, Response};
use crate::shard::{ShardGone, Shards};
use crate::state_machine::is_recorded;
use crate::storage::Storage;
use std::sync::Arc;
use std::time::Duration;

/// What every two-phase payment needs.
pub struct Coordinator {
    pub(super) shards: Arc<Shards>,
    pub(super) storage: Arc<Storage>,
    pub(super) claims: Arc<Claims>,
    pub(super) guard: Arc<Guard>,
    prepare_timeout: Duration,
    /// Refunds being processed, by refund id (a namespace of its own).
    pub(super) refund_claims: Claims<RefundId>,
    pub(super) refund_window_ms: u64,
    /// Captures and voids being processed, by their own ids.
    pub(super) operation_claims: Claims<OperationId>,
    pub(super) open_authorizations: super::authorization::OpenAuthorizations,
    pub(super) authorization_ttl_ms: u64,
}

impl Coordinator {
    pub fn new(
        shards: Arc<Shards>,
        storage: Arc<Storage>,
        claims: Arc<Claims>,
        guard: Arc<Guard>,
        prepare_timeout: Duration,
        refund_window_ms: u64,
        authorization_ttl_ms: u64,
    ) -> Coordinator {
        Coordinator {
            shards,
            storage,
            claims,
            guard,
            prepare_timeout,
            refund_claims: Claims::new(),
            refund_window_ms,
            operation_claims: Claims::new(),
            open_authorizations: Default::default(),
            authorization_ttl_ms,
        }
    }

    /// Pays `amount_minor` from `cards` (which span several shards).
    pub async fn pay(
        &self,
        payment: PaymentId,
        amount_minor: u64,
        cards: Vec<CardRef>,
        order_id: Option<OrderId>,
    ) -> Response {
        // The shards count this payment's PIN failures as they prepare; a
        // merchant already locked out is refused before anything starts.
        if let Err(locked) = self
            .guard
            .check(payment.merchant_id, crate::clock::now_ms())
        {
            return Response::Error(locked.refusal());
        }
        if let Err(busy) = idempotency::claim(&self.claims, payment) {
            return Response::Error(busy);
        }
        let _claim = ClaimGuard::new(&self.claims, payment);
        let replayed = match idempotency::prefetch(self.storage.as_ref(), payment) {
            Ok(None) => None,
            Ok(Some(record)) => Some(idempotency::replay(&record, amount_minor, &cards)),
            Err(error) => Some(Err(error)),
        };
        if let Some(answer) = replayed {
            return answer.map_or_else(Response::Error, Response::Paid);
        }
        let two_phase = TwoPhase::new(payment, amount_minor, cards, self.shards.count());
        debug_assert!(
            two_phase.participants().len() > 1,
            "single-shard payments commit locally"
        );
        match self.run(two_phase, order_id).await {
            Ok(paid) => Response::Paid(paid),
            Err(ShardGone) => Response::error(ErrorCode::Internal, "engine is shutting down"),
        }
    }

    async fn run(
        &self,
        mut two_phase: TwoPhase,
        order_id: Option<OrderId>,
    ) -> Result<PayResponse, ShardGone> {
        let decision = self.prepare_and_decide(&mut two_phase).await?;
        crashpoint::reached(CrashPoint::AfterPrepare);

        // The decision is durable before any shard hears of it. A decline
        // for an invalid card is not recorded (see `is_recorded`): it is an
        // abort, which recovery presumes anyway.
        if is_recorded(&decision) {
            let home = two_phase.payment.home_shard(self.shards.count());
            let record = two_phase.record(&decision, crate::clock::now_ms());
            self.shards
                .record_decision(home, two_phase.payment, record, order_id)
                .await?
                .get()
                .await?;
        }
        crashpoint::reached(CrashPoint::AfterDecision);
        crate::telemetry::twopc_decided(decision.is_approved());

        self.commit_or_abort(&two_phase, &decision).await?;
        Ok(decision)
    }

    /// Phase one on every participant at once, then the decision; abort if
    /// the votes do not all arrive within the prepare timeout.
    pub(super) async fn prepare_and_decide(
        &self,
        two_phase: &mut TwoPhase,
    ) -> Result<PayResponse, ShardGone> {
        let prepares: Vec<_> = (0..two_phase.participants().len())
            .map(|index| {
                (
                    two_phase.participants()[index].shard,
                    two_phase.prepare(index),
                )
            })
            .collect();
        let votes = tokio::time::timeout(self.prepare_timeout, async {
            let mut answers = Vec::with_capacity(prepares.len());
            for (shard, request) in prepares {
                answers.push(self.shards.prepare(shard, request).await?);
            }
            let mut votes = Vec::with_capacity(answers.len());
            for answer in answers {
                votes.push(answer.get().await?);
            }
            Ok::<_, ShardGone>(votes)
        })
        .await;
        match votes {
            Err(_elapsed) => {
                tracing::warn!(payment = ?two_phase.payment, "prepare timed out; aborting");
                Ok(two_phase.decide(true))
            }
            Ok(votes) => {
                for (index, vote) in votes?.into_iter().enumerate() {
                    two_phase.vote(index, vote);
                }
                Ok(two_phase.decide(false))
            }
        }
    }

    /// Phase two on every participant at once; returns when all are durable.
    pub(super) async fn commit_or_abort(
        &self,
        two_phase: &TwoPhase,
        decision: &PayResponse,
    ) -> Result<(), ShardGone> {
        let payment = two_phase.payment;
        // Declined for want of funds over all its cards (no one card's
        // fault): every shard notes the decline on its cards.
        let short = decision.reason == Some(DeclineReason::InsufficientFunds);
        let mut answers = Vec::with_capacity(two_phase.participants().len());
        for (index, participant) in two_phase.participants().iter().enumerate() {
            let shard = participant.shard;
            let answer = match two_phase.phase_two(index, decision) {
                PhaseTwo::Commit(takes) => self.shards.commit(shard, payment, takes).await?,
                PhaseTwo::Abort(keys) => self.shards.abort(shard, payment, keys, short).await?,
            };
            answers.push(answer);
        }
        for (index, answer) in answers.into_iter().enumerate() {
            answer.get().await?;
            if index == 0 {
                crashpoint::reached(CrashPoint::MidCommit);
            }
        }
        Ok(())
    }
}
