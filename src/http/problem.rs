//! Errors and declines as RFC 9457 `application/problem+json`, each with a
//! stable `type` (`urn:kessai:problem:<name>`, or for a decline
//! `urn:kessai:decline:<reason>`), and the HTTP status each maps to.
//!
//! Messages come from the engine's validation and never hold a PIN (they
//! name a PIN by its position); the HTTP layer adds none.

use crate::card::DeclineReason;
use crate::protocol::{ErrorCode, ErrorResponse};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder};
use serde::Serialize;
use utoipa::ToSchema;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A stable URI naming the kind of problem: branch on it.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// For a decline: the payment, authorization, capture, void or refund
    /// as declined.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payment: Option<serde_json::Value>,
}

/// Why a request failed, before or inside the engine.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: StatusCode,
    pub name: &'static str,
    pub detail: String,
    /// Seconds for `Retry-After` (429, 503).
    pub retry_after_s: Option<u64>,
}

impl Failure {
    pub fn new(status: StatusCode, name: &'static str, detail: impl Into<String>) -> Failure {
        Failure {
            status,
            name,
            detail: detail.into(),
            retry_after_s: None,
        }
    }

    pub fn busy(detail: impl Into<String>) -> Failure {
        Failure {
            retry_after_s: Some(1),
            ..Failure::new(StatusCode::SERVICE_UNAVAILABLE, "busy", detail)
        }
    }

    pub fn unauthorized(detail: impl Into<String>) -> Failure {
        Failure::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn invalid(name: &'static str, detail: impl Into<String>) -> Failure {
        Failure::new(StatusCode::UNPROCESSABLE_ENTITY, name, detail)
    }

    pub fn response(&self) -> HttpResponse {
        let problem = Problem {
            kind: format!("urn:kessai:problem:{}", self.name),
            title: self.name.replace('-', " "),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            payment: None,
        };
        let mut builder = HttpResponseBuilder::new(self.status);
        if let Some(seconds) = self.retry_after_s {
            builder.insert_header(("Retry-After", seconds.to_string()));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            builder.insert_header(("WWW-Authenticate", "Bearer"));
        }
        builder.content_type(PROBLEM_JSON).json(problem)
    }

    /// The HTTP form of an engine error. `lockout_s` is the lock's length,
    /// for `Retry-After` when the engine locked the principal mid-request.
    pub fn of_engine(error: &ErrorResponse, lockout_s: u64) -> Failure {
        let detail = error.message.clone();
        let Some(code) = error.error_code() else {
            return Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail);
        };
        use ErrorCode::*;
        match code {
            InvalidPin => Failure::invalid("invalid-pin", detail),
            InvalidAmount => Failure::invalid("invalid-amount", detail),
            LimitExceeded => Failure::invalid("limit-exceeded", detail),
            DuplicatePin => Failure::invalid("duplicate-pin", detail),
            InvalidArgument if is_reuse(&error.message) => {
                Failure::invalid("idempotency-key-reused", detail)
            }
            InvalidArgument => Failure::invalid("invalid-argument", detail),
            RequestInProgress => Failure::new(StatusCode::CONFLICT, "request-in-progress", detail),
            InvalidCard => Failure::new(StatusCode::NOT_FOUND, "card-not-found", detail),
            Forbidden => Failure::new(StatusCode::FORBIDDEN, "forbidden", detail),
            Unauthenticated => Failure::unauthorized(detail),
            LockedOut => Failure {
                retry_after_s: Some(lockout_s.max(1)),
                ..Failure::new(StatusCode::TOO_MANY_REQUESTS, "locked-out", detail)
            },
            Busy | Overloaded => Failure::busy(detail),
            TimedOut => Failure::new(StatusCode::REQUEST_TIMEOUT, "timed-out", detail),
            MalformedFrame | FrameTooLarge | TruncatedFrame | UnknownMessageType | Internal => {
                Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
            }
        }
    }
}

/// Whether an `invalid_argument` says an id was reused for a different
/// request (the engine's replay check), which HTTP answers as a reused
/// idempotency key. The engine's wording is pinned by a test below.
fn is_reuse(message: &str) -> bool {
    message.contains("already used for a") || message.contains("names an authorization")
}

/// A decline: 402 with the decline reason as its type and the declined
/// operation in `payment`.
pub fn declined(reason: DeclineReason, payment: serde_json::Value, replayed: bool) -> HttpResponse {
    let problem = Problem {
        kind: format!("urn:kessai:decline:{}", reason.name()),
        title: format!("declined: {}", reason.name().replace('_', " ")),
        status: StatusCode::PAYMENT_REQUIRED.as_u16(),
        detail: format!("declined: {}", reason.name()),
        payment: Some(payment),
    };
    let mut builder = HttpResponseBuilder::new(StatusCode::PAYMENT_REQUIRED);
    if replayed {
        builder.insert_header(("Idempotent-Replayed", "true"));
    }
    builder.content_type(PROBLEM_JSON).json(problem)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The replay checks' own messages, as the engine writes them.
    #[test]
    fn the_engines_reuse_messages_are_recognised() {
        for message in [
            "this request id was already used for a different payment",
            "this request id was already used for a different authorization",
            "this request id was already used for a different capture or void",
            "this request id was already used for a different refund",
            "this request id names an authorization: capture it, do not pay it",
            "this request id was already used for a payment",
        ] {
            let error = ErrorResponse::new(ErrorCode::InvalidArgument, message);
            assert_eq!(Failure::of_engine(&error, 1).name, "idempotency-key-reused");
        }
        let other = ErrorResponse::new(ErrorCode::InvalidArgument, "an order id has 1..=50");
        assert_eq!(Failure::of_engine(&other, 1).name, "invalid-argument");
    }
}
