//! The coordinator's logic, pure: who takes part, votes in, decision out,
//! and what each participant is told in phase two.
//!
//! [`super::coordinator`] drives it over the real shards; the simulation
//! test drives it over simulated ones, delivering messages in any order.

use crate::card::DeclineReason;
use crate::config::CARDS_PER_PAYMENT_MAX;
use crate::idempotency;
use crate::ids::{CardRef, PaymentId, Position, ShardId};
use crate::pin::PinKey;
use crate::protocol::{PayPart, PayResponse};
use crate::state_machine::{HeldCard, PrepareRequest, Take, Vote, split_payment};
use crate::storage::records::PaymentRecord;

/// One shard taking part, with its cards and their places in the payment.
#[derive(Debug, Clone)]
pub struct Participant {
    pub shard: ShardId,
    pub cards: Vec<(Position, CardRef)>,
}

/// A payment across shards, from its cards to its decision.
#[derive(Debug, Clone)]
pub struct TwoPhase {
    pub payment: PaymentId,
    pub amount_minor: u64,
    cards: Vec<CardRef>,
    all_keys: Vec<PinKey>,
    participants: Vec<Participant>,
    votes: Vec<Option<Vote>>,
}

/// What phase two tells one participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhaseTwo {
    Commit(Vec<Take>),
    Abort(Vec<PinKey>),
}

impl TwoPhase {
    /// Groups the cards by the shard that owns them (shards in order of
    /// their first card).
    pub fn new(
        payment: PaymentId,
        amount_minor: u64,
        cards: Vec<CardRef>,
        shard_count: usize,
    ) -> TwoPhase {
        assert!(
            cards.len() <= CARDS_PER_PAYMENT_MAX,
            "validated at the gateway"
        );
        let mut participants: Vec<Participant> = Vec::new();
        for (index, card) in cards.iter().enumerate() {
            let shard = ShardId::of(&card.key, shard_count);
            let entry = (Position::from_index(index), *card);
            match participants.iter_mut().find(|p| p.shard == shard) {
                Some(participant) => participant.cards.push(entry),
                None => participants.push(Participant {
                    shard,
                    cards: vec![entry],
                }),
            }
        }
        let votes = vec![None; participants.len()];
        TwoPhase {
            payment,
            amount_minor,
            all_keys: cards.iter().map(|c| c.key).collect(),
            cards,
            participants,
            votes,
        }
    }

    pub fn participants(&self) -> &[Participant] {
        &self.participants
    }

    /// Phase one for participant `index`.
    pub fn prepare(&self, index: usize) -> PrepareRequest {
        PrepareRequest {
            payment: self.payment,
            amount_minor: self.amount_minor,
            cards: self.participants[index].cards.clone(),
            all_cards: self.all_keys.clone(),
        }
    }

    /// Takes participant `index`'s vote; true once every vote is in.
    pub fn vote(&mut self, index: usize, vote: Vote) -> bool {
        let slot = &mut self.votes[index];
        assert!(slot.is_none(), "one vote per participant");
        *slot = Some(vote);
        self.votes.iter().all(Option::is_some)
    }

    /// The decision once every vote is in, or `Aborted` when the votes did
    /// not all arrive in time (`timed_out`).
    pub fn decide(&self, timed_out: bool) -> PayResponse {
        if timed_out {
            return PayResponse::declined(DeclineReason::Aborted, None, self.amount_minor);
        }
        let votes: Vec<&Vote> = self
            .votes
            .iter()
            .map(|v| v.as_ref().expect("every vote is in"))
            .collect();
        decide(self.amount_minor, &self.cards, &votes)
    }

    /// The decision, taken at `now_ms`, as the payment's durable record.
    pub fn record(&self, decision: &PayResponse, now_ms: u64) -> PaymentRecord {
        idempotency::record_of(decision, &self.cards, now_ms)
    }

    /// What participant `index` is told in phase two.
    pub fn phase_two(&self, index: usize, decision: &PayResponse) -> PhaseTwo {
        let cards = &self.participants[index].cards;
        if decision.is_approved() {
            PhaseTwo::Commit(
                cards
                    .iter()
                    .map(|(position, card)| Take {
                        key: card.key,
                        take_minor: decision.parts()[position.index()].taken_minor,
                    })
                    .collect(),
            )
        } else {
            PhaseTwo::Abort(cards.iter().map(|(_, card)| card.key).collect())
        }
    }
}

/// The decision rule, given every shard's vote.
fn decide(amount_minor: u64, cards: &[CardRef], votes: &[&Vote]) -> PayResponse {
    // The first bad card in request order names the decline.
    let refusal = votes
        .iter()
        .filter_map(|vote| match vote {
            Vote::No { position, reason } => Some((*position, *reason)),
            Vote::Yes { .. } => None,
        })
        .min_by_key(|(position, _)| *position);
    if let Some((position, reason)) = refusal {
        return PayResponse::declined(reason, Some(position), amount_minor);
    }
    let count = cards.len();
    let mut held_minor = [0u64; CARDS_PER_PAYMENT_MAX];
    let mut balance_minor = [0u64; CARDS_PER_PAYMENT_MAX];
    let mut seen = [false; CARDS_PER_PAYMENT_MAX];
    for vote in votes {
        let Vote::Yes { holds } = vote else {
            unreachable!("refusals returned above")
        };
        for &HeldCard {
            position,
            held_minor: held,
            balance_minor: balance,
        } in holds
        {
            let index = position.index();
            assert!(!seen[index], "a card was voted on twice");
            seen[index] = true;
            held_minor[index] = held;
            balance_minor[index] = balance;
        }
    }
    assert!(seen[..count].iter().all(|s| *s), "every card was voted on");
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

    fn cards(count: u8) -> Vec<CardRef> {
        (1..=count)
            .map(|n| CardRef {
                key: PinKey([n; 16]),
                last4: u16::from(n),
            })
            .collect()
    }

    fn held(position: u8, held_minor: u64, balance_minor: u64) -> HeldCard {
        HeldCard {
            position: Position::from_number(position).expect("1-based"),
            held_minor,
            balance_minor,
        }
    }

    fn no(position: u8, reason: DeclineReason) -> Vote {
        Vote::No {
            position: Position::from_number(position).expect("1-based"),
            reason,
        }
    }

    #[test]
    fn takes_from_cards_in_request_order() {
        let votes = [
            Vote::Yes {
                holds: vec![held(1, 300, 300), held(3, 500, 900)],
            },
            Vote::Yes {
                holds: vec![held(2, 500, 500)],
            },
        ];
        let decision = decide(1000, &cards(3), &votes.iter().collect::<Vec<_>>());
        assert!(decision.is_approved());
        let taken: Vec<u64> = decision.parts().iter().map(|p| p.taken_minor).collect();
        assert_eq!(taken, vec![300, 500, 200]);
        let remaining: Vec<u64> = decision.parts().iter().map(|p| p.remaining_minor).collect();
        assert_eq!(remaining, vec![0, 0, 700]);
        assert_eq!(decision.remaining_minor(), 700);
    }

    #[test]
    fn the_first_refusing_card_names_the_decline() {
        let votes = [
            no(3, DeclineReason::NotActive),
            no(2, DeclineReason::InvalidCard),
        ];
        let decision = decide(100, &cards(3), &votes.iter().collect::<Vec<_>>());
        assert_eq!(decision.reason(), Some(DeclineReason::InvalidCard));
        assert_eq!(decision.position(), Position::from_number(2));
    }

    #[test]
    fn a_shortfall_declines_with_what_was_available() {
        let votes = [
            Vote::Yes {
                holds: vec![held(1, 300, 300)],
            },
            Vote::Yes {
                holds: vec![held(2, 200, 200)],
            },
        ];
        let decision = decide(600, &cards(2), &votes.iter().collect::<Vec<_>>());
        assert_eq!(decision.reason(), Some(DeclineReason::InsufficientFunds));
        assert_eq!(decision.remaining_minor(), 0, "a decline shows no balance");
        assert_eq!(decision.position(), None);
    }

    #[test]
    fn participants_group_cards_by_shard_and_phase_two_follows_the_decision() {
        // With one shard every card is on shard 0.
        let mut two_phase = TwoPhase::new(
            PaymentId {
                merchant_id: 1,
                request_id: 2,
            },
            400,
            cards(2),
            1,
        );
        assert_eq!(two_phase.participants().len(), 1);
        assert_eq!(two_phase.prepare(0).cards.len(), 2);
        let all_in = two_phase.vote(
            0,
            Vote::Yes {
                holds: vec![held(1, 300, 300), held(2, 100, 1000)],
            },
        );
        assert!(all_in);
        let decision = two_phase.decide(false);
        assert!(decision.is_approved());
        assert_eq!(
            two_phase.phase_two(0, &decision),
            PhaseTwo::Commit(vec![
                Take {
                    key: PinKey([1; 16]),
                    take_minor: 300
                },
                Take {
                    key: PinKey([2; 16]),
                    take_minor: 100
                },
            ])
        );
        let aborted = two_phase.decide(true);
        assert_eq!(aborted.reason(), Some(DeclineReason::Aborted));
        assert_eq!(
            two_phase.phase_two(0, &aborted),
            PhaseTwo::Abort(vec![PinKey([1; 16]), PinKey([2; 16])])
        );
        assert!(two_phase.record(&decision, 0).is_approved());
    }
}
