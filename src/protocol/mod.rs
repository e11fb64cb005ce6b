//! The wire protocol: message kinds, request and response bodies, error
//! codes. `docs/PROTOCOL.md` is the reference for client authors; this
//! module is its executable form.
//!
//! Each frame (see [`frame`]) carries a one-byte kind, a correlation id the
//! client chooses, and a postcard-encoded body whose type the kind selects.
//! A response carries the correlation id of its request and either the same
//! kind (success) or [`KIND_ERROR`]. Responses may return in any order, so a
//! client can pipeline many requests on one connection.

mod admin;
mod auth;
mod authorization;
mod cards;
mod error;
pub mod frame;
mod order;
mod pay;
mod payout;
mod refund;
mod remit;
mod reversal;
mod statement;
mod store_statement;
mod token;

pub use admin::{
    AuditResponse, MerchantLine, ReportAccount, ReportRequest, ReportResponse, ShardStats,
    StatsResponse, StoreLine, Totals,
};
pub use auth::{
    AUTH_NONCE_BYTES, AuthChallenge, AuthHello, AuthProof, AuthWelcome, PRINCIPAL_PAGE_FIXED_BYTES,
    PrincipalAddRequest, PrincipalCertInfo, PrincipalCertRequest, PrincipalInfo, PrincipalListRef,
    PrincipalListRequest, PrincipalListResponse, PrincipalRevokeRequest, PrincipalRotateRequest,
    Role, varint_bytes,
};
pub use authorization::{
    AuthorizationStatus, AuthorizeRequest, AuthorizeResponse, CapturePart, CaptureRequest,
    CaptureResponse, CaptureStatus, HeldPart, VoidRequest, VoidResponse, VoidStatus,
};
pub use cards::{
    ActivateRequest, ActivateResponse, ActivationResult, BalanceRequest, BalanceResponse,
    IssueRequest, IssueResponse,
};
pub use error::{DecodeError, ErrorCode, ErrorResponse};
pub use order::{OrderInfo, OrderLookupRequest, OrderLookupResponse, OrderPayRequest, OrderStatus};
pub use pay::{
    BATCH_ERROR_MESSAGE_BYTES_MAX, PayBatchRequest, PayBatchResponse, PayPart, PayParts,
    PayRequest, PayRequestView, PayResponse, PayResult, PayStatus, PinsView,
};
pub use payout::{
    PAYOUT_REFERENCE_BYTES_MAX, PayoutConfirmRequest, PayoutConfirmResponse, PayoutCreateRequest,
    PayoutCreateResponse, PayoutInfo, PayoutItem, PayoutItemKind, PayoutItemRef, PayoutListRequest,
    PayoutListResponse, PayoutShowRequest, PayoutShowResponse, PayoutStatus,
};
pub use refund::{RefundPart, RefundRequest, RefundResponse, RefundStatus};
pub use remit::{
    REMIT_REFERENCE_BYTES_MAX, RemitAllocation, RemitRequest, RemitResponse, RemitStatus,
};
pub use reversal::{ReversalStatus, ReverseActivationRequest, ReverseActivationResponse};
pub use statement::{
    StatementKind, StatementLine, StatementRef, StatementRequest, StatementResponse,
};
pub use store_statement::{
    StoreEntryKind, StoreStatementLine, StoreStatementRef, StoreStatementRequest,
    StoreStatementResponse,
};
pub use token::{PrincipalTokens, TokenAddRequest, TokenListRequest, TokenRevokeRequest};

use serde::Deserialize;

/// Message kinds. A request of kind K is answered by kind K or `KIND_ERROR`.
pub const KIND_PING: u8 = 1;
pub const KIND_ISSUE: u8 = 2;
pub const KIND_ACTIVATE: u8 = 3;
pub const KIND_PAY: u8 = 4;
pub const KIND_BALANCE: u8 = 5;
pub const KIND_REPORT: u8 = 6;
pub const KIND_AUDIT: u8 = 7;
pub const KIND_STATS: u8 = 8;
pub const KIND_AUTH_HELLO: u8 = 9;
pub const KIND_AUTH_PROOF: u8 = 10;
pub const KIND_PRINCIPAL_ADD: u8 = 11;
pub const KIND_PRINCIPAL_LIST: u8 = 12;
pub const KIND_PRINCIPAL_REVOKE: u8 = 13;
pub const KIND_PRINCIPAL_ROTATE: u8 = 14;
pub const KIND_PAY_BATCH: u8 = 15;
pub const KIND_REVERSE_ACTIVATION: u8 = 16;
pub const KIND_REFUND: u8 = 17;
pub const KIND_AUTHORIZE: u8 = 18;
pub const KIND_CAPTURE: u8 = 19;
pub const KIND_VOID: u8 = 20;
pub const KIND_REMIT: u8 = 21;
pub const KIND_PAYOUT_CREATE: u8 = 22;
pub const KIND_PAYOUT_CONFIRM: u8 = 23;
pub const KIND_PAYOUT_LIST: u8 = 24;
pub const KIND_PAYOUT_SHOW: u8 = 25;
pub const KIND_STATEMENT: u8 = 26;
pub const KIND_STORE_STATEMENT: u8 = 27;
pub const KIND_PRINCIPAL_CERT: u8 = 28;
pub const KIND_ORDER_PAY: u8 = 29;
pub const KIND_ORDER_AUTHORIZE: u8 = 30;
pub const KIND_ORDER_LOOKUP: u8 = 31;
pub const KIND_TOKEN_ADD: u8 = 32;
pub const KIND_TOKEN_LIST: u8 = 33;
pub const KIND_TOKEN_REVOKE: u8 = 34;
pub const KIND_ERROR: u8 = 0xFF;

/// Defines a message enum with its kind byte per variant, and its framing:
/// `encode` appends one frame, `decode` reads a body and never panics,
/// whatever the bytes. A variant is a unit (empty body) or carries one
/// body type. Adding a message is one line here.
macro_rules! wire_messages {
    (
        $(#[$meta:meta])*
        pub enum $name:ident (unknown $unknown:literal) {
            units { $($unit:ident = $unit_kind:ident),* $(,)? }
            bodies { $($variant:ident($body:ty) = $body_kind:ident),* $(,)? }
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum $name {
            $($unit,)*
            $($variant($body),)*
        }

        impl $name {
            pub fn kind(&self) -> u8 {
                match self {
                    $($name::$unit => $unit_kind,)*
                    $($name::$variant(_) => $body_kind,)*
                }
            }

            /// Appends this message as one frame.
            pub fn encode(
                &self,
                out: &mut Vec<u8>,
                correlation_id: u64,
                max_frame_bytes: usize,
            ) -> Result<(), frame::EncodeError> {
                let kind = self.kind();
                match self {
                    $($name::$unit => frame::encode(out, kind, correlation_id, &(), max_frame_bytes),)*
                    $($name::$variant(body) => {
                        frame::encode(out, kind, correlation_id, body, max_frame_bytes)
                    })*
                }
            }

            /// Decodes a body of kind `kind`. Never panics.
            pub fn decode(kind: u8, body: &[u8]) -> Result<$name, DecodeError> {
                match kind {
                    $($unit_kind => decode_body::<()>(body).map(|()| $name::$unit),)*
                    $($body_kind => decode_body(body).map($name::$variant),)*
                    other => Err(DecodeError {
                        code: ErrorCode::UnknownMessageType,
                        message: format!("{} {other}", $unknown),
                    }),
                }
            }
        }
    };
}

wire_messages! {
    /// Every request the engine understands.
    pub enum Request (unknown "unknown message type") {
        units {
            Ping = KIND_PING,
            Audit = KIND_AUDIT,
            Stats = KIND_STATS,
        }
        bodies {
            Issue(IssueRequest) = KIND_ISSUE,
            Activate(ActivateRequest) = KIND_ACTIVATE,
            Pay(PayRequest) = KIND_PAY,
            Balance(BalanceRequest) = KIND_BALANCE,
            Report(ReportRequest) = KIND_REPORT,
            AuthHello(AuthHello) = KIND_AUTH_HELLO,
            AuthProof(AuthProof) = KIND_AUTH_PROOF,
            PrincipalAdd(PrincipalAddRequest) = KIND_PRINCIPAL_ADD,
            PrincipalList(PrincipalListRequest) = KIND_PRINCIPAL_LIST,
            PrincipalRevoke(PrincipalRevokeRequest) = KIND_PRINCIPAL_REVOKE,
            PrincipalRotate(PrincipalRotateRequest) = KIND_PRINCIPAL_ROTATE,
            PayBatch(PayBatchRequest) = KIND_PAY_BATCH,
            ReverseActivation(ReverseActivationRequest) = KIND_REVERSE_ACTIVATION,
            Refund(RefundRequest) = KIND_REFUND,
            Authorize(AuthorizeRequest) = KIND_AUTHORIZE,
            Capture(CaptureRequest) = KIND_CAPTURE,
            Void(VoidRequest) = KIND_VOID,
            Remit(RemitRequest) = KIND_REMIT,
            PayoutCreate(PayoutCreateRequest) = KIND_PAYOUT_CREATE,
            PayoutConfirm(PayoutConfirmRequest) = KIND_PAYOUT_CONFIRM,
            PayoutList(PayoutListRequest) = KIND_PAYOUT_LIST,
            PayoutShow(PayoutShowRequest) = KIND_PAYOUT_SHOW,
            Statement(StatementRequest) = KIND_STATEMENT,
            StoreStatement(StoreStatementRequest) = KIND_STORE_STATEMENT,
            PrincipalCert(PrincipalCertRequest) = KIND_PRINCIPAL_CERT,
            OrderPay(OrderPayRequest) = KIND_ORDER_PAY,
            OrderAuthorize(OrderPayRequest) = KIND_ORDER_AUTHORIZE,
            OrderLookup(OrderLookupRequest) = KIND_ORDER_LOOKUP,
            TokenAdd(TokenAddRequest) = KIND_TOKEN_ADD,
            TokenList(TokenListRequest) = KIND_TOKEN_LIST,
            TokenRevoke(TokenRevokeRequest) = KIND_TOKEN_REVOKE,
        }
    }
}

wire_messages! {
    /// Every response the engine sends. A request of kind K is answered by
    /// kind K (`Error`: `KIND_ERROR`).
    pub enum Response (unknown "unknown response type") {
        units {
            Pong = KIND_PING,
        }
        bodies {
            Issued(IssueResponse) = KIND_ISSUE,
            Activated(ActivateResponse) = KIND_ACTIVATE,
            Paid(PayResponse) = KIND_PAY,
            Balance(BalanceResponse) = KIND_BALANCE,
            Report(ReportResponse) = KIND_REPORT,
            Audit(AuditResponse) = KIND_AUDIT,
            Stats(StatsResponse) = KIND_STATS,
            Challenge(AuthChallenge) = KIND_AUTH_HELLO,
            Welcome(AuthWelcome) = KIND_AUTH_PROOF,
            PrincipalAdded(PrincipalInfo) = KIND_PRINCIPAL_ADD,
            Principals(PrincipalListResponse) = KIND_PRINCIPAL_LIST,
            PrincipalRevoked(PrincipalInfo) = KIND_PRINCIPAL_REVOKE,
            PrincipalRotated(PrincipalInfo) = KIND_PRINCIPAL_ROTATE,
            PaidBatch(PayBatchResponse) = KIND_PAY_BATCH,
            ActivationReversed(ReverseActivationResponse) = KIND_REVERSE_ACTIVATION,
            Refunded(RefundResponse) = KIND_REFUND,
            Authorized(AuthorizeResponse) = KIND_AUTHORIZE,
            Captured(CaptureResponse) = KIND_CAPTURE,
            Voided(VoidResponse) = KIND_VOID,
            Remitted(RemitResponse) = KIND_REMIT,
            PayoutCreated(PayoutCreateResponse) = KIND_PAYOUT_CREATE,
            PayoutConfirmed(PayoutConfirmResponse) = KIND_PAYOUT_CONFIRM,
            Payouts(PayoutListResponse) = KIND_PAYOUT_LIST,
            PayoutItems(PayoutShowResponse) = KIND_PAYOUT_SHOW,
            Statement(StatementResponse) = KIND_STATEMENT,
            StoreStatement(StoreStatementResponse) = KIND_STORE_STATEMENT,
            PrincipalCertRegistered(PrincipalCertInfo) = KIND_PRINCIPAL_CERT,
            OrderPaid(PayResponse) = KIND_ORDER_PAY,
            OrderAuthorized(AuthorizeResponse) = KIND_ORDER_AUTHORIZE,
            Order(OrderLookupResponse) = KIND_ORDER_LOOKUP,
            TokenAdded(PrincipalTokens) = KIND_TOKEN_ADD,
            Tokens(PrincipalTokens) = KIND_TOKEN_LIST,
            TokenRevoked(PrincipalTokens) = KIND_TOKEN_REVOKE,
            Error(ErrorResponse) = KIND_ERROR,
        }
    }
}

impl Response {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Response {
        Response::Error(ErrorResponse::new(code, message))
    }

    /// The answer to a request that named its payment by order id: the
    /// engine's payment or authorization answer, under the order kind.
    pub fn for_order(self) -> Response {
        match self {
            Response::Paid(paid) => Response::OrderPaid(paid),
            Response::Authorized(authorized) => Response::OrderAuthorized(authorized),
            other => other,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::{CardState, DeclineReason};
    use crate::ids::Position;

    fn round_trip_request(request: Request) {
        let mut out = Vec::new();
        request.encode(&mut out, 9, 1 << 20).expect("encode");
        let (frame, used) = frame::parse(&out, 1 << 20).expect("ok").expect("frame");
        assert_eq!(used, out.len());
        assert_eq!(frame.correlation_id, 9);
        assert_eq!(Request::decode(frame.kind, frame.body), Ok(request));
    }

    /// Requests of the operator's console (and the ping anyone may send).
    #[test]
    fn admin_requests_round_trip() {
        round_trip_request(Request::Ping);
        round_trip_request(Request::Report(ReportRequest {
            limit: 10,
            after: Some(ReportAccount::Store(7)),
            only: None,
        }));
        round_trip_request(Request::Audit);
        round_trip_request(Request::PrincipalCert(PrincipalCertRequest {
            id: 7,
            fingerprint: [9; 32],
        }));
        round_trip_request(Request::Stats);
        round_trip_request(Request::Issue(IssueRequest {
            count: 3,
            face_value_minor: 500,
        }));
    }

    /// Requests on cards: activation, payment, balance and their follow-ups.
    #[test]
    fn card_requests_round_trip() {
        round_trip_request(Request::Activate(ActivateRequest {
            store_id: 1,
            pos_ref: 2,
            pins: vec!["79927398713".into()],
        }));
        round_trip_request(Request::Pay(PayRequest {
            request_id: u64::MAX,
            amount_minor: 300,
            pins: vec!["79927398713".into(), "4539578763621486".into()],
        }));
        round_trip_request(Request::Balance(BalanceRequest {
            pin: "79927398713".into(),
        }));
        round_trip_request(Request::ReverseActivation(ReverseActivationRequest {
            store_id: 4,
            pos_ref: 77,
            pin: "79927398713".into(),
        }));
        round_trip_request(Request::Authorize(AuthorizeRequest {
            request_id: 3,
            amount_minor: 700,
            pins: vec!["79927398713".into()],
        }));
        round_trip_request(Request::Capture(CaptureRequest {
            request_id: 4,
            authorization_request_id: 3,
            amount_minor: 500,
        }));
        round_trip_request(Request::Void(VoidRequest {
            request_id: 5,
            authorization_request_id: 3,
        }));
        round_trip_request(Request::Refund(RefundRequest {
            request_id: 2,
            payment_request_id: 1,
            amount_minor: 300,
        }));
    }

    /// Requests that settle money with merchants and store HQs.
    #[test]
    fn settlement_requests_round_trip() {
        round_trip_request(Request::PayoutCreate(PayoutCreateRequest {
            request_id: 8,
            merchant_id: 5,
            until_ms: Some(1_700_000_000_000),
        }));
        round_trip_request(Request::PayoutShow(PayoutShowRequest {
            merchant_id: 5,
            seq: 1,
            after: Some(PayoutItemRef {
                kind: PayoutItemKind::Refund,
                request_id: 3,
            }),
            limit: 10,
        }));
        round_trip_request(Request::Statement(StatementRequest {
            merchant_id: 5,
            from_ms: 0,
            to_ms: u64::MAX,
            after: Some(StatementRef {
                kind: StatementKind::Payout,
                id: 2,
            }),
            limit: 100,
        }));
        round_trip_request(Request::Remit(RemitRequest {
            request_id: 6,
            store_hq_id: 42,
            amount_minor: 5000,
            reference: "BANK-0001".into(),
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
        assert!(postcard::from_bytes::<BalanceResponse>(&[6, 1, 1, 1]).is_err());
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
            for kind in 0..=KIND_TOKEN_REVOKE {
                let _ = Request::decode(kind, &bytes);
            }
        }
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_u16(code as u16), Some(code));
        }
        assert_eq!(ErrorCode::from_u16(0), None);
    }
}
