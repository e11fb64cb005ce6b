//! The wire protocol: message kinds, request and response bodies, error
//! codes. `docs/PROTOCOL.md` is the reference for client authors; this
//! module is its executable form.
//!
//! Each frame (see [`frame`]) carries a one-byte kind, a correlation id the
//! client chooses, and a postcard-encoded body whose type the kind selects.
//! A response carries the correlation id of its request and either the same
//! kind (success) or [`KIND_ERROR`]. Responses may return in any order, so a
//! client can pipeline many requests on one connection.

pub mod frame;

use crate::card::{CardState, DeclineReason};
use crate::ids::Position;
use serde::{Deserialize, Serialize};

/// Message kinds. A request of kind K is answered by kind K or `KIND_ERROR`.
pub const KIND_PING: u8 = 1;
pub const KIND_ISSUE: u8 = 2;
pub const KIND_ACTIVATE: u8 = 3;
pub const KIND_PAY: u8 = 4;
pub const KIND_BALANCE: u8 = 5;
pub const KIND_REPORT: u8 = 6;
pub const KIND_AUDIT: u8 = 7;
pub const KIND_STATS: u8 = 8;
pub const KIND_ERROR: u8 = 0xFF;

/// Error codes carried by [`ErrorResponse`]. Stable numbers: clients match
/// on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    /// The frame's body does not decode as its kind's body. Connection closed.
    MalformedFrame = 1,
    /// The length prefix exceeds the maximum frame size. Connection closed.
    FrameTooLarge = 2,
    /// The stream ended inside a frame. Connection closed.
    TruncatedFrame = 3,
    /// The kind byte names no request. The connection stays open.
    UnknownMessageType = 4,
    /// A PIN fails the length, digit or check-digit test.
    InvalidPin = 5,
    /// An amount or face value is zero or above its limit.
    InvalidAmount = 6,
    /// A list or count exceeds its limit (cards per payment, …).
    LimitExceeded = 7,
    /// The same PIN appears twice in one payment.
    DuplicatePin = 8,
    /// A request with this (merchant, request id) is being processed right
    /// now; retry once it has answered.
    RequestInProgress = 9,
    /// Balance inquiry for a PIN the center does not know.
    UnknownPin = 10,
    /// The engine failed internally; the request may be retried.
    Internal = 11,
    /// The engine is at its connection limit. Connection closed.
    Overloaded = 12,
    /// Any other malformed argument.
    InvalidArgument = 13,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::MalformedFrame,
        ErrorCode::FrameTooLarge,
        ErrorCode::TruncatedFrame,
        ErrorCode::UnknownMessageType,
        ErrorCode::InvalidPin,
        ErrorCode::InvalidAmount,
        ErrorCode::LimitExceeded,
        ErrorCode::DuplicatePin,
        ErrorCode::RequestInProgress,
        ErrorCode::UnknownPin,
        ErrorCode::Internal,
        ErrorCode::Overloaded,
        ErrorCode::InvalidArgument,
    ];

    pub fn from_u16(code: u16) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| *c as u16 == code)
    }

    pub fn name(self) -> &'static str {
        use ErrorCode::*;
        match self {
            MalformedFrame => "malformed_frame",
            FrameTooLarge => "frame_too_large",
            TruncatedFrame => "truncated_frame",
            UnknownMessageType => "unknown_message_type",
            InvalidPin => "invalid_pin",
            InvalidAmount => "invalid_amount",
            LimitExceeded => "limit_exceeded",
            DuplicatePin => "duplicate_pin",
            RequestInProgress => "request_in_progress",
            UnknownPin => "unknown_pin",
            Internal => "internal",
            Overloaded => "overloaded",
            InvalidArgument => "invalid_argument",
        }
    }
}

// ---------------------------------------------------------------- requests

/// Create `count` new (issued, worthless) cards of one face value. The reply
/// is the only time the clear PINs ever leave the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueRequest {
    pub count: u32,
    pub face_value_minor: u64,
}

/// A store's headquarters reports cards sold at a POS: each becomes valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivateRequest {
    pub store_id: u32,
    /// The POS transaction reference (0 when none).
    pub pos_ref: u64,
    pub pins: Vec<String>,
}

/// A merchant debits `amount_minor` from one or more cards, taken in the
/// order given. `(merchant_id, request_id)` makes the request idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayRequest {
    pub merchant_id: u32,
    pub request_id: u64,
    pub amount_minor: u64,
    pub pins: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceRequest {
    pub pin: String,
}

/// Every request the engine understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Ping,
    Issue(IssueRequest),
    Activate(ActivateRequest),
    Pay(PayRequest),
    Balance(BalanceRequest),
    Report,
    Audit,
    Stats,
}

/// Why a request frame could not be turned into a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub code: ErrorCode,
    pub message: String,
}

impl Request {
    pub fn kind(&self) -> u8 {
        match self {
            Request::Ping => KIND_PING,
            Request::Issue(_) => KIND_ISSUE,
            Request::Activate(_) => KIND_ACTIVATE,
            Request::Pay(_) => KIND_PAY,
            Request::Balance(_) => KIND_BALANCE,
            Request::Report => KIND_REPORT,
            Request::Audit => KIND_AUDIT,
            Request::Stats => KIND_STATS,
        }
    }

    /// Appends this request as one frame.
    pub fn encode(
        &self,
        out: &mut Vec<u8>,
        correlation_id: u64,
        max_frame_bytes: usize,
    ) -> Result<(), frame::EncodeError> {
        let kind = self.kind();
        match self {
            Request::Ping | Request::Report | Request::Audit | Request::Stats => {
                frame::encode(out, kind, correlation_id, &(), max_frame_bytes)
            }
            Request::Issue(body) => frame::encode(out, kind, correlation_id, body, max_frame_bytes),
            Request::Activate(body) => {
                frame::encode(out, kind, correlation_id, body, max_frame_bytes)
            }
            Request::Pay(body) => frame::encode(out, kind, correlation_id, body, max_frame_bytes),
            Request::Balance(body) => {
                frame::encode(out, kind, correlation_id, body, max_frame_bytes)
            }
        }
    }

    /// Decodes a request body. Never panics, whatever the bytes.
    pub fn decode(kind: u8, body: &[u8]) -> Result<Request, DecodeError> {
        match kind {
            KIND_PING => decode_unit(body).map(|()| Request::Ping),
            KIND_ISSUE => decode_body(body).map(Request::Issue),
            KIND_ACTIVATE => decode_body(body).map(Request::Activate),
            KIND_PAY => decode_body(body).map(Request::Pay),
            KIND_BALANCE => decode_body(body).map(Request::Balance),
            KIND_REPORT => decode_unit(body).map(|()| Request::Report),
            KIND_AUDIT => decode_unit(body).map(|()| Request::Audit),
            KIND_STATS => decode_unit(body).map(|()| Request::Stats),
            other => Err(DecodeError {
                code: ErrorCode::UnknownMessageType,
                message: format!("unknown message type {other}"),
            }),
        }
    }
}

/// Decodes a whole body: trailing bytes mean the peer and we disagree on the
/// layout, which is as malformed as a short body.
fn decode_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, DecodeError> {
    match postcard::take_from_bytes::<T>(body) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(DecodeError {
            code: ErrorCode::MalformedFrame,
            message: format!("{} unexpected trailing bytes in body", rest.len()),
        }),
        Err(error) => Err(DecodeError {
            code: ErrorCode::MalformedFrame,
            message: format!("body does not decode: {error}"),
        }),
    }
}

fn decode_unit(body: &[u8]) -> Result<(), DecodeError> {
    decode_body::<()>(body)
}

// --------------------------------------------------------------- responses

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueResponse {
    pub face_value_minor: u64,
    /// The clear PINs, shown exactly once.
    pub pins: Vec<String>,
}

/// The outcome for one PIN of an activation request, in request order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActivationResult {
    Activated {
        face_value_minor: u64,
    },
    Declined {
        reason: DeclineReason,
    },
    /// The PIN failed the length, digit or check-digit test.
    InvalidPin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivateResponse {
    pub results: Vec<ActivationResult>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayStatus {
    Approved,
    Declined,
}

/// What one card contributed to an approved payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayPart {
    /// Last four digits of the PIN, to tell the purchaser's cards apart.
    pub pin_last4: u16,
    pub taken_minor: u64,
    /// What the card holds after this payment.
    pub remaining_minor: u64,
}

/// The answer to a payment, stored durably so that a retry with the same
/// (merchant, request id) gets exactly this answer back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayResponse {
    pub status: PayStatus,
    /// Set when declined.
    pub reason: Option<DeclineReason>,
    /// Position (from 1, in the request's PIN list) of the card that caused
    /// the decline, when one card did.
    pub position: Option<Position>,
    pub amount_minor: u64,
    /// Total left on the payment's cards (when approved: after the debit).
    pub remaining_minor: u64,
    /// One entry per card, in request order (empty when declined).
    pub parts: Vec<PayPart>,
    /// True when this answer is a replay of an earlier identical request.
    pub replayed: bool,
}

impl PayResponse {
    pub fn declined(
        reason: DeclineReason,
        position: Option<Position>,
        amount_minor: u64,
        remaining_minor: u64,
    ) -> PayResponse {
        PayResponse {
            status: PayStatus::Declined,
            reason: Some(reason),
            position,
            amount_minor,
            remaining_minor,
            parts: Vec::new(),
            replayed: false,
        }
    }

    pub fn approved(amount_minor: u64, parts: Vec<PayPart>) -> PayResponse {
        // Money invariant, kept in production: the parts pay the amount.
        assert_eq!(
            parts.iter().map(|p| p.taken_minor).sum::<u64>(),
            amount_minor,
            "an approved payment's parts add up to its amount"
        );
        PayResponse {
            status: PayStatus::Approved,
            reason: None,
            position: None,
            amount_minor,
            remaining_minor: parts.iter().map(|p| p.remaining_minor).sum(),
            parts,
            replayed: false,
        }
    }

    pub fn is_approved(&self) -> bool {
        self.status == PayStatus::Approved
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceResponse {
    pub state: CardState,
    pub face_value_minor: u64,
    pub balance_minor: u64,
    /// Balance less funds held by payments being committed.
    pub available_minor: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StoreLine {
    pub store_id: u32,
    pub cards_activated: u64,
    /// What the store owes the center for the cards it sold.
    pub owed_minor: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MerchantLine {
    pub merchant_id: u32,
    /// What the center owes the merchant for approved payments.
    pub owed_minor: u64,
}

/// Engine-wide sums. `activated_minor == balance_minor +
/// merchant_owed_minor` is the conservation law the audit proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Totals {
    pub cards: u64,
    pub cards_issued: u64,
    pub cards_active: u64,
    pub cards_exhausted: u64,
    /// Face value of every card ever activated.
    pub activated_minor: u64,
    /// Money left on cards (holds included).
    pub balance_minor: u64,
    /// Part of the balance held by payments being committed.
    pub held_minor: u64,
    pub store_owed_minor: u64,
    pub merchant_owed_minor: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReportResponse {
    pub stores: Vec<StoreLine>,
    pub merchants: Vec<MerchantLine>,
    pub totals: Totals,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditResponse {
    pub ok: bool,
    /// One line per finding, naming where (card, store, shard, payment).
    pub problems: Vec<String>,
    pub totals: Totals,
}

/// Per-shard counters, for operators tuning the shard count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ShardStats {
    pub shard: u16,
    pub cards: u64,
    /// Bytes the shard's card map has allocated (from its capacity).
    pub card_map_bytes: u64,
    /// Synced write batches (group commits) so far.
    pub batches: u64,
    /// Operations those batches carried.
    pub ops: u64,
    pub batch_ops_p50: u64,
    pub batch_ops_p99: u64,
    pub batch_ops_max: u64,
    pub sync_us_p50: u64,
    pub sync_us_p99: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StatsResponse {
    pub shards: Vec<ShardStats>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// An [`ErrorCode`] number.
    pub code: u16,
    pub message: String,
}

impl ErrorResponse {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorResponse {
        ErrorResponse {
            code: code as u16,
            message: message.into(),
        }
    }

    pub fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::from_u16(self.code)
    }
}

/// Every response the engine sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Pong,
    Issued(IssueResponse),
    Activated(ActivateResponse),
    Paid(PayResponse),
    Balance(BalanceResponse),
    Report(ReportResponse),
    Audit(AuditResponse),
    Stats(StatsResponse),
    Error(ErrorResponse),
}

impl Response {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Response {
        Response::Error(ErrorResponse::new(code, message))
    }

    pub fn kind(&self) -> u8 {
        match self {
            Response::Pong => KIND_PING,
            Response::Issued(_) => KIND_ISSUE,
            Response::Activated(_) => KIND_ACTIVATE,
            Response::Paid(_) => KIND_PAY,
            Response::Balance(_) => KIND_BALANCE,
            Response::Report(_) => KIND_REPORT,
            Response::Audit(_) => KIND_AUDIT,
            Response::Stats(_) => KIND_STATS,
            Response::Error(_) => KIND_ERROR,
        }
    }

    /// Appends this response as one frame.
    pub fn encode(
        &self,
        out: &mut Vec<u8>,
        correlation_id: u64,
        max_frame_bytes: usize,
    ) -> Result<(), frame::EncodeError> {
        let kind = self.kind();
        let max = max_frame_bytes;
        match self {
            Response::Pong => frame::encode(out, kind, correlation_id, &(), max),
            Response::Issued(body) => frame::encode(out, kind, correlation_id, body, max),
            Response::Activated(body) => frame::encode(out, kind, correlation_id, body, max),
            Response::Paid(body) => frame::encode(out, kind, correlation_id, body, max),
            Response::Balance(body) => frame::encode(out, kind, correlation_id, body, max),
            Response::Report(body) => frame::encode(out, kind, correlation_id, body, max),
            Response::Audit(body) => frame::encode(out, kind, correlation_id, body, max),
            Response::Stats(body) => frame::encode(out, kind, correlation_id, body, max),
            Response::Error(body) => frame::encode(out, kind, correlation_id, body, max),
        }
    }

    /// Decodes a response body (client side). Never panics.
    pub fn decode(kind: u8, body: &[u8]) -> Result<Response, DecodeError> {
        match kind {
            KIND_PING => decode_unit(body).map(|()| Response::Pong),
            KIND_ISSUE => decode_body(body).map(Response::Issued),
            KIND_ACTIVATE => decode_body(body).map(Response::Activated),
            KIND_PAY => decode_body(body).map(Response::Paid),
            KIND_BALANCE => decode_body(body).map(Response::Balance),
            KIND_REPORT => decode_body(body).map(Response::Report),
            KIND_AUDIT => decode_body(body).map(Response::Audit),
            KIND_STATS => decode_body(body).map(Response::Stats),
            KIND_ERROR => decode_body(body).map(Response::Error),
            other => Err(DecodeError {
                code: ErrorCode::UnknownMessageType,
                message: format!("unknown response type {other}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip_request(request: Request) {
        let mut out = Vec::new();
        request.encode(&mut out, 9, 1 << 20).expect("encode");
        let (frame, used) = frame::parse(&out, 1 << 20).expect("ok").expect("frame");
        assert_eq!(used, out.len());
        assert_eq!(frame.correlation_id, 9);
        assert_eq!(Request::decode(frame.kind, frame.body), Ok(request));
    }

    #[test]
    fn every_request_round_trips() {
        round_trip_request(Request::Ping);
        round_trip_request(Request::Report);
        round_trip_request(Request::Audit);
        round_trip_request(Request::Stats);
        round_trip_request(Request::Issue(IssueRequest {
            count: 3,
            face_value_minor: 500,
        }));
        round_trip_request(Request::Activate(ActivateRequest {
            store_id: 1,
            pos_ref: 2,
            pins: vec!["79927398713".into()],
        }));
        round_trip_request(Request::Pay(PayRequest {
            merchant_id: 1,
            request_id: u64::MAX,
            amount_minor: 300,
            pins: vec!["79927398713".into(), "4539578763621486".into()],
        }));
        round_trip_request(Request::Balance(BalanceRequest {
            pin: "79927398713".into(),
        }));
    }

    #[test]
    fn responses_round_trip() {
        let responses = [
            Response::Paid(PayResponse::approved(
                300,
                vec![PayPart {
                    pin_last4: 8713,
                    taken_minor: 300,
                    remaining_minor: 200,
                }],
            )),
            Response::Paid(PayResponse::declined(
                DeclineReason::InsufficientFunds,
                Position::from_number(2),
                300,
                100,
            )),
            Response::error(ErrorCode::InvalidPin, "bad"),
            Response::Pong,
        ];
        for response in responses {
            let mut out = Vec::new();
            response.encode(&mut out, 5, 1 << 20).expect("encode");
            let (frame, _) = frame::parse(&out, 1 << 20).expect("ok").expect("frame");
            assert_eq!(Response::decode(frame.kind, frame.body), Ok(response));
        }
    }

    #[test]
    fn card_state_is_one_byte_with_its_stored_number() {
        let balance = BalanceResponse {
            state: CardState::Active,
            face_value_minor: 1,
            balance_minor: 1,
            available_minor: 1,
        };
        let bytes = postcard::to_stdvec(&balance).expect("encode");
        assert_eq!(bytes, vec![2, 1, 1, 1]);
        assert!(postcard::from_bytes::<BalanceResponse>(&[4, 1, 1, 1]).is_err());
    }

    #[test]
    fn bad_bodies_and_kinds_are_errors_not_panics() {
        assert_eq!(
            Request::decode(200, &[]).map_err(|e| e.code),
            Err(ErrorCode::UnknownMessageType)
        );
        assert_eq!(
            Request::decode(KIND_PAY, &[1, 2]).map_err(|e| e.code),
            Err(ErrorCode::MalformedFrame)
        );
        assert_eq!(
            Request::decode(KIND_PING, &[0]).map_err(|e| e.code),
            Err(ErrorCode::MalformedFrame)
        );
        // A claimed huge vector length with no bytes behind it.
        let body = [1, 1, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F];
        assert!(Request::decode(KIND_PAY, &body).is_err());
        // Random bytes never panic.
        let mut seed = 0x1234_5678_u64;
        for length in 0..400 {
            let bytes: Vec<u8> = (0..length % 64)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 56) as u8
                })
                .collect();
            for kind in 0..=9 {
                let _ = Request::decode(kind, &bytes);
            }
        }
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_u16(code as u16), Some(code));
        }
        assert_eq!(ErrorCode::from_u16(0), None);
    }
}
