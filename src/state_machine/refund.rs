//! A refund's two records on the shards: the decision (its home shard
//! writes the refund, the payment's refunded amounts and a credit owed to
//! each card, in one write) and the credits (each card's shard gives the
//! money back to the card and books the merchant's refund, deleting the
//! credit it applied, in one write). The refund coordinator
//! (`src/operation/refund.rs`) drives them.

use super::ShardMachine;
use crate::card::CardState;
use crate::ids::{PaymentId, RefundId};
use crate::pin::PinKey;
use crate::storage::Changes;
use crate::storage::records::{BookKind, PaymentRefunds, RefundRecord};

/// A credit a refund owes one card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credit {
    pub key: PinKey,
    pub amount_minor: u64,
}

impl ShardMachine {
    /// Makes a refund's decision durable (the refund's home shard, through
    /// its group commit, before any card is credited), stamped by this
    /// shard ([`ShardMachine::stamp`]).
    pub fn record_refund(
        &mut self,
        refund: RefundId,
        record: &RefundRecord,
        payment: PaymentId,
        refunded: &PaymentRefunds,
        credits: &[Credit],
        out: &mut Changes,
    ) {
        let mut record = record.clone();
        record.at_ms = self.stamp(record.at_ms);
        out.put_refund(refund, &record);
        out.put_payment_refunds(payment, refunded);
        for credit in credits {
            out.put_credit(refund, &credit.key, credit.amount_minor);
        }
    }

    /// Gives each card of this shard its credit and books the merchant's
    /// refund, deleting the credits applied. Idempotent only through the
    /// credit records: the caller applies a credit whose record exists. A
    /// card that expired meanwhile cannot hold money: its credit goes to
    /// its store's breakage, where the rest of its balance went.
    pub fn apply_credits(&mut self, refund: RefundId, credits: &[Credit], out: &mut Changes) {
        let mut total_minor = 0u64;
        for credit in credits {
            let card = *self.cards.get(&credit.key).expect("a refunded card exists");
            if card.state == CardState::Expired {
                self.credit(BookKind::Breakage, card.store_id, credit.amount_minor);
            } else {
                let card = self.update_card(&credit.key, |card| {
                    card.credit(credit.amount_minor);
                    *card
                });
                out.put_card(&credit.key, &card);
            }
            out.delete_credit(refund, &credit.key);
            total_minor = total_minor
                .checked_add(credit.amount_minor)
                .expect("credits are bounded by the payment amount");
        }
        if total_minor > 0 {
            self.credit(BookKind::MerchantRefunded, refund.merchant_id, total_minor);
        }
    }
}
