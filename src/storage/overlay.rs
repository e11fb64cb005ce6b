//! A store that reads through to another and keeps every write in memory:
//! how `kessai log verify` replays a stopped engine's log on top of its
//! checkpoint, and loads and audits the result, without writing a byte to
//! the data dir (which it opens read-only). Only the replayed tail and the
//! loader's own writes are held in memory, never the checkpoint.

use super::{Cf, Changes, StorageError, Store, Visit, VisitWhile};
use std::collections::BTreeMap;
use std::collections::btree_map;
use std::iter::Peekable;
use std::sync::Mutex;

/// Writes by column family and key; `None` deletes what `base` holds.
type Writes = BTreeMap<(Cf, Vec<u8>), Option<Vec<u8>>>;
/// The writes a scan has yet to merge in, in key order.
type Pending<'w> = Peekable<btree_map::Range<'w, (Cf, Vec<u8>), Option<Vec<u8>>>>;

pub struct Overlay<'a> {
    base: &'a dyn Store,
    writes: Mutex<Writes>,
}

impl<'a> Overlay<'a> {
    pub fn new(base: &'a dyn Store) -> Overlay<'a> {
        Overlay {
            base,
            writes: Mutex::new(Writes::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Writes> {
        // Every mutation is one insert: a panic cannot leave it half-done.
        self.writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self, changes: &Changes) {
        let mut writes = self.lock();
        changes.for_each(|cf, key, value| {
            writes.insert((cf, key.to_vec()), value.map(<[u8]>::to_vec));
        });
    }
}

/// The overlay's writes to `cf` that sort before `key` (all of them when
/// `key` is `None`) go to `visit` first; one equal to `key` is taken out
/// and returned, since it replaces the base's record.
fn emit_before(
    pending: &mut Pending<'_>,
    cf: Cf,
    key: Option<&[u8]>,
    visit: &mut VisitWhile<'_>,
) -> Result<Emitted, String> {
    while let Some(&(&(write_cf, ref write_key), value)) = pending.peek() {
        if write_cf != cf {
            break;
        }
        match key.map(|key| write_key.as_slice().cmp(key)) {
            Some(std::cmp::Ordering::Greater) => break,
            Some(std::cmp::Ordering::Equal) => {
                let value: Option<Vec<u8>> = value.clone();
                pending.next();
                return Ok(Emitted::Replaces(value));
            }
            Some(std::cmp::Ordering::Less) | None => {
                let (write_key, value): (Vec<u8>, Option<Vec<u8>>) =
                    (write_key.clone(), value.clone());
                pending.next();
                if let Some(value) = value
                    && !visit(&write_key, &value)?
                {
                    return Ok(Emitted::Stop);
                }
            }
        }
    }
    Ok(Emitted::Continue)
}

enum Emitted {
    Continue,
    Stop,
    /// The overlay's record (or deletion) in place of the base's.
    Replaces(Option<Vec<u8>>),
}

impl Store for Overlay<'_> {
    fn commit(&self, changes: &Changes) -> Result<(), StorageError> {
        self.write(changes);
        Ok(())
    }

    fn apply(&self, changes: &Changes) -> Result<(), StorageError> {
        self.write(changes);
        Ok(())
    }

    fn checkpoint(&self) -> Result<(), StorageError> {
        Err(StorageError::Corrupt(
            "an overlay is never checkpointed: it writes nothing".into(),
        ))
    }

    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        if let Some(value) = self.lock().get(&(cf, key.to_vec())) {
            return Ok(value.clone());
        }
        self.base.get(cf, key)
    }

    fn scan(&self, cf: Cf, visit: &mut Visit<'_>) -> Result<(), StorageError> {
        self.scan_from(cf, &[], &mut |key, value| visit(key, value).map(|()| true))
    }

    fn scan_from(
        &self,
        cf: Cf,
        start: &[u8],
        visit: &mut VisitWhile<'_>,
    ) -> Result<(), StorageError> {
        let writes = self.lock();
        let mut pending = writes.range((cf, start.to_vec())..).peekable();
        let mut stopped = false;
        self.base.scan_from(cf, start, &mut |key, value| {
            let go_on = match emit_before(&mut pending, cf, Some(key), visit)? {
                Emitted::Stop => false,
                Emitted::Continue => visit(key, value)?,
                Emitted::Replaces(Some(value)) => visit(key, &value)?,
                Emitted::Replaces(None) => true,
            };
            stopped = !go_on;
            Ok(go_on)
        })?;
        if !stopped {
            emit_before(&mut pending, cf, None, visit).map_err(StorageError::Corrupt)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStore;

    fn keys(store: &dyn Store, cf: Cf, start: &[u8], take: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut seen = Vec::new();
        store
            .scan_from(cf, start, &mut |key, value| {
                seen.push((key.to_vec(), value.to_vec()));
                Ok(seen.len() < take)
            })
            .expect("scan");
        seen
    }

    /// Whatever mix of base records, overlay puts and deletes: the overlay
    /// reads exactly as the base would with the same writes applied, and
    /// the base is never written.
    #[test]
    fn reads_as_the_base_with_the_writes_applied() {
        let base = MemStore::new();
        let mut seeded = Changes::new();
        for key in [b"b", b"d", b"f", b"h"] {
            seeded.put(Cf::Cards, key, b"base");
        }
        seeded.put(Cf::Books, b"a", b"other family");
        seeded.put(Cf::Payments, b"z", b"other family");
        base.commit(&seeded).expect("seed");
        let expected = MemStore::new();
        expected.commit(&seeded).expect("seed");

        let overlay = Overlay::new(&base);
        let mut writes = Changes::new();
        writes.put(Cf::Cards, b"a", b"new first");
        writes.put(Cf::Cards, b"d", b"replaced");
        writes.delete(Cf::Cards, b"f");
        writes.put(Cf::Cards, b"g", b"new middle");
        writes.put(Cf::Cards, b"i", b"new last");
        writes.delete(Cf::Cards, b"x");
        overlay.apply(&writes).expect("apply");
        expected.apply(&writes).expect("apply");

        for start in [&b""[..], b"a", b"c", b"d", b"f", b"h", b"i", b"j"] {
            for take in 1..8 {
                assert_eq!(
                    keys(&overlay, Cf::Cards, start, take),
                    keys(&expected, Cf::Cards, start, take),
                    "from {start:?}, {take} records"
                );
            }
        }
        for key in [b"a", b"b", b"d", b"f", b"x"] {
            assert_eq!(overlay.get(Cf::Cards, key), expected.get(Cf::Cards, key));
        }
        assert_eq!(base.get(Cf::Cards, b"f"), Ok(Some(b"base".to_vec())));
        assert_eq!(base.get(Cf::Cards, b"a"), Ok(None));
        assert_eq!(keys(&overlay, Cf::Books, b"", 9).len(), 1);
        assert!(overlay.checkpoint().is_err());
    }
}
