//! A table of 32-byte hashes (a certificate's fingerprint, a bearer
//! token's SHA-256), each acting as one principal for good: kept in memory
//! (every connection or request looks here) and durably in the `meta`
//! column family, one record per hash (a prefix naming the table, then the
//! 32 bytes; the value is the principal's id, big-endian), written and
//! synced before the change is answered. A principal holds at most
//! `per_principal_max` of them. [`super::Certs`] and [`super::Tokens`] are
//! such tables, each adding its own rule of who may hold one.

use super::registry::RegistryError;
use crate::storage::{Cf, Changes, StorageError, Store};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

pub type Hash = [u8; 32];

pub struct Owners {
    by_hash: RwLock<HashMap<Hash, u32>>,
    store: Arc<dyn Store + Send + Sync>,
    prefix: &'static [u8],
    per_principal_max: usize,
    /// What a hash names, and the config key of the limit, for messages.
    what: &'static str,
    limit: &'static str,
}

impl Owners {
    /// Reads the table under `prefix` from `store`.
    pub fn load(
        store: Arc<dyn Store + Send + Sync>,
        prefix: &'static [u8],
        per_principal_max: usize,
        what: &'static str,
        limit: &'static str,
    ) -> Result<Owners, StorageError> {
        let mut by_hash = HashMap::new();
        store.scan(Cf::Meta, &mut |key, value| {
            let Some(rest) = key.strip_prefix(prefix) else {
                return Ok(());
            };
            let hash: Hash = rest
                .try_into()
                .map_err(|_| format!("a {what} key of {} bytes", key.len()))?;
            let id: [u8; 4] = value
                .try_into()
                .map_err(|_| format!("a {what}'s principal of {} bytes", value.len()))?;
            by_hash.insert(hash, u32::from_be_bytes(id));
            Ok(())
        })?;
        Ok(Owners {
            by_hash: RwLock::new(by_hash),
            store,
            prefix,
            per_principal_max,
            what,
            limit,
        })
    }

    /// The principal `hash` acts as.
    pub fn principal_of(&self, hash: &Hash) -> Option<u32> {
        self.read().get(hash).copied()
    }

    /// Every hash `id` holds, in byte order.
    pub fn of(&self, id: u32) -> Vec<Hash> {
        let mut hashes: Vec<Hash> = self
            .read()
            .iter()
            .filter(|(_, owner)| **owner == id)
            .map(|(hash, _)| *hash)
            .collect();
        hashes.sort_unstable();
        hashes
    }

    /// Records `hash` for `id`, durably. Again for the same principal is
    /// harmless; one another principal holds is refused.
    pub fn add(&self, id: u32, hash: Hash) -> Result<(), RegistryError> {
        let mut table = self.by_hash.write().expect("never poisoned");
        match table.get(&hash) {
            Some(&owner) if owner == id => return Ok(()),
            Some(&owner) => {
                return Err(RegistryError::Invalid(format!(
                    "this {} is registered for principal {owner}",
                    self.what
                )));
            }
            None => {}
        }
        let held = table.values().filter(|owner| **owner == id).count();
        if held >= self.per_principal_max {
            return Err(RegistryError::Invalid(format!(
                "principal {id} has {held} of them ({}), the most {} allows",
                self.what, self.limit
            )));
        }
        let mut changes = Changes::new();
        changes.put(Cf::Meta, &self.key(&hash), &id.to_be_bytes());
        self.store
            .commit(&changes)
            .map_err(RegistryError::Storage)?;
        table.insert(hash, id);
        Ok(())
    }

    /// Removes the first hash of `id` that `matches`, durably; false when
    /// none does.
    pub fn remove(&self, id: u32, matches: impl Fn(&Hash) -> bool) -> Result<bool, RegistryError> {
        let mut table = self.by_hash.write().expect("never poisoned");
        let Some(hash) = table
            .iter()
            .find(|(hash, owner)| **owner == id && matches(hash))
            .map(|(hash, _)| *hash)
        else {
            return Ok(false);
        };
        let mut changes = Changes::new();
        changes.delete(Cf::Meta, &self.key(&hash));
        self.store
            .commit(&changes)
            .map_err(RegistryError::Storage)?;
        table.remove(&hash);
        Ok(true)
    }

    fn key(&self, hash: &Hash) -> Vec<u8> {
        [self.prefix, hash].concat()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Hash, u32>> {
        self.by_hash.read().expect("never poisoned")
    }
}
