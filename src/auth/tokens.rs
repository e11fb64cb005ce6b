//! Bearer tokens of the HTTP API: which token acts as which principal.
//!
//! A token is `kst1_` followed by 64 hex digits (256 random bits), made by
//! the operator's `kessai principal token issue` on the operator's machine;
//! the engine receives and keeps only its SHA-256 ([`TokenHash`]), so a
//! copy of the data dir lets nobody call the API. A token is named in
//! lists and revocations by its id: the first 8 bytes of that hash, which
//! tell nothing of the token.
//!
//! A principal may hold up to `http.max_tokens_per_principal` tokens at
//! once, so a rotation (issue the new one, deploy it, revoke the old one)
//! has no gap. A revoked principal's tokens are refused with it (checked
//! on every request, as its key is on every frame).
//!
//! Kept as an [`Owners`] table under `http.token.` in the `meta` column
//! family.

use super::owners::Owners;
use super::registry::{Registry, RegistryError};
use crate::storage::{StorageError, Store};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// A token's SHA-256.
pub type TokenHash = [u8; 32];
/// A token's public name: the first bytes of its hash.
pub type TokenId = [u8; TOKEN_ID_BYTES];
pub const TOKEN_ID_BYTES: usize = 8;
/// What every token starts with (its format's version).
pub const TOKEN_PREFIX: &str = "kst1_";
/// Random bytes in a token, written as hex after the prefix.
const TOKEN_SECRET_BYTES: usize = 32;
/// The length of a well-formed token, in characters.
pub const TOKEN_CHARS: usize = TOKEN_PREFIX.len() + 2 * TOKEN_SECRET_BYTES;
/// Key prefix of a token's record in the `meta` column family.
const KEY_PREFIX: &[u8] = b"http.token.";

/// A new token (its text, shown once) and what the engine keeps of it.
pub fn generate() -> (String, TokenHash) {
    let mut secret = [0u8; TOKEN_SECRET_BYTES];
    rand::fill(&mut secret[..]);
    let text = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
    let hash = hash(&text);
    (text, hash)
}

/// The hash the engine keeps of a token.
pub fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// A token's id, from its hash.
pub fn id_of(hash: &TokenHash) -> TokenId {
    let mut id = [0u8; TOKEN_ID_BYTES];
    id.copy_from_slice(&hash[..TOKEN_ID_BYTES]);
    id
}

/// Whether `text` has a token's form (checked before hashing, so nothing
/// of unbounded length is hashed).
pub fn well_formed(text: &str) -> bool {
    text.len() == TOKEN_CHARS
        && text.starts_with(TOKEN_PREFIX)
        && text[TOKEN_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub struct Tokens {
    owners: Owners,
}

impl Tokens {
    /// Reads every token from `store`.
    pub fn load(
        store: Arc<dyn Store + Send + Sync>,
        per_principal_max: usize,
    ) -> Result<Tokens, StorageError> {
        let owners = Owners::load(
            store,
            KEY_PREFIX,
            per_principal_max,
            "token",
            "http.max_tokens_per_principal",
        )?;
        Ok(Tokens { owners })
    }

    /// The principal a token acts as, if it is one of ours.
    pub fn principal_of(&self, token: &str) -> Option<u32> {
        if !well_formed(token) {
            return None;
        }
        self.owners.principal_of(&hash(token))
    }

    /// The ids of `principal`'s tokens, in byte order.
    pub fn of(&self, principal: u32) -> Vec<TokenId> {
        let mut ids: Vec<TokenId> = self.owners.of(principal).iter().map(id_of).collect();
        ids.sort_unstable();
        ids
    }

    /// Registers a token (by its hash) for `principal`, durably. Again for
    /// the same principal is harmless; a hash another principal has is
    /// refused (it cannot happen by chance).
    pub fn add(
        &self,
        registry: &Registry,
        principal: u32,
        hash: TokenHash,
    ) -> Result<(), RegistryError> {
        let owner = registry
            .get(principal)
            .ok_or(RegistryError::Unknown(principal))?;
        if owner.is_revoked() {
            return Err(RegistryError::Invalid(format!(
                "principal {principal} is revoked"
            )));
        }
        self.owners.add(principal, hash)
    }

    /// Revokes `principal`'s token `id`, durably.
    pub fn revoke(&self, principal: u32, id: TokenId) -> Result<(), RegistryError> {
        if self.owners.remove(principal, |hash| id_of(hash) == id)? {
            return Ok(());
        }
        Err(RegistryError::Invalid(format!(
            "principal {principal} has no token {}",
            hex::encode(id)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::Key;
    use crate::protocol::Role;
    use crate::storage::MemStore;

    #[test]
    fn tokens_act_as_their_principal_several_at_once_until_revoked() {
        let store = Arc::new(MemStore::new());
        let registry = Registry::load(store.clone()).expect("load");
        for id in [5, 6] {
            registry
                .add(id, Role::Merchant, vec![], Key::generate(id).stored_key())
                .expect("merchant");
        }
        let tokens = Tokens::load(store.clone(), 2).expect("load");
        let (first, first_hash) = generate();
        let (second, second_hash) = generate();
        assert!(well_formed(&first) && first.len() == TOKEN_CHARS);
        tokens.add(&registry, 5, first_hash).expect("first");
        tokens
            .add(&registry, 5, first_hash)
            .expect("again: harmless");
        assert!(tokens.add(&registry, 6, first_hash).is_err(), "another's");
        tokens.add(&registry, 5, second_hash).expect("a second");
        assert!(
            tokens.add(&registry, 5, generate().1).is_err(),
            "past max_tokens_per_principal"
        );
        assert_eq!(
            tokens.add(&registry, 9, generate().1),
            Err(RegistryError::Unknown(9))
        );
        assert_eq!(tokens.principal_of(&first), Some(5));
        assert_eq!(tokens.principal_of(&second), Some(5));
        for bad in [
            "",
            "kst1_",
            &first[..first.len() - 1],
            &first.to_uppercase(),
        ] {
            assert_eq!(tokens.principal_of(bad), None, "{bad}");
        }
        tokens.revoke(5, id_of(&first_hash)).expect("revoked");
        assert!(tokens.revoke(5, id_of(&first_hash)).is_err(), "gone");
        assert!(tokens.revoke(6, id_of(&second_hash)).is_err(), "not 6's");
        let again = Tokens::load(store, 2).expect("reload");
        assert_eq!(again.principal_of(&first), None);
        assert_eq!(again.principal_of(&second), Some(5));
        assert_eq!(again.of(5), vec![id_of(&second_hash)]);
    }
}
