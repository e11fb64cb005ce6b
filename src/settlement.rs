//! Settlement: which payments and refunds a merchant's payout closes and
//! what it pays; merchants' and stores' statements by period.
//!
//! A payout covers a merchant's payments approved and refunds made with
//! their engine-clock time in `(from, until]`, where `from` is the
//! previous payout's `until`: every payment and refund belongs to exactly
//! one payout, by its time, with no list of assignments to keep. Payment
//! records are keyed by merchant first, so one merchant's records are one
//! key range: a payout reads that range (and its refunds') once.
//!
//! `fee = (payments − refunds) × bps / 10 000`, rounded down (0 when
//! refunds exceed payments); `amount = payments − refunds − fee − carried
//! in` when that is positive, else 0 and the shortfall is carried into the
//! next payout. All of it in u128 before the result is checked back into
//! u64: no sum can overflow.

use crate::card::DeclineReason;
use crate::protocol::{
    PayoutInfo, PayoutItem, PayoutItemKind, PayoutItemRef, StatementKind, StatementLine,
    StatementRef, StatementRequest, StatementResponse, StoreEntryKind, StoreStatementLine,
    StoreStatementRef, StoreStatementRequest, StoreStatementResponse,
};
use crate::storage::records::{
    self, JournalEntry, JournalKind, PaymentRecord, PayoutRecord, RecordedOutcome, RefundRecord,
};
use crate::storage::{Cf, StorageError, Store};

/// A merchant's payments and refunds in a period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeriodSums {
    pub payments: u64,
    pub payments_minor: u64,
    pub refunds: u64,
    pub refunds_minor: u64,
}

/// What an approved payment took (a captured authorization: what was
/// captured), or `None` for any other record.
pub fn taken_minor(record: &PaymentRecord) -> Option<u64> {
    match &record.outcome {
        RecordedOutcome::Approved { parts } => Some(parts.iter().map(|p| p.taken_minor).sum()),
        _ => None,
    }
}

/// Visits `merchant`'s payments then refunds decided in `(from_ms,
/// until_ms]`, each kind by request id, starting after `after`, while
/// `visit` answers true.
pub fn visit_period(
    store: &dyn Store,
    merchant_id: u32,
    from_ms: u64,
    until_ms: u64,
    after: Option<PayoutItemRef>,
    visit: &mut dyn FnMut(PayoutItem) -> bool,
) -> Result<(), StorageError> {
    let in_period = |at_ms: u64| from_ms < at_ms && at_ms <= until_ms;
    let prefix = records::principal_prefix(merchant_id);
    let mut going = true;
    for (kind, cf) in [
        (PayoutItemKind::Payment, Cf::Payments),
        (PayoutItemKind::Refund, Cf::Refunds),
    ] {
        let from_key = match after {
            // Past this kind already.
            Some(after) if after.kind > kind => continue,
            Some(after) if after.kind == kind => match after.request_id.checked_add(1) {
                Some(next) => records::payout_key(merchant_id, next).to_vec(),
                None => continue,
            },
            _ => prefix.to_vec(),
        };
        store.scan_from(cf, &from_key, &mut |key, value| {
            if !key.starts_with(&prefix) {
                return Ok(false);
            }
            let (_, request_id) = records::decode_payout_key(key)?;
            let amount_at = match kind {
                PayoutItemKind::Payment => {
                    let record = PaymentRecord::decode(value)?;
                    taken_minor(&record).map(|amount| (amount, record.at_ms))
                }
                PayoutItemKind::Refund => {
                    let record = RefundRecord::decode(value)?;
                    Some((record.amount_minor, record.at_ms))
                }
            };
            if let Some((amount_minor, at_ms)) = amount_at.filter(|(_, at)| in_period(*at)) {
                let item = PayoutItem {
                    item: PayoutItemRef { kind, request_id },
                    amount_minor,
                    at_ms,
                };
                going = visit(item);
            }
            Ok(going)
        })?;
        if !going {
            break;
        }
    }
    Ok(())
}

/// The sums of a merchant's period.
pub fn period_sums(
    store: &dyn Store,
    merchant_id: u32,
    from_ms: u64,
    until_ms: u64,
) -> Result<PeriodSums, StorageError> {
    let mut sums = PeriodSums::default();
    let mut overflow = false;
    visit_period(store, merchant_id, from_ms, until_ms, None, &mut |item| {
        let (count, total) = match item.item.kind {
            PayoutItemKind::Payment => (&mut sums.payments, &mut sums.payments_minor),
            PayoutItemKind::Refund => (&mut sums.refunds, &mut sums.refunds_minor),
        };
        *count += 1;
        match total.checked_add(item.amount_minor) {
            Some(sum) => *total = sum,
            None => overflow = true,
        }
        !overflow
    })?;
    if overflow {
        return Err(StorageError::Inconsistent(format!(
            "merchant {merchant_id}: period sums overflow"
        )));
    }
    Ok(sums)
}

/// The payout closing `sums` after a payout `last` (if any), or why not.
#[allow(clippy::too_many_arguments)]
pub fn close_period(
    last: Option<&PayoutRecord>,
    sums: PeriodSums,
    until_ms: u64,
    fee_bps: u32,
    now_ms: u64,
) -> Result<PayoutRecord, DeclineReason> {
    let from_ms = last.map_or(0, |p| p.until_ms);
    if until_ms <= from_ms {
        return Err(DeclineReason::PeriodClosed);
    }
    let carried_in_minor = last.map_or(0, |p| p.carried_out_minor);
    if sums.payments == 0 && sums.refunds == 0 && carried_in_minor == 0 {
        return Err(DeclineReason::NothingToPay);
    }
    let net = u128::from(sums.payments_minor).saturating_sub(u128::from(sums.refunds_minor));
    let fee = net * u128::from(fee_bps) / 10_000;
    let owed = i128::from(sums.payments_minor)
        - i128::from(sums.refunds_minor)
        - i128::try_from(fee).expect("a fee is at most the amount")
        - i128::from(carried_in_minor);
    let fit = |value: i128| u64::try_from(value).expect("payout sums fit u64");
    Ok(PayoutRecord {
        from_ms,
        until_ms,
        payments: sums.payments,
        payments_minor: sums.payments_minor,
        refunds: sums.refunds,
        refunds_minor: sums.refunds_minor,
        fee_bps,
        fee_minor: fit(i128::try_from(fee).expect("fits")),
        carried_in_minor,
        amount_minor: fit(owed.max(0)),
        carried_out_minor: fit((-owed).max(0)),
        created_at_ms: now_ms,
        confirmed_reference: None,
        confirmed_at_ms: 0,
    })
}

/// What a payout of `merchant_id` up to `until_ms` closes after its last
/// payout: its `(seq, record)`, or why there is none. The reads and the
/// pure rules `kessai payout create` runs, once every shard has sealed the
/// cut-off; the simulation runs them too.
pub fn close_since_last(
    store: &dyn Store,
    merchant_id: u32,
    until_ms: u64,
    fee_bps: u32,
    now_ms: u64,
) -> Result<Result<(u64, PayoutRecord), DeclineReason>, StorageError> {
    let last = last_payout(store, merchant_id)?;
    let from_ms = last.as_ref().map_or(0, |(_, p)| p.until_ms);
    let sums = period_sums(store, merchant_id, from_ms, until_ms)?;
    let seq = last.as_ref().map_or(1, |(seq, _)| seq + 1);
    let last_record = last.as_ref().map(|(_, record)| record);
    let closed = close_period(last_record, sums, until_ms, fee_bps, now_ms);
    Ok(closed.map(|record| (seq, record)))
}

/// A merchant's last payout, if any: `(seq, record)`.
pub fn last_payout(
    store: &dyn Store,
    merchant_id: u32,
) -> Result<Option<(u64, PayoutRecord)>, StorageError> {
    let prefix = records::principal_prefix(merchant_id);
    let mut last = None;
    store.scan_from(Cf::Payouts, &prefix, &mut |key, value| {
        if !key.starts_with(&prefix) {
            return Ok(false);
        }
        let (_, seq) = records::decode_payout_key(key)?;
        last = Some((seq, PayoutRecord::decode(value)?));
        Ok(true)
    })?;
    Ok(last)
}

/// The wire's view of a stored payout.
pub fn info(merchant_id: u32, seq: u64, record: &PayoutRecord) -> PayoutInfo {
    PayoutInfo {
        merchant_id,
        seq,
        from_ms: record.from_ms,
        until_ms: record.until_ms,
        payments: record.payments,
        payments_minor: record.payments_minor,
        refunds: record.refunds,
        refunds_minor: record.refunds_minor,
        fee_bps: record.fee_bps,
        fee_minor: record.fee_minor,
        carried_in_minor: record.carried_in_minor,
        amount_minor: record.amount_minor,
        carried_out_minor: record.carried_out_minor,
        created_at_ms: record.created_at_ms,
        confirmed_reference: record.confirmed_reference.clone(),
        confirmed_at_ms: record.confirmed_at_ms,
    }
}

/// One page of a merchant's statement: its payments, refunds and payouts
/// with their time in the period, read from its records (one key range of
/// each family: records are keyed by merchant first).
pub fn statement_page(
    storage: &dyn Store,
    request: &StatementRequest,
) -> Result<StatementResponse, StorageError> {
    let limit = request.limit as usize;
    let mut lines: Vec<StatementLine> = Vec::new();
    let mut more = false;
    // Payments and refunds, unless the cursor is past them.
    if let Some(after) = items_after(request.after) {
        more = item_lines(storage, request, after, limit, &mut lines)?;
    }
    if !more {
        more = payout_lines(storage, request, limit, &mut lines)?;
    }
    let next = more.then(|| lines.last().map(|line| line.line)).flatten();
    Ok(StatementResponse { lines, next })
}

/// Where a statement's payments and refunds resume after the cursor
/// `after`: from the start (`Some(None)`), after one of them, or not at all
/// (`None`: the cursor is already in the payouts).
fn items_after(after: Option<StatementRef>) -> Option<Option<PayoutItemRef>> {
    match after {
        Some(StatementRef {
            kind: StatementKind::Payout,
            ..
        }) => None,
        Some(after) => Some(Some(PayoutItemRef {
            kind: match after.kind {
                StatementKind::Payment => PayoutItemKind::Payment,
                _ => PayoutItemKind::Refund,
            },
            request_id: after.id,
        })),
        None => Some(None),
    }
}

/// Adds the merchant's payments and refunds in the period, after `after`,
/// to `lines` until they hold `limit`; true when more are left.
fn item_lines(
    storage: &dyn Store,
    request: &StatementRequest,
    after: Option<PayoutItemRef>,
    limit: usize,
    lines: &mut Vec<StatementLine>,
) -> Result<bool, StorageError> {
    let mut more = false;
    visit_period(
        storage,
        request.merchant_id,
        request.from_ms,
        request.to_ms,
        after,
        &mut |item| {
            if lines.len() == limit {
                more = true;
                return false;
            }
            let kind = match item.item.kind {
                PayoutItemKind::Payment => StatementKind::Payment,
                PayoutItemKind::Refund => StatementKind::Refund,
            };
            lines.push(StatementLine {
                line: StatementRef {
                    kind,
                    id: item.item.request_id,
                },
                amount_minor: item.amount_minor,
                fee_minor: 0,
                at_ms: item.at_ms,
            });
            true
        },
    )?;
    Ok(more)
}

/// Adds the merchant's payouts created in the period, after the cursor if
/// it is a payout, to `lines` until they hold `limit`; true when more are
/// left.
fn payout_lines(
    storage: &dyn Store,
    request: &StatementRequest,
    limit: usize,
    lines: &mut Vec<StatementLine>,
) -> Result<bool, StorageError> {
    let in_period = |at_ms: u64| request.from_ms < at_ms && at_ms <= request.to_ms;
    let first_seq = match request.after {
        Some(StatementRef {
            kind: StatementKind::Payout,
            id,
        }) => id.checked_add(1),
        _ => Some(1),
    };
    let Some(first_seq) = first_seq else {
        return Ok(false);
    };
    let mut more = false;
    let prefix = records::principal_prefix(request.merchant_id);
    let start = records::payout_key(request.merchant_id, first_seq);
    storage.scan_from(Cf::Payouts, &start, &mut |key, value| {
        if !key.starts_with(&prefix) {
            return Ok(false);
        }
        let payout = PayoutRecord::decode(value)?;
        if !in_period(payout.created_at_ms) {
            return Ok(true);
        }
        if lines.len() == limit {
            more = true;
            return Ok(false);
        }
        let (_, seq) = records::decode_payout_key(key)?;
        lines.push(StatementLine {
            line: StatementRef {
                kind: StatementKind::Payout,
                id: seq,
            },
            amount_minor: payout.amount_minor,
            fee_minor: payout.fee_minor,
            at_ms: payout.created_at_ms,
        });
        Ok(true)
    })?;
    Ok(more)
}

/// One page of a store's statement: its journal (activations, reversals,
/// remittances) with their time in the period, one key range: entries are
/// keyed by store, then time.
pub fn store_statement_page(
    storage: &dyn Store,
    request: &StoreStatementRequest,
) -> Result<StoreStatementResponse, StorageError> {
    let store = request.store_id;
    let start = match request.after {
        Some(after) => records::journal_key(store, &entry_of(&after)).to_vec(),
        None => {
            let first = JournalEntry {
                at_ms: request.from_ms.saturating_add(1),
                kind: JournalKind::Activation,
                subject: 0,
                reference: 0,
            };
            records::journal_key(store, &first).to_vec()
        }
    };
    let limit = request.limit as usize;
    let mut lines: Vec<StoreStatementLine> = Vec::new();
    let mut more = false;
    storage.scan_from(Cf::StoreJournal, &start, &mut |key, value| {
        let (of, entry) = records::decode_journal_key(key)?;
        if of != store || entry.at_ms > request.to_ms {
            return Ok(false);
        }
        let line = ref_of(&entry);
        if request.after == Some(line) || entry.at_ms <= request.from_ms {
            // The cursor itself (on the last page), or before the period
            // (a cursor from another period).
            return Ok(true);
        }
        if lines.len() == limit {
            more = true;
            return Ok(false);
        }
        lines.push(StoreStatementLine {
            line,
            amount_minor: records::decode_u64(value)?,
        });
        Ok(true)
    })?;
    let next = more.then(|| lines.last().map(|line| line.line)).flatten();
    Ok(StoreStatementResponse { lines, next })
}

fn ref_of(entry: &JournalEntry) -> StoreStatementRef {
    StoreStatementRef {
        at_ms: entry.at_ms,
        kind: match entry.kind {
            JournalKind::Activation => StoreEntryKind::Activation,
            JournalKind::Reversal => StoreEntryKind::Reversal,
            JournalKind::Remittance => StoreEntryKind::Remittance,
        },
        subject: entry.subject,
        request_id: entry.reference,
    }
}

fn entry_of(line: &StoreStatementRef) -> JournalEntry {
    JournalEntry {
        at_ms: line.at_ms,
        kind: match line.kind {
            StoreEntryKind::Activation => JournalKind::Activation,
            StoreEntryKind::Reversal => JournalKind::Reversal,
            StoreEntryKind::Remittance => JournalKind::Remittance,
        },
        subject: line.subject,
        reference: line.request_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums(payments_minor: u64, refunds_minor: u64) -> PeriodSums {
        PeriodSums {
            payments: u64::from(payments_minor > 0),
            payments_minor,
            refunds: u64::from(refunds_minor > 0),
            refunds_minor,
        }
    }

    #[test]
    fn a_payout_pays_payments_less_refunds_less_its_fee() {
        let first = close_period(None, sums(10_000, 1_000), 50, 250, 60).expect("paid");
        assert_eq!((first.from_ms, first.until_ms), (0, 50));
        assert_eq!(first.fee_minor, 225, "2.5 % of 9000");
        assert_eq!((first.amount_minor, first.carried_out_minor), (8_775, 0));
        // Rounded down: 2.5 % of 999 is 24.975.
        let small = close_period(None, sums(999, 0), 50, 250, 60).expect("paid");
        assert_eq!((small.fee_minor, small.amount_minor), (24, 975));
    }

    #[test]
    fn refunds_beyond_payments_are_carried_into_the_next_payout() {
        let first = close_period(None, sums(0, 700), 50, 250, 60).expect("closed");
        assert_eq!(
            (first.fee_minor, first.amount_minor, first.carried_out_minor),
            (0, 0, 700)
        );
        let next = close_period(Some(&first), sums(1_000, 0), 90, 0, 95).expect("paid");
        assert_eq!(
            (next.from_ms, next.carried_in_minor, next.amount_minor),
            (50, 700, 300)
        );
        assert_eq!(
            close_period(Some(&next), sums(0, 0), 99, 0, 100),
            Err(DeclineReason::NothingToPay)
        );
        assert_eq!(
            close_period(Some(&next), sums(5, 0), 90, 0, 100),
            Err(DeclineReason::PeriodClosed)
        );
    }
}
