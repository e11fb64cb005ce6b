//! Start-up recovery of two-phase payments.
//!
//! A hold record on disk means a shard prepared a payment and had not yet
//! committed or aborted it when the engine stopped. Before any shard runs,
//! every such hold is resolved from the payment's durable decision:
//!
//! * decision **approved**: apply the card's take (debit it, credit the
//!   merchant), exactly as the shard's commit would have;
//! * decision **declined**: release the hold;
//! * **no decision**: the coordinator died before deciding, so nobody can
//!   have been told "approved". Presume abort: release the hold and record
//!   an `aborted` decline as the payment's definitive outcome, so a retry
//!   with the same request id is answered, not re-run half-way.
//!
//! A shard that committed before the crash deleted its hold in the same
//! write, so no take is ever applied twice. The whole resolution is one
//! atomic write: a crash during recovery just recovers again.

use crate::card::DeclineReason;
use crate::ids::PaymentId;
use crate::pin::PinKey;
use crate::protocol::PayResponse;
use crate::shard::ShardState;
use crate::storage::records::{self, BookKind, HoldRecord, StoredPayment};
use crate::storage::{Cf, Changes, Storage, StorageError};

/// What recovery did (logged at start, asserted by tests).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    pub holds_committed: usize,
    pub holds_released: usize,
    pub payments_presumed_aborted: usize,
}

/// Resolves every hold on disk into `shards` (the loaded cards, already
/// partitioned) and `changes`. Merchant credits go to shard 0's books, which
/// hold the consolidated totals at start.
pub fn resolve_holds(
    storage: &Storage,
    shards: &mut [ShardState],
    changes: &mut Changes,
) -> Result<Recovered, StorageError> {
    let mut holds: Vec<(PaymentId, PinKey, HoldRecord)> = Vec::new();
    storage.scan(Cf::Holds, |key, value| {
        let (payment, card) = records::decode_hold_key(key)?;
        holds.push((payment, card, HoldRecord::decode(value)?));
        Ok(())
    })?;

    let mut recovered = Recovered::default();
    let mut decided: Option<(PaymentId, StoredPayment)> = None;
    // Holds are in key order, so one payment's holds are adjacent.
    for (payment, key, hold) in holds {
        let decision = match &decided {
            Some((id, stored)) if *id == payment => stored.clone(),
            _ => {
                let stored = match storage.get_payment(payment)? {
                    Some(stored) => stored,
                    None => {
                        let stored = StoredPayment {
                            response: PayResponse::declined(
                                DeclineReason::Aborted,
                                None,
                                hold.amount_minor,
                                0,
                            ),
                            card_keys: hold.card_keys.clone(),
                        };
                        changes.put_payment(payment, &stored);
                        recovered.payments_presumed_aborted += 1;
                        stored
                    }
                };
                decided = Some((payment, stored.clone()));
                stored
            }
        };
        changes.delete_hold(payment, &key);
        let take_minor = match decision.take_for(&key) {
            Some(take) if decision.response.is_approved() => take,
            _ => {
                recovered.holds_released += 1;
                continue;
            }
        };
        let shard_count = shards.len();
        let card = shards[key.shard(shard_count)]
            .cards
            .get_mut(&key)
            .ok_or_else(|| StorageError(format!("hold on missing card {}", key.label())))?;
        if take_minor > hold.hold_minor || hold.hold_minor > card.balance_minor {
            return Err(StorageError(format!(
                "decision takes {take_minor} from card {} but its hold is {} of balance {}",
                key.label(),
                hold.hold_minor,
                card.balance_minor
            )));
        }
        // Loaded cards carry no holds; re-place this one and commit it the
        // way the shard would have.
        card.held_minor += hold.hold_minor;
        card.commit_hold(hold.hold_minor, take_minor);
        changes.put_card(&key, card);
        let share = shards[0]
            .books
            .credit(BookKind::MerchantOwed, payment.merchant_id, take_minor);
        changes.put_book(BookKind::MerchantOwed, payment.merchant_id, 0, share);
        recovered.holds_committed += 1;
    }
    Ok(recovered)
}
