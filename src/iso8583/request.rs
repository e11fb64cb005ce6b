//! What a decoded message asks for: the checks on its fields, and the
//! response it is answered with (MTI, echoed fields, DE 38, DE 39, DE 54).
//!
//! A message whose fields are wrong is refused here with its DE 39, before
//! anything reaches the engine: nothing is applied for it.

use super::codec::Message;
use super::codes::ResponseCode;
use crate::ids::StoreId;
use crate::pin::{Pin, PinKey};
use crate::protocol::BalanceResponse;
use sha2::{Digest, Sha256};

/// Processing code of a prepaid activation (and of its reversal).
pub const PROCESSING_ACTIVATION: &str = "220000";
/// Processing codes of a balance inquiry start with this.
pub const PROCESSING_BALANCE_PREFIX: &str = "31";
/// ISO 4217 numeric code of the yen, the only currency kessai holds.
pub const CURRENCY_YEN: &str = "392";
/// DE 70 network management codes.
pub const NETWORK_SIGN_ON: &str = "001";
pub const NETWORK_SIGN_OFF: &str = "002";
pub const NETWORK_ECHO: &str = "301";
/// Characters in an RRN (DE 37).
pub const RRN_CHARS: usize = 12;
/// The bit that marks a POS reference made from an RRN, so that it never
/// equals a binary-protocol reference below 2^63.
pub const RRN_POS_REF_BIT: u64 = 1 << 63;
// 36^12 RRNs fit under the marker bit.
const _: () = assert!(36u128.pow(RRN_CHARS as u32) <= RRN_POS_REF_BIT as u128);

/// A network management request (0800).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    SignOn,
    SignOff,
    Echo,
}

/// Which reversal message it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReversalKind {
    /// 0400: the till voided the sale.
    Void,
    /// 0420 (or its repeat 0421): the HQ never got the 0210 in time.
    Timeout,
}

/// One card of one sale: the fields an activation or a reversal needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sale {
    pub pin: Pin,
    pub amount_minor: u64,
    pub store_id: StoreId,
    /// DE 37 as kessai's POS reference (see [`pos_ref_of_rrn`]).
    pub pos_ref: u64,
}

/// A message's request, its fields checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Network(Network),
    Activate(Sale),
    Reverse(ReversalKind, Sale),
    Balance {
        pin: Pin,
        /// DE 42, when given: must be one of the HQ's stores.
        store_id: Option<StoreId>,
    },
}

impl Request {
    /// A financial request, which needs a signed-on session.
    pub fn is_financial(&self) -> bool {
        !matches!(self, Request::Network(_))
    }
}

/// Why a message is refused before the engine sees it, and a PIN it
/// carried that failed its check digit (a PIN failure to count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ResponseCode,
    pub bad_pin: bool,
}

impl Refusal {
    fn new(code: ResponseCode) -> Refusal {
        Refusal {
            code,
            bad_pin: false,
        }
    }
}

fn format_error() -> Refusal {
    Refusal::new(ResponseCode::FormatError)
}

/// The response MTI of a request MTI: request → response, advice →
/// advice response, and a repeat answered as the original (0421 → 0430).
/// `None` for an MTI that is not a request or an advice.
pub fn response_mti(mti: [u8; 4]) -> Option<[u8; 4]> {
    let function = match mti[2] {
        b'0' => b'1',
        b'2' => b'3',
        _ => return None,
    };
    Some([mti[0], mti[1], function, b'0'])
}

/// Reads the request of `message`.
pub fn parse(message: &Message) -> Result<Request, Refusal> {
    match &message.mti {
        b"0800" => network(message),
        b"0200" => {
            processing(message, |code| code == PROCESSING_ACTIVATION)?;
            Ok(Request::Activate(sale(message)?))
        }
        b"0400" => {
            processing(message, |code| code == PROCESSING_ACTIVATION)?;
            let sale = sale(message)?;
            original(message, false)?;
            Ok(Request::Reverse(ReversalKind::Void, sale))
        }
        b"0420" | b"0421" => {
            processing(message, |code| code == PROCESSING_ACTIVATION)?;
            let sale = sale(message)?;
            original(message, true)?;
            Ok(Request::Reverse(ReversalKind::Timeout, sale))
        }
        b"0100" => {
            processing(message, |code| code.starts_with(PROCESSING_BALANCE_PREFIX))?;
            required(message, 11)?;
            let pin = pin(message)?;
            let store_id = match message.get(42) {
                Some(text) => Some(store(text)?),
                None => None,
            };
            Ok(Request::Balance { pin, store_id })
        }
        _ => Err(Refusal::new(ResponseCode::NotSupported)),
    }
}

fn required(message: &Message, field: u8) -> Result<&str, Refusal> {
    message.get(field).ok_or_else(format_error)
}

fn network(message: &Message) -> Result<Request, Refusal> {
    required(message, 11)?;
    match required(message, 70)? {
        NETWORK_SIGN_ON => Ok(Request::Network(Network::SignOn)),
        NETWORK_SIGN_OFF => Ok(Request::Network(Network::SignOff)),
        NETWORK_ECHO => Ok(Request::Network(Network::Echo)),
        _ => Err(Refusal::new(ResponseCode::InvalidTransaction)),
    }
}

fn processing(message: &Message, accepted: impl Fn(&str) -> bool) -> Result<(), Refusal> {
    if accepted(required(message, 3)?) {
        Ok(())
    } else {
        Err(Refusal::new(ResponseCode::InvalidTransaction))
    }
}

/// The fields of a sale: STAN, terminal, store, RRN, amount in yen, PIN.
/// Format first (30), then the amount's currency (13), then the PIN's
/// check digit (14): a message is refused for its first fault.
fn sale(message: &Message) -> Result<Sale, Refusal> {
    required(message, 11)?;
    required(message, 41)?;
    let store_id = store(required(message, 42)?)?;
    let pos_ref = pos_ref_of_rrn(required(message, 37)?).ok_or_else(format_error)?;
    let amount_minor = amount(required(message, 4)?)?;
    if required(message, 49)? != CURRENCY_YEN || amount_minor == 0 {
        return Err(Refusal::new(ResponseCode::InvalidAmount));
    }
    let pin = pin(message)?;
    Ok(Sale {
        pin,
        amount_minor,
        store_id,
        pos_ref,
    })
}

/// DE 90 of a reversal: the original must have been an 0200. Required on
/// an 0420/0421, checked when an 0400 carries it.
fn original(message: &Message, required_here: bool) -> Result<(), Refusal> {
    match message.get(90) {
        Some(text) if text.starts_with("0200") => Ok(()),
        Some(_) => Err(Refusal::new(ResponseCode::InvalidTransaction)),
        None if required_here => Err(format_error()),
        None => Ok(()),
    }
}

/// DE 4: twelve digits of yen (the codec checked they are digits).
fn amount(text: &str) -> Result<u64, Refusal> {
    text.parse::<u64>().map_err(|_| format_error())
}

/// DE 42: a store id, right-justified, padded with zeros or spaces.
fn store(text: &str) -> Result<StoreId, Refusal> {
    let digits = text.trim_matches(' ');
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format_error());
    }
    digits.parse::<StoreId>().map_err(|_| format_error())
}

/// The PIN, from DE 2 or from DE 35 (track 2: the PAN before `=`). Both
/// present must agree. A PIN of the wrong shape or check digit is 14, and
/// a failure to count.
fn pin(message: &Message) -> Result<Pin, Refusal> {
    let from_track = message
        .get(35)
        .map(|track| track.split(['=', 'D']).next().unwrap_or(""));
    let text = match (message.get(2), from_track) {
        (Some(pan), Some(track)) if pan != track => return Err(format_error()),
        (Some(pan), _) => pan,
        (None, Some(track)) => track,
        (None, None) => return Err(format_error()),
    };
    Pin::parse(text).map_err(|_| Refusal {
        code: ResponseCode::InvalidCard,
        bad_pin: true,
    })
}

/// DE 37 as a POS reference: twelve characters of `0-9A-Z`, read as a
/// base-36 number, with [`RRN_POS_REF_BIT`] set. Lossless, so the sale's
/// reference is the RRN itself ([`rrn_of_pos_ref`] gives it back).
pub fn pos_ref_of_rrn(rrn: &str) -> Option<u64> {
    if rrn.len() != RRN_CHARS {
        return None;
    }
    let mut value = 0u64;
    for byte in rrn.bytes() {
        let digit = match byte {
            b'0'..=b'9' => byte - b'0',
            b'A'..=b'Z' => byte - b'A' + 10,
            _ => return None,
        };
        value = value * 36 + u64::from(digit);
    }
    Some(value | RRN_POS_REF_BIT)
}

/// The RRN a POS reference was made from, if it was made from one.
pub fn rrn_of_pos_ref(pos_ref: u64) -> Option<String> {
    if pos_ref & RRN_POS_REF_BIT == 0 {
        return None;
    }
    let mut value = pos_ref & !RRN_POS_REF_BIT;
    let mut out = [b'0'; RRN_CHARS];
    for slot in out.iter_mut().rev() {
        let digit = (value % 36) as u8;
        *slot = if digit < 10 {
            b'0' + digit
        } else {
            b'A' + digit - 10
        };
        value /= 36;
    }
    (value == 0).then(|| String::from_utf8_lossy(&out).into_owned())
}

/// DE 38 of an approved sale: six digits that depend only on the sale
/// (store, RRN) and the card's key, so a replay or a retried reversal gets
/// the same code, and the code tells nothing of the PIN.
pub fn approval_code(key: &PinKey, store_id: StoreId, pos_ref: u64) -> String {
    let mut hash = Sha256::new();
    hash.update(b"kessai iso8583 approval");
    hash.update(key.0);
    hash.update(store_id.to_be_bytes());
    hash.update(pos_ref.to_be_bytes());
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    format!("{:06}", u64::from_be_bytes(first) % 1_000_000)
}

/// The fields a response repeats from its request.
const ECHOED: [u8; 11] = [3, 4, 7, 11, 12, 13, 37, 41, 42, 49, 90];

/// The response to `request` with `code`: the response MTI, the echoed
/// fields and DE 39. The PIN (DE 2, DE 35) is never echoed.
pub fn response(request: &Message, code: ResponseCode) -> Option<Message> {
    let mut response = Message::new(response_mti(request.mti)?);
    for field in ECHOED {
        if let Some(value) = request.get(field) {
            response.set(field, value);
        }
    }
    response.set(39, code.as_str());
    if request.mti == *b"0800"
        && let Some(code) = request.get(70)
    {
        response.set(70, code);
    }
    Some(response)
}

/// DE 54 of a balance inquiry, in the 1987 layout: 20-character blocks of
/// account type (2), amount type (2), currency (3), sign (C/D) and amount
/// (12). Two blocks: the ledger balance (01) and the available one (02).
pub fn balance_amounts(balance: &BalanceResponse) -> String {
    let block = |amount_type: &str, amount_minor: u64| {
        format!("00{amount_type}{CURRENCY_YEN}C{amount_minor:012}")
    };
    let mut out = block("01", balance.balance_minor);
    out.push_str(&block("02", balance.available_minor));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::CardState;
    use crate::iso8583::codec;
    use proptest::prelude::*;

    const PIN: &str = "4000000000000002";

    fn activation() -> Message {
        let mut message = Message::new(*b"0200");
        message
            .set(2, PIN)
            .set(3, "220000")
            .set(4, "000000005000")
            .set(7, "1205063000")
            .set(11, "000042")
            .set(37, "RRN000000001")
            .set(41, "TERM0001")
            .set(42, "000000000000007")
            .set(49, "392");
        message
    }

    fn code_of(message: &Message) -> ResponseCode {
        parse(message).expect_err("refused").code
    }

    #[test]
    fn an_activation_reads_its_sale() {
        let Ok(Request::Activate(sale)) = parse(&activation()) else {
            panic!("an activation");
        };
        assert_eq!(sale.amount_minor, 5000);
        assert_eq!(sale.store_id, 7);
        assert_eq!(
            rrn_of_pos_ref(sale.pos_ref).as_deref(),
            Some("RRN000000001")
        );
        assert_eq!(sale.pin, Pin::parse(PIN).expect("pin"));
    }

    #[test]
    fn faults_get_their_documented_codes() {
        let with = |field: u8, value: &str| {
            let mut message = activation();
            message.set(field, value);
            message
        };
        let without = |field: u8| {
            let mut message = Message::new(*b"0200");
            for (number, value) in activation().fields() {
                if number != field {
                    message.set(number, value);
                }
            }
            message
        };
        assert_eq!(
            code_of(&with(3, "000000")),
            ResponseCode::InvalidTransaction
        );
        assert_eq!(code_of(&with(49, "840")), ResponseCode::InvalidAmount);
        assert_eq!(
            code_of(&with(4, "000000000000")),
            ResponseCode::InvalidAmount
        );
        assert_eq!(
            code_of(&with(37, "rrn000000001")),
            ResponseCode::FormatError
        );
        assert_eq!(
            code_of(&with(42, "STORE SEVEN    ")),
            ResponseCode::FormatError
        );
        assert_eq!(code_of(&without(41)), ResponseCode::FormatError);
        assert_eq!(code_of(&without(2)), ResponseCode::FormatError);
        let typo = parse(&with(2, "4000000000000003")).expect_err("bad check digit");
        assert_eq!((typo.code, typo.bad_pin), (ResponseCode::InvalidCard, true));
        // Track 2 instead of DE 2, and the two disagreeing.
        let mut track = without(2);
        track.set(35, format!("{PIN}=3012"));
        assert!(matches!(parse(&track), Ok(Request::Activate(_))));
        let mut both = with(35, "4000000000000010=3012");
        both.set(2, PIN);
        assert_eq!(code_of(&both), ResponseCode::FormatError);
        let mut other = activation();
        other.mti = *b"0220";
        assert_eq!(code_of(&other), ResponseCode::NotSupported);
    }

    #[test]
    fn a_timeout_reversal_needs_its_original() {
        let mut message = activation();
        message.mti = *b"0420";
        assert_eq!(code_of(&message), ResponseCode::FormatError);
        message.set(90, format!("0100{}", "0".repeat(38)));
        assert_eq!(code_of(&message), ResponseCode::InvalidTransaction);
        message.set(90, format!("0200000042{}", "0".repeat(32)));
        assert!(matches!(
            parse(&message),
            Ok(Request::Reverse(ReversalKind::Timeout, _))
        ));
        message.mti = *b"0400";
        assert!(matches!(
            parse(&message),
            Ok(Request::Reverse(ReversalKind::Void, _))
        ));
    }

    #[test]
    fn network_codes_and_response_mtis() {
        let mut sign_on = Message::new(*b"0800");
        sign_on.set(11, "000001").set(70, "001");
        assert_eq!(parse(&sign_on), Ok(Request::Network(Network::SignOn)));
        sign_on.set(70, "999");
        assert_eq!(code_of(&sign_on), ResponseCode::InvalidTransaction);
        assert_eq!(response_mti(*b"0200"), Some(*b"0210"));
        assert_eq!(response_mti(*b"0421"), Some(*b"0430"));
        assert_eq!(response_mti(*b"0800"), Some(*b"0810"));
        assert_eq!(response_mti(*b"0210"), None);
        let reply = response(&sign_on, ResponseCode::Approved).expect("a request");
        assert_eq!(reply.get(70), Some("999"));
        assert_eq!(reply.get(39), Some("00"));
        let reply = response(&activation(), ResponseCode::Approved).expect("a request");
        assert_eq!(reply.get(2), None, "the PIN is never echoed");
        assert_eq!(reply.get(37), Some("RRN000000001"));
    }

    #[test]
    fn rrns_map_to_pos_refs_and_back() {
        for rrn in [
            "000000000000",
            "ZZZZZZZZZZZZ",
            "123456789012",
            "A1B2C3D4E5F6",
        ] {
            let pos_ref = pos_ref_of_rrn(rrn).expect("legal");
            assert!(pos_ref & RRN_POS_REF_BIT != 0);
            assert_eq!(rrn_of_pos_ref(pos_ref).as_deref(), Some(rrn));
        }
        assert_ne!(
            pos_ref_of_rrn("000000000001"),
            pos_ref_of_rrn("000000000010")
        );
        for bad in [
            "",
            "12345678901",
            "1234567890123",
            "12345678901a",
            "12345678901 ",
        ] {
            assert_eq!(pos_ref_of_rrn(bad), None, "{bad:?}");
        }
        assert_eq!(rrn_of_pos_ref(42), None);
    }

    #[test]
    fn approval_codes_are_six_digits_and_deterministic() {
        let key = PinKey([7; 16]);
        let code = approval_code(&key, 7, 99);
        assert_eq!(code.len(), 6);
        assert!(code.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(code, approval_code(&key, 7, 99));
        assert_ne!(code, approval_code(&key, 7, 100));
    }

    /// A message of a request MTI with any subset of the table's fields,
    /// each of legal length but of any characters of its charset's
    /// neighbourhood (digits, letters, spaces).
    fn any_request() -> impl Strategy<Value = Message> {
        let mti = prop_oneof![
            Just(*b"0100"),
            Just(*b"0200"),
            Just(*b"0400"),
            Just(*b"0420"),
            Just(*b"0421"),
            Just(*b"0800"),
            Just(*b"0220"),
        ];
        let fields = proptest::collection::vec((0..codec::FIELDS.len(), "[0-9A-Z =]{0,42}"), 0..12);
        (mti, fields).prop_map(|(mti, fields)| {
            let mut message = Message::new(mti);
            for (index, text) in fields {
                message.set(codec::FIELDS[index].number, text);
            }
            message
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// Whatever fields a request carries, reading it never panics, and
        /// a refusal always has a response to carry it (the MTI is a
        /// request's).
        #[test]
        fn reading_any_request_never_panics(message in any_request()) {
            match parse(&message) {
                Ok(_) => {}
                Err(refusal) => {
                    let reply = response(&message, refusal.code).expect("a request MTI");
                    prop_assert_eq!(reply.get(39), Some(refusal.code.as_str()));
                }
            }
        }
    }

    #[test]
    fn balances_are_two_1987_blocks() {
        let balance = BalanceResponse {
            state: CardState::Active,
            face_value_minor: 5000,
            balance_minor: 3000,
            available_minor: 2500,
        };
        assert_eq!(
            balance_amounts(&balance),
            "0001392C0000000030000002392C000000002500"
        );
    }
}
