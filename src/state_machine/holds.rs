//! This shard's side of two-phase commit: holds.
//!
//! A prepared payment reserves part of each card's balance (`held_minor`)
//! so no other payment can spend it, with a durable hold record per card.
//! The coordinator's decision then turns each hold into a debit of its take
//! (the rest released), or releases it whole. Holds never wait for
//! anything, so payments sharing cards cannot deadlock; under contention
//! they can only find less money available.

use super::ShardMachine;
use crate::card::DeclineReason;
use crate::ids::{CardRef, OperationId, PaymentId, Position};
use crate::order::OrderId;
use crate::pin::PinKey;
use crate::storage::Changes;
use crate::storage::records::{BookKind, HoldRecord, OperationRecord, PaymentRecord};

/// Phase one, as this shard sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareRequest {
    pub payment: PaymentId,
    pub amount_minor: u64,
    /// This shard's cards, with their places in the payment.
    pub cards: Vec<(Position, CardRef)>,
    /// Every card of the payment, in order (kept in the hold records).
    pub all_cards: Vec<PinKey>,
}

/// What one card holds for a prepared payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldCard {
    pub position: Position,
    pub held_minor: u64,
    /// The card's balance when it was prepared.
    pub balance_minor: u64,
}

/// A shard's vote in phase one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vote {
    /// Holds placed, one per card of this shard.
    Yes { holds: Vec<HeldCard> },
    /// The card at `position` cannot pay; nothing was held.
    No {
        position: Position,
        reason: DeclineReason,
    },
}

/// An authorization's decision, as its home shard writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationStep {
    pub authorization: PaymentId,
    pub record: PaymentRecord,
    pub index: IndexChange,
    /// The capture or void that closed it.
    pub operation: Option<(OperationId, OperationRecord)>,
    /// The merchant's order id naming it, written with its first record.
    pub order_id: Option<OrderId>,
}

/// What a step does to the index of open authorizations' deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexChange {
    Open(u64),
    Close(u64),
    /// A declined authorization never opened.
    None,
}

/// Phase two, commit: what to take from one held card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Take {
    pub key: PinKey,
    pub take_minor: u64,
}

impl ShardMachine {
    /// Phase one at `now_ms`: check every card, then hold up to the amount
    /// across them in order. A card that cannot pay votes no and holds
    /// nothing (a card found past its validity expires first).
    ///
    /// Each card holds at most what the payment still needs after the
    /// earlier cards on this shard; cards on other shards are unknown here,
    /// so the coordinator may end up taking less than a hold, never more.
    pub fn prepare(&mut self, request: &PrepareRequest, now_ms: u64, out: &mut Changes) -> Vote {
        for &(position, card_ref) in &request.cards {
            if let Err(reason) = self.payable(&card_ref.key, now_ms) {
                if reason == DeclineReason::Expired {
                    self.expire_if_due(&card_ref.key, now_ms, out);
                }
                return Vote::No { position, reason };
            }
        }
        let mut record = HoldRecord {
            hold_minor: 0,
            amount_minor: request.amount_minor,
            card_keys: request.all_cards.iter().map(|key| key.0).collect(),
        };
        let mut cap_left_minor = request.amount_minor;
        let mut holds = Vec::with_capacity(request.cards.len());
        for &(position, card_ref) in &request.cards {
            let (held_minor, balance_minor) = self.update_card(&card_ref.key, |card| {
                let held = card.hold(cap_left_minor).expect("checked above");
                (held, card.balance_minor)
            });
            cap_left_minor -= held_minor;
            let earlier = self
                .holds
                .insert((request.payment, card_ref.key), held_minor);
            assert!(earlier.is_none(), "a payment prepared the same card twice");
            record.hold_minor = held_minor;
            out.put_hold(request.payment, &card_ref.key, &record);
            holds.push(HeldCard {
                position,
                held_minor,
                balance_minor,
            });
        }
        Vote::Yes { holds }
    }

    /// An authorization's holds, trimmed to what it keeps on each card
    /// (`keeps`: every card of this shard in the authorization, the keep
    /// at most its hold). The rest is released; the holds then stand, and
    /// their records say the kept amounts, until the authorization is
    /// captured ([`ShardMachine::commit`]) or voided or released
    /// ([`ShardMachine::abort`]).
    pub fn keep_authorized(
        &mut self,
        payment: PaymentId,
        keeps: &[Take],
        record: &HoldRecord,
        out: &mut Changes,
    ) {
        for keep in keeps {
            let hold_minor = *self
                .holds
                .get(&(payment, keep.key))
                .expect("an authorization keeps a hold this shard placed");
            assert!(keep.take_minor <= hold_minor, "a keep is within its hold");
            self.update_card(&keep.key, |card| card.release(hold_minor - keep.take_minor));
            if keep.take_minor == 0 {
                self.holds.remove(&(payment, keep.key));
                out.delete_hold(payment, &keep.key);
            } else {
                self.holds.insert((payment, keep.key), keep.take_minor);
                let kept = HoldRecord {
                    hold_minor: keep.take_minor,
                    ..record.clone()
                };
                out.put_hold(payment, &keep.key, &kept);
            }
        }
        self.authorized.insert(payment);
    }

    /// Phase two: each hold becomes a debit of its take (the rest of the
    /// hold is released); the merchant's share is credited with the total.
    pub fn commit(&mut self, payment: PaymentId, takes: &[Take], out: &mut Changes) {
        self.authorized.remove(&payment);
        let mut total_minor = 0u64;
        for take in takes {
            // A card an authorization kept nothing on has no hold left.
            let Some(hold_minor) = self.holds.remove(&(payment, take.key)) else {
                assert_eq!(
                    take.take_minor, 0,
                    "commit takes from a card this shard holds"
                );
                continue;
            };
            let card = self.update_card(&take.key, |card| {
                card.commit_hold(hold_minor, take.take_minor);
                *card
            });
            out.put_card(&take.key, &card);
            out.delete_hold(payment, &take.key);
            total_minor = total_minor
                .checked_add(take.take_minor)
                .expect("takes are bounded by the payment amount");
        }
        if total_minor > 0 {
            self.credit(BookKind::MerchantOwed, payment.merchant_id, total_minor);
        }
    }

    /// Phase two, abort. Cards this shard never held (it voted no, or the
    /// prepare never arrived) are skipped.
    pub fn abort(&mut self, payment: PaymentId, keys: &[PinKey], out: &mut Changes) {
        self.authorized.remove(&payment);
        for key in keys {
            if let Some(hold_minor) = self.holds.remove(&(payment, *key)) {
                self.update_card(key, |card| card.release(hold_minor));
                out.delete_hold(payment, key);
            }
        }
    }

    /// Makes an authorization's step durable on its home shard: its payment
    /// record, its entry in the index of deadlines (added when it opens,
    /// removed when it closes) and the capture or void that closed it, in
    /// one write, before any shard hears of it.
    /// The record is stamped by this shard ([`ShardMachine::stamp`]).
    pub fn record_authorization(&mut self, step: &AuthorizationStep, out: &mut Changes) {
        let mut record = step.record.clone();
        record.at_ms = self.stamp(record.at_ms);
        out.put_payment(step.authorization, &record);
        if let Some(order_id) = &step.order_id {
            out.put_order_id(step.authorization, order_id.as_str());
        }
        match step.index {
            IndexChange::Open(expires_at_ms) => {
                out.put_authorization_index(expires_at_ms, step.authorization)
            }
            IndexChange::Close(expires_at_ms) => {
                out.delete_authorization_index(expires_at_ms, step.authorization)
            }
            IndexChange::None => {}
        }
        if let Some((operation, record)) = &step.operation {
            out.put_operation(*operation, record);
        }
    }

    /// Makes a coordinator's decision durable: the payment's home shard
    /// writes it through its own group commit, before any shard hears it,
    /// stamped by this shard ([`ShardMachine::stamp`]).
    pub fn record_decision(
        &mut self,
        payment: PaymentId,
        record: &PaymentRecord,
        order_id: Option<&OrderId>,
        out: &mut Changes,
    ) {
        let mut record = record.clone();
        record.at_ms = self.stamp(record.at_ms);
        out.put_payment(payment, &record);
        if let Some(order_id) = order_id {
            out.put_order_id(payment, order_id.as_str());
        }
    }

    /// Recovery: puts back a hold found on disk (loaded cards carry none),
    /// so the decision can then be applied with [`ShardMachine::commit`] or
    /// [`ShardMachine::abort`], exactly as the running shard would have.
    pub(crate) fn restore_hold(
        &mut self,
        payment: PaymentId,
        key: PinKey,
        hold_minor: u64,
    ) -> Result<(), String> {
        let slot = self
            .cards
            .slot(&key)
            .ok_or_else(|| format!("hold on missing card {}", key.label()))?;
        let card = self.cards.card(slot);
        if card.available_minor() < hold_minor || self.holds.contains_key(&(payment, key)) {
            return Err(format!(
                "hold of {hold_minor} on card {} does not fit its balance {}",
                key.label(),
                card.balance_minor
            ));
        }
        self.cards
            .update(slot, |card| card.held_minor += hold_minor);
        self.holds.insert((payment, key), hold_minor);
        Ok(())
    }
}
