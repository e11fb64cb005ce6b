//! A write-set: puts and deletes to apply atomically.

use super::Cf;
use super::records::{
    self, BookKind, HoldRecord, OperationRecord, PaymentRecord, PaymentRefunds, PrincipalRecord,
    RefundRecord, RemittanceRecord,
};
use crate::card::Card;
use crate::ids::{OperationId, PaymentId, RefundId, RemittanceId, ShardId};
use crate::pin::PinKey;

/// Puts and deletes to apply atomically, in order.
///
/// Layout per change: `cf u8 | key_len u8 | value_len u32 LE | key | value`,
/// with `value_len == u32::MAX` marking a delete. The arena is cleared and
/// reused between batches, so a warm shard allocates nothing per change.
#[derive(Default)]
pub struct Changes {
    bytes: Vec<u8>,
    count: usize,
}

const DELETE_MARK: u32 = u32::MAX;
/// Bytes before a change's key: cf, key length, value length.
const CHANGE_HEADER_BYTES: usize = 1 + 1 + 4;

impl Changes {
    pub fn new() -> Changes {
        Changes::default()
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes the arena holds (to size a `WriteBatch`).
    pub(crate) fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.count = 0;
    }

    pub(crate) fn put(&mut self, cf: Cf, key: &[u8], value: &[u8]) {
        self.put_with(cf, key, |out| out.extend_from_slice(value));
    }

    /// Puts a value that `write_value` appends straight into the arena (no
    /// intermediate buffer).
    pub(crate) fn put_with(&mut self, cf: Cf, key: &[u8], write_value: impl FnOnce(&mut Vec<u8>)) {
        let length_at = self.push_header(cf, key);
        let value_at = self.bytes.len();
        write_value(&mut self.bytes);
        let value_len = u32::try_from(self.bytes.len() - value_at)
            .ok()
            .filter(|len| *len != DELETE_MARK)
            .expect("a record is far smaller than 4 GiB");
        self.bytes[length_at..length_at + 4].copy_from_slice(&value_len.to_le_bytes());
    }

    pub(crate) fn delete(&mut self, cf: Cf, key: &[u8]) {
        let length_at = self.push_header(cf, key);
        self.bytes[length_at..length_at + 4].copy_from_slice(&DELETE_MARK.to_le_bytes());
    }

    /// Appends cf, key length, a length placeholder and the key; returns
    /// where the placeholder sits.
    fn push_header(&mut self, cf: Cf, key: &[u8]) -> usize {
        let key_len = u8::try_from(key.len()).expect("keys are short and fixed");
        self.bytes.push(cf as u8);
        self.bytes.push(key_len);
        let length_at = self.bytes.len();
        self.bytes.extend_from_slice(&[0u8; 4]);
        self.bytes.extend_from_slice(key);
        self.count += 1;
        length_at
    }

    pub(crate) fn for_each(&self, mut visit: impl FnMut(Cf, &[u8], Option<&[u8]>)) {
        let mut at = 0;
        for _ in 0..self.count {
            let cf = Cf::from_u8(self.bytes[at]);
            let key_len = usize::from(self.bytes[at + 1]);
            let mut len = [0u8; 4];
            len.copy_from_slice(&self.bytes[at + 2..at + CHANGE_HEADER_BYTES]);
            let value_len = u32::from_le_bytes(len);
            at += CHANGE_HEADER_BYTES;
            let key = &self.bytes[at..at + key_len];
            at += key_len;
            if value_len == DELETE_MARK {
                visit(cf, key, None);
            } else {
                let value = &self.bytes[at..at + value_len as usize];
                at += value_len as usize;
                visit(cf, key, Some(value));
            }
        }
        assert_eq!(at, self.bytes.len(), "the arena holds whole changes only");
    }

    // Typed helpers: the one place each record kind is written.

    pub(crate) fn put_card(&mut self, key: &PinKey, card: &Card) {
        self.put(Cf::Cards, &key.0, &records::encode_card(card));
    }

    pub(crate) fn put_payment(&mut self, payment: PaymentId, record: &PaymentRecord) {
        self.put_with(Cf::Payments, &payment.to_bytes(), |out| {
            record.encode_into(out)
        });
    }

    /// The merchant's order id naming `payment` (`src/order.rs`), written
    /// beside the payment's record.
    pub(crate) fn put_order_id(&mut self, payment: PaymentId, order_id: &str) {
        self.put_with(Cf::OrderIds, &payment.to_bytes(), |out| {
            out.push(super::orders::ORDER_ID_FORMAT);
            out.extend_from_slice(order_id.as_bytes());
        });
    }

    pub(crate) fn put_hold(&mut self, payment: PaymentId, card: &PinKey, hold: &HoldRecord) {
        self.put_with(Cf::Holds, &records::hold_key(payment, card), |out| {
            hold.encode_into(out)
        });
    }

    pub(crate) fn delete_hold(&mut self, payment: PaymentId, card: &PinKey) {
        self.delete(Cf::Holds, &records::hold_key(payment, card));
    }

    pub(crate) fn put_refund(&mut self, refund: RefundId, record: &RefundRecord) {
        self.put_with(Cf::Refunds, &refund.to_bytes(), |out| {
            record.encode_into(out)
        });
    }

    pub(crate) fn put_payment_refunds(&mut self, payment: PaymentId, refunds: &PaymentRefunds) {
        self.put_with(Cf::Refunded, &payment.to_bytes(), |out| {
            refunds.encode_into(out)
        });
    }

    pub(crate) fn put_journal(
        &mut self,
        store_id: u32,
        entry: &records::JournalEntry,
        amount_minor: u64,
    ) {
        self.put(
            Cf::StoreJournal,
            &records::journal_key(store_id, entry),
            &amount_minor.to_le_bytes(),
        );
    }

    pub(crate) fn put_pin_failure(&mut self, principal: u32, at_ms: u64, seq: u64) {
        let key = records::pin_failure_key(principal, at_ms, seq);
        self.put(Cf::PinFailures, &key, &[]);
    }

    pub(crate) fn delete_pin_failure(&mut self, principal: u32, at_ms: u64, seq: u64) {
        let key = records::pin_failure_key(principal, at_ms, seq);
        self.delete(Cf::PinFailures, &key);
    }

    pub(crate) fn put_lock(&mut self, principal: u32, until_ms: u64) {
        self.put(
            Cf::PinFailures,
            &records::lock_key(principal),
            &until_ms.to_le_bytes(),
        );
    }

    pub(crate) fn delete_lock(&mut self, principal: u32) {
        self.delete(Cf::PinFailures, &records::lock_key(principal));
    }

    pub(crate) fn put_payout(
        &mut self,
        merchant_id: u32,
        seq: u64,
        record: &records::PayoutRecord,
    ) {
        self.put_with(Cf::Payouts, &records::payout_key(merchant_id, seq), |out| {
            record.encode_into(out)
        });
    }

    pub(crate) fn put_payout_request(&mut self, request: PaymentId, merchant_id: u32, seq: u64) {
        self.put(
            Cf::PayoutRequests,
            &request.to_bytes(),
            &records::encode_payout_ref(merchant_id, seq),
        );
    }

    pub(crate) fn put_remittance(&mut self, remittance: RemittanceId, record: &RemittanceRecord) {
        self.put_with(Cf::Remittances, &remittance.to_bytes(), |out| {
            record.encode_into(out)
        });
    }

    pub(crate) fn put_operation(&mut self, operation: OperationId, record: &OperationRecord) {
        self.put_with(Cf::Operations, &operation.to_bytes(), |out| {
            record.encode_into(out)
        });
    }

    pub(crate) fn put_authorization_index(&mut self, expires_at_ms: u64, authorization: PaymentId) {
        let key = records::authorization_key(expires_at_ms, authorization);
        self.put(Cf::Authorizations, &key, &[]);
    }

    pub(crate) fn delete_authorization_index(
        &mut self,
        expires_at_ms: u64,
        authorization: PaymentId,
    ) {
        let key = records::authorization_key(expires_at_ms, authorization);
        self.delete(Cf::Authorizations, &key);
    }

    pub(crate) fn put_reversal(
        &mut self,
        card: &PinKey,
        store_id: u32,
        pos_ref: u64,
        amount_minor: u64,
    ) {
        self.put(
            Cf::Reversals,
            &records::reversal_key(card, store_id, pos_ref),
            &amount_minor.to_le_bytes(),
        );
    }

    pub(crate) fn put_credit(&mut self, refund: RefundId, card: &PinKey, amount_minor: u64) {
        self.put(
            Cf::Credits,
            &records::credit_key(refund, card),
            &amount_minor.to_le_bytes(),
        );
    }

    pub(crate) fn delete_credit(&mut self, refund: RefundId, card: &PinKey) {
        self.delete(Cf::Credits, &records::credit_key(refund, card));
    }

    pub fn put_book(&mut self, kind: BookKind, account_id: u32, shard: ShardId, amount_minor: u64) {
        self.put(
            Cf::Books,
            &records::book_key(kind, account_id, shard),
            &amount_minor.to_le_bytes(),
        );
    }

    pub(crate) fn put_principal(&mut self, id: u32, record: &PrincipalRecord) {
        self.put_with(Cf::Principals, &id.to_be_bytes(), |out| {
            record.encode_into(out)
        });
    }

    pub(crate) fn delete_book(&mut self, kind: BookKind, account_id: u32, shard: ShardId) {
        self.delete(Cf::Books, &records::book_key(kind, account_id, shard));
    }

    /// The checkpoint covers `partition`'s log records up to `position`:
    /// written with the effects of that record, so the two are never
    /// apart.
    pub(crate) fn put_log_applied(&mut self, partition: u32, position: u64) {
        self.put(
            Cf::Meta,
            &log_applied_key(partition),
            &position.to_le_bytes(),
        );
    }

    /// The arena: a command log record's payload.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// A write-set read back from a log record, every change checked to be
    /// whole and to name a known column family (damage is an error, never
    /// a panic).
    pub fn from_bytes(bytes: &[u8]) -> Result<Changes, String> {
        let mut at = 0;
        let mut count = 0;
        while at < bytes.len() {
            let header = bytes
                .get(at..at + CHANGE_HEADER_BYTES)
                .ok_or_else(|| format!("a change header cut at byte {at}"))?;
            if usize::from(header[0]) >= Cf::ALL.len() {
                return Err(format!("unknown column family {} at byte {at}", header[0]));
            }
            let key_len = usize::from(header[1]);
            let value_len = u32::from_le_bytes(header[2..6].try_into().expect("4 bytes"));
            let value_len = if value_len == DELETE_MARK {
                0
            } else {
                value_len as usize
            };
            at += CHANGE_HEADER_BYTES + key_len + value_len;
            if at > bytes.len() {
                return Err(format!("change {count} runs past the record"));
            }
            count += 1;
        }
        Ok(Changes {
            bytes: bytes.to_vec(),
            count,
        })
    }
}

/// Where [`Changes::put_log_applied`] keeps a partition's position: an
/// array, since every group commit writes one (a Vec was two allocations
/// per commit, issue #20).
pub(crate) fn log_applied_key(partition: u32) -> [u8; LOG_APPLIED_KEY_BYTES] {
    let mut key = [0u8; LOG_APPLIED_KEY_BYTES];
    key[..LOG_APPLIED_PREFIX.len()].copy_from_slice(LOG_APPLIED_PREFIX);
    key[LOG_APPLIED_PREFIX.len()..].copy_from_slice(&partition.to_be_bytes());
    key
}

const LOG_APPLIED_PREFIX: &[u8] = b"log-applied/";
const LOG_APPLIED_KEY_BYTES: usize = LOG_APPLIED_PREFIX.len() + 4;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_replay_in_order_and_clear_for_reuse() {
        let mut changes = Changes::new();
        changes.put(Cf::Meta, b"a", b"1");
        changes.delete(Cf::Holds, b"b");
        changes.put(Cf::Cards, b"c", b"");
        let mut seen = Vec::new();
        changes.for_each(|cf, key, value| seen.push((cf, key.to_vec(), value.map(<[u8]>::to_vec))));
        assert_eq!(
            seen,
            vec![
                (Cf::Meta, b"a".to_vec(), Some(b"1".to_vec())),
                (Cf::Holds, b"b".to_vec(), None),
                (Cf::Cards, b"c".to_vec(), Some(Vec::new())),
            ]
        );
        let copy = Changes::from_bytes(changes.as_bytes()).expect("whole");
        assert_eq!(copy.len(), 3);
        assert_eq!(copy.as_bytes(), changes.as_bytes());
        changes.clear();
        assert!(changes.is_empty());
        assert_eq!(changes.byte_len(), 0);
    }

    #[test]
    fn damaged_write_sets_are_errors_never_panics() {
        let mut changes = Changes::new();
        changes.put(Cf::Meta, b"a", b"1");
        changes.delete(Cf::Holds, b"b");
        let bytes = changes.as_bytes().to_vec();
        for cut in 1..bytes.len() {
            let whole_changes = cut == 8; // just after the first change
            assert_eq!(
                Changes::from_bytes(&bytes[..cut]).is_ok(),
                whole_changes,
                "cut {cut}"
            );
        }
        let mut unknown = bytes.clone();
        unknown[0] = Cf::ALL.len() as u8;
        assert!(Changes::from_bytes(&unknown).is_err());
        proptest::proptest!(|(noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64))| {
            if let Ok(changes) = Changes::from_bytes(&noise) {
                changes.for_each(|_, _, _| {});
            }
        });
    }
}
