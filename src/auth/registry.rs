//! The principals: who may talk to the engine, in what role, and how to
//! check their proof. Kept in memory (every connection looks its principal
//! up here) and durably in the `principals` column family; changes are rare
//! operator actions, written and synced at once.

use super::keys::StoredKey;
use crate::config::STORES_PER_HQ_MAX;
use crate::ids::StoreId;
use crate::protocol::{PrincipalInfo, PrincipalListRef, PrincipalListResponse, Role, varint_bytes};
use crate::storage::records::{self, PrincipalRecord};
use crate::storage::{Cf, Changes, StorageError, Store};
use std::collections::{BTreeMap, HashMap, hash_map};
use std::ops::Bound;
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
    /// The store already belongs to store HQ `hq` (revoked or not).
    StoreHeld {
        store: StoreId,
        hq: u32,
    },
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
            RegistryError::StoreHeld { store, hq } => write!(
                f,
                "store {store} belongs to store HQ {hq}: a store belongs to one HQ for good, revoked or not"
            ),
            RegistryError::Unknown(id) => write!(f, "no principal {id}"),
            RegistryError::LastOperator => f.write_str("the last operator cannot be revoked"),
            RegistryError::Storage(error) => write!(f, "{error}"),
        }
    }
}

pub struct Registry {
    principals: RwLock<Table>,
    store: Arc<dyn Store + Send + Sync>,
}

/// The principals by id, and the store HQ each store belongs to: under one
/// lock, so an add checks and claims its stores in one step.
struct Table {
    by_id: BTreeMap<u32, Arc<Principal>>,
    hq_of_store: HashMap<StoreId, u32>,
}

impl Table {
    /// The first of `stores` that belongs to an HQ already, with that HQ.
    fn held(&self, stores: &[StoreId]) -> Option<(StoreId, u32)> {
        stores
            .iter()
            .find_map(|store| Some((*store, *self.hq_of_store.get(store)?)))
    }
}

impl Registry {
    /// Reads every principal from `store`.
    pub fn load(store: Arc<dyn Store + Send + Sync>) -> Result<Registry, StorageError> {
        let mut by_id = BTreeMap::new();
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
            by_id.insert(id, Arc::new(principal));
            Ok(())
        })?;
        let hq_of_store = index_stores(&by_id);
        Ok(Registry {
            principals: RwLock::new(Table { by_id, hq_of_store }),
            store,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.principals
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.principals
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn get(&self, id: u32) -> Option<Arc<Principal>> {
        self.read().by_id.get(&id).cloned()
    }

    pub fn list(&self) -> Vec<PrincipalInfo> {
        self.read().by_id.values().map(|p| p.info()).collect()
    }

    /// One page of the principals after `after`, ascending id: at most
    /// `limit` of them (at least 1), in at most `bytes_max` bytes of
    /// entries on the wire (enough for a principal with one store). A
    /// store HQ that does not fit whole is cut after the stores that do,
    /// and the page ends there: `next` names its last store listed.
    pub fn page(
        &self,
        after: Option<PrincipalListRef>,
        limit: usize,
        bytes_max: usize,
    ) -> PrincipalListResponse {
        assert!(limit >= 1, "validation refuses an empty page");
        let table = self.read();
        let mut page = PrincipalListResponse::default();
        let mut room_bytes = bytes_max;
        for principal in table.by_id.range(ids_after(after)).map(|(_, p)| p) {
            let stores = stores_after(principal, after);
            if stores.is_empty() && resumes(after, principal) {
                continue; // nothing left of a store HQ split before
            }
            let part = (page.principals.len() < limit)
                .then(|| part_that_fits(principal, stores, room_bytes))
                .flatten();
            let Some((entry, bytes)) = part else {
                let last = page.principals.last();
                let last = last.expect("a page holds a principal with a store");
                page.next = Some(PrincipalListRef {
                    id: last.id,
                    store: None,
                });
                return page;
            };
            room_bytes -= bytes;
            if entry.stores.len() < stores.len() {
                page.next = Some(PrincipalListRef {
                    id: entry.id,
                    store: entry.stores.last().copied(),
                });
                page.principals.push(entry);
                return page;
            }
            page.principals.push(entry);
        }
        page
    }

    /// True while some operator can still act.
    pub fn has_operator(&self) -> bool {
        self.read()
            .by_id
            .values()
            .any(|p| p.role == Role::Operator && !p.is_revoked())
    }

    /// Registers a principal, durably. Adding the same principal again
    /// (same role, stores and key) answers as the first time, so a retried
    /// request is harmless; any other reuse of an id is refused, revoked
    /// ids included. A store belongs to one store HQ for good: one that
    /// another HQ has, revoked or not, is refused (its sales, reversals
    /// and remittances stay that HQ's history).
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
        let mut table = self.write();
        if let Some(existing) = table.by_id.get(&id) {
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
        if let Some((store, hq)) = table.held(&stores) {
            return Err(RegistryError::StoreHeld { store, hq });
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
        for &store in &principal.stores {
            table.hq_of_store.insert(store, id);
        }
        table.by_id.insert(id, Arc::new(principal));
        Ok(info)
    }

    /// Revokes a principal, durably; connections it has open are refused
    /// from their next request on. Revoking twice is harmless.
    pub fn revoke(&self, id: u32) -> Result<PrincipalInfo, RegistryError> {
        let table = self.write();
        let principal = table.by_id.get(&id).ok_or(RegistryError::Unknown(id))?;
        if principal.is_revoked() {
            return Ok(principal.info());
        }
        let operators_left = table
            .by_id
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
        let mut table = self.write();
        let old = table.by_id.get(&id).ok_or(RegistryError::Unknown(id))?;
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
        table.by_id.insert(id, Arc::new(new));
        Ok(info)
    }

    fn persist(&self, principal: &Principal) -> Result<(), RegistryError> {
        let mut changes = Changes::new();
        changes.put_principal(principal.id, &principal.record());
        self.store.commit(&changes).map_err(RegistryError::Storage)
    }
}

/// The store HQ each store belongs to. Data written before a store
/// belonged to one HQ may give a store to two: both keep activating for
/// it, it counts as the lower-numbered one's (so no third HQ can take it),
/// and the start-up log names them.
fn index_stores(by_id: &BTreeMap<u32, Arc<Principal>>) -> HashMap<StoreId, u32> {
    let mut hq_of_store = HashMap::new();
    for hq in by_id.values().filter(|p| p.role == Role::StoreHq) {
        for &store in &hq.stores {
            match hq_of_store.entry(store) {
                hash_map::Entry::Vacant(slot) => {
                    slot.insert(hq.id);
                }
                hash_map::Entry::Occupied(first) => tracing::warn!(
                    store,
                    hq = first.get(),
                    also_hq = hq.id,
                    "a store is registered under two store HQs (written before a store \
                     belonged to one); both keep it, no other HQ can take it"
                ),
            }
        }
    }
    hq_of_store
}

/// The ids a page after `after` starts from: a store HQ split by the
/// previous page comes again, with the rest of its stores.
fn ids_after(after: Option<PrincipalListRef>) -> (Bound<u32>, Bound<u32>) {
    let start = match after {
        None => Bound::Unbounded,
        Some(PrincipalListRef { id, store: None }) => Bound::Excluded(id),
        Some(PrincipalListRef { id, store: Some(_) }) => Bound::Included(id),
    };
    (start, Bound::Unbounded)
}

/// Whether `principal` is the store HQ the previous page cut short.
fn resumes(after: Option<PrincipalListRef>, principal: &Principal) -> bool {
    matches!(after, Some(PrincipalListRef { id, store: Some(_) }) if id == principal.id)
}

/// The stores of `principal` a page after `after` lists: those after the
/// cut when it resumes a split store HQ, else all.
fn stores_after(principal: &Principal, after: Option<PrincipalListRef>) -> &[StoreId] {
    match after {
        Some(PrincipalListRef {
            id,
            store: Some(last),
        }) if id == principal.id => {
            let listed = principal.stores.partition_point(|&store| store <= last);
            &principal.stores[listed..]
        }
        _ => &principal.stores,
    }
}

/// `principal`'s entry with as many of `stores` as fit in `room_bytes`,
/// and its bytes; `None` when not even the entry with its first store (or,
/// without stores, the entry alone) fits.
fn part_that_fits(
    principal: &Principal,
    stores: &[StoreId],
    room_bytes: usize,
) -> Option<(PrincipalInfo, usize)> {
    let mut bytes = PrincipalInfo::encoded_bytes(principal.id, &[], principal.stores.len());
    let mut count = 0;
    for &store in stores {
        let store_bytes = varint_bytes(store.into());
        if bytes + store_bytes > room_bytes {
            break;
        }
        bytes += store_bytes;
        count += 1;
    }
    if bytes > room_bytes || (count == 0 && !stores.is_empty()) {
        return None;
    }
    let entry = PrincipalInfo {
        id: principal.id,
        role: principal.role,
        stores: stores[..count].to_vec(),
        revoked: principal.is_revoked(),
    };
    Some((entry, bytes))
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
    fn a_store_belongs_to_one_store_hq_for_good() {
        let store = Arc::new(MemStore::new());
        let reg = registry(&store);
        let key = |id| Key::generate(id).stored_key();
        reg.add(42, Role::StoreHq, vec![42, 43], key(42))
            .expect("store hq");
        let taken = reg.add(44, Role::StoreHq, vec![44, 43], key(44));
        assert_eq!(taken, Err(RegistryError::StoreHeld { store: 43, hq: 42 }));
        let message = taken.expect_err("refused").to_string();
        assert!(
            message.starts_with("store 43 belongs to store HQ 42"),
            "{message}"
        );
        assert!(reg.get(44).is_none(), "nothing of the refused HQ stays");
        let key_44 = key(44);
        let added = reg.add(44, Role::StoreHq, vec![44], key_44);
        assert!(added.is_ok(), "its own store");
        let again = reg.add(44, Role::StoreHq, vec![44], key_44);
        assert_eq!(again, added, "a retry is not refused by its own stores");

        reg.revoke(42).expect("revoke");
        for reg in [reg, registry(&store)] {
            assert_eq!(
                reg.add(45, Role::StoreHq, vec![42], key(45)),
                Err(RegistryError::StoreHeld { store: 42, hq: 42 }),
                "a revoked HQ keeps its stores, also after a reload"
            );
        }
    }

    #[test]
    fn a_store_two_hqs_were_given_before_the_rule_loads_and_stays_with_both() {
        let store = Arc::new(MemStore::new());
        let mut changes = Changes::new();
        for (id, stores) in [(7, vec![1, 2]), (8, vec![2, 3])] {
            let record = PrincipalRecord {
                role_code: Role::StoreHq.into(),
                stored_key: Key::generate(id).stored_key(),
                stores,
                revoked: false,
            };
            changes.put_principal(id, &record);
        }
        store.commit(&changes).expect("write");
        let reg = registry(&store);
        for id in [7, 8] {
            assert!(reg.get(id).expect("loaded").sells_at(2));
        }
        let key = Key::generate(9).stored_key();
        let held = |stores| reg.add(9, Role::StoreHq, stores, key);
        assert_eq!(
            held(vec![2]),
            Err(RegistryError::StoreHeld { store: 2, hq: 7 })
        );
        assert_eq!(
            held(vec![3]),
            Err(RegistryError::StoreHeld { store: 3, hq: 8 })
        );
    }

    /// A registry of the largest principals: ids and store ids of 5-byte
    /// varints, store HQs of the most stores among merchants, some revoked.
    fn largest_principals() -> Registry {
        let reg = registry(&Arc::new(MemStore::new()));
        reg.add(0, Role::Operator, vec![], Key::generate(0).stored_key())
            .expect("operator");
        let mut next_store = u32::MAX;
        // Fifteen store HQs, 300 KB of entries: more than the default frame.
        for index in 0..60u32 {
            let id = u32::MAX - 1000 + index * 7;
            let (role, stores) = if index % 4 == 1 {
                let stores: Vec<u32> = (0..STORES_PER_HQ_MAX as u32)
                    .map(|offset| next_store - offset)
                    .collect();
                next_store -= STORES_PER_HQ_MAX as u32;
                (Role::StoreHq, stores)
            } else {
                (Role::Merchant, vec![])
            };
            reg.add(id, role, stores, Key::generate(id).stored_key())
                .expect("add");
            if index % 3 == 0 {
                reg.revoke(id).expect("revoke");
            }
        }
        reg
    }

    /// Every page of the largest principals fits the smallest legal frame
    /// and the default one, is cut by bytes (nearly full), and the pages
    /// together list every principal once, whole, in order.
    #[test]
    fn pages_of_the_largest_principals_fit_a_frame_and_list_each_once() {
        use crate::config::PRINCIPALS_PER_PAGE_MAX;
        use crate::protocol::{PRINCIPAL_PAGE_FIXED_BYTES, Response};
        let reg = largest_principals();
        for max_frame_bytes in [1024, 256 * 1024] {
            let bytes_max = max_frame_bytes - PRINCIPAL_PAGE_FIXED_BYTES;
            let (mut all, mut after, mut pages) = (Vec::new(), None, 0);
            loop {
                let page = reg.page(after, PRINCIPALS_PER_PAGE_MAX, bytes_max);
                let next = page.next;
                let mut out = Vec::new();
                Response::Principals(page.clone())
                    .encode(&mut out, u64::MAX, max_frame_bytes)
                    .expect("a page fits its frame");
                if next.is_some() {
                    // What is left is less than a store HQ's entry with
                    // one store, plus the room kept for the largest `next`.
                    assert!(out.len() + 32 > max_frame_bytes, "{} bytes", out.len());
                }
                page.append_to(&mut all);
                pages += 1;
                match next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            assert_eq!(all, reg.list(), "frames of {max_frame_bytes} bytes");
            assert!(pages > 1, "{pages} pages");
        }
    }

    #[test]
    fn a_page_stops_at_its_limit_and_resumes_a_split_store_hq() {
        let reg = largest_principals();
        let first = reg.page(None, 2, 1 << 20);
        assert_eq!(first.principals.len(), 2);
        let second = first.principals[1].id;
        assert_eq!(
            first.next,
            Some(PrincipalListRef {
                id: second,
                store: None
            })
        );
        // A store HQ cut after its third store comes again with the rest.
        let hq = reg.list().into_iter().find(|p| p.role == Role::StoreHq);
        let hq = hq.expect("a store HQ");
        let cut = Some(PrincipalListRef {
            id: hq.id,
            store: Some(hq.stores[2]),
        });
        let rest = reg.page(cut, 1, 1 << 20);
        assert_eq!(rest.principals[0].stores, hq.stores[3..]);
        // A cut after its last store (or on a merchant) lists nothing of it.
        let past = Some(PrincipalListRef {
            id: hq.id,
            store: Some(u32::MAX),
        });
        assert_ne!(reg.page(past, 1, 1 << 20).principals[0].id, hq.id);
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
