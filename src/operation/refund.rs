//! Refunds: money goes back to a payment's cards, on whatever shards they
//! live, atomically.
//!
//! A credit cannot be refused by the card that gets it (the card paid that
//! money, so it has room for it, and nothing else can claim it), so unlike
//! a payment a refund needs no vote: every check is on the payment's
//! durable records, read under the payment's claim. What it needs from
//! two-phase commit is the other half, atomicity across shards:
//!
//! 1. Claim the refund id; replay its record if it has one.
//! 2. Claim the payment (no payment retry and no other refund of it runs
//!    meanwhile); read its record and what was refunded from it already;
//!    decide ([`decide`], pure): the cards in the reverse order of taking,
//!    each up to what was taken from it less earlier refunds.
//! 3. **Decision**: the refund's home shard writes, in one atomic write,
//!    the refund record (idempotency), the payment's new refunded amounts
//!    and one credit record per card: the shards' work, made durable
//!    before any card moves. Crash point `after-decision`.
//! 4. **Apply**: each card's shard credits its cards and books the
//!    merchant's refund, deleting the credit records it applied, in one
//!    write. Crash point `mid-commit` after the first shard.
//!
//! A crash after 3 is finished at start ([`crate::twopc::recovery`] applies every
//! credit record left); a crash before 3 left nothing, and a retry decides
//! afresh. Declines change nothing and are not recorded: what a payment
//! has left to refund only shrinks, and its window only closes, so a
//! retried decline is declined again.

use super::{Coordinator, Decided, ShardOp, drive};
use crate::card::DeclineReason;
use crate::config::CARDS_PER_PAYMENT_MAX;
use crate::idempotency::{self, ClaimGuard};
use crate::ids::{PaymentId, RefundId, ShardId};
use crate::protocol::{
    ErrorCode, ErrorResponse, RefundPart, RefundResponse, RefundStatus, Response,
};
use crate::shard::ShardGone;
use crate::state_machine::Credit;
use crate::storage::records::{PaymentRecord, PaymentRefunds, RecordedOutcome, RefundRecord};

/// A decided refund: the record to keep, the payment's refunded amounts
/// after it, and the credits owed to its cards (those getting money back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundPlan {
    pub record: RefundRecord,
    pub refunded: PaymentRefunds,
    pub credits: Vec<Credit>,
}

/// Credits grouped by the shard that owns their cards, in shard order:
/// one apply message per shard.
pub fn credits_by_shard(credits: &[Credit], shard_count: usize) -> Vec<(ShardId, Vec<Credit>)> {
    let mut by_shard: Vec<(ShardId, Vec<Credit>)> = Vec::new();
    for credit in credits {
        let shard = ShardId::of(&credit.key, shard_count);
        match by_shard.iter_mut().find(|(of, _)| *of == shard) {
            Some((_, mine)) => mine.push(*credit),
            None => by_shard.push((shard, vec![*credit])),
        }
    }
    by_shard.sort_unstable_by_key(|(shard, _)| *shard);
    by_shard
}

/// A decided refund as a step machine: its record on its home shard (the
/// refund, the payment's new refunded amounts and the credits, in one
/// write), then each shard credits its cards. The reply is the refund.
pub fn credit(
    refund: RefundId,
    payment: PaymentId,
    plan: RefundPlan,
    shard_count: usize,
) -> Decided<RefundResponse> {
    let reply = response_of(&plan.record, false);
    let tell = credits_by_shard(&plan.credits, shard_count)
        .into_iter()
        .map(|(shard, credits)| (shard, ShardOp::ApplyCredits { refund, credits }))
        .collect();
    let record = ShardOp::RecordRefund {
        refund,
        record: plan.record,
        payment,
        refunded: plan.refunded,
        credits: plan.credits,
    };
    Decided::new(Some((refund.home_shard(shard_count), record)), tell, reply)
}

/// The refund rules, pure. `payment` is the payment's record, `refunded`
/// what its earlier refunds gave back per card.
pub fn decide(
    payment_request_id: u64,
    payment: &PaymentRecord,
    refunded: &PaymentRefunds,
    amount_minor: u64,
    now_ms: u64,
    window_ms: u64,
) -> Result<RefundPlan, DeclineReason> {
    let RecordedOutcome::Approved { parts } = &payment.outcome else {
        return Err(DeclineReason::UnknownPayment);
    };
    if now_ms.saturating_sub(payment.at_ms) > window_ms || payment.at_ms == 0 {
        return Err(DeclineReason::WindowClosed);
    }
    let count = parts.len();
    assert!(count <= CARDS_PER_PAYMENT_MAX && count == payment.cards.len());
    let mut before = refunded.refunded_minor.clone();
    if before.is_empty() {
        before = vec![0; count];
    }
    assert_eq!(before.len(), count, "refunded amounts are kept per card");
    for (index, part) in parts.iter().enumerate() {
        assert!(
            before[index] <= part.taken_minor,
            "a card got back more than it gave"
        );
    }
    let mut left_minor = amount_minor;
    let mut credits_minor = vec![0u64; count];
    for index in (0..count).rev() {
        let room = parts[index].taken_minor - before[index];
        credits_minor[index] = room.min(left_minor);
        left_minor -= credits_minor[index];
    }
    if left_minor > 0 {
        return Err(DeclineReason::ExceedsRefundable);
    }
    Ok(plan(
        payment_request_id,
        payment,
        &before,
        credits_minor,
        amount_minor,
        now_ms,
    ))
}

/// What a decided refund writes: its record, the payment's refunded
/// amounts after it (`before` plus `credits_minor`, per card), and a
/// credit for each card that gets money back.
fn plan(
    payment_request_id: u64,
    payment: &PaymentRecord,
    before: &[u64],
    credits_minor: Vec<u64>,
    amount_minor: u64,
    now_ms: u64,
) -> RefundPlan {
    let after: Vec<u64> = before
        .iter()
        .zip(&credits_minor)
        .map(|(b, c)| b + c)
        .collect();
    let payment_refunded_minor = after.iter().sum();
    let record = RefundRecord {
        payment_request_id,
        amount_minor,
        at_ms: now_ms,
        parts: payment
            .cards
            .iter()
            .zip(&credits_minor)
            .map(
                |(card, &refunded_minor)| crate::storage::records::RefundPart {
                    pin_last4: card.last4,
                    refunded_minor,
                },
            )
            .collect(),
        payment_refunded_minor,
    };
    let credits = payment
        .cards
        .iter()
        .zip(credits_minor)
        .filter(|(_, amount_minor)| *amount_minor > 0)
        .map(|(card, amount_minor)| Credit {
            key: card.key,
            amount_minor,
        })
        .collect();
    RefundPlan {
        record,
        refunded: PaymentRefunds {
            refunded_minor: after,
        },
        credits,
    }
}

/// The answer a refund record gives (first time, or replayed).
pub fn response_of(record: &RefundRecord, replayed: bool) -> RefundResponse {
    RefundResponse {
        status: RefundStatus::Refunded,
        reason: None,
        amount_minor: record.amount_minor,
        parts: record
            .parts
            .iter()
            .map(|part| RefundPart {
                pin_last4: part.pin_last4,
                refunded_minor: part.refunded_minor,
            })
            .collect(),
        payment_refunded_minor: record.payment_refunded_minor,
        replayed,
    }
}

fn storage_failed(error: impl std::fmt::Display) -> ErrorResponse {
    tracing::error!(%error, "refund lookup failed");
    ErrorResponse::new(ErrorCode::Internal, "storage read failed")
}

impl Coordinator {
    /// Refunds `amount_minor` of `payment` under the id `refund`.
    pub async fn refund(
        &self,
        refund: RefundId,
        payment: PaymentId,
        amount_minor: u64,
    ) -> Response {
        match self.run_refund(refund, payment, amount_minor).await {
            Ok(Ok(refunded)) => Response::Refunded(refunded),
            Ok(Err(error)) => Response::Error(error),
            Err(ShardGone) => Response::error(ErrorCode::Internal, "engine is shutting down"),
        }
    }

    async fn run_refund(
        &self,
        refund: RefundId,
        payment: PaymentId,
        amount_minor: u64,
    ) -> Result<Result<RefundResponse, ErrorResponse>, ShardGone> {
        if let Err(busy) = idempotency::claim(&self.refund_claims, refund) {
            return Ok(Err(busy));
        }
        let _refund_claim = ClaimGuard::new(&self.refund_claims, refund);
        match self.read(move |store| store.get_refund(refund)).await {
            Err(error) => return Ok(Err(storage_failed(error))),
            Ok(Some(record)) => return Ok(replay_refund(&record, payment, amount_minor)),
            Ok(None) => {}
        }
        if let Err(busy) = idempotency::claim(&self.claims, payment) {
            return Ok(Err(busy));
        }
        let _payment_claim = ClaimGuard::new(&self.claims, payment);
        let record = match self.lookup(payment).await {
            Ok(Some(record)) => record,
            Ok(None) => {
                return Ok(Ok(RefundResponse::declined(
                    DeclineReason::UnknownPayment,
                    amount_minor,
                )));
            }
            Err(error) => return Ok(Err(error)),
        };
        let refunded = match self
            .read(move |store| store.get_payment_refunds(payment))
            .await
        {
            Ok(refunded) => refunded,
            Err(error) => return Ok(Err(storage_failed(error))),
        };
        let now_ms = crate::clock::now_ms();
        let plan = match decide(
            payment.request_id,
            &record,
            &refunded,
            amount_minor,
            now_ms,
            self.refund_window_ms,
        ) {
            Ok(plan) => plan,
            Err(reason) => return Ok(Ok(RefundResponse::declined(reason, amount_minor))),
        };
        let crediting = credit(refund, payment, plan, self.shards.count());
        Ok(Ok(
            drive(&self.shards, self.prepare_timeout, crediting).await?
        ))
    }
}

/// The answer to a refund whose id was used before: the first answer when
/// it is the same refund.
fn replay_refund(
    record: &RefundRecord,
    payment: PaymentId,
    amount_minor: u64,
) -> Result<RefundResponse, ErrorResponse> {
    let same =
        record.payment_request_id == payment.request_id && record.amount_minor == amount_minor;
    if same {
        Ok(response_of(record, true))
    } else {
        Err(ErrorResponse::new(
            ErrorCode::InvalidArgument,
            "this request id was already used for a different refund",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::CardRef;
    use crate::pin::PinKey;
    use crate::storage::records::RecordedPart;

    const DAY_MS: u64 = 86_400_000;

    /// A payment of 1300 at day 10: 500 from card 1, 800 from card 2.
    fn payment() -> PaymentRecord {
        let card = |byte: u8| CardRef {
            key: PinKey([byte; 16]),
            last4: u16::from(byte),
        };
        let part = |taken_minor| RecordedPart {
            taken_minor,
            remaining_minor: 0,
        };
        PaymentRecord {
            at_ms: 10 * DAY_MS,
            authorization: None,
            amount_minor: 1300,
            cards: vec![card(1), card(2)],
            outcome: RecordedOutcome::Approved {
                parts: vec![part(500), part(800)],
            },
        }
    }

    fn refund(refunded: &PaymentRefunds, amount: u64) -> Result<RefundPlan, DeclineReason> {
        decide(7, &payment(), refunded, amount, 11 * DAY_MS, 30 * DAY_MS)
    }

    fn parts(plan: &RefundPlan) -> Vec<u64> {
        plan.record.parts.iter().map(|p| p.refunded_minor).collect()
    }

    #[test]
    fn refunds_go_back_in_reverse_order_up_to_each_take() {
        let first = refund(&PaymentRefunds::default(), 1000).expect("refunded");
        assert_eq!(parts(&first), [200, 800]);
        assert_eq!(first.credits.len(), 2);
        assert_eq!(first.refunded.refunded_minor, [200, 800]);
        assert_eq!(first.record.payment_refunded_minor, 1000);
        let second = refund(&first.refunded, 300).expect("the rest");
        assert_eq!(parts(&second), [300, 0]);
        let card_one = Credit {
            key: PinKey([1; 16]),
            amount_minor: 300,
        };
        assert_eq!(second.credits, [card_one], "no credit of 0");
        assert_eq!(second.record.payment_refunded_minor, 1300);
        assert_eq!(
            refund(&second.refunded, 1),
            Err(DeclineReason::ExceedsRefundable)
        );
        assert_eq!(
            refund(&first.refunded, 301),
            Err(DeclineReason::ExceedsRefundable)
        );
    }

    #[test]
    fn only_approved_payments_within_the_window_are_refunded() {
        let late = decide(
            7,
            &payment(),
            &PaymentRefunds::default(),
            1,
            41 * DAY_MS,
            30 * DAY_MS,
        );
        assert_eq!(late, Err(DeclineReason::WindowClosed));
        let mut untimed = payment();
        untimed.at_ms = 0;
        let old = decide(
            7,
            &untimed,
            &PaymentRefunds::default(),
            1,
            DAY_MS,
            30 * DAY_MS,
        );
        assert_eq!(old, Err(DeclineReason::WindowClosed), "kept no time");
        let mut declined = payment();
        declined.outcome = RecordedOutcome::Declined {
            reason: DeclineReason::InsufficientFunds,
            position: None,
            available_minor: 0,
        };
        let refused = decide(7, &declined, &PaymentRefunds::default(), 1, 0, 30 * DAY_MS);
        assert_eq!(refused, Err(DeclineReason::UnknownPayment));
    }
}
