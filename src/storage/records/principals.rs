//! Who talks to the engine: the `principals`, the `pin_failures` of the
//! PIN-guessing guard (counted per principal), and the key prefix of every
//! family keyed by principal first.

use super::codec::{decode_u64, decode_versioned, encode_versioned};
use serde::{Deserialize, Serialize};

const PRINCIPAL_FORMAT: u8 = 1;

/// Who may talk to the engine, as stored: the role's one-byte code, the
/// stored form of the key (never the secret), the stores of a store HQ,
/// and whether it was revoked (kept, so an id is never reused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalRecord {
    pub role_code: u8,
    pub stored_key: [u8; 32],
    pub stores: Vec<u32>,
    pub revoked: bool,
}

impl PrincipalRecord {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        encode_versioned(PRINCIPAL_FORMAT, self, out);
    }

    pub fn decode(bytes: &[u8]) -> Result<PrincipalRecord, String> {
        decode_versioned(PRINCIPAL_FORMAT, bytes, "principal record")
    }
}

pub fn decode_principal_id(bytes: &[u8]) -> Result<u32, String> {
    let id: [u8; 4] = bytes
        .try_into()
        .map_err(|_| format!("principal id of {} bytes", bytes.len()))?;
    Ok(u32::from_be_bytes(id))
}

/// The key prefix of everything a merchant (or any principal) owns in a
/// family keyed by principal first: payments, refunds, payouts.
pub fn principal_prefix(principal: u32) -> [u8; 4] {
    principal.to_be_bytes()
}

/// A record of the PIN-guessing guard (`auth::guard`): one counted
/// failure, or a lock. Failures: key `principal u32 BE | at_ms u64 BE |
/// seq u64 BE`, empty value (one record each, so shards never overwrite
/// one another's). A lock: key `principal u32 BE`, value `until_ms u64
/// LE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardRecord {
    Failure {
        principal: u32,
        at_ms: u64,
        seq: u64,
    },
    Lock {
        principal: u32,
        until_ms: u64,
    },
}

pub(crate) const PIN_FAILURE_KEY_BYTES: usize = 4 + 8 + 8;

pub(crate) fn pin_failure_key(principal: u32, at_ms: u64, seq: u64) -> [u8; PIN_FAILURE_KEY_BYTES] {
    let mut out = [0u8; PIN_FAILURE_KEY_BYTES];
    out[..4].copy_from_slice(&principal.to_be_bytes());
    out[4..12].copy_from_slice(&at_ms.to_be_bytes());
    out[12..].copy_from_slice(&seq.to_be_bytes());
    out
}

pub(crate) fn lock_key(principal: u32) -> [u8; 4] {
    principal.to_be_bytes()
}

pub fn decode_guard(key: &[u8], value: &[u8]) -> Result<GuardRecord, String> {
    let be = |at: usize| u64::from_be_bytes(key[at..at + 8].try_into().expect("8 bytes"));
    match key.len() {
        PIN_FAILURE_KEY_BYTES if value.is_empty() => Ok(GuardRecord::Failure {
            principal: u32::from_be_bytes(key[..4].try_into().expect("4 bytes")),
            at_ms: be(4),
            seq: be(12),
        }),
        4 => Ok(GuardRecord::Lock {
            principal: u32::from_be_bytes(key.try_into().expect("4 bytes")),
            until_ms: decode_u64(value)?,
        }),
        length => Err(format!(
            "PIN guard record with a {length}-byte key and a {}-byte value",
            value.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::records::golden::{hex, repeated};

    #[test]
    fn a_principal_record_has_pinned_bytes() {
        let record = PrincipalRecord {
            role_code: 2,
            stored_key: [0xAB; 32],
            stores: vec![42, 300],
            revoked: false,
        };
        let mut bytes = Vec::new();
        record.encode_into(&mut bytes);
        assert_eq!(
            hex(&bytes),
            format!("01 02 {} 02 2A AC 02 00", repeated("AB", 32))
        );
        assert_eq!(PrincipalRecord::decode(&bytes), Ok(record));
        assert_eq!(decode_principal_id(&5u32.to_be_bytes()), Ok(5));
        assert!(PrincipalRecord::decode(&bytes[..10]).is_err());
    }
}
