//! Bearer tokens of the HTTP API (operator): register one by its hash,
//! list a principal's, revoke one (src/auth/tokens.rs).

use serde::{Deserialize, Serialize};

/// Registers a token for principal `id`: only its SHA-256 crosses the
/// wire; the token itself stays with the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenAddRequest {
    pub id: u32,
    pub hash: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenListRequest {
    pub id: u32,
}

/// Revokes principal `id`'s token whose id (first 8 bytes of its hash)
/// is `token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRevokeRequest {
    pub id: u32,
    pub token: [u8; 8],
}

/// Principal `id`'s tokens after the change, by id, in byte order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalTokens {
    pub id: u32,
    pub tokens: Vec<[u8; 8]>,
}
