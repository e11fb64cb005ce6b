//! The audit of one shard, in slices.
//!
//! A shard of a million cards would stall for milliseconds if it checked
//! them all in one turn. Instead the audit walks the cards a slice at a
//! time ([`ShardMachine::audit_slice`]), and payments go on between slices.
//! The walk stays exact because every card change made meanwhile is applied
//! to its sums (see [`super::cards`]): when it ends, the walk's sums are the
//! cards as they are at that moment, the book shares are read at that same
//! moment, and the running totals must equal the walk's sums.
//!
//! Dangling holds are judged at the same moment too: a hold still present
//! when the walk ends belongs to a payment whose coordinator has not yet
//! released its claim (a coordinator releases it only after every shard has
//! committed or aborted), so `in_flight` is asked while the hold is there.

use super::ShardMachine;
use crate::ids::PaymentId;
use crate::ledger::{Findings, ShardAudit};
use crate::pin::PinKey;
use std::collections::HashMap;

/// An audit in progress on one shard: what it found so far.
#[derive(Debug, Default)]
pub(super) struct AuditRun {
    findings: Findings,
}

impl ShardMachine {
    /// Starts an audit walk (restarting one left unfinished).
    pub fn begin_audit(&mut self) {
        self.cards.begin_walk();
        self.audit = Some(AuditRun::default());
    }

    /// Checks up to `count` more cards: each card's own invariants, and its
    /// held amount against its hold records. True when every card has been
    /// checked.
    pub fn audit_slice(&mut self, count: usize) -> bool {
        let run = self.audit.as_mut().expect("an audit is in progress");
        let mut held_by_card: HashMap<PinKey, u64> = HashMap::new();
        for (&(_, key), &amount_minor) in &self.holds {
            *held_by_card.entry(key).or_insert(0) += amount_minor;
        }
        let shard = self.id;
        self.cards.walk(count, |key, card| {
            let held = held_by_card.get(key).copied().unwrap_or(0);
            let finding = match card.check() {
                Err(broken) => Some(broken.to_string()),
                Ok(()) if held != card.held_minor => Some(format!(
                    "card holds {} but its hold records sum to {held}",
                    card.held_minor
                )),
                Ok(()) => None,
            };
            if let Some(finding) = finding {
                run.findings
                    .push(format!("shard {shard}: card {}: {finding}", key.label()));
            }
        })
    }

    /// Ends the audit. `in_flight(payment)` tells whether a payment is still
    /// being processed; a hold of any other payment is dangling (money held
    /// with nobody left to release it).
    pub fn end_audit(&mut self, in_flight: impl Fn(PaymentId) -> bool) -> ShardAudit {
        let mut findings = self.audit.take().expect("an audit is in progress").findings;
        let cards = self.cards.end_walk();
        if &cards != self.cards.totals() {
            findings.push(format!(
                "shard {}: running totals {:?} differ from the cards {:?}",
                self.id,
                self.cards.totals(),
                cards
            ));
        }
        let mut holds: Vec<_> = self.holds.iter().collect();
        holds.sort_unstable_by_key(|((payment, key), _)| (*payment, *key));
        for (&(payment, key), &amount_minor) in holds {
            if !in_flight(payment) && !self.authorized.contains(&payment) {
                findings.push(format!(
                    "shard {}: dangling hold of {amount_minor} on card {} for merchant {} request {}",
                    self.id,
                    key.label(),
                    payment.merchant_id,
                    payment.request_id
                ));
            }
        }
        ShardAudit {
            shard: self.id,
            cards,
            books: self.books.clone(),
            findings,
        }
    }

    /// The whole audit in one turn (tests and the simulator).
    pub fn audit_now(&mut self, in_flight: impl Fn(PaymentId) -> bool) -> ShardAudit {
        self.begin_audit();
        while !self.audit_slice(usize::MAX) {}
        self.end_audit(in_flight)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::machine_with;
    use super::*;
    use crate::card::Card;
    use crate::ids::{CardRef, Position};
    use crate::protocol::ActivationResult;
    use crate::state_machine::PrepareRequest;
    use crate::storage::Changes;

    fn sold(face: u64) -> Card {
        let mut card = Card::issued(face);
        card.activate(1, 0, 0, 0).expect("activates");
        card
    }

    #[test]
    fn an_audit_in_slices_stays_exact_while_payments_go_on() {
        let mut cards: Vec<(u8, Card)> = (1..=60).map(|n| (n, sold(1000))).collect();
        cards.push((200, Card::issued(500)));
        let mut machine = machine_with(&cards);
        let mut out = Changes::new();
        machine.begin_audit();
        let mut done = false;
        let mut request_id = 0;
        while !done {
            done = machine.audit_slice(7);
            if request_id == 2 {
                // Sold mid-walk: the walk must count it once, as active.
                let sold = machine.activate(PinKey([200; 16]), 1, 0, 0, 0, &mut out);
                assert_eq!(
                    sold,
                    ActivationResult::Activated {
                        face_value_minor: 500
                    }
                );
            }
            // A payment on a card already walked and one not yet walked.
            for byte in [1u8, 60] {
                request_id += 1;
                let payment = PaymentId {
                    merchant_id: 3,
                    request_id,
                };
                let card = CardRef {
                    key: PinKey([byte; 16]),
                    last4: 0,
                };
                let paid = machine.pay(payment, 10, &[card], None, None, 0, &mut out);
                assert!(paid.expect("decided").is_approved());
            }
        }
        let audit = machine.end_audit(|_| false);
        assert!(audit.findings.listed.is_empty(), "{:?}", audit.findings);
        assert_eq!(audit.cards.balance_minor, 60_500 - 10 * request_id);
        assert_eq!(audit.cards.activated_minor, 60_500);
        assert_eq!(audit.cards.active, 61);
    }

    #[test]
    fn broken_cards_and_dangling_holds_are_found() {
        let mut machine = machine_with(&[(1, sold(1000)), (2, sold(500))]);
        let mut out = Changes::new();
        let payment = PaymentId {
            merchant_id: 3,
            request_id: 9,
        };
        let request = PrepareRequest {
            payment,
            amount_minor: 300,
            cards: vec![(
                Position::from_index(0),
                CardRef {
                    key: PinKey([1; 16]),
                    last4: 0,
                },
            )],
            all_cards: vec![PinKey([1; 16])],
        };
        machine.prepare(&request, 0, &mut out);
        assert!(
            machine
                .audit_now(|p| p == payment)
                .findings
                .listed
                .is_empty()
        );
        let dangling = machine.audit_now(|_| false);
        assert!(dangling.findings.listed[0].contains("dangling hold of 300"));
        // A card changed behind the totals' back.
        let slot = machine.cards.slot(&PinKey([2; 16])).expect("card");
        machine.cards.corrupt(slot, |card| card.balance_minor = 600);
        let broken = machine.audit_now(|p| p == payment);
        let found = &broken.findings.listed;
        assert!(
            found
                .iter()
                .any(|f| f.contains("balance exceeds face value")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|f| f.contains("running totals")),
            "{found:?}"
        );
    }
}
