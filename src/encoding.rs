//! Appending postcard encodings to a caller's buffer.
//!
//! Both the wire (frames into a connection's write buffer) and storage
//! (records into a shard's write-set arena) encode into buffers they reuse,
//! so the hot path allocates nothing to serialize.

use serde::Serialize;

/// A postcard output that appends to an existing buffer.
struct AppendTo<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendTo<'_> {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Appends `value` to `out`. On error `out` is left as it was.
pub fn append<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> postcard::Result<()> {
    let start = out.len();
    let result = postcard::serialize_with_flavor(value, AppendTo(out));
    if result.is_err() {
        out.truncate(start);
    }
    result
}

#[cfg(test)]
mod tests {
    #[test]
    fn appends_after_existing_bytes() {
        let mut out = vec![9u8];
        super::append(&(300u32, "ab"), &mut out).expect("encode");
        assert_eq!(out, vec![9, 0xAC, 0x02, 2, b'a', b'b']);
        assert_eq!(
            postcard::from_bytes::<(u32, &str)>(&out[1..]).expect("decode"),
            (300, "ab")
        );
    }
}
