//! The coordinator of one payment across shards.
//!
//! It runs as a future on the router's arbiter (one per payment, costing an
//! allocation rather than an actor), and it is the only party that decides:
//!
//! 1. Claim the payment id; replay a recorded outcome if there is one.
//! 2. **Prepare**: send each involved shard its cards. A shard checks them,
//!    places durable holds (held money cannot be spent by anyone else) and
//!    votes yes with what it held, or votes no naming the first bad card.
//!    Holds never wait for each other, so payments sharing cards cannot
//!    deadlock; they can only see less available money while a hold lasts.
//! 3. **Decide**: commit if every shard voted yes and the holds cover the
//!    amount, taking from the cards in the order given; abort otherwise, or
//!    when the votes do not all arrive within `prepare_timeout_ms`.
//! 4. **Log** the decision durably (the payment's home shard writes it
//!    through its group commit) before telling any shard.
//! 5. **Commit or abort** on every involved shard, wait for all of them,
//!    answer, release the claim.
//!
//! A crash anywhere is repaired at start by [`super::recovery`].

use super::crashpoint::{self, CrashPoint};
use crate::card::DeclineReason;
use crate::config::CARDS_PER_PAYMENT_MAX;
use crate::idempotency::{self, Claims};
use crate::ids::PaymentId;
use crate::pin::PIN_KEY_BYTES;
use crate::protocol::{ErrorCode, PayPart, PayResponse, Response};
use crate::router::{Fabric, ShardGone};
use crate::shard::op::{CardRef, Op, Outcome, Vote};
use crate::shard::split_payment;
use crate::storage::records::StoredPayment;
use std::time::Duration;

/// Releases the payment's claim however the coordinator ends.
struct ClaimGuard<'a> {
    claims: &'a Claims,
    payment: PaymentId,
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        self.claims.release(self.payment);
    }
}

/// Pays `amount_minor` from `cards` (which span several shards).
pub async fn pay(
    fabric: &Fabric,
    payment: PaymentId,
    amount_minor: u64,
    cards: Vec<CardRef>,
) -> Response {
    if !fabric.claims.claim(payment) {
        return Response::error(
            ErrorCode::RequestInProgress,
            "this request id is being processed; retry when it has answered",
        );
    }
    let _claim = ClaimGuard {
        claims: &fabric.claims,
        payment,
    };
    match fabric.storage.get_payment(payment) {
        Ok(Some(stored)) => return idempotency::replay(&stored, amount_minor, &cards),
        Ok(None) => {}
        Err(error) => {
            tracing::error!(%error, "payment lookup failed");
            return Response::error(ErrorCode::Internal, "storage read failed");
        }
    }
    match run(fabric, payment, amount_minor, &cards).await {
        Ok(response) => Response::Paid(response),
        Err(ShardGone) => Response::error(ErrorCode::Internal, "engine is shutting down"),
    }
}

/// The shards a payment touches, each with its cards and their positions.
fn participants(fabric: &Fabric, cards: &[CardRef]) -> Vec<(usize, Vec<(u8, CardRef)>)> {
    let mut by_shard: Vec<(usize, Vec<(u8, CardRef)>)> = Vec::new();
    for (index, card) in cards.iter().enumerate() {
        let shard = fabric.shard_of(&card.key);
        let position = (index + 1) as u8;
        match by_shard.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, list)) => list.push((position, *card)),
            None => by_shard.push((shard, vec![(position, *card)])),
        }
    }
    by_shard
}

async fn run(
    fabric: &Fabric,
    payment: PaymentId,
    amount_minor: u64,
    cards: &[CardRef],
) -> Result<PayResponse, ShardGone> {
    let participants = participants(fabric, cards);
    debug_assert!(
        participants.len() > 1,
        "single-shard payments commit locally"
    );
    let all_cards: Vec<[u8; PIN_KEY_BYTES]> = cards.iter().map(|c| c.key.0).collect();

    // Phase one: prepare everywhere at once.
    let receivers: Vec<_> = participants
        .iter()
        .map(|(shard, shard_cards)| {
            let op = Op::Prepare {
                payment,
                amount_minor,
                cards: shard_cards.clone(),
                all_cards: all_cards.clone(),
            };
            fabric.send(*shard, vec![(0, op)])
        })
        .collect();
    let timeout = Duration::from_millis(fabric.limits.prepare_timeout_ms);
    let votes = tokio::time::timeout(timeout, async {
        let mut votes = Vec::with_capacity(receivers.len());
        for receiver in receivers {
            let results = receiver.await.map_err(|_| ShardGone)?;
            for (_, outcome) in results {
                if let Outcome::Vote(vote) = outcome {
                    votes.push(vote);
                }
            }
        }
        Ok::<_, ShardGone>(votes)
    })
    .await;

    let decision = match votes {
        Err(_elapsed) => {
            tracing::warn!(?payment, "prepare timed out; aborting");
            PayResponse::declined(DeclineReason::Aborted, None, amount_minor, 0)
        }
        Ok(votes) => decide(amount_minor, cards, &votes?),
    };
    crashpoint::reached(CrashPoint::AfterPrepare);

    // The decision is durable before any shard hears of it.
    let stored = StoredPayment {
        response: decision,
        card_keys: all_cards,
    };
    let record = Op::RecordDecision {
        payment,
        stored: Box::new(stored.clone()),
    };
    fabric
        .call(payment.home_shard(fabric.shard_count()), vec![(0, record)])
        .await?;
    crashpoint::reached(CrashPoint::AfterDecision);
    crate::telemetry::twopc_decided(stored.response.is_approved());

    // Phase two: commit or abort everywhere at once.
    let decision = stored.response;
    let receivers: Vec<_> = participants
        .iter()
        .map(|(shard, shard_cards)| {
            let op = if decision.is_approved() {
                Op::Commit {
                    payment,
                    takes: shard_cards
                        .iter()
                        .map(|(position, card)| {
                            (card.key, decision.parts[*position as usize - 1].taken_minor)
                        })
                        .collect(),
                }
            } else {
                Op::Abort {
                    payment,
                    keys: shard_cards.iter().map(|(_, card)| card.key).collect(),
                }
            };
            fabric.send(*shard, vec![(0, op)])
        })
        .collect();
    for (index, receiver) in receivers.into_iter().enumerate() {
        receiver.await.map_err(|_| ShardGone)?;
        if index == 0 {
            crashpoint::reached(CrashPoint::MidCommit);
        }
    }
    Ok(decision)
}

/// The decision rule, given every shard's vote.
fn decide(amount_minor: u64, cards: &[CardRef], votes: &[Vote]) -> PayResponse {
    // The first bad card in request order names the decline.
    let refusal = votes
        .iter()
        .filter_map(|vote| match vote {
            Vote::No { position, reason } => Some((*position, *reason)),
            Vote::Yes { .. } => None,
        })
        .min_by_key(|(position, _)| *position);
    if let Some((position, reason)) = refusal {
        return PayResponse::declined(reason, Some(position), amount_minor, 0);
    }
    let count = cards.len();
    assert!(count <= CARDS_PER_PAYMENT_MAX, "validated at the gateway");
    let mut held_minor = [0u64; CARDS_PER_PAYMENT_MAX];
    let mut balance_minor = [0u64; CARDS_PER_PAYMENT_MAX];
    for vote in votes {
        if let Vote::Yes { holds } = vote {
            for &(position, held, balance) in holds {
                held_minor[position as usize - 1] = held;
                balance_minor[position as usize - 1] = balance;
            }
        }
    }
    let takes_minor = match split_payment(amount_minor, &held_minor[..count]) {
        Ok(takes) => takes,
        Err(declined) => return declined,
    };
    let parts = cards
        .iter()
        .enumerate()
        .map(|(index, card)| PayPart {
            pin_last4: card.last4,
            taken_minor: takes_minor[index],
            remaining_minor: balance_minor[index] - takes_minor[index],
        })
        .collect();
    PayResponse::approved(amount_minor, parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pin::PinKey;

    fn cards(count: u8) -> Vec<CardRef> {
        (1..=count)
            .map(|n| CardRef {
                key: PinKey([n; 16]),
                last4: u16::from(n),
            })
            .collect()
    }

    #[test]
    fn takes_from_cards_in_request_order() {
        let votes = [
            Vote::Yes {
                holds: vec![(1, 300, 300), (3, 500, 900)],
            },
            Vote::Yes {
                holds: vec![(2, 500, 500)],
            },
        ];
        let decision = decide(1000, &cards(3), &votes);
        assert!(decision.is_approved());
        let taken: Vec<u64> = decision.parts.iter().map(|p| p.taken_minor).collect();
        assert_eq!(taken, vec![300, 500, 200]);
        let remaining: Vec<u64> = decision.parts.iter().map(|p| p.remaining_minor).collect();
        assert_eq!(remaining, vec![0, 0, 700]);
        assert_eq!(decision.remaining_minor, 700);
    }

    #[test]
    fn the_first_refusing_card_names_the_decline() {
        let votes = [
            Vote::No {
                position: 3,
                reason: DeclineReason::NotActive,
            },
            Vote::No {
                position: 2,
                reason: DeclineReason::UnknownPin,
            },
        ];
        let decision = decide(100, &cards(3), &votes);
        assert_eq!(decision.reason, Some(DeclineReason::UnknownPin));
        assert_eq!(decision.position, Some(2));
    }

    #[test]
    fn a_shortfall_declines_with_what_was_available() {
        let votes = [
            Vote::Yes {
                holds: vec![(1, 300, 300)],
            },
            Vote::Yes {
                holds: vec![(2, 200, 200)],
            },
        ];
        let decision = decide(600, &cards(2), &votes);
        assert_eq!(decision.reason, Some(DeclineReason::InsufficientFunds));
        assert_eq!(decision.remaining_minor, 500);
        assert_eq!(decision.position, None);
    }
}
