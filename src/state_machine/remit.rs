//! Settlement on the shards. Remittances: a store HQ's payment to the
//! center, booked against its stores' debt. Payouts: the center's payment
//! to a merchant, and its fee, booked against the merchant's balance. The remittance's home shard writes its record
//! and credits the stores' `remitted` books (its shares of them) in one
//! write; the allocation was decided from every shard's shares by the
//! driver (`src/operation/remit.rs`).

use super::ShardMachine;
use crate::ids::{PaymentId, RemittanceId, StoreId};
use crate::ledger::StoreShares;
use crate::storage::Changes;
use crate::storage::records::{
    BookKind, JournalEntry, JournalKind, PayoutRecord, RemittanceRecord,
};

impl ShardMachine {
    /// This shard's shares of each store's books, in the order asked.
    pub fn store_shares(&self, stores: &[StoreId]) -> Vec<StoreShares> {
        stores
            .iter()
            .map(|&store| self.books.store_shares(store))
            .collect()
    }

    /// Records a payout (and the request that created it), and when
    /// `book`, books what it paid and its fee against the merchant.
    pub fn record_payout(
        &mut self,
        merchant_id: u32,
        seq: u64,
        record: &PayoutRecord,
        request: Option<PaymentId>,
        book: bool,
        out: &mut Changes,
    ) {
        out.put_payout(merchant_id, seq, record);
        if let Some(request) = request {
            out.put_payout_request(request, merchant_id, seq);
        }
        if book {
            if record.amount_minor > 0 {
                self.credit(BookKind::MerchantPaidOut, merchant_id, record.amount_minor);
            }
            if record.fee_minor > 0 {
                self.credit(BookKind::Fees, merchant_id, record.fee_minor);
            }
        }
    }

    /// Records a remittance and books its allocations.
    pub fn record_remittance(
        &mut self,
        remittance: RemittanceId,
        record: &RemittanceRecord,
        out: &mut Changes,
    ) {
        out.put_remittance(remittance, record);
        // The journal's time, stamped here like every entry of a statement
        // (`ShardMachine::stamp`); the record keeps when it was decided.
        let at_ms = self.stamp(record.at_ms);
        for &(store, amount_minor) in &record.allocations {
            self.credit(BookKind::StoreRemitted, store, amount_minor);
            let entry = JournalEntry {
                at_ms,
                kind: JournalKind::Remittance,
                subject: u64::from(remittance.operator_id),
                reference: remittance.request_id,
            };
            out.put_journal(store, &entry, amount_minor);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::machine_with;
    use super::*;
    use crate::card::Card;
    use crate::pin::PinKey;

    #[test]
    fn a_remittance_is_booked_against_the_stores_and_read_back() {
        let mut machine = machine_with(&[(1, Card::issued(700)), (2, Card::issued(300))]);
        let mut out = Changes::new();
        machine.activate(PinKey([1; 16]), 4, 1, 0, 0, &mut out);
        machine.activate(PinKey([2; 16]), 5, 1, 0, 0, &mut out);
        let record = RemittanceRecord {
            store_hq_id: 40,
            amount_minor: 800,
            reference: "BANK-1".into(),
            at_ms: 0,
            allocations: vec![(4, 700), (5, 100)],
            owed_before_minor: 1000,
        };
        let id = RemittanceId {
            operator_id: 1,
            request_id: 9,
        };
        machine.record_remittance(id, &record, &mut out);
        let shares = machine.store_shares(&[4, 5, 6]);
        assert_eq!(shares[0].debt_minor(), 0);
        assert_eq!((shares[1].owed_minor, shares[1].debt_minor()), (300, 200));
        assert_eq!(shares[2], StoreShares::default());
        machine.end_batch(&mut out);
        let page = machine.report_page(None, None, 10);
        assert_eq!(page.lines[1].remitted_minor, 100);
    }
}
