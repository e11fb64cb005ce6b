//! The log's record format, version 1. Little-endian throughout:
//!
//! ```text
//! offset  bytes  field
//!      0      4  magic "KLOG"
//!      4      1  version (1)
//!      5      3  reserved, zero
//!      8      4  partition
//!     12      8  epoch
//!     20      8  position
//!     28      4  payload length N
//!     32     32  SHA-256 of the previous record (zeros before the first)
//!     64      N  payload
//!   64+N     32  SHA-256 of bytes 0..64+N: this record's hash
//! ```
//!
//! Each record names its predecessor's hash, so the log is a hash chain:
//! changing, dropping or reordering any record changes every hash after
//! it, and the head hash (`kessai log verify` prints it) vouches for the
//! whole history an auditor saw before.
//!
//! A reader stops at the first place that does not hold a whole, valid
//! record: zeros (the unwritten, preallocated end of a segment) or a torn
//! tail (a record whose write never completed, so was never acknowledged).

use super::{Entry, Partition, Position};
use sha2::{Digest, Sha256};

pub const MAGIC: [u8; 4] = *b"KLOG";
pub const VERSION: u8 = 1;
pub const HEADER_BYTES: usize = 64;
pub const HASH_BYTES: usize = 32;
/// Bytes a record adds to its payload.
pub const OVERHEAD_BYTES: usize = HEADER_BYTES + HASH_BYTES;
/// The largest payload: one shard's group commit, bounded by its mailbox
/// (see `limits.shard_mailbox_capacity`) long before this.
pub const PAYLOAD_BYTES_MAX: usize = 1 << 30;

pub type Hash = [u8; HASH_BYTES];

/// The chain's start: the previous hash of the very first record.
pub const GENESIS: Hash = [0; HASH_BYTES];

/// Appends one record to `out`; returns its hash.
pub fn encode_into(
    out: &mut Vec<u8>,
    partition: Partition,
    epoch: u64,
    position: Position,
    prev: &Hash,
    payload: &[u8],
) -> Hash {
    assert!(payload.len() <= PAYLOAD_BYTES_MAX, "checked by the caller");
    let start = out.len();
    out.reserve(OVERHEAD_BYTES + payload.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&partition.0.to_le_bytes());
    out.extend_from_slice(&epoch.to_le_bytes());
    out.extend_from_slice(&position.0.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(prev);
    out.extend_from_slice(payload);
    let hash: Hash = Sha256::digest(&out[start..]).into();
    out.extend_from_slice(&hash);
    hash
}

/// What the bytes at a place in a segment hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A whole, valid record of `bytes` bytes, with its hash.
    Record {
        entry: Entry,
        hash: Hash,
        bytes: usize,
    },
    /// No record starts here: zeros, or too few bytes for a record.
    End,
    /// A record starts here but is torn or damaged (why).
    Invalid(String),
}

/// Decodes the record at the start of `bytes`.
pub fn decode(bytes: &[u8]) -> Decoded {
    if bytes.len() < HEADER_BYTES || bytes[..4] == [0; 4] {
        return Decoded::End;
    }
    if bytes[..4] != MAGIC {
        return Decoded::Invalid("no record magic".into());
    }
    if bytes[4] != VERSION || bytes[5..8] != [0; 3] {
        return Decoded::Invalid(format!("unknown record version {}", bytes[4]));
    }
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let len = u32_at(28) as usize;
    if len > PAYLOAD_BYTES_MAX {
        return Decoded::Invalid(format!("payload of {len} bytes, above {PAYLOAD_BYTES_MAX}"));
    }
    let total = OVERHEAD_BYTES + len;
    if bytes.len() < total {
        return Decoded::Invalid(format!(
            "torn: {total} bytes announced, {} there",
            bytes.len()
        ));
    }
    let body = &bytes[..HEADER_BYTES + len];
    let hash: Hash = Sha256::digest(body).into();
    if bytes[HEADER_BYTES + len..total] != hash {
        return Decoded::Invalid("the record's hash does not match its bytes".into());
    }
    Decoded::Record {
        entry: Entry {
            partition: Partition(u32_at(8)),
            epoch: u64_at(12),
            position: Position(u64_at(20)),
            payload: body[HEADER_BYTES..].to_vec(),
        },
        hash,
        bytes: total,
    }
}

/// The previous-record hash a record at the start of `bytes` names (its
/// bytes are known to hold a whole header).
pub fn prev_of(bytes: &[u8]) -> Hash {
    bytes[32..HEADER_BYTES].try_into().expect("32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Version 1's bytes, pinned: a change here breaks every log on disk.
    #[test]
    fn a_record_has_these_bytes() {
        let mut out = Vec::new();
        let hash = encode_into(&mut out, Partition(2), 7, Position(41), &[0xAB; 32], b"hi");
        let mut expected = Vec::new();
        expected.extend_from_slice(b"KLOG\x01\0\0\0");
        expected.extend_from_slice(&[2, 0, 0, 0]);
        expected.extend_from_slice(&[7, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(&[41, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(&[2, 0, 0, 0]);
        expected.extend_from_slice(&[0xAB; 32]);
        expected.extend_from_slice(b"hi");
        assert_eq!(out[..66], expected[..]);
        assert_eq!(out.len(), 66 + 32);
        assert_eq!(
            hex::encode(hash),
            "4cabf93d65abc3ff3a019056c552d0c21f270ac3ca60da47eb6622cdd50c5524",
            "SHA-256 of bytes 0..66 (checked with Python's hashlib)"
        );
        assert_eq!(out[66..], hash);
    }

    #[test]
    fn records_decode_back_and_damage_is_seen() {
        let mut out = Vec::new();
        let first = encode_into(&mut out, Partition(0), 1, Position(1), &GENESIS, b"one");
        let first_len = out.len();
        encode_into(&mut out, Partition(3), 1, Position(2), &first, &[9; 300]);
        let Decoded::Record { entry, hash, bytes } = decode(&out) else {
            panic!("a record");
        };
        assert_eq!((hash, bytes), (first, first_len));
        assert_eq!(entry.payload, b"one");
        assert_eq!(prev_of(&out[first_len..]), first);
        let Decoded::Record { entry, .. } = decode(&out[first_len..]) else {
            panic!("a record");
        };
        assert_eq!(
            (entry.partition, entry.position),
            (Partition(3), Position(2))
        );

        // Torn: the last record cut anywhere is never taken for a record.
        for cut in first_len + 1..out.len() {
            assert_ne!(
                std::mem::discriminant(&decode(&out[first_len..cut])),
                std::mem::discriminant(&decode(&out[first_len..])),
                "cut at {cut}"
            );
        }
        // One flipped bit anywhere: invalid.
        for at in 0..first_len {
            let mut damaged = out.clone();
            damaged[at] ^= 1;
            assert!(
                !matches!(decode(&damaged), Decoded::Record { .. }),
                "bit flipped at {at}"
            );
        }
        assert_eq!(decode(&[0; 200]), Decoded::End);
    }

    #[test]
    fn an_announced_length_past_the_ceiling_is_refused_before_reading() {
        let mut out = Vec::new();
        encode_into(&mut out, Partition(0), 1, Position(1), &GENESIS, b"x");
        out[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&out), Decoded::Invalid(_)));
    }
}
