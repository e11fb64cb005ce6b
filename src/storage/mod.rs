//! Storage: one embedded RocksDB under the data dir, behind a small
//! [`Store`] interface.
//!
//! Shards never talk to RocksDB on their actor thread for writes. Their
//! state machines describe each change in a [`Changes`] write-set (a flat
//! byte arena: no allocation per change once warm). A writer thread appends
//! the set's bytes to the command log (`src/command_log/`, one fsync for
//! every shard's ready sets), then hands it to RocksDB as one `WriteBatch`
//! without RocksDB's own write-ahead log ([`Store::apply`]); checkpoints
//! flush RocksDB, and the log behind them is trimmed. Control writes
//! (principals, tokens, lockouts, start-up) still use RocksDB's log, synced
//! ([`Store::commit`]). `WriteBatch` itself is not `Send`, which is a second
//! reason for the plain-bytes write-set.
//!
//! [`MemStore`] keeps the same records in a map. The simulation test runs
//! the real state machines and the real loader over it, so "what survives a
//! crash" means the same thing there as here. [`Overlay`] reads through to
//! another store and keeps its writes in memory: an offline replay and
//! audit that writes nothing.

mod changes;
mod orders;
mod overlay;
pub mod records;

pub use changes::Changes;
pub(crate) use changes::log_applied_key;
pub use overlay::Overlay;

use crate::ids::{OperationId, PaymentId, RefundId, RemittanceId};
use records::{OperationRecord, PaymentRecord, PaymentRefunds, RefundRecord, RemittanceRecord};
use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, DB, IteratorMode, Options, WriteBatch, WriteOptions,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

/// Column families, one per record type (layouts in [`records`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Cf {
    Cards = 0,
    Payments = 1,
    Holds = 2,
    Books = 3,
    Meta = 4,
    Principals = 5,
    Refunds = 6,
    Refunded = 7,
    Credits = 8,
    Reversals = 9,
    Operations = 10,
    Authorizations = 11,
    Remittances = 12,
    Payouts = 13,
    PayoutRequests = 14,
    StoreJournal = 15,
    PinFailures = 16,
    /// The merchant's order id of a payment named by one (`orders.rs`).
    OrderIds = 17,
}

impl Cf {
    pub const ALL: [Cf; 18] = [
        Cf::Cards,
        Cf::Payments,
        Cf::Holds,
        Cf::Books,
        Cf::Meta,
        Cf::Principals,
        Cf::Refunds,
        Cf::Refunded,
        Cf::Credits,
        Cf::Reversals,
        Cf::Operations,
        Cf::Authorizations,
        Cf::Remittances,
        Cf::Payouts,
        Cf::PayoutRequests,
        Cf::StoreJournal,
        Cf::PinFailures,
        Cf::OrderIds,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Cf::Cards => "cards",
            Cf::Payments => "payments",
            Cf::Holds => "holds",
            Cf::Books => "books",
            Cf::Meta => "meta",
            Cf::Principals => "principals",
            Cf::Refunds => "refunds",
            Cf::Refunded => "refunded",
            Cf::Credits => "credits",
            Cf::Reversals => "reversals",
            Cf::Operations => "operations",
            Cf::Authorizations => "authorizations",
            Cf::Remittances => "remittances",
            Cf::Payouts => "payouts",
            Cf::PayoutRequests => "payout_requests",
            Cf::StoreJournal => "store_journal",
            Cf::PinFailures => "pin_failures",
            Cf::OrderIds => "order_ids",
        }
    }

    fn from_u8(value: u8) -> Cf {
        Cf::ALL[usize::from(value)]
    }
}

/// A storage failure, typed by what the operator does next. The engine
/// treats a failed write as fatal whatever its kind: its memory may be
/// ahead of the disk, and only a restart (which reloads the disk) makes
/// them agree again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The disk or the database failed (a write, a read, opening the
    /// directory). Fix the disk and restart; nothing on it is known bad.
    #[error("storage: the database failed: {0}")]
    Io(String),
    /// A stored record does not decode: the data directory is damaged, or
    /// was written by an incompatible version. Restore it from a backup.
    #[error("storage: a stored record is unreadable: {0}")]
    Corrupt(String),
    /// Records that decode contradict each other (a refund credit that does
    /// not fit its card, a payout its request names is missing, books past
    /// every ceiling). Restore from a backup, and report it: it is a bug or
    /// damage outside the engine.
    #[error("storage: stored records disagree: {0}")]
    Inconsistent(String),
    /// The data directory belongs to another configuration (another PIN
    /// secret). Start with the configuration that created it.
    #[error("storage: wrong configuration for this data dir: {0}")]
    WrongConfig(String),
}

impl From<rocksdb::Error> for StorageError {
    fn from(error: rocksdb::Error) -> StorageError {
        StorageError::Io(error.into_string())
    }
}

/// Record decoders answer a `String` saying what did not decode.
impl From<String> for StorageError {
    fn from(message: String) -> StorageError {
        StorageError::Corrupt(message)
    }
}

/// Visits one record (key, value) of a scan; an error stops the scan.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), String> + 'a;

/// Visits one record of a bounded scan: `Ok(false)` ends it.
pub type VisitWhile<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool, String> + 'a;

/// What the engine needs from durable storage: atomic synced writes, point
/// reads, and ordered scans at start-up.
pub trait Store {
    /// Writes a write-set atomically and durably before returning.
    fn commit(&self, changes: &Changes) -> Result<(), StorageError>;

    /// Writes a write-set atomically whose durability the command log
    /// already holds (`src/command_log/`): no write-ahead log, no sync. A crash may lose it; recovery replays it from the log.
    fn apply(&self, changes: &Changes) -> Result<(), StorageError>;

    /// Makes everything written so far durable on its own, every column
    /// family at one point of the write order: a checkpoint, behind which
    /// the log may be trimmed.
    fn checkpoint(&self) -> Result<(), StorageError>;

    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// Visits every record of `cf` in key order; stops at the first error.
    fn scan(&self, cf: Cf, visit: &mut Visit<'_>) -> Result<(), StorageError>;

    /// Visits the records of `cf` from `start` on, in key order, while
    /// `visit` answers true (and there is no error).
    fn scan_from(
        &self,
        cf: Cf,
        start: &[u8],
        visit: &mut VisitWhile<'_>,
    ) -> Result<(), StorageError>;

    /// The recorded outcome of `payment`, if it was decided.
    fn get_payment(&self, payment: PaymentId) -> Result<Option<PaymentRecord>, StorageError> {
        match self.get(Cf::Payments, &payment.to_bytes())? {
            Some(bytes) => Ok(Some(PaymentRecord::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The merchant's order id recorded with `payment`, if one was.
    fn order_id_of(&self, payment: PaymentId) -> Result<Option<String>, StorageError> {
        match self.get(Cf::OrderIds, &payment.to_bytes())? {
            Some(bytes) => orders::decode_order_id(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The record of an approved refund.
    fn get_refund(&self, refund: RefundId) -> Result<Option<RefundRecord>, StorageError> {
        get_decoded(self, Cf::Refunds, &refund.to_bytes(), RefundRecord::decode)
    }

    /// The record of a remittance.
    fn get_remittance(
        &self,
        remittance: RemittanceId,
    ) -> Result<Option<RemittanceRecord>, StorageError> {
        get_decoded(
            self,
            Cf::Remittances,
            &remittance.to_bytes(),
            RemittanceRecord::decode,
        )
    }

    /// The record of a capture or void.
    fn get_operation(
        &self,
        operation: OperationId,
    ) -> Result<Option<OperationRecord>, StorageError> {
        get_decoded(
            self,
            Cf::Operations,
            &operation.to_bytes(),
            OperationRecord::decode,
        )
    }

    /// What refunds gave back from `payment` so far (nothing yet: empty).
    fn get_payment_refunds(&self, payment: PaymentId) -> Result<PaymentRefunds, StorageError> {
        match self.get(Cf::Refunded, &payment.to_bytes())? {
            Some(bytes) => Ok(PaymentRefunds::decode(&bytes)?),
            None => Ok(PaymentRefunds::default()),
        }
    }

    fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.get(Cf::Meta, name.as_bytes())
    }
}

/// The record under `key` in `cf`, decoded (a record that does not decode
/// is an error, never a panic).
fn get_decoded<S: Store + ?Sized, T>(
    store: &S,
    cf: Cf,
    key: &[u8],
    decode: fn(&[u8]) -> Result<T, String>,
) -> Result<Option<T>, StorageError> {
    match store.get(cf, key)? {
        Some(bytes) => Ok(Some(decode(&bytes)?)),
        None => Ok(None),
    }
}

/// The engine's RocksDB.
pub struct Storage {
    db: DB,
    synced: WriteOptions,
    /// For writes the command log holds: RocksDB's own WAL off.
    logged: WriteOptions,
    /// Taken by [`Storage::watch_close`].
    close_watch: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    /// Declared last, so dropped last: after the database has closed.
    /// Its receiver then sees the channel disconnect.
    _closed: std::sync::mpsc::Sender<()>,
}

impl Storage {
    /// Opens (creating if needed) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Storage, StorageError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StorageError::Io(format!("cannot create {}: {e}", dir.display())))?;
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.increase_parallelism(2);
        // RocksDB's own WAL now carries only the rare control writes
        // (principals, certificates, start-up); recycling its files (which
        // saved a metadata update per sync) cannot go with unlogged
        // writes, which RocksDB then refuses.
        options.set_keep_log_file_num(4);
        // Shards write without RocksDB's WAL (the command log is theirs),
        // so a crash loses whatever memtables held. Flushing every column
        // family at one sequence number keeps what survives a consistent
        // cut of the write order: each partition's changes up to its
        // recorded log position, and nothing after it.
        options.set_atomic_flush(true);

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
        Ok(Storage::with(db))
    }

    /// Opens the database in `dir` for reading only (a stopped engine's,
    /// for `kessai log verify`): nothing on disk changes.
    pub fn open_read_only(dir: &Path) -> Result<Storage, StorageError> {
        let mut options = Options::default();
        options.set_atomic_flush(true);
        let names = Cf::ALL.map(Cf::name);
        let db = DB::open_cf_for_read_only(&options, dir.join("rocksdb"), names, false)?;
        Ok(Storage::with(db))
    }

    fn with(db: DB) -> Storage {
        let mut synced = WriteOptions::default();
        synced.set_sync(true);
        let mut logged = WriteOptions::default();
        logged.disable_wal(true);
        let (closed, close_watch) = std::sync::mpsc::channel();
        Storage {
            db,
            synced,
            logged,
            close_watch: Mutex::new(Some(close_watch)),
            _closed: closed,
        }
    }

    fn write(&self, changes: &Changes, options: &WriteOptions) -> Result<(), StorageError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::with_capacity_bytes(changes.byte_len() + 64);
        changes.for_each(|cf, key, value| match value {
            Some(value) => batch.put_cf(self.cf(cf), key, value),
            None => batch.delete_cf(self.cf(cf), key),
        });
        self.db.write_opt(batch, options)?;
        Ok(())
    }

    /// A receiver whose channel disconnects once this storage is dropped
    /// and its database closed (files released, the directory free to
    /// reopen or remove). The first caller gets it.
    pub fn watch_close(&self) -> Option<std::sync::mpsc::Receiver<()>> {
        self.close_watch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    fn cf(&self, cf: Cf) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(cf.name())
            .expect("every column family is created at open")
    }
}

impl Store for Storage {
    fn commit(&self, changes: &Changes) -> Result<(), StorageError> {
        self.write(changes, &self.synced)
    }

    fn apply(&self, changes: &Changes) -> Result<(), StorageError> {
        self.write(changes, &self.logged)
    }

    fn checkpoint(&self) -> Result<(), StorageError> {
        let families: Vec<&rocksdb::ColumnFamily> = Cf::ALL.iter().map(|cf| self.cf(*cf)).collect();
        let mut wait = rocksdb::FlushOptions::default();
        wait.set_wait(true);
        self.db.flush_cfs_opt(&families, &wait)?;
        Ok(())
    }

    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.db.get_pinned_cf(self.cf(cf), key)?.map(|v| v.to_vec()))
    }

    fn scan(&self, cf: Cf, visit: &mut Visit<'_>) -> Result<(), StorageError> {
        for item in self.db.iterator_cf(self.cf(cf), IteratorMode::Start) {
            let (key, value) = item?;
            visit(&key, &value).map_err(StorageError::Corrupt)?;
        }
        Ok(())
    }

    fn scan_from(
        &self,
        cf: Cf,
        start: &[u8],
        visit: &mut VisitWhile<'_>,
    ) -> Result<(), StorageError> {
        let mode = IteratorMode::From(start, rocksdb::Direction::Forward);
        for item in self.db.iterator_cf(self.cf(cf), mode) {
            let (key, value) = item?;
            if !visit(&key, &value).map_err(StorageError::Corrupt)? {
                break;
            }
        }
        Ok(())
    }

    fn get_payment(&self, payment: PaymentId) -> Result<Option<PaymentRecord>, StorageError> {
        // Pinned: no copy of the value on the hot path.
        match self
            .db
            .get_pinned_cf(self.cf(Cf::Payments), payment.to_bytes())?
        {
            Some(bytes) => Ok(Some(PaymentRecord::decode(&bytes)?)),
            None => Ok(None),
        }
    }
}

/// The same records in memory, with RocksDB's durability modelled: a
/// `commit` is durable at once (RocksDB's synced WAL), an `apply` only in
/// memory until the next `checkpoint` (RocksDB without its WAL, until a
/// flush), and [`MemStore::crash`] loses what was applied since. For the
/// simulation test and unit tests.
#[derive(Default)]
pub struct MemStore {
    layers: Mutex<Layers>,
}

/// Every record by column family and key.
type Records = BTreeMap<(Cf, Vec<u8>), Vec<u8>>;

#[derive(Default)]
struct Layers {
    /// What reads see.
    live: Records,
    /// What survives a crash.
    durable: Records,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// Records held, over every column family.
    pub fn len(&self) -> usize {
        self.lock().live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Power lost: what was applied since the last checkpoint is gone.
    pub fn crash(&self) {
        let mut layers = self.lock();
        layers.live = layers.durable.clone();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Layers> {
        // A panic elsewhere cannot leave the maps half-written: every
        // mutation below is one insert or remove, or one whole copy.
        self.layers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn write_into(records: &mut Records, changes: &Changes) {
    changes.for_each(|cf, key, value| {
        match value {
            Some(value) => records.insert((cf, key.to_vec()), value.to_vec()),
            None => records.remove(&(cf, key.to_vec())),
        };
    });
}

impl Store for MemStore {
    fn commit(&self, changes: &Changes) -> Result<(), StorageError> {
        let mut layers = self.lock();
        write_into(&mut layers.live, changes);
        write_into(&mut layers.durable, changes);
        Ok(())
    }

    fn apply(&self, changes: &Changes) -> Result<(), StorageError> {
        write_into(&mut self.lock().live, changes);
        Ok(())
    }

    fn checkpoint(&self) -> Result<(), StorageError> {
        let mut layers = self.lock();
        layers.durable = layers.live.clone();
        Ok(())
    }

    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.lock().live.get(&(cf, key.to_vec())).cloned())
    }

    fn scan_from(
        &self,
        cf: Cf,
        start: &[u8],
        visit: &mut VisitWhile<'_>,
    ) -> Result<(), StorageError> {
        let layers = self.lock();
        let from = (cf, start.to_vec());
        for ((_, key), value) in layers.live.range(from..).take_while(|((c, _), _)| *c == cf) {
            if !visit(key, value).map_err(StorageError::Corrupt)? {
                break;
            }
        }
        Ok(())
    }

    fn scan(&self, cf: Cf, visit: &mut Visit<'_>) -> Result<(), StorageError> {
        let layers = self.lock();
        let from = (cf, Vec::new());
        for ((_, key), value) in layers.live.range(from..).take_while(|((c, _), _)| *c == cf) {
            visit(key, value).map_err(StorageError::Corrupt)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::Card;
    use crate::pin::PinKey;

    fn round_trip(store: &dyn Store) {
        let key = PinKey([5; 16]);
        let card = Card::issued(500);
        let mut changes = Changes::new();
        changes.put_card(&key, &card);
        changes.put(Cf::Meta, b"x", b"y");
        changes.put(Cf::Meta, b"z", b"w");
        store.commit(&changes).expect("commit");
        let mut delete = Changes::new();
        delete.delete(Cf::Meta, b"x");
        store.commit(&delete).expect("commit");

        let mut cards = Vec::new();
        store
            .scan(Cf::Cards, &mut |k, v| {
                cards.push((records::decode_pin_key(k)?, records::decode_card(v)?));
                Ok(())
            })
            .expect("scan");
        assert_eq!(cards, vec![(key, card)]);
        assert_eq!(store.get_meta("x").expect("get"), None);
        assert_eq!(store.get_meta("z").expect("get"), Some(b"w".to_vec()));
    }

    #[test]
    fn committed_changes_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        round_trip(&Storage::open(dir.path()).expect("open"));
        let reopened = Storage::open(dir.path()).expect("reopen");
        let mut count = 0;
        reopened
            .scan(Cf::Cards, &mut |_, _| {
                count += 1;
                Ok(())
            })
            .expect("scan");
        assert_eq!(count, 1);
    }

    #[test]
    fn the_close_watch_disconnects_once_the_database_is_closed() {
        use std::sync::mpsc::TryRecvError;
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::open(dir.path()).expect("open");
        let watch = storage.watch_close().expect("the first caller gets it");
        assert!(storage.watch_close().is_none());
        assert_eq!(watch.try_recv(), Err(TryRecvError::Empty));
        let holder = std::sync::Arc::new(storage);
        let last = holder.clone();
        drop(holder);
        assert_eq!(
            watch.try_recv(),
            Err(TryRecvError::Empty),
            "one handle left"
        );
        std::thread::spawn(move || drop(last)).join().expect("drop");
        assert_eq!(watch.try_recv(), Err(TryRecvError::Disconnected));
        // RocksDB's lock on the directory is gone: it opens again at once.
        Storage::open(dir.path()).expect("reopen");
    }

    #[test]
    fn the_memory_store_keeps_the_same_contract() {
        round_trip(&MemStore::new());
    }

    #[test]
    fn the_memory_store_loses_unlogged_writes_since_the_checkpoint_in_a_crash() {
        let store = MemStore::new();
        let write = |key: &[u8], durable: bool| {
            let mut changes = Changes::new();
            changes.put(Cf::Meta, key, b"v");
            if durable {
                store.commit(&changes).expect("commit");
            } else {
                store.apply(&changes).expect("apply");
            }
        };
        write(b"checkpointed", false);
        store.checkpoint().expect("checkpoint");
        write(b"committed", true);
        write(b"applied", false);
        assert_eq!(store.len(), 3);
        store.crash();
        let kept = |name: &str| store.get_meta(name).expect("get").is_some();
        assert!(kept("checkpointed") && kept("committed"));
        assert!(
            !kept("applied"),
            "an unlogged write lives until a checkpoint"
        );
    }
}
