//! The principals: who may talk to the engine, in what role, and how to
//! check their proof. Kept in memory (every connection looks its principal
//! up here) and durably in the `principals` column family; changes are rare
//! operator actions, written and synced at once.

use super::keys::StoredKey;
use crate::config::STORES_PER_HQ_MAX;
use crate::ids::StoreId;
use crate::protocol::{PrincipalInfo, Role};
use crate::storage::records::{self, PrincipalRecord};
use crate::storage::{Cf, Changes, StorageError, Store};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// A registered principal. Connections hold it for their lifetime, so a
/// revocation reaches them through `revoked`.
#[derive(Debug)]
pub struct Principal {
    pub id: u32,
    pub role: Role,
    /// The stores a store HQ may activate for, ascending.
    pub stores: Vec<StoreId>,
    stored_key: StoredKey,
    revoked: AtomicBool,
}

impl Principal {
    pub fn stored_key(&self) -> &StoredKey {
        &self.stored_key
    }

    pub fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }

    /// Whether this principal may activate cards sold at `store`.
    pub fn sells_at(&self, store: StoreId) -> bool {
        self.role == Role::StoreHq && self.stores.binary_search(&store).is_ok()
    }

    pub fn info(&self) -> PrincipalInfo {
        PrincipalInfo {
            id: self.id,
            role: self.role,
            stores: self.stores.clone(),
            revoked: self.is_revoked(),
        }
    }

    fn record(&self) -> PrincipalRecord {
        PrincipalRecord {
            role_code: self.role.into(),
            stored_key: self.stored_key,
            stores: self.stores.clone(),
            revoked: self.is_revoked(),
        }
    }
}

/// Why a change to the principals was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryError {
    /// The request itself is wrong (stores on a merchant, an id in use...).
    Invalid(String),
    /// The principal does not exist.
    Unknown(u32),
    /// The change would leave no operator.
    LastOperator,
    Storage(StorageError),
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryError::Invalid(message) => f.write_str(message),
            RegistryError::Unknown(id) => write!(f, "no principal {id}"),
            RegistryError::LastOperator => f.write_str("the last operator cannot be revoked"),
            RegistryError::Storage(error) => write!(f, "{error}"),
        }
    }
}

pub struct Registry {
    principals: RwLock<BTreeMap<u32, Arc<Principal>>>,
    store: Arc<dyn Store + Send + Sync>,
}

impl Registry {
    /// Reads every principal from `store`.
    pub fn load(store: Arc<dyn Store + Send + Sync>) -> Result<Registry, StorageError> {
        let mut principals = BTreeMap::new();
        store.scan(Cf::Principals, &mut |key, value| {
            let id = records::decode_principal_id(key)?;
            let record = PrincipalRecord::decode(value)?;
            let role = Role::try_from(record.role_code)?;
            let principal = Principal {
                id,
                role,
                stores: record.stores,
                stored_key: record.stored_key,
                revoked: AtomicBool::new(record.revoked),
            };
            principals.insert(id, Arc::new(principal));
            Ok(())
        })?;
        Ok(Registry {
            principals: RwLock::new(principals),
            store,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u32, Arc<Principal>>> {
        self.principals
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<u32, Arc<Principal>>> {
        self.principals
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn get(&self, id: u32) -> Option<Arc<Principal>> {
        self.read().get(&id).cloned()
    }

    pub fn list(&self) -> Vec<PrincipalInfo> {
        self.read().values().map(|p| p.info()).collect()
    }

    /// True while some operator can still act.
    pub fn has_operator(&self) -> bool {
        self.read()
            .values()
            .any(|p| p.role == Role::Operator && !p.is_revoked())
    }

    /// Registers a principal, durably. Adding the same principal again
    /// (same role, stores and key) answers as the first time, so a retried
    /// request is harmless; any other reuse of an id is refused, revoked
    /// ids included.
    pub fn add(
        &self,
        id: u32,
        role: Role,
        mut stores: Vec<StoreId>,
        stored_key: StoredKey,
    ) -> Result<PrincipalInfo, RegistryError> {
        stores.sort_unstable();
        stores.dedup();
        match role {
            Role::StoreHq if stores.is_empty() => {
                return Err(RegistryError::Invalid(
                    "a store HQ needs at least one store".into(),
                ));
            }
            Role::StoreHq if stores.len() > STORES_PER_HQ_MAX => {
                return Err(RegistryError::Invalid(format!(
                    "a store HQ has at most {STORES_PER_HQ_MAX} stores"
                )));
            }
            Role::Operator | Role::Merchant if !stores.is_empty() => {
                return Err(RegistryError::Invalid(format!(
                    "only a store HQ has stores, not a {}",
                    role.name()
                )));
            }
            _ => {}
        }
        let mut principals = self.write();
        if let Some(existing) = principals.get(&id) {
            let same = existing.role == role
                && existing.stores == stores
                && existing.stored_key == stored_key
                && !existing.is_revoked();
            return if same {
                Ok(existing.info())
            } else {
                Err(RegistryError::Invalid(format!(
                    "principal {id} exists (ids are never reused)"
                )))
            };
        }
        let principal = Principal {
            id,
            role,
            stores,
            stored_key,
            revoked: AtomicBool::new(false),
        };
        self.persist(&principal)?;
        let info = principal.info();
        principals.insert(id, Arc::new(principal));
        Ok(info)
    }

    /// Revokes a principal, durably; connections it has open are refused
    /// from their next request on. Revoking twice is harmless.
    pub fn revoke(&self, id: u32) -> Result<PrincipalInfo, RegistryError> {
        let principals = self.write();
        let principal = principals.get(&id).ok_or(RegistryError::Unknown(id))?;
        if principal.is_revoked() {
            return Ok(principal.info());
        }
        let operators_left = principals
            .values()
            .filter(|p| p.role == Role::Operator && !p.is_revoked())
            .count();
        if principal.role == Role::Operator && operators_left == 1 {
            return Err(RegistryError::LastOperator);
        }
        let mut record = principal.record();
        record.revoked = true;
        let mut changes = Changes::new();
        changes.put_principal(id, &record);
        self.store
            .commit(&changes)
            .map_err(RegistryError::Storage)?;
        principal.revoked.store(true, Ordering::Release);
        Ok(principal.info())
    }

    /// Gives a principal a new key, durably. Connections that authenticated
    /// with the old key are refused from their next request on (they hold
    /// the old entry, which is marked revoked). Rotating to the same key
    /// again is harmless.
    pub fn rotate(&self, id: u32, stored_key: StoredKey) -> Result<PrincipalInfo, RegistryError> {
        let mut principals = self.write();
        let old = principals.get(&id).ok_or(RegistryError::Unknown(id))?;
        if old.is_revoked() {
            return Err(RegistryError::Invalid(format!(
                "principal {id} is revoked; add a new principal instead"
            )));
        }
        if old.stored_key == stored_key {
            return Ok(old.info());
        }
        let new = Principal {
            id,
            role: old.role,
            stores: old.stores.clone(),
            stored_key,
            revoked: AtomicBool::new(false),
        };
        self.persist(&new)?;
        old.revoked.store(true, Ordering::Release);
        let info = new.info();
        principals.insert(id, Arc::new(new));
        Ok(info)
    }

    fn persist(&self, principal: &Principal) -> Result<(), RegistryError> {
        let mut changes = Changes::new();
        changes.put_principal(principal.id, &principal.record());
        self.store.commit(&changes).map_err(RegistryError::Storage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::Key;
    use crate::storage::MemStore;

    fn registry(store: &Arc<MemStore>) -> Registry {
        Registry::load(store.clone()).expect("load")
    }

    #[test]
    fn principals_survive_a_reload_and_ids_are_never_reused() {
        let store = Arc::new(MemStore::new());
        let reg = registry(&store);
        let operator = Key::generate(0).stored_key();
        let hq = Key::generate(42).stored_key();
        reg.add(0, Role::Operator, vec![], operator)
            .expect("operator");
        let info = reg
            .add(42, Role::StoreHq, vec![43, 42, 43], hq)
            .expect("store hq");
        assert_eq!(info.stores, vec![42, 43], "sorted, without repeats");
        // The same add again is a replay; another key under the id is not.
        assert_eq!(reg.add(42, Role::StoreHq, vec![42, 43], hq), Ok(info));
        assert!(reg.add(42, Role::Merchant, vec![], hq).is_err());
        assert!(
            reg.add(5, Role::Merchant, vec![1], hq).is_err(),
            "stores on a merchant"
        );
        assert!(
            reg.add(6, Role::StoreHq, vec![], hq).is_err(),
            "a store HQ without stores"
        );

        reg.revoke(42).expect("revoke");
        assert!(
            reg.add(42, Role::StoreHq, vec![42, 43], hq).is_err(),
            "revoked ids stay used"
        );
        assert_eq!(reg.revoke(0), Err(RegistryError::LastOperator));
        assert_eq!(reg.revoke(9), Err(RegistryError::Unknown(9)));

        let reloaded = registry(&store);
        let hq_again = reloaded.get(42).expect("kept");
        assert!(hq_again.is_revoked());
        assert!(hq_again.sells_at(43) && !hq_again.sells_at(44));
        assert_eq!(reloaded.get(0).expect("kept").stored_key(), &operator);
        assert!(reloaded.has_operator());
    }

    #[test]
    fn a_rotation_replaces_the_key_and_cuts_the_old_one() {
        let store = Arc::new(MemStore::new());
        let reg = registry(&store);
        let (old, new) = (Key::generate(5), Key::generate(5));
        reg.add(5, Role::Merchant, vec![], old.stored_key())
            .expect("merchant");
        let held = reg.get(5).expect("merchant");
        let info = reg.rotate(5, new.stored_key()).expect("rotate");
        assert!(!info.revoked);
        assert!(held.is_revoked(), "sessions of the old key are cut");
        assert_eq!(reg.get(5).expect("kept").stored_key(), &new.stored_key());
        assert_eq!(reg.rotate(5, new.stored_key()), Ok(info), "a retry");
        assert_eq!(
            registry(&store).get(5).expect("durable").stored_key(),
            &new.stored_key()
        );
        assert_eq!(
            reg.rotate(6, new.stored_key()),
            Err(RegistryError::Unknown(6))
        );
    }

    #[test]
    fn a_revocation_reaches_holders_of_the_principal() {
        let store = Arc::new(MemStore::new());
        let reg = registry(&store);
        reg.add(0, Role::Operator, vec![], Key::generate(0).stored_key())
            .expect("operator");
        reg.add(5, Role::Merchant, vec![], Key::generate(5).stored_key())
            .expect("merchant");
        let held = reg.get(5).expect("merchant");
        assert!(!held.is_revoked());
        reg.revoke(5).expect("revoke");
        assert!(held.is_revoked(), "a connection's copy sees the revocation");
    }
}
