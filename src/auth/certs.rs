//! Client certificates of store HQs on the ISO 8583 listener: which
//! certificate (by the SHA-256 fingerprint of its DER bytes) acts as which
//! store HQ.
//!
//! An ISO 8583 switch cannot run kessai's key handshake, so it proves who
//! it is with mutual TLS. The operator registers each certificate's
//! fingerprint under a store HQ (`kessai principal cert`); the TLS
//! handshake then refuses any certificate not registered, and the
//! connection acts as the HQ its certificate names. Pinning fingerprints
//! (instead of trusting a CA) means no CA can mint a certificate that acts
//! as an HQ, and a registration is one record.
//!
//! Kept in memory (every handshake looks here) and durably in the `meta`
//! column family, one record per fingerprint (`iso8583.cert.` followed by
//! the 32 bytes; the value is the HQ's id, big-endian), written and synced
//! before the operator is answered. A fingerprint belongs to one HQ for
//! good; a revoked HQ's certificates are refused with it.

use super::owners::Owners;
use super::registry::{Registry, RegistryError};
use crate::protocol::Role;
use crate::storage::{StorageError, Store};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Bytes of a certificate fingerprint (SHA-256).
pub const FINGERPRINT_BYTES: usize = 32;
/// A certificate's SHA-256 fingerprint.
pub type Fingerprint = [u8; FINGERPRINT_BYTES];
/// Key prefix of a registration in the `meta` column family.
const KEY_PREFIX: &[u8] = b"iso8583.cert.";

/// The fingerprint of a certificate's DER bytes.
pub fn fingerprint(der: &[u8]) -> Fingerprint {
    Sha256::digest(der).into()
}

pub struct Certs {
    owners: Owners,
}

impl Certs {
    /// Reads every registration from `store`.
    pub fn load(
        store: Arc<dyn Store + Send + Sync>,
        per_principal_max: usize,
    ) -> Result<Certs, StorageError> {
        let owners = Owners::load(
            store,
            KEY_PREFIX,
            per_principal_max,
            "certificate",
            "iso8583.max_certs_per_principal",
        )?;
        Ok(Certs { owners })
    }

    /// The principal a certificate with this fingerprint acts as.
    pub fn principal_of(&self, fingerprint: &Fingerprint) -> Option<u32> {
        self.owners.principal_of(fingerprint)
    }

    /// Every fingerprint registered for `id`, in byte order.
    pub fn of(&self, id: u32) -> Vec<Fingerprint> {
        self.owners.of(id)
    }

    /// Registers `fingerprint` for store HQ `id`, durably. Registering it
    /// again for the same HQ is harmless; for another, refused.
    pub fn register(
        &self,
        registry: &Registry,
        id: u32,
        fingerprint: Fingerprint,
    ) -> Result<(), RegistryError> {
        let principal = registry.get(id).ok_or(RegistryError::Unknown(id))?;
        if principal.role != Role::StoreHq || principal.is_revoked() {
            return Err(RegistryError::Invalid(format!(
                "principal {id} is not a store HQ in service: only store HQs connect over ISO 8583"
            )));
        }
        self.owners.add(id, fingerprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::Key;
    use crate::storage::MemStore;

    fn registry(store: &Arc<MemStore>) -> Registry {
        let registry = Registry::load(store.clone()).expect("load");
        registry
            .add(7, Role::StoreHq, vec![70], Key::generate(0).stored_key())
            .expect("hq");
        registry
            .add(8, Role::StoreHq, vec![80], Key::generate(0).stored_key())
            .expect("hq");
        registry
            .add(9, Role::Merchant, vec![], Key::generate(0).stored_key())
            .expect("merchant");
        registry
    }

    #[test]
    fn a_certificate_acts_as_one_store_hq_for_good_and_survives_a_restart() {
        let store = Arc::new(MemStore::new());
        let registry = registry(&store);
        let certs = Certs::load(store.clone(), 2).expect("load");
        let one = fingerprint(b"certificate one");
        certs.register(&registry, 7, one).expect("registered");
        certs.register(&registry, 7, one).expect("again: harmless");
        assert!(certs.register(&registry, 8, one).is_err(), "another HQ's");
        assert!(
            certs.register(&registry, 9, fingerprint(b"m")).is_err(),
            "a merchant"
        );
        assert_eq!(
            certs.register(&registry, 99, fingerprint(b"x")),
            Err(RegistryError::Unknown(99))
        );
        certs
            .register(&registry, 7, fingerprint(b"certificate two"))
            .expect("a second");
        assert!(
            certs.register(&registry, 7, fingerprint(b"three")).is_err(),
            "past max_certs_per_principal"
        );
        assert_eq!(certs.principal_of(&one), Some(7));
        assert_eq!(certs.principal_of(&fingerprint(b"unknown")), None);
        let again = Certs::load(store, 2).expect("reload");
        assert_eq!(again.principal_of(&one), Some(7));
        assert_eq!(again.of(7).len(), 2);
    }
}
