//! Start-up recovery of two-phase payments.
//!
//! A hold record on disk means a shard prepared a payment and had not yet
//! committed or aborted it when the engine stopped. Before any shard runs,
//! every such hold is put back on its card and resolved from the payment's
//! durable decision, through the same state-machine calls the running
//! shard would have made:
//!
//! * decision **approved**: commit the card's take (debit it, credit the
//!   merchant);
//! * decision **declined**: abort (release the hold);
//! * **no decision**: the coordinator died before deciding, so nobody can
//!   have been told "approved". Presume abort: release the hold and record
//!   an `aborted` decline as the payment's definitive outcome, so a retry
//!   with the same request id is answered, not re-run half-way.
//!
//! A shard that committed before the crash deleted its hold in the same
//! write, so no take is ever applied twice. The whole resolution is one
//! atomic write: a crash during recovery just recovers again.
//!
//! Refunds ([`super::refund`]) leave credit records instead: a credit on
//! disk means the refund was decided and that card's shard had not applied
//! it. Recovery applies it, exactly as the running shard would have (and,
//! likewise, deletes it in the same write).

use crate::card::DeclineReason;
use crate::ids::{CardRef, PaymentId, ShardId};
use crate::pin::PinKey;
use crate::state_machine::{Credit, ShardMachine, Take};
use crate::storage::records::{self, HoldRecord, PaymentRecord, RecordedOutcome};
use crate::storage::{Cf, Changes, StorageError, Store};

/// What recovery did (logged at start, asserted by tests).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    pub holds_committed: usize,
    pub holds_released: usize,
    pub payments_presumed_aborted: usize,
    pub refund_credits_applied: usize,
    pub authorization_holds_kept: usize,
}

/// One hold found on disk.
struct FoundHold {
    payment: PaymentId,
    key: PinKey,
    record: HoldRecord,
}

/// Resolves every hold on disk into `machines` (the loaded shards) and
/// `changes`.
pub(crate) fn resolve_holds(
    store: &dyn Store,
    machines: &mut [ShardMachine],
    changes: &mut Changes,
) -> Result<Recovered, StorageError> {
    let mut holds = Vec::new();
    store.scan(Cf::Holds, &mut |key, value| {
        let (payment, key) = records::decode_hold_key(key)?;
        holds.push(FoundHold {
            payment,
            key,
            record: HoldRecord::decode(value)?,
        });
        Ok(())
    })?;

    let mut recovered = Recovered::default();
    let mut decided: Option<(PaymentId, PaymentRecord)> = None;
    for hold in holds {
        // Holds are in key order, so one payment's holds are adjacent.
        if decided.as_ref().is_none_or(|(id, _)| *id != hold.payment) {
            let record = decision_for(store, &hold, changes, &mut recovered)?;
            decided = Some((hold.payment, record));
        }
        let (_, decision) = decided.as_ref().expect("just set");
        let shard = ShardId::of(&hold.key, machines.len());
        let machine = &mut machines[shard.index()];
        machine.restore_hold(hold.payment, hold.key, hold.record.hold_minor)?;
        if let Some(keep_minor) = kept_by_open_authorization(decision, &hold)? {
            // An open authorization: its hold stands (trimmed to what it
            // keeps, if the crash came before the trim).
            let keep = Take {
                key: hold.key,
                take_minor: keep_minor,
            };
            machine.keep_authorized(hold.payment, &[keep], &hold.record, changes);
            recovered.authorization_holds_kept += 1;
            continue;
        }
        match decision.take_for(&hold.key) {
            Some(take_minor) if take_minor <= hold.record.hold_minor => {
                let take = Take {
                    key: hold.key,
                    take_minor,
                };
                machine.commit(hold.payment, &[take], changes);
                recovered.holds_committed += 1;
            }
            Some(take_minor) => {
                return Err(StorageError::Inconsistent(format!(
                    "decision takes {take_minor} from card {} but its hold is {}",
                    hold.key.label(),
                    hold.record.hold_minor
                )));
            }
            None => {
                machine.abort(hold.payment, &[hold.key], changes);
                recovered.holds_released += 1;
            }
        }
    }
    Ok(recovered)
}

/// What an open authorization keeps on the card of `hold` (`None` when
/// the decision is not an open authorization).
fn kept_by_open_authorization(
    decision: &PaymentRecord,
    hold: &FoundHold,
) -> Result<Option<u64>, StorageError> {
    if !decision.is_open_authorization() {
        return Ok(None);
    }
    let terms = decision.authorization.as_ref().expect("checked at decode");
    let index = decision.cards.iter().position(|card| card.key == hold.key);
    match index.and_then(|index| terms.held_minor.get(index)) {
        Some(&keep_minor) if keep_minor <= hold.record.hold_minor => Ok(Some(keep_minor)),
        _ => Err(StorageError::Inconsistent(format!(
            "authorization keeps more on card {} than its hold",
            hold.key.label()
        ))),
    }
}

/// Applies every refund credit left on disk into `machines` and `changes`.
pub(crate) fn apply_credits(
    store: &dyn Store,
    machines: &mut [ShardMachine],
    changes: &mut Changes,
    recovered: &mut Recovered,
) -> Result<(), StorageError> {
    let mut credits = Vec::new();
    store.scan(Cf::Credits, &mut |key, value| {
        let (refund, key) = records::decode_credit_key(key)?;
        credits.push((refund, key, records::decode_u64(value)?));
        Ok(())
    })?;
    for (refund, key, amount_minor) in credits {
        let shard = ShardId::of(&key, machines.len());
        let machine = &mut machines[shard.index()];
        let room = machine
            .card(&key)
            .filter(|card| card.state.is_sold())
            .map(|card| card.face_value_minor - card.balance_minor);
        // (An expired card's credit goes to breakage: its room is its face.)
        if room.is_none_or(|room| room < amount_minor) {
            return Err(StorageError::Inconsistent(format!(
                "refund credit of {amount_minor} does not fit card {}",
                key.label()
            )));
        }
        machine.apply_credits(refund, &[Credit { key, amount_minor }], changes);
        recovered.refund_credits_applied += 1;
    }
    Ok(())
}

/// The payment's durable decision, or (none recorded) a presumed abort,
/// which is written so that a retry gets it as the definitive answer.
fn decision_for(
    store: &dyn Store,
    hold: &FoundHold,
    changes: &mut Changes,
    recovered: &mut Recovered,
) -> Result<PaymentRecord, StorageError> {
    if let Some(record) = store.get_payment(hold.payment)? {
        return Ok(record);
    }
    let record = presumed_abort(&hold.record);
    changes.put_payment(hold.payment, &record);
    recovered.payments_presumed_aborted += 1;
    Ok(record)
}

/// The definitive outcome of a payment prepared but never decided.
fn presumed_abort(hold: &HoldRecord) -> PaymentRecord {
    PaymentRecord {
        // Declined: no window counts from it.
        at_ms: 0,
        authorization: None,
        amount_minor: hold.amount_minor,
        cards: hold
            .card_keys
            .iter()
            .map(|key| CardRef {
                key: PinKey(*key),
                // A decline shows no card digits; none are kept in holds.
                last4: 0,
            })
            .collect(),
        outcome: RecordedOutcome::Declined {
            reason: DeclineReason::Aborted,
            position: None,
            available_minor: 0,
        },
    }
}
