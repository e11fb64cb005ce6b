//! The merchant's order id of each payment named by one (`crate::order`),
//! in the `order_ids` column family: key the [`PaymentId`]'s 12 bytes,
//! value a format byte (1) then the order id's ASCII bytes.
//!
//! Written *without* its own fsync, before the payment is routed: RocksDB
//! has one write-ahead log, appended in order, and the payment's record is
//! written later with `sync = true`, which syncs the log up to and past
//! this record. So a payment that is durable has its order id durable too,
//! at no extra fsync; an order id whose payment never happened is harmless
//! (a lookup finds no payment under it).

use super::{Cf, Storage, StorageError};
use crate::ids::PaymentId;
use rocksdb::WriteOptions;

/// The format byte in front of a stored order id.
const ORDER_ID_FORMAT: u8 = 1;

impl Storage {
    /// Records that `payment` is named by order id `text` (unsynced; see
    /// the module's comment for why that is enough).
    pub fn note_order_id(&self, payment: PaymentId, text: &str) -> Result<(), StorageError> {
        let mut value = Vec::with_capacity(1 + text.len());
        value.push(ORDER_ID_FORMAT);
        value.extend_from_slice(text.as_bytes());
        let unsynced = WriteOptions::default();
        self.db
            .put_cf_opt(self.cf(Cf::OrderIds), payment.to_bytes(), value, &unsynced)?;
        Ok(())
    }

    /// The order id recorded for `payment`, if one was.
    pub fn order_id_of(&self, payment: PaymentId) -> Result<Option<String>, StorageError> {
        let Some(bytes) = self.db.get_cf(self.cf(Cf::OrderIds), payment.to_bytes())? else {
            return Ok(None);
        };
        match bytes.split_first() {
            Some((&ORDER_ID_FORMAT, text)) => String::from_utf8(text.to_vec())
                .map(Some)
                .map_err(|_| StorageError::Corrupt("an order id that is not UTF-8".into())),
            _ => Err(StorageError::Corrupt(
                "an order id record of an unknown format".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_id_survives_a_reopen_once_a_synced_write_follows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let payment = PaymentId {
            merchant_id: 5,
            request_id: 1 << 63,
        };
        {
            let storage = Storage::open(dir.path()).expect("open");
            assert_eq!(storage.order_id_of(payment), Ok(None));
            storage.note_order_id(payment, "ORD-1").expect("noted");
            let mut synced = super::super::Changes::new();
            synced.put(Cf::Meta, b"after", b"1");
            super::super::Store::commit(&storage, &synced).expect("commit");
        }
        let storage = Storage::open(dir.path()).expect("reopen");
        assert_eq!(storage.order_id_of(payment), Ok(Some("ORD-1".into())));
    }
}
