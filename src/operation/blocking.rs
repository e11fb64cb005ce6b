//! Storage work off the async executor: of operator requests (below),
//! and of the coordinators, whose futures run on a connection's arbiter.
//!
//! Payouts, remittances and statements read RocksDB directly: point
//! lookups, and scans of a merchant's period or a store's journal that can
//! cover a great many records. Principal changes write it, synced (the
//! registry's `commit`). They run in the router's admin lane, one arbiter (one
//! thread) whose executor every operator request in flight shares, up to
//! `admin_requests_max` of them. Storage work done in place would hold
//! that thread for as long as RocksDB takes: every other operator request,
//! an audit's slices and the shard answers it awaits included, would wait
//! behind it. So it runs on tokio's blocking pool, and the lane's executor
//! only awaits its result. (The lane bounds how many run at once.)

use crate::shard::ShardGone;
use crate::storage::{StorageError, Store};
use std::sync::Arc;

/// The store as operator requests see it: reads through the [`Store`]
/// interface, shareable with a blocking thread.
pub(crate) type SharedStore = Arc<dyn Store + Send + Sync>;

/// Runs `work` on tokio's blocking pool and awaits it. `Err(ShardGone)`
/// means the runtime is shutting down and dropped the work, which the
/// router answers as it does a shard gone. A panic in `work` is resumed
/// here, as if the work had run in place.
pub(crate) async fn run<T, F>(work: F) -> Result<T, ShardGone>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => Ok(done),
        Err(error) => match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_cancelled) => Err(ShardGone),
        },
    }
}

/// Runs `read` over `store` on the blocking pool ([`run`]); the read's
/// own failure stays a typed [`StorageError`].
pub(crate) async fn read<T, F>(
    store: &SharedStore,
    read: F,
) -> Result<Result<T, StorageError>, ShardGone>
where
    T: Send + 'static,
    F: FnOnce(&dyn Store) -> Result<T, StorageError> + Send + 'static,
{
    let store = store.clone();
    run(move || read(store.as_ref())).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Cf, Changes, MemStore};

    fn store_with_meta() -> SharedStore {
        let store = MemStore::new();
        let mut changes = Changes::default();
        changes.put(Cf::Meta, b"name", b"value");
        store.commit(&changes).expect("commit");
        Arc::new(store)
    }

    #[tokio::test]
    async fn a_read_runs_on_another_thread_and_keeps_its_answer() {
        let store = store_with_meta();
        let caller = std::thread::current().id();
        let (value, reader) = read(&store, |store| {
            let value = store.get_meta("name")?;
            Ok((value, std::thread::current().id()))
        })
        .await
        .expect("the runtime is running")
        .expect("the read succeeds");
        assert_eq!(value.as_deref(), Some(&b"value"[..]));
        assert_ne!(reader, caller, "the read left the executor's thread");
    }

    #[tokio::test]
    async fn a_failed_read_keeps_its_typed_error() {
        let store = store_with_meta();
        let failed = read(&store, |_| -> Result<(), StorageError> {
            Err(StorageError::Corrupt("damaged".into()))
        })
        .await
        .expect("the runtime is running");
        assert_eq!(failed, Err(StorageError::Corrupt("damaged".into())));
    }
}
