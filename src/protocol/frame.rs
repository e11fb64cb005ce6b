//! Framing: how messages are cut out of a TCP byte stream.
//!
//! ```text
//! +----------------+---------+--------------------+------------------+
//! | length: u32 BE | kind u8 | correlation u64 BE | body (postcard)  |
//! +----------------+---------+--------------------+------------------+
//!                  |<------------------ length bytes ---------------->|
//! ```
//!
//! `length` counts everything after itself, so a frame is `4 + length`
//! bytes. A frame whose `4 + length` exceeds the configured maximum, or whose
//! length cannot even hold the header, is a protocol violation: the peer is
//! not speaking this protocol (or is hostile), and the connection is closed
//! after an error reply. Nothing here allocates: parsing borrows from the
//! read buffer, and encoding appends to a reused output buffer.

use serde::Serialize;

/// Bytes of the length prefix.
pub const LENGTH_BYTES: usize = 4;
/// Bytes of kind and correlation id that follow the length.
pub const HEADER_BYTES: usize = 1 + 8;
/// Smallest legal frame (empty body).
pub const FRAME_BYTES_MIN: usize = LENGTH_BYTES + HEADER_BYTES;

/// One frame cut from the buffer, borrowing its body.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: u8,
    pub correlation_id: u64,
    pub body: &'a [u8],
}

/// A framing violation: the stream cannot be trusted past this point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix is shorter than the header.
    TooShort { length: u32 },
    /// The frame would exceed the maximum frame size.
    TooLarge {
        frame_bytes: usize,
        max_frame_bytes: usize,
    },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooShort { length } => {
                write!(
                    f,
                    "frame length {length} cannot hold the {HEADER_BYTES}-byte header"
                )
            }
            FrameError::TooLarge {
                frame_bytes,
                max_frame_bytes,
            } => write!(
                f,
                "frame of {frame_bytes} bytes exceeds the limit of {max_frame_bytes} bytes"
            ),
        }
    }
}

/// Cuts the first frame off `buffer`. Returns the frame and the bytes it
/// used, `Ok(None)` when more bytes are needed, or an error when the prefix
/// is illegal (checked before the body arrives, so an oversized frame is
/// refused without buffering it).
pub fn parse(
    buffer: &[u8],
    max_frame_bytes: usize,
) -> Result<Option<(Frame<'_>, usize)>, FrameError> {
    if buffer.len() < LENGTH_BYTES {
        return Ok(None);
    }
    let length = u32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]);
    if (length as usize) < HEADER_BYTES {
        return Err(FrameError::TooShort { length });
    }
    let frame_bytes = LENGTH_BYTES + length as usize;
    if frame_bytes > max_frame_bytes {
        return Err(FrameError::TooLarge {
            frame_bytes,
            max_frame_bytes,
        });
    }
    if buffer.len() < frame_bytes {
        return Ok(None);
    }
    let kind = buffer[LENGTH_BYTES];
    let mut correlation = [0u8; 8];
    correlation.copy_from_slice(&buffer[LENGTH_BYTES + 1..FRAME_BYTES_MIN]);
    let frame = Frame {
        kind,
        correlation_id: u64::from_be_bytes(correlation),
        body: &buffer[FRAME_BYTES_MIN..frame_bytes],
    };
    Ok(Some((frame, frame_bytes)))
}

/// Why a frame could not be encoded.
#[derive(Debug)]
pub enum EncodeError {
    Serialize(postcard::Error),
    TooLarge { frame_bytes: usize },
}

/// Appends one frame to `out`. On error `out` is left as it was.
pub fn encode<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    kind: u8,
    correlation_id: u64,
    body: &T,
    max_frame_bytes: usize,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(&[0u8; LENGTH_BYTES]);
    out.push(kind);
    out.extend_from_slice(&correlation_id.to_be_bytes());
    if let Err(error) = crate::encoding::append(body, out) {
        out.truncate(start);
        return Err(EncodeError::Serialize(error));
    }
    let frame_bytes = out.len() - start;
    if frame_bytes > max_frame_bytes {
        out.truncate(start);
        return Err(EncodeError::TooLarge { frame_bytes });
    }
    let length = (frame_bytes - LENGTH_BYTES) as u32;
    out[start..start + LENGTH_BYTES].copy_from_slice(&length.to_be_bytes());
    Ok(())
}

/// A read buffer that frames are cut from: the one framing loop shared by
/// the engine's connections and the Rust client.
///
/// Bytes are read in after what is buffered; [`FrameBuffer::next_frame`]
/// cuts complete frames off the front. A partial frame stays until the rest
/// arrives. Consumed bytes are dropped before the next read, so the buffer
/// holds at most one partial frame plus one read.
#[derive(Debug, Default)]
pub struct FrameBuffer {
    bytes: Vec<u8>,
    consumed: usize,
}

impl FrameBuffer {
    pub fn with_capacity(bytes: usize) -> FrameBuffer {
        FrameBuffer {
            bytes: Vec::with_capacity(bytes),
            consumed: 0,
        }
    }

    /// Cuts the next complete frame, if there is one (see [`parse`]).
    pub fn next_frame(&mut self, max_frame_bytes: usize) -> Result<Option<Frame<'_>>, FrameError> {
        match parse(&self.bytes[self.consumed..], max_frame_bytes)? {
            Some((frame, used)) => {
                self.consumed += used;
                Ok(Some(frame))
            }
            None => Ok(None),
        }
    }

    /// True when the next frame is whole (or its prefix is illegal): a cut
    /// would find something without reading.
    pub fn has_frame(&self, max_frame_bytes: usize) -> bool {
        !matches!(
            parse(&self.bytes[self.consumed..], max_frame_bytes),
            Ok(None)
        )
    }

    /// Bytes buffered but not yet cut into frames (a partial frame).
    pub fn pending_bytes(&self) -> usize {
        self.bytes.len() - self.consumed
    }

    /// The whole size of the partial frame at the front, once its length
    /// prefix has arrived (what the buffer will have to hold for it).
    pub fn announced_frame_bytes(&self) -> Option<usize> {
        let rest = &self.bytes[self.consumed..];
        let prefix: [u8; LENGTH_BYTES] = rest.get(..LENGTH_BYTES)?.try_into().ok()?;
        Some(LENGTH_BYTES + u32::from_be_bytes(prefix) as usize)
    }

    /// Appends `bytes` as if they had been read (tests and fuzzing).
    pub fn extend(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// Drops what was cut, then reads once from `reader`, keeping at least
    /// `chunk_bytes` of room. Returns the bytes read (0 at end of stream).
    pub async fn fill<R>(&mut self, reader: &mut R, chunk_bytes: usize) -> std::io::Result<usize>
    where
        R: tokio::io::AsyncRead + Unpin,
    {
        use tokio::io::AsyncReadExt;
        self.bytes.drain(..self.consumed);
        self.consumed = 0;
        // A large frame made the buffer grow; once it is gone, give the
        // memory back rather than keep every connection at its peak.
        if self.bytes.capacity() > 4 * chunk_bytes && self.bytes.len() < chunk_bytes {
            self.bytes.shrink_to(2 * chunk_bytes);
        }
        if self.bytes.capacity() - self.bytes.len() < chunk_bytes {
            self.bytes.reserve(chunk_bytes);
        }
        reader.read_buf(&mut self.bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_split_anywhere() {
        let mut out = Vec::new();
        encode(&mut out, 4, 77, &(1u32, "body"), 1024).expect("encode");
        encode(&mut out, 5, 78, &(), 1024).expect("encode");
        // Every prefix of the first frame is incomplete, never an error.
        let first_len = {
            let (frame, used) = parse(&out, 1024).expect("ok").expect("frame");
            assert_eq!((frame.kind, frame.correlation_id), (4, 77));
            let body: (u32, &str) = postcard::from_bytes(frame.body).expect("body");
            assert_eq!(body, (1, "body"));
            used
        };
        for cut in 0..first_len {
            assert_eq!(parse(&out[..cut], 1024), Ok(None));
        }
        let (second, used) = parse(&out[first_len..], 1024).expect("ok").expect("frame");
        assert_eq!(
            (second.kind, second.correlation_id, second.body),
            (5, 78, &[][..])
        );
        assert_eq!(first_len + used, out.len());
    }

    #[test]
    fn illegal_lengths_are_refused_before_the_body_arrives() {
        assert_eq!(
            parse(&[0, 0, 0, 3, 1], 1024),
            Err(FrameError::TooShort { length: 3 })
        );
        assert_eq!(
            parse(&[0xFF, 0xFF, 0xFF, 0xFF], 1024),
            Err(FrameError::TooLarge {
                frame_bytes: 4 + u32::MAX as usize,
                max_frame_bytes: 1024
            })
        );
    }

    #[test]
    fn oversized_encodes_leave_the_buffer_untouched() {
        let mut out = vec![9u8; 3];
        let big = vec![0u8; 2000];
        assert!(matches!(
            encode(&mut out, 1, 1, &big, 1024),
            Err(EncodeError::TooLarge { .. })
        ));
        assert_eq!(out, vec![9u8; 3]);
    }
}
