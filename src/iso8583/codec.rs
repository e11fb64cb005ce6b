//! The ISO 8583:1987 codec: framing, MTI, bitmaps, and the fields kessai
//! reads and writes.
//!
//! ```text
//! +----------------+---------+-------------------+--------------------+---------+
//! | length: u16 BE | MTI (4) | primary bitmap (8)| [secondary (8)]    | fields  |
//! +----------------+---------+-------------------+--------------------+---------+
//!                  |<---------------------- length bytes ------------------------>|
//! ```
//!
//! The MTI and every field are ASCII; the bitmaps are binary (bit 1 of the
//! primary bitmap, its most significant bit, announces the secondary). A
//! field is fixed-length, or LLVAR / LLLVAR: two or three ASCII digits of
//! length, then that many characters. The layout matches pyiso8583's
//! `default` specification, which the tests use as the independent client.
//!
//! Everything here treats its input as hostile: every length is checked
//! against the field table before it is used, a field the table does not
//! know ends decoding (its length cannot be known, so nothing after it can
//! be read), and every failure is a typed [`DecodeError`], never a panic.
//! Decoding copies only the fields it accepts, each bounded by its table
//! entry, so one message costs at most `length` bytes.

use std::fmt;

/// Bytes of the length prefix.
pub const LENGTH_BYTES: usize = 2;
/// Bytes of the message type indicator.
pub const MTI_BYTES: usize = 4;
/// Bytes of one bitmap.
pub const BITMAP_BYTES: usize = 8;
/// The smallest message: an MTI and a primary bitmap.
pub const MESSAGE_BYTES_MIN: usize = MTI_BYTES + BITMAP_BYTES;
/// The largest message the 2-byte prefix can announce.
pub const MESSAGE_BYTES_CEILING: usize = u16::MAX as usize;
/// Fields are numbered 1..=128; 1 is the secondary bitmap itself.
pub const FIELD_MAX: u8 = 128;

/// The characters a field may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// `n`: digits.
    Numeric,
    /// `an`: letters and digits.
    Alphanumeric,
    /// `ans`: printable ASCII, space included.
    Printable,
    /// `z`: track 2: digits and the separator `=` (or `D`).
    Track2,
}

impl Charset {
    fn admits(self, byte: u8) -> bool {
        match self {
            Charset::Numeric => byte.is_ascii_digit(),
            Charset::Alphanumeric => byte.is_ascii_alphanumeric(),
            Charset::Printable => (0x20..=0x7e).contains(&byte),
            Charset::Track2 => byte.is_ascii_digit() || byte == b'=' || byte == b'D',
        }
    }
}

/// How a field's length is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// Always this many characters.
    Fixed(usize),
    /// Two ASCII digits of length, at most this many characters.
    Llvar(usize),
    /// Three ASCII digits of length, at most this many characters.
    Lllvar(usize),
}

/// One entry of the field table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    pub number: u8,
    pub length: Length,
    pub charset: Charset,
    pub name: &'static str,
}

const fn spec(number: u8, length: Length, charset: Charset, name: &'static str) -> FieldSpec {
    FieldSpec {
        number,
        length,
        charset,
        name,
    }
}

/// The fields kessai speaks, in number order. A message carrying any other
/// field is a format error.
pub const FIELDS: [FieldSpec; 17] = [
    spec(
        2,
        Length::Llvar(19),
        Charset::Numeric,
        "PAN (the card's PIN)",
    ),
    spec(3, Length::Fixed(6), Charset::Numeric, "processing code"),
    spec(
        4,
        Length::Fixed(12),
        Charset::Numeric,
        "amount, transaction",
    ),
    spec(
        7,
        Length::Fixed(10),
        Charset::Numeric,
        "transmission date and time",
    ),
    spec(11, Length::Fixed(6), Charset::Numeric, "STAN"),
    spec(12, Length::Fixed(6), Charset::Numeric, "time, local"),
    spec(13, Length::Fixed(4), Charset::Numeric, "date, local"),
    spec(35, Length::Llvar(37), Charset::Track2, "track 2"),
    spec(
        37,
        Length::Fixed(12),
        Charset::Printable,
        "retrieval reference number",
    ),
    spec(38, Length::Fixed(6), Charset::Alphanumeric, "approval code"),
    spec(39, Length::Fixed(2), Charset::Alphanumeric, "response code"),
    spec(41, Length::Fixed(8), Charset::Printable, "terminal id"),
    spec(
        42,
        Length::Fixed(15),
        Charset::Printable,
        "card acceptor (store) id",
    ),
    spec(49, Length::Fixed(3), Charset::Numeric, "currency code"),
    spec(
        54,
        Length::Lllvar(120),
        Charset::Printable,
        "additional amounts",
    ),
    spec(
        70,
        Length::Fixed(3),
        Charset::Numeric,
        "network management code",
    ),
    spec(
        90,
        Length::Fixed(42),
        Charset::Numeric,
        "original data elements",
    ),
];

/// The table entry of field `number`, if kessai speaks it.
pub fn field_spec(number: u8) -> Option<&'static FieldSpec> {
    FIELDS.iter().find(|spec| spec.number == number)
}

/// One message: its MTI and its fields, each ASCII and within its table
/// entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub mti: [u8; MTI_BYTES],
    /// By field number, ascending; at most one per number.
    fields: Vec<(u8, String)>,
}

/// Why bytes are not a message kessai accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer than `MESSAGE_BYTES_MIN` bytes.
    TooShort { bytes: usize },
    /// The MTI is not four digits.
    BadMti,
    /// The secondary bitmap announces a third (bit 65), which 1987 lacks.
    TertiaryBitmap,
    /// A bitmap names a field the table does not hold.
    UnknownField { field: u8 },
    /// The message ended inside this field (or its length prefix).
    Truncated { field: u8 },
    /// A length prefix that is not digits, or exceeds the field's maximum.
    BadLength { field: u8 },
    /// A character outside the field's charset.
    BadCharacter { field: u8 },
    /// Bytes left after the last field the bitmaps announce.
    TrailingBytes { bytes: usize },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooShort { bytes } => write!(
                f,
                "a message of {bytes} bytes cannot hold an MTI and a bitmap"
            ),
            DecodeError::BadMti => f.write_str("the MTI is not four ASCII digits"),
            DecodeError::TertiaryBitmap => f.write_str("a tertiary bitmap is not ISO 8583:1987"),
            DecodeError::UnknownField { field } => write!(f, "field {field} is not supported"),
            DecodeError::Truncated { field } => write!(f, "the message ends inside field {field}"),
            DecodeError::BadLength { field } => write!(f, "field {field} has an illegal length"),
            DecodeError::BadCharacter { field } => {
                write!(f, "field {field} holds a character outside its charset")
            }
            DecodeError::TrailingBytes { bytes } => {
                write!(f, "{bytes} bytes follow the last field")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Why a message cannot be encoded: a bug in the caller, never the peer's
/// doing, but a value all the same so a reply that does not fit is refused
/// instead of written half.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    UnknownField { field: u8 },
    BadLength { field: u8, bytes: usize },
    BadCharacter { field: u8 },
    TooLarge { bytes: usize },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::UnknownField { field } => write!(f, "field {field} is not supported"),
            EncodeError::BadLength { field, bytes } => {
                write!(f, "field {field} cannot be {bytes} characters long")
            }
            EncodeError::BadCharacter { field } => {
                write!(f, "field {field} holds a character outside its charset")
            }
            EncodeError::TooLarge { bytes } => {
                write!(f, "a message of {bytes} bytes exceeds the frame limit")
            }
        }
    }
}

impl std::error::Error for EncodeError {}

impl Message {
    /// A message of type `mti` with no fields yet.
    pub fn new(mti: [u8; MTI_BYTES]) -> Message {
        Message {
            mti,
            fields: Vec::new(),
        }
    }

    pub fn get(&self, field: u8) -> Option<&str> {
        self.fields
            .binary_search_by_key(&field, |(number, _)| *number)
            .ok()
            .map(|at| self.fields[at].1.as_str())
    }

    pub fn has(&self, field: u8) -> bool {
        self.get(field).is_some()
    }

    /// Sets field `field` to `value`, replacing any value it had. Checked
    /// when encoded.
    pub fn set(&mut self, field: u8, value: impl Into<String>) -> &mut Message {
        let value = value.into();
        match self
            .fields
            .binary_search_by_key(&field, |(number, _)| *number)
        {
            Ok(at) => self.fields[at].1 = value,
            Err(at) => self.fields.insert(at, (field, value)),
        }
        self
    }

    /// The fields set, ascending.
    pub fn fields(&self) -> impl Iterator<Item = (u8, &str)> {
        self.fields
            .iter()
            .map(|(number, value)| (*number, value.as_str()))
    }

    /// Appends the whole frame (length prefix included) to `out`, or
    /// nothing if the message is not valid or exceeds `max_message_bytes`.
    pub fn encode(&self, out: &mut Vec<u8>, max_message_bytes: usize) -> Result<(), EncodeError> {
        let start = out.len();
        let result = self.encode_into(out, max_message_bytes.min(MESSAGE_BYTES_CEILING));
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn encode_into(&self, out: &mut Vec<u8>, max_message_bytes: usize) -> Result<(), EncodeError> {
        let start = out.len();
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.mti);
        let secondary = self.fields.iter().any(|(number, _)| *number > 64);
        let mut bitmap = [0u8; 2 * BITMAP_BYTES];
        if secondary {
            bitmap[0] |= 0x80;
        }
        for (number, _) in &self.fields {
            let spec = field_spec(*number).ok_or(EncodeError::UnknownField { field: *number })?;
            let bit = usize::from(spec.number) - 1;
            bitmap[bit / 8] |= 0x80 >> (bit % 8);
        }
        let bitmap_bytes = if secondary {
            2 * BITMAP_BYTES
        } else {
            BITMAP_BYTES
        };
        out.extend_from_slice(&bitmap[..bitmap_bytes]);
        for (number, value) in &self.fields {
            let spec = field_spec(*number).ok_or(EncodeError::UnknownField { field: *number })?;
            let bytes = value.as_bytes();
            if !bytes.iter().all(|byte| spec.charset.admits(*byte)) {
                return Err(EncodeError::BadCharacter { field: *number });
            }
            let bad_length = EncodeError::BadLength {
                field: *number,
                bytes: bytes.len(),
            };
            match spec.length {
                Length::Fixed(length) if bytes.len() != length => return Err(bad_length),
                Length::Fixed(_) => {}
                Length::Llvar(max) if bytes.len() > max => return Err(bad_length),
                Length::Llvar(_) => out.extend_from_slice(format!("{:02}", bytes.len()).as_bytes()),
                Length::Lllvar(max) if bytes.len() > max => return Err(bad_length),
                Length::Lllvar(_) => {
                    out.extend_from_slice(format!("{:03}", bytes.len()).as_bytes())
                }
            }
            out.extend_from_slice(bytes);
        }
        let length = out.len() - start - LENGTH_BYTES;
        if length > max_message_bytes {
            return Err(EncodeError::TooLarge { bytes: length });
        }
        let prefix = u16::try_from(length).map_err(|_| EncodeError::TooLarge { bytes: length })?;
        out[start..start + LENGTH_BYTES].copy_from_slice(&prefix.to_be_bytes());
        Ok(())
    }

    /// Decodes one message body (what follows the length prefix).
    pub fn decode(body: &[u8]) -> Result<Message, DecodeError> {
        if body.len() < MESSAGE_BYTES_MIN {
            return Err(DecodeError::TooShort { bytes: body.len() });
        }
        let mut mti = [0u8; MTI_BYTES];
        mti.copy_from_slice(&body[..MTI_BYTES]);
        if !mti.iter().all(u8::is_ascii_digit) {
            return Err(DecodeError::BadMti);
        }
        let mut reader = Reader {
            bytes: body,
            at: MTI_BYTES,
        };
        let mut bitmap = [0u8; 2 * BITMAP_BYTES];
        bitmap[..BITMAP_BYTES].copy_from_slice(reader.take(BITMAP_BYTES, 1)?);
        let fields_max = if bitmap[0] & 0x80 != 0 {
            bitmap[BITMAP_BYTES..].copy_from_slice(reader.take(BITMAP_BYTES, 1)?);
            if bitmap[BITMAP_BYTES] & 0x80 != 0 {
                return Err(DecodeError::TertiaryBitmap);
            }
            FIELD_MAX
        } else {
            64
        };
        let mut message = Message::new(mti);
        for number in 2..=fields_max {
            let bit = usize::from(number) - 1;
            if bitmap[bit / 8] & (0x80 >> (bit % 8)) == 0 {
                continue;
            }
            let spec = field_spec(number).ok_or(DecodeError::UnknownField { field: number })?;
            let value = reader.field(spec)?;
            // Fields arrive in ascending order, so a push keeps them sorted.
            message.fields.push((number, value));
        }
        if reader.at != body.len() {
            return Err(DecodeError::TrailingBytes {
                bytes: body.len() - reader.at,
            });
        }
        Ok(message)
    }
}

/// A cursor over a message body that never reads past its end.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize, field: u8) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(count)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(DecodeError::Truncated { field })?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    /// A length prefix of `digits` ASCII digits, at most `max`.
    fn length(&mut self, digits: usize, max: usize, field: u8) -> Result<usize, DecodeError> {
        let text = self.take(digits, field)?;
        if !text.iter().all(u8::is_ascii_digit) {
            return Err(DecodeError::BadLength { field });
        }
        let length = text
            .iter()
            .fold(0usize, |n, digit| n * 10 + usize::from(digit - b'0'));
        if length > max {
            return Err(DecodeError::BadLength { field });
        }
        Ok(length)
    }

    fn field(&mut self, spec: &FieldSpec) -> Result<String, DecodeError> {
        let field = spec.number;
        let length = match spec.length {
            Length::Fixed(length) => length,
            Length::Llvar(max) => self.length(2, max, field)?,
            Length::Lllvar(max) => self.length(3, max, field)?,
        };
        let bytes = self.take(length, field)?;
        if !bytes.iter().all(|byte| spec.charset.admits(*byte)) {
            return Err(DecodeError::BadCharacter { field });
        }
        // Every charset is a subset of ASCII, so this cannot fail; the
        // error path is kept rather than an unwrap on network input.
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::BadCharacter { field })
    }
}

/// Why the byte stream itself cannot be trusted past this point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A length prefix smaller than the smallest message.
    TooShort { length: usize },
    /// A length prefix above the configured maximum.
    TooLarge {
        length: usize,
        max_message_bytes: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooShort { length } => write!(
                f,
                "a length of {length} cannot hold an MTI and a bitmap ({MESSAGE_BYTES_MIN} bytes)"
            ),
            FrameError::TooLarge {
                length,
                max_message_bytes,
            } => write!(
                f,
                "a message of {length} bytes exceeds the limit of {max_message_bytes}"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// Cuts the first message body off `buffer`: the body and the bytes used,
/// `Ok(None)` when more bytes are needed, or an error as soon as the prefix
/// is illegal (before the body arrives, so an oversized message is never
/// buffered).
pub fn cut(buffer: &[u8], max_message_bytes: usize) -> Result<Option<(&[u8], usize)>, FrameError> {
    let Some(prefix) = buffer.get(..LENGTH_BYTES) else {
        return Ok(None);
    };
    let length = usize::from(u16::from_be_bytes([prefix[0], prefix[1]]));
    if length < MESSAGE_BYTES_MIN {
        return Err(FrameError::TooShort { length });
    }
    if length > max_message_bytes {
        return Err(FrameError::TooLarge {
            length,
            max_message_bytes,
        });
    }
    let end = LENGTH_BYTES + length;
    Ok(buffer.get(LENGTH_BYTES..end).map(|body| (body, end)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// An 0800 sign-on: primary and secondary bitmap (field 70), ASCII
    /// fields. The bytes were checked against pyiso8583 4.0.1's `default`
    /// spec (tests/iso8583/test_golden.py encodes the same message).
    #[test]
    fn a_sign_on_is_these_bytes() {
        let mut message = Message::new(*b"0800");
        message
            .set(7, "1205063000")
            .set(11, "000001")
            .set(70, "001");
        let mut out = Vec::new();
        message.encode(&mut out, 1024).expect("encodes");
        let expected = [
            &[0x00, 0x27][..],
            b"0800",
            // Primary: bit 1 (secondary), 7, 11.
            &[0x82, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
            // Secondary: bit 70 (the sixth of the second map).
            &[0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
            b"1205063000",
            b"000001",
            b"001",
        ]
        .concat();
        assert_eq!(hex(&out), hex(&expected));
        let (body, used) = cut(&out, 1024).expect("legal").expect("whole");
        assert_eq!(used, out.len());
        assert_eq!(Message::decode(body).expect("decodes"), message);
    }

    /// An 0200 activation: LLVAR PIN, fixed fields, primary bitmap only.
    #[test]
    fn an_activation_is_these_bytes() {
        let mut message = Message::new(*b"0200");
        message
            .set(2, "4000000000000002")
            .set(3, "220000")
            .set(4, "000000005000")
            .set(11, "000042")
            .set(37, "RRN000000001")
            .set(41, "TERM0001")
            .set(42, "000000000000007")
            .set(49, "392");
        let mut out = Vec::new();
        message.encode(&mut out, 1024).expect("encodes");
        let expected = [
            &[0x00, 0x5c][..],
            b"0200",
            // Bits 2, 3, 4 | 11 | 37 | 41, 42 | 49.
            &[0x70, 0x20, 0x00, 0x00, 0x08, 0xc0, 0x80, 0x00],
            b"16",
            b"4000000000000002",
            b"220000",
            b"000000005000",
            b"000042",
            b"RRN000000001",
            b"TERM0001",
            b"000000000000007",
            b"392",
        ]
        .concat();
        assert_eq!(hex(&out), hex(&expected));
        assert_eq!(Message::decode(&out[2..]).expect("decodes"), message);
    }

    #[test]
    fn an_lllvar_field_carries_three_digits_of_length() {
        let mut message = Message::new(*b"0110");
        message.set(39, "00").set(54, "1001392C000000005000");
        let mut out = Vec::new();
        message.encode(&mut out, 1024).expect("encodes");
        let body = &out[2..];
        assert_eq!(&body[12..14], b"00");
        assert_eq!(&body[14..17], b"020");
        assert_eq!(Message::decode(body).expect("decodes"), message);
    }

    #[test]
    fn encoding_refuses_what_the_table_forbids_and_writes_nothing() {
        let mut out = vec![1, 2, 3];
        let mut bad = Message::new(*b"0200");
        bad.set(4, "5000");
        assert_eq!(
            bad.encode(&mut out, 1024),
            Err(EncodeError::BadLength { field: 4, bytes: 4 })
        );
        bad.set(4, "00000000500X");
        assert_eq!(
            bad.encode(&mut out, 1024),
            Err(EncodeError::BadCharacter { field: 4 })
        );
        let mut unknown = Message::new(*b"0200");
        unknown.set(5, "000000000000");
        assert_eq!(
            unknown.encode(&mut out, 1024),
            Err(EncodeError::UnknownField { field: 5 })
        );
        let mut big = Message::new(*b"0110");
        big.set(54, "1".repeat(120));
        assert_eq!(
            big.encode(&mut out, 64),
            Err(EncodeError::TooLarge { bytes: 135 })
        );
        assert_eq!(out, vec![1, 2, 3], "a refused message leaves no bytes");
    }

    #[test]
    fn malformed_bodies_get_typed_errors() {
        let header = |bitmap: [u8; 8]| [&b"0200"[..], &bitmap].concat();
        assert_eq!(
            Message::decode(b"0200"),
            Err(DecodeError::TooShort { bytes: 4 })
        );
        assert_eq!(
            Message::decode(&[&b"02X0"[..], &[0; 8]].concat()),
            Err(DecodeError::BadMti)
        );
        // Field 5 is not in the table.
        assert_eq!(
            Message::decode(&header([0x08, 0, 0, 0, 0, 0, 0, 0])),
            Err(DecodeError::UnknownField { field: 5 })
        );
        // Field 2 with a length over 19.
        let long = [&header([0x40, 0, 0, 0, 0, 0, 0, 0])[..], b"20", &[b'1'; 20]].concat();
        assert_eq!(
            Message::decode(&long),
            Err(DecodeError::BadLength { field: 2 })
        );
        // Field 2 with a length that is not digits.
        let garbled = [&header([0x40, 0, 0, 0, 0, 0, 0, 0])[..], b"1x"].concat();
        assert_eq!(
            Message::decode(&garbled),
            Err(DecodeError::BadLength { field: 2 })
        );
        // Field 4 cut short.
        let short = [&header([0x10, 0, 0, 0, 0, 0, 0, 0])[..], b"0000"].concat();
        assert_eq!(
            Message::decode(&short),
            Err(DecodeError::Truncated { field: 4 })
        );
        // Field 4 with a letter.
        let letter = [&header([0x10, 0, 0, 0, 0, 0, 0, 0])[..], b"00000000500A"].concat();
        assert_eq!(
            Message::decode(&letter),
            Err(DecodeError::BadCharacter { field: 4 })
        );
        // A secondary bitmap that is missing, and one announcing a third.
        assert_eq!(
            Message::decode(&header([0x80, 0, 0, 0, 0, 0, 0, 0])),
            Err(DecodeError::Truncated { field: 1 })
        );
        let tertiary = [
            &header([0x80, 0, 0, 0, 0, 0, 0, 0])[..],
            &[0x80, 0, 0, 0, 0, 0, 0, 0],
        ]
        .concat();
        assert_eq!(Message::decode(&tertiary), Err(DecodeError::TertiaryBitmap));
        // Bytes after the last field.
        let trailing = [&header([0; 8])[..], b"x"].concat();
        assert_eq!(
            Message::decode(&trailing),
            Err(DecodeError::TrailingBytes { bytes: 1 })
        );
    }

    #[test]
    fn framing_refuses_illegal_lengths_before_the_body() {
        assert_eq!(cut(&[0x00], 1024), Ok(None));
        assert_eq!(
            cut(&[0x00, 0x05], 1024),
            Err(FrameError::TooShort { length: 5 })
        );
        assert_eq!(
            cut(&[0x10, 0x00], 1024),
            Err(FrameError::TooLarge {
                length: 4096,
                max_message_bytes: 1024
            })
        );
        let whole = [&[0x00, 0x0c][..], b"0800", &[0; 8], b"rest"].concat();
        assert_eq!(cut(&whole[..10], 1024), Ok(None));
        let (body, used) = cut(&whole, 1024).expect("legal").expect("whole");
        assert_eq!((body.len(), used), (12, 14));
    }

    /// A message built from the table: any subset of fields, each a legal
    /// value.
    fn legal_message() -> impl Strategy<Value = Message> {
        let fields = proptest::collection::vec((0..FIELDS.len(), any::<u64>()), 0..10);
        (0u16..10_000, fields).prop_map(|(mti, picks)| {
            let mut message = Message::new(
                format!("{mti:04}")
                    .into_bytes()
                    .try_into()
                    .expect("four digits"),
            );
            for (index, seed) in picks {
                let spec = FIELDS[index];
                let length = match spec.length {
                    Length::Fixed(length) => length,
                    Length::Llvar(max) | Length::Lllvar(max) => (seed as usize) % (max + 1),
                };
                let value: String = (0..length)
                    .map(|i| char::from(b'0' + ((seed >> (i % 60)) % 10) as u8))
                    .collect();
                message.set(spec.number, value);
            }
            message
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Every legal message survives a round trip unchanged.
        #[test]
        fn legal_messages_round_trip(message in legal_message()) {
            let mut out = Vec::new();
            message.encode(&mut out, MESSAGE_BYTES_CEILING).expect("legal");
            let (body, used) = cut(&out, MESSAGE_BYTES_CEILING).expect("legal").expect("whole");
            prop_assert_eq!(used, out.len());
            prop_assert_eq!(Message::decode(body).expect("decodes"), message);
        }

        /// A legal message with bytes flipped, cut short or extended: a
        /// typed error or a message, never a panic, and a decoded message
        /// always re-encodes (everything accepted is within the table).
        #[test]
        fn damaged_messages_never_panic(
            message in legal_message(),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
            cut_at in any::<usize>(),
            tail in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut out = Vec::new();
            message.encode(&mut out, MESSAGE_BYTES_CEILING).expect("legal");
            let mut body = out[LENGTH_BYTES..].to_vec();
            for (at, byte) in flips {
                let len = body.len();
                body[at % len] = byte;
            }
            body.truncate(cut_at % (body.len() + 1));
            body.extend_from_slice(&tail);
            if let Ok(decoded) = Message::decode(&body) {
                let mut again = Vec::new();
                decoded.encode(&mut again, MESSAGE_BYTES_CEILING).expect("accepted fields re-encode");
            }
        }

        /// Random bytes as a stream: framing and decoding give typed
        /// errors, never a panic, and never read past what arrived.
        #[test]
        fn random_streams_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            max in 0usize..400,
        ) {
            let mut rest = &bytes[..];
            while let Ok(Some((body, used))) = cut(rest, max) {
                prop_assert!(used <= rest.len());
                prop_assert!(body.len() <= max);
                let _ = Message::decode(body);
                rest = &rest[used..];
            }
            let _ = Message::decode(&bytes);
        }
    }
}
