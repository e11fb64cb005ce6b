//! Errors on the wire: codes clients branch on, and the error body.

use serde::{Deserialize, Serialize};

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
    /// Balance inquiry for a PIN that names no sold card (unknown or not yet
    /// sold: the same answer for both).
    InvalidCard = 10,
    /// The engine failed internally; the request may be retried.
    Internal = 11,
    /// The engine is at its connection limit. Connection closed.
    Overloaded = 12,
    /// Any other malformed argument, or a request id reused for a different
    /// payment.
    InvalidArgument = 13,
    /// The connection has not authenticated (or its key was revoked); only
    /// the handshake is accepted.
    Unauthenticated = 14,
    /// The principal's role may not send this request, or not for this
    /// store.
    Forbidden = 15,
    /// Too many PIN failures: the principal is refused for a while.
    LockedOut = 16,
    /// The engine is full right now (a shard's queue, the in-flight byte
    /// budget, the admin lane); nothing was done: retry shortly.
    Busy = 17,
    /// The connection took too long (to authenticate, to finish a frame,
    /// idle, or to read its replies) and is closed.
    TimedOut = 18,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 18] = [
        ErrorCode::MalformedFrame,
        ErrorCode::FrameTooLarge,
        ErrorCode::TruncatedFrame,
        ErrorCode::UnknownMessageType,
        ErrorCode::InvalidPin,
        ErrorCode::InvalidAmount,
        ErrorCode::LimitExceeded,
        ErrorCode::DuplicatePin,
        ErrorCode::RequestInProgress,
        ErrorCode::InvalidCard,
        ErrorCode::Internal,
        ErrorCode::Overloaded,
        ErrorCode::InvalidArgument,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::LockedOut,
        ErrorCode::Busy,
        ErrorCode::TimedOut,
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
            InvalidCard => "invalid_card",
            Internal => "internal",
            Overloaded => "overloaded",
            InvalidArgument => "invalid_argument",
            Unauthenticated => "unauthenticated",
            Forbidden => "forbidden",
            LockedOut => "locked_out",
            Busy => "busy",
            TimedOut => "timed_out",
        }
    }
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

/// Why a request frame could not be turned into a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub code: ErrorCode,
    pub message: String,
}
