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

/// One principal, as the operator sees it (no key material).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalInfo {
    pub id: u32,
    pub role: Role,
    pub stores: Vec<u32>,
    pub revoked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PrincipalListResponse {
    pub principals: Vec<PrincipalInfo>,
}
