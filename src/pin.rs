//! PINs: parsing, the Luhn check digit, generation, and the keyed hash that
//! is the only form in which a PIN is ever stored.
//!
//! A PIN is 10 to 16 ASCII digits whose last digit is a Luhn check digit over
//! the others. The check digit lets the gateway reject a typo before any
//! lookup, so a mistyped PIN never reaches a shard and never costs a decline
//! record.
//!
//! The center must not hold PINs in clear: a leaked database would otherwise
//! be a leaked pile of money. Every PIN is turned into a [`PinKey`], the first
//! 16 bytes of HMAC-SHA256(secret, digits). The secret lives in the data dir
//! (or in config); without it the keys cannot be brute-forced back to PINs,
//! even though the PIN space (at most 10^16) is small.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::fmt;

/// Fewest digits in a PIN, check digit included.
pub const PIN_DIGITS_MIN: usize = 10;
/// Most digits in a PIN, check digit included.
pub const PIN_DIGITS_MAX: usize = 16;
/// Bytes of HMAC output kept as the card's key. 128 bits make an accidental
/// collision between two cards practically impossible.
pub const PIN_KEY_BYTES: usize = 16;

/// Why a string is not a PIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinError {
    /// Fewer than 10 or more than 16 characters.
    Length { digits: usize },
    /// A character that is not an ASCII digit.
    NotDigit,
    /// The Luhn check digit does not match: a typo.
    CheckDigit,
}

impl fmt::Display for PinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinError::Length { digits } => write!(
                f,
                "a PIN has {PIN_DIGITS_MIN} to {PIN_DIGITS_MAX} digits, got {digits} characters"
            ),
            PinError::NotDigit => write!(f, "a PIN holds only the digits 0-9"),
            PinError::CheckDigit => write!(f, "the PIN's check digit does not match (typo?)"),
        }
    }
}

impl std::error::Error for PinError {}

/// A syntactically valid PIN (length and check digit verified).
///
/// `Debug` and `Display` show only the last four digits, so a PIN can never be
/// logged in clear by accident.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    digits: [u8; PIN_DIGITS_MAX],
    len: u8,
}

impl Pin {
    /// Parses and checks a PIN. No allocation.
    pub fn parse(text: &str) -> Result<Pin, PinError> {
        let bytes = text.as_bytes();
        if bytes.len() < PIN_DIGITS_MIN || bytes.len() > PIN_DIGITS_MAX {
            return Err(PinError::Length {
                digits: bytes.len(),
            });
        }
        if !bytes.iter().all(u8::is_ascii_digit) {
            return Err(PinError::NotDigit);
        }
        if !luhn_valid(bytes) {
            return Err(PinError::CheckDigit);
        }
        let mut digits = [0u8; PIN_DIGITS_MAX];
        digits[..bytes.len()].copy_from_slice(bytes);
        Ok(Pin {
            digits,
            len: bytes.len() as u8,
        })
    }

    /// Draws a fresh random PIN of `digit_count` digits (check digit
    /// included). The first digit is never 0, so the PIN survives tools that
    /// treat it as a number.
    pub(crate) fn generate<R: rand::Rng + ?Sized>(rng: &mut R, digit_count: usize) -> Pin {
        use rand::RngExt;
        assert!((PIN_DIGITS_MIN..=PIN_DIGITS_MAX).contains(&digit_count));
        let mut digits = [0u8; PIN_DIGITS_MAX];
        let payload_len = digit_count - 1;
        for (index, digit) in digits[..payload_len].iter_mut().enumerate() {
            let low = if index == 0 { 1 } else { 0 };
            *digit = b'0' + rng.random_range(low..10u8);
        }
        digits[payload_len] = luhn_check_digit(&digits[..payload_len]);
        let pin = Pin {
            digits,
            len: digit_count as u8,
        };
        debug_assert!(luhn_valid(pin.as_bytes()));
        pin
    }

    /// The PIN's digits as ASCII. Handle with care: this is the clear PIN.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.digits[..self.len as usize]
    }

    /// The clear PIN as text. Only the issue path (which hands PINs out once)
    /// and the client may use this.
    pub fn expose(&self) -> &str {
        // Constructed only from ASCII digits.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    /// The last four digits as a number (shown to purchasers to tell cards
    /// apart; print with `{:04}`).
    pub fn last4(&self) -> u16 {
        let bytes = self.as_bytes();
        bytes[bytes.len() - 4..]
            .iter()
            .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'))
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pin(****{:04})", self.last4())
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "****{:04}", self.last4())
    }
}

/// Computes the Luhn check digit (as ASCII) for a payload of ASCII digits.
pub(crate) fn luhn_check_digit(payload: &[u8]) -> u8 {
    // The check digit will sit to the right of the payload, so the payload's
    // rightmost digit is the first one to double.
    let sum = luhn_sum(payload, true);
    b'0' + ((10 - (sum % 10)) % 10) as u8
}

/// True when the last digit of `digits` is the Luhn check digit of the rest.
pub(crate) fn luhn_valid(digits: &[u8]) -> bool {
    !digits.is_empty() && luhn_sum(digits, false).is_multiple_of(10)
}

fn luhn_sum(digits: &[u8], double_rightmost: bool) -> u32 {
    let mut sum = 0u32;
    let mut double = double_rightmost;
    for digit in digits.iter().rev() {
        let mut value = u32::from(digit - b'0');
        if double {
            value *= 2;
            if value > 9 {
                value -= 9;
            }
        }
        sum += value;
        double = !double;
    }
    sum
}

/// The stored identity of a card: a keyed hash of its PIN.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PinKey(pub [u8; PIN_KEY_BYTES]);

impl PinKey {
    /// The shard that owns this card when the engine runs `shard_count`
    /// shards. The key is already a uniform hash, so its first 8 bytes are a
    /// fair partition function; changing the shard count only changes the
    /// modulus, which is why a restart can repartition without migration.
    pub fn shard(&self, shard_count: usize) -> usize {
        debug_assert!(shard_count > 0);
        (self.low_u64() % shard_count as u64) as usize
    }

    /// First 8 bytes as an integer: the hash-map hash (see [`KeyHasher`]).
    pub(crate) fn low_u64(&self) -> u64 {
        let mut low = [0u8; 8];
        low.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(low)
    }

    /// Short, non-secret label for logs and audit findings.
    pub fn label(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl std::hash::Hash for PinKey {
    /// The key is already uniform: feed its first 8 bytes to the hasher as
    /// they are (see [`KeyHasher`]).
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.low_u64());
    }
}

impl fmt::Debug for PinKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PinKey({})", self.label())
    }
}

/// Turns PINs into [`PinKey`]s with HMAC-SHA256 under the engine's secret.
///
/// The keyed state is computed once and cloned per PIN, which skips the two
/// key-setup compressions HMAC would otherwise redo every time.
#[derive(Clone)]
pub struct PinHasher {
    keyed: Hmac<Sha256>,
}

/// Bytes in a generated secret.
pub(crate) const SECRET_BYTES: usize = 32;

impl PinHasher {
    pub fn new(secret: &[u8]) -> PinHasher {
        assert!(!secret.is_empty(), "the PIN secret must not be empty");
        let keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
            .expect("HMAC accepts keys of any length");
        PinHasher { keyed }
    }

    pub fn key(&self, pin: &Pin) -> PinKey {
        let mut mac = self.keyed.clone();
        mac.update(pin.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut key = [0u8; PIN_KEY_BYTES];
        key.copy_from_slice(&full[..PIN_KEY_BYTES]);
        PinKey(key)
    }

    /// A value that identifies the secret without revealing it. Stored in
    /// the database so that starting with a different secret (which would
    /// silently make every card unknown) is refused.
    pub(crate) fn fingerprint(&self) -> [u8; 16] {
        let mut mac = self.keyed.clone();
        mac.update(b"kessai secret fingerprint v1");
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }
}

/// A `Hasher` for maps keyed by [`PinKey`]: the key is already a
/// cryptographic hash, so hashing it again (SipHash by default) is wasted
/// work on the hot path. This hasher passes the key's first 8 bytes through.
#[derive(Default, Clone, Copy)]
pub struct KeyHasher {
    state: u64,
}

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.state
    }

    fn write_u64(&mut self, word: u64) {
        self.state ^= word;
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached if a caller hashes something other than a PinKey;
        // fold the bytes in so the hasher stays correct, if not fast.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.state = (self.state ^ u64::from_le_bytes(word)).rotate_left(29);
        }
    }
}

pub type KeyHashBuilder = std::hash::BuildHasherDefault<KeyHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_known_numbers_and_rejects_single_typos() {
        // Classic Luhn examples.
        assert!(luhn_valid(b"79927398713"));
        assert!(!luhn_valid(b"79927398710"));
        assert_eq!(luhn_check_digit(b"7992739871"), b'3');
        // Every single-digit substitution is caught.
        let good = b"4539578763621486";
        assert!(luhn_valid(good));
        for position in 0..good.len() {
            for replacement in b'0'..=b'9' {
                if replacement == good[position] {
                    continue;
                }
                let mut typo = *good;
                typo[position] = replacement;
                assert!(!luhn_valid(&typo), "typo at {position} not caught");
            }
        }
    }

    #[test]
    fn luhn_catches_adjacent_transpositions_except_09() {
        let good = b"4539578763621486";
        for position in 0..good.len() - 1 {
            let (a, b) = (good[position], good[position + 1]);
            if a == b || (a, b) == (b'0', b'9') || (a, b) == (b'9', b'0') {
                continue;
            }
            let mut swapped = *good;
            swapped.swap(position, position + 1);
            assert!(!luhn_valid(&swapped), "swap at {position} not caught");
        }
    }

    #[test]
    fn parse_checks_length_digits_and_check_digit() {
        assert_eq!(Pin::parse("123456789"), Err(PinError::Length { digits: 9 }));
        assert_eq!(
            Pin::parse("12345678901234567"),
            Err(PinError::Length { digits: 17 })
        );
        assert_eq!(Pin::parse("12345a7890"), Err(PinError::NotDigit));
        assert_eq!(Pin::parse("79927398710"), Err(PinError::CheckDigit));
        let pin = Pin::parse("79927398713").expect("valid");
        assert_eq!(pin.expose(), "79927398713");
        assert_eq!(pin.last4(), 8713);
        // Non-ASCII input of a plausible byte length must not panic.
        assert_eq!(
            Pin::parse("１２３４５６７８９０"),
            Err(PinError::Length { digits: 30 })
        );
        assert_eq!(Pin::parse("１２３４５"), Err(PinError::NotDigit));
    }

    #[test]
    fn debug_and_display_never_show_the_clear_pin() {
        let pin = Pin::parse("4539578763621486").expect("valid");
        let shown = format!("{pin:?} {pin}");
        assert!(!shown.contains("45395787636"));
        assert!(shown.contains("1486"));
    }

    #[test]
    fn generated_pins_are_valid_and_have_the_requested_length() {
        let mut rng = rand::rng();
        for digits in PIN_DIGITS_MIN..=PIN_DIGITS_MAX {
            for _ in 0..200 {
                let pin = Pin::generate(&mut rng, digits);
                assert_eq!(pin.as_bytes().len(), digits);
                assert_ne!(pin.as_bytes()[0], b'0');
                assert_eq!(Pin::parse(pin.expose()), Ok(pin));
            }
        }
    }

    #[test]
    fn keys_depend_on_the_secret_and_spread_over_shards() {
        let pin = Pin::parse("4539578763621486").expect("valid");
        let a = PinHasher::new(b"secret-a");
        let b = PinHasher::new(b"secret-b");
        assert_eq!(a.key(&pin), a.key(&pin));
        assert_ne!(a.key(&pin), b.key(&pin));
        assert_ne!(a.fingerprint(), b.fingerprint());

        let mut rng = rand::rng();
        let mut per_shard = [0usize; 4];
        for _ in 0..4000 {
            let key = a.key(&Pin::generate(&mut rng, 16));
            per_shard[key.shard(4)] += 1;
        }
        for count in per_shard {
            assert!((800..1200).contains(&count), "skewed shards {per_shard:?}");
        }
    }
}
