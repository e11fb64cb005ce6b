//! The merchant's order id of each payment named by one (`src/order.rs`),
//! in the `order_ids` column family: key the [`PaymentId`]'s 12 bytes,
//! value a format byte (1) then the order id's ASCII bytes.
//!
//! Written in the same write-set as the payment's record (the shard's or
//! the coordinator's decision, [`Changes::put_order_id`]), so through the
//! command log: a payment that survives a crash keeps its order id, and an
//! order id is written only with a payment's record. A presumed abort,
//! which recovery writes for a two-phase payment whose coordinator died
//! undecided, has none: recovery does not know it (the payment is still
//! found under the order id, whose hash names it).

use super::StorageError;

/// The format byte in front of a stored order id.
pub(super) const ORDER_ID_FORMAT: u8 = 1;

/// Reads a stored order id back (the value [`Changes::put_order_id`]
/// writes).
///
/// [`Changes::put_order_id`]: super::Changes::put_order_id
pub(super) fn decode_order_id(bytes: &[u8]) -> Result<String, StorageError> {
    match bytes.split_first() {
        Some((&ORDER_ID_FORMAT, text)) => String::from_utf8(text.to_vec())
            .map_err(|_| StorageError::Corrupt("an order id that is not UTF-8".into())),
        _ => Err(StorageError::Corrupt(
            "an order id record of an unknown format".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Changes, Storage, Store};
    use crate::ids::PaymentId;

    #[test]
    fn an_order_id_is_read_back_after_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let payment = PaymentId {
            merchant_id: 5,
            request_id: 1 << 63,
        };
        {
            let storage = Storage::open(dir.path()).expect("open");
            assert_eq!(storage.order_id_of(payment), Ok(None));
            let mut changes = Changes::new();
            changes.put_order_id(payment, "ORD-1");
            storage.commit(&changes).expect("commit");
        }
        let storage = Storage::open(dir.path()).expect("reopen");
        assert_eq!(storage.order_id_of(payment), Ok(Some("ORD-1".into())));
    }
}
