//! What every layout shares: the format byte in front of a postcard body
//! (the variable-length records), and the fixed-width fields (little-endian
//! words, PIN keys) the hot records are made of.

use crate::pin::{PIN_KEY_BYTES, PinKey};
use serde::{Deserialize, Serialize};

/// Appends a format byte and the postcard encoding of `value`.
pub(super) fn encode_versioned<T: Serialize>(format: u8, value: &T, out: &mut Vec<u8>) {
    out.push(format);
    crate::encoding::append(value, out).expect("records of plain data always serialize");
}

/// Checks the format byte and decodes the rest, all of it.
pub(super) fn decode_versioned<'a, T: Deserialize<'a>>(
    format: u8,
    bytes: &'a [u8],
    what: &str,
) -> Result<T, String> {
    match bytes.split_first() {
        Some((&found, body)) if found == format => decode_all(body, what),
        _ => Err(format!("{what} with unknown format")),
    }
}

pub(super) fn decode_all<'a, T: Deserialize<'a>>(body: &'a [u8], what: &str) -> Result<T, String> {
    match postcard::take_from_bytes(body) {
        Ok((value, [])) => Ok(value),
        Ok(_) => Err(format!("{what}: trailing bytes")),
        Err(error) => Err(format!("{what}: {error}")),
    }
}

pub(crate) fn decode_u64(bytes: &[u8]) -> Result<u64, String> {
    let word: [u8; 8] = bytes
        .try_into()
        .map_err(|_| format!("u64 value of {} bytes", bytes.len()))?;
    Ok(u64::from_le_bytes(word))
}

pub(super) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

pub(crate) fn decode_pin_key(bytes: &[u8]) -> Result<PinKey, String> {
    let key: [u8; PIN_KEY_BYTES] = bytes
        .try_into()
        .map_err(|_| format!("pin key of {} bytes", bytes.len()))?;
    Ok(PinKey(key))
}
