//! Who is talking: the handshake every connection starts with, and the
//! operator's management of principals (see `src/auth/keys.rs` for the
//! cryptography and docs/PROTOCOL.md §4 for a worked example).

use serde::{Deserialize, Serialize};

/// Bytes of each side's nonce and of a proof.
pub const AUTH_NONCE_BYTES: usize = 32;

/// What a principal may do. On the wire and on disk one byte: 1, 2 or 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
#[repr(u8)]
pub enum Role {
    /// Issues cards, manages principals, reads reports, audits, stats.
    Operator = 1,
    /// Activates cards for the stores it is registered for.
    StoreHq = 2,
    /// Pays and asks balances as itself.
    Merchant = 3,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Operator, Role::StoreHq, Role::Merchant];

    pub fn name(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::StoreHq => "store-hq",
            Role::Merchant => "merchant",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.name() == name)
    }
}

impl From<Role> for u8 {
    fn from(role: Role) -> u8 {
        role as u8
    }
}

impl TryFrom<u8> for Role {
    type Error = String;

    fn try_from(value: u8) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|role| *role as u8 == value)
            .ok_or_else(|| format!("role {value}"))
    }
}

/// Handshake, step 1 (client → engine): who I claim to be, and my nonce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthHello {
    pub principal: u32,
    pub client_nonce: [u8; AUTH_NONCE_BYTES],
}

/// The answer to [`AuthHello`]: the engine's nonce for this connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthChallenge {
    pub server_nonce: [u8; AUTH_NONCE_BYTES],
}

/// Handshake, step 2 (client → engine): the proof over both nonces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthProof {
    pub proof: [u8; AUTH_NONCE_BYTES],
}

/// The answer to a valid [`AuthProof`]: the connection now acts as this
/// principal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthWelcome {
    pub principal: u32,
    pub role: Role,
    /// The stores a store HQ may activate for (empty for other roles).
    pub stores: Vec<u32>,
}

/// Registers a principal (operator only). The client generates the secret
/// and sends only its stored form: the secret never crosses the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalAddRequest {
    pub id: u32,
    pub role: Role,
    /// For a store HQ: the stores it may activate for.
    pub stores: Vec<u32>,
    pub stored_key: [u8; AUTH_NONCE_BYTES],
}

/// Revokes a principal (operator only): its connections are refused from
/// their next request on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalRevokeRequest {
    pub id: u32,
}

/// Gives a principal a new key (operator only): the old key is refused
/// from then on, on connections already open too. The principal keeps its
/// id, role and stores (a merchant keeps its books).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalRotateRequest {
    pub id: u32,
    pub stored_key: [u8; AUTH_NONCE_BYTES],
}

/// Registers a client certificate, by the SHA-256 fingerprint of its DER
/// bytes, for a store HQ on the ISO 8583 listener (operator only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalCertRequest {
    pub id: u32,
    pub fingerprint: [u8; 32],
}

/// A store HQ's registered client certificates, after a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalCertInfo {
    pub id: u32,
    /// Every fingerprint registered for it, in byte order.
    pub fingerprints: Vec<[u8; 32]>,
}

/// One principal, as the operator sees it (no key material).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalInfo {
    pub id: u32,
    pub role: Role,
    pub stores: Vec<u32>,
    pub revoked: bool,
}

impl PrincipalInfo {
    /// This principal's bytes on the wire, listing `stores` of its stores
    /// out of `stores_total`: id, role byte, store count (a varint of the
    /// total, at least that of any part), stores, revoked byte. Exact for a
    /// whole principal, at most a byte over for a part.
    pub fn encoded_bytes(id: u32, stores: &[u32], stores_total: usize) -> usize {
        let listed: usize = stores.iter().map(|&store| varint_bytes(store.into())).sum();
        varint_bytes(id.into()) + 1 + varint_bytes(stores_total as u64) + listed + 1
    }
}

/// Bytes of `value` as a postcard varint (7 bits a byte).
pub fn varint_bytes(value: u64) -> usize {
    let bits = (u64::BITS - value.leading_zeros()).max(1) as usize;
    bits.div_ceil(7)
}

/// A place in the principal list: just after principal `id`, or, with
/// `store`, just after that store of principal `id`, whose later stores
/// then open the next page (a store HQ split across pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalListRef {
    pub id: u32,
    pub store: Option<u32>,
}

/// One page of the principals (operator only), ascending id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalListRequest {
    /// Start after this place (the previous page's `next`); `None` from
    /// the start.
    pub after: Option<PrincipalListRef>,
    /// Principals on this page at most (at least 1; the engine sends at
    /// most `PRINCIPALS_PER_PAGE_MAX`, and fewer when a frame is full).
    pub limit: u32,
}

/// What a page of principals takes on the wire besides its entries, at
/// its largest: the frame header, the entry count (a varint of at most 5
/// bytes) and `next` (tags, a 5-byte id and a 5-byte store).
pub const PRINCIPAL_PAGE_FIXED_BYTES: usize = super::frame::FRAME_BYTES_MIN + 5 + (1 + 5 + 1 + 5);

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PrincipalListResponse {
    /// Ascending id. The last may be a store HQ cut short (then `next`
    /// names its last store here, and the next page starts with the rest).
    pub principals: Vec<PrincipalInfo>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<PrincipalListRef>,
}

impl PrincipalListResponse {
    /// Appends this page to the principals of the pages before it, joining
    /// a store HQ split across the two (its later entry is the newer:
    /// `revoked` is taken from it).
    pub fn append_to(self, all: &mut Vec<PrincipalInfo>) {
        let mut entries = self.principals.into_iter();
        if let (Some(last), Some(first)) = (all.last_mut(), entries.as_slice().first())
            && last.id == first.id
        {
            let first = entries.next().expect("looked at above");
            last.stores.extend(first.stores);
            last.revoked = first.revoked;
        }
        all.extend(entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn varints_take_seven_bits_a_byte() {
        for (value, bytes) in [
            (0, 1),
            (127, 1),
            (128, 2),
            (u32::MAX.into(), 5),
            (u64::MAX, 10),
        ] {
            assert_eq!(varint_bytes(value), bytes, "{value}");
            assert_eq!(postcard::to_stdvec(&value).expect("encode").len(), bytes);
        }
    }

    proptest! {
        /// The byte count the page cut relies on is the encoder's, for a
        /// whole principal, and never under it for a part.
        #[test]
        fn a_principal_takes_the_bytes_it_is_counted_for(
            id in any::<u32>(),
            stores in proptest::collection::vec(any::<u32>(), 0..300),
            part in 0usize..300,
        ) {
            let info = PrincipalInfo { id, role: Role::StoreHq, stores: stores.clone(), revoked: true };
            let whole = postcard::to_stdvec(&info).expect("encode").len();
            prop_assert_eq!(PrincipalInfo::encoded_bytes(id, &stores, stores.len()), whole);
            let part = &stores[..part.min(stores.len())];
            let cut = PrincipalInfo { stores: part.to_vec(), ..info };
            let cut_bytes = postcard::to_stdvec(&cut).expect("encode").len();
            prop_assert!(PrincipalInfo::encoded_bytes(id, part, stores.len()) >= cut_bytes);
        }
    }
}
