//! Storage: one embedded RocksDB under the data dir.
//!
//! Shards never talk to RocksDB on their actor thread for writes. They
//! collect their changes in a [`Changes`] write-set (a flat byte arena: no
//! allocation per change once warm), and a writer thread turns the set into
//! one `WriteBatch` and writes it with `sync = true`: one fsync of the WAL
//! for everything the shard had ready (group commit). `WriteBatch` itself is
//! not `Send`, which is a second reason for the plain-bytes write-set.
//!
//! Reads on the hot path are limited to one point lookup per new payment
//! (the idempotency record), served mostly by the `payments` bloom filter.

pub mod records;

use crate::ids::PaymentId;
use crate::pin::PinKey;
use records::{BookKind, StoredPayment};
use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, DB, IteratorMode, Options, WriteBatch, WriteOptions,
};
use std::path::Path;

/// Column families, one per record type (layouts in [`records`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Cf {
    Cards = 0,
    Payments = 1,
    Holds = 2,
    Books = 3,
    Meta = 4,
}

impl Cf {
    pub const ALL: [Cf; 5] = [Cf::Cards, Cf::Payments, Cf::Holds, Cf::Books, Cf::Meta];

    pub fn name(self) -> &'static str {
        match self {
            Cf::Cards => "cards",
            Cf::Payments => "payments",
            Cf::Holds => "holds",
            Cf::Books => "books",
            Cf::Meta => "meta",
        }
    }

    fn from_u8(value: u8) -> Cf {
        Cf::ALL[value as usize]
    }
}

/// A storage failure. The engine treats a failed write as fatal: its memory
/// may be ahead of the disk, and only a restart (which reloads the disk)
/// makes them agree again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageError(pub String);

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "storage: {}", self.0)
    }
}

impl std::error::Error for StorageError {}

impl From<rocksdb::Error> for StorageError {
    fn from(error: rocksdb::Error) -> StorageError {
        StorageError(error.into_string())
    }
}

impl From<String> for StorageError {
    fn from(message: String) -> StorageError {
        StorageError(message)
    }
}

pub struct Storage {
    db: DB,
    synced: WriteOptions,
}

impl Storage {
    /// Opens (creating if needed) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Storage, StorageError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StorageError(format!("cannot create {}: {e}", dir.display())))?;
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.increase_parallelism(2);
        // Reusing WAL files saves a metadata update per sync.
        options.set_recycle_log_file_num(4);
        options.set_keep_log_file_num(4);

        let mut point_lookups = BlockBasedOptions::default();
        point_lookups.set_bloom_filter(10.0, false);
        // Every lookup is a point lookup by full key; new payment ids are
        // misses, which the bloom filters answer without touching a block.
        let families = Cf::ALL.map(|cf| {
            let mut cf_options = Options::default();
            cf_options.set_block_based_table_factory(&point_lookups);
            ColumnFamilyDescriptor::new(cf.name(), cf_options)
        });
        let db = DB::open_cf_descriptors(&options, dir.join("rocksdb"), families)?;
        let mut synced = WriteOptions::default();
        synced.set_sync(true);
        Ok(Storage { db, synced })
    }

    fn cf(&self, cf: Cf) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(cf.name())
            .expect("every column family is created at open")
    }

    /// Writes a write-set atomically and durably (WAL fsync) before
    /// returning.
    pub fn commit(&self, changes: &Changes) -> Result<(), StorageError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::with_capacity_bytes(changes.bytes.len() + 64);
        changes.for_each(|cf, key, value| match value {
            Some(value) => batch.put_cf(self.cf(cf), key, value),
            None => batch.delete_cf(self.cf(cf), key),
        });
        self.db.write_opt(batch, &self.synced)?;
        Ok(())
    }

    pub fn get_payment(&self, payment: PaymentId) -> Result<Option<StoredPayment>, StorageError> {
        match self
            .db
            .get_pinned_cf(self.cf(Cf::Payments), payment.to_bytes())?
        {
            Some(bytes) => Ok(Some(StoredPayment::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    pub fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.db.get_cf(self.cf(Cf::Meta), name.as_bytes())?)
    }

    /// Calls `visit` for every record of a column family, in key order.
    pub fn scan(
        &self,
        cf: Cf,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        for item in self.db.iterator_cf(self.cf(cf), IteratorMode::Start) {
            let (key, value) = item?;
            visit(&key, &value)?;
        }
        Ok(())
    }
}

/// A write-set: puts and deletes to apply atomically.
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

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.count = 0;
    }

    pub fn put(&mut self, cf: Cf, key: &[u8], value: &[u8]) {
        self.put_with(cf, key, |out| out.extend_from_slice(value));
    }

    /// Puts a value that `write_value` appends straight into the arena (no
    /// intermediate buffer).
    pub fn put_with(&mut self, cf: Cf, key: &[u8], write_value: impl FnOnce(&mut Vec<u8>)) {
        assert!(key.len() <= u8::MAX as usize, "keys are short and fixed");
        self.bytes.push(cf as u8);
        self.bytes.push(key.len() as u8);
        let length_at = self.bytes.len();
        self.bytes.extend_from_slice(&[0u8; 4]);
        self.bytes.extend_from_slice(key);
        let value_at = self.bytes.len();
        write_value(&mut self.bytes);
        let value_len = self.bytes.len() - value_at;
        assert!(value_len < DELETE_MARK as usize);
        self.bytes[length_at..length_at + 4].copy_from_slice(&(value_len as u32).to_le_bytes());
        self.count += 1;
    }

    pub fn delete(&mut self, cf: Cf, key: &[u8]) {
        assert!(key.len() <= u8::MAX as usize, "keys are short and fixed");
        self.bytes.push(cf as u8);
        self.bytes.push(key.len() as u8);
        self.bytes.extend_from_slice(&DELETE_MARK.to_le_bytes());
        self.bytes.extend_from_slice(key);
        self.count += 1;
    }

    pub fn for_each(&self, mut visit: impl FnMut(Cf, &[u8], Option<&[u8]>)) {
        let mut at = 0;
        for _ in 0..self.count {
            let cf = Cf::from_u8(self.bytes[at]);
            let key_len = self.bytes[at + 1] as usize;
            let mut len = [0u8; 4];
            len.copy_from_slice(&self.bytes[at + 2..at + 6]);
            let value_len = u32::from_le_bytes(len);
            at += 6;
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
        debug_assert_eq!(at, self.bytes.len());
    }

    // Typed helpers: the one place each record kind is written.

    pub fn put_card(&mut self, key: &PinKey, card: &crate::card::Card) {
        self.put(Cf::Cards, &key.0, &records::encode_card(card));
    }

    pub fn put_payment(&mut self, payment: PaymentId, stored: &StoredPayment) {
        self.put_with(Cf::Payments, &payment.to_bytes(), |out| {
            stored.encode_into(out)
        });
    }

    pub fn put_hold(&mut self, payment: PaymentId, card: &PinKey, hold: &records::HoldRecord) {
        self.put_with(Cf::Holds, &records::hold_key(payment, card), |out| {
            hold.encode_into(out)
        });
    }

    pub fn delete_hold(&mut self, payment: PaymentId, card: &PinKey) {
        self.delete(Cf::Holds, &records::hold_key(payment, card));
    }

    pub fn put_book(&mut self, kind: BookKind, account_id: u32, shard: u16, amount_minor: u64) {
        self.put(
            Cf::Books,
            &records::book_key(kind, account_id, shard),
            &amount_minor.to_le_bytes(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::Card;

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
        changes.clear();
        assert!(changes.is_empty());
    }

    #[test]
    fn committed_changes_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = PinKey([5; 16]);
        let card = Card::issued(500);
        {
            let storage = Storage::open(dir.path()).expect("open");
            let mut changes = Changes::new();
            changes.put_card(&key, &card);
            changes.put(Cf::Meta, b"x", b"y");
            storage.commit(&changes).expect("commit");
            let mut delete = Changes::new();
            delete.delete(Cf::Meta, b"x");
            storage.commit(&delete).expect("commit");
        }
        let storage = Storage::open(dir.path()).expect("reopen");
        let mut cards = Vec::new();
        storage
            .scan(Cf::Cards, |k, v| {
                cards.push((records::decode_pin_key(k)?, records::decode_card(v)?));
                Ok(())
            })
            .expect("scan");
        assert_eq!(cards, vec![(key, card)]);
        assert_eq!(storage.get_meta("x").expect("get"), None);
    }
}
